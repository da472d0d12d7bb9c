"""The one module that talks to Toxiproxy (through toxiproxy-python), and the server process itself.

`ToxiproxyServer` starts and stops a real `toxiproxy-server` on 127.0.0.1 (the binary that
`scripts/install-toxiproxy` put in `bin/`, or one on PATH). `Toxiproxy` drives it: create proxies, add and
remove toxics, disable and enable proxies, reset. toxiproxy-python keeps its server address in a class-level
global and raises bare `requests` errors; this wrapper pins the address on every call and turns failures
into `ToxiproxyError`, so the rest of hacluster never depends on those quirks. Calls are synchronous (HTTP
to loopback, a few ms); async callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from toxiproxy import Toxiproxy as _Client
from toxiproxy.api import APIConsumer

START_TIMEOUT_S = 10.0
_lock = threading.Lock()  # APIConsumer's host/port are process-wide


class ToxiproxyError(Exception):
    """Toxiproxy is missing, did not start, or refused a request."""


def find_server_binary(project_root: Path | None = None) -> str:
    """`bin/toxiproxy-server` of the project, else one on PATH; ToxiproxyError naming the fix otherwise."""
    root = project_root or Path(__file__).resolve().parents[1]
    local = root / "bin" / "toxiproxy-server"
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("toxiproxy-server")
    if found:
        return found
    raise ToxiproxyError("no toxiproxy-server: run scripts/install-toxiproxy (needs Go) or put one on PATH")


@dataclass(frozen=True)
class Link:
    """A proxy: clients dial `listen`, Toxiproxy forwards to `upstream`."""

    name: str
    listen: str
    upstream: str


class Toxiproxy:
    """A client of one Toxiproxy server."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._client = _Client()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            APIConsumer.host, APIConsumer.port = self.host, self.port
            try:
                return fn(*args, **kwargs)
            except (requests.RequestException, Exception) as exc:  # the library raises its own and requests'
                raise ToxiproxyError(f"toxiproxy {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc

    def running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def create(self, link: Link) -> None:
        self._call(self._client.create, upstream=link.upstream, name=link.name, listen=link.listen)

    def _proxy(self, name: str) -> Any:
        proxy = self._call(self._client.get_proxy, name)
        if proxy is None:
            raise ToxiproxyError(f"no proxy named {name!r}")
        return proxy

    def add_toxic(self, proxy: str, toxic: str, kind: str, stream: str, attributes: dict[str, Any],
                  toxicity: float = 1.0) -> None:
        p = self._proxy(proxy)
        self._call(p.add_toxic, name=toxic, type=kind, stream=stream, toxicity=toxicity, attributes=attributes)

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        p = self._proxy(proxy)
        self._call(p.destroy_toxic, toxic)

    def toxics(self, proxy: str) -> list[str]:
        p = self._proxy(proxy)
        return list(self._call(p.toxics).keys())

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        p = self._proxy(proxy)
        self._call(p.enable if enabled else p.disable)

    def proxies(self) -> dict[str, dict[str, Any]]:
        raw = self._call(self._client.proxies)
        return {name: {"listen": p.listen, "upstream": p.upstream, "enabled": p.enabled} for name, p in raw.items()}

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call(self._client.reset)


class ToxiproxyServer:
    """A `toxiproxy-server` process on 127.0.0.1, its proxies populated from a JSON file at start."""

    def __init__(self, port: int, config_path: Path, log_path: Path) -> None:
        self.port = port
        self.config_path = config_path
        self.log_path = log_path

    def argv(self) -> list[str]:
        return [find_server_binary(), "-host", "127.0.0.1", "-port", str(self.port), "-config",
                str(self.config_path.resolve())]

    def write_config(self, links: list[Link]) -> None:
        self.config_path.write_text(json.dumps([{"name": link.name, "listen": link.listen, "upstream": link.upstream,
                                                 "enabled": True} for link in links], indent=1))

    def wait_ready(self, expected_proxies: int, timeout_s: float = START_TIMEOUT_S) -> Toxiproxy:
        client = Toxiproxy("127.0.0.1", self.port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if client.running():
                try:
                    if len(client.proxies()) >= expected_proxies:
                        return client
                except ToxiproxyError:
                    pass
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] if self.log_path.exists() else []
        raise ToxiproxyError(f"toxiproxy-server did not come up on 127.0.0.1:{self.port} within {timeout_s:.0f} s"
                             + (f": {tail[0]}" if tail else ""))
