"""The kubelet's log endpoint: `GET /containerLogs/{namespace}/{pod}/{container}` on 127.0.0.1, and its
resource usage summary `GET /stats/summary` (read by the API server's metrics.k8s.io for `kubectl top`).

The API server's `pods/{name}/log` proxies here (the port is in the Node's
`status.daemonEndpoints.kubeletEndpoint.Port`). Query parameters as Kubernetes': `tailLines`, `follow`,
`previous`, `timestamps`, `sinceSeconds`, `limitBytes`. One server per kubelet process (a fleet shares one
for all its nodes): `find(namespace, name)` locates the pod. Errors are Kubernetes `Status` objects with
the kubelet's wording ("container \"c\" in pod \"p\" is waiting to start: ContainerCreating"). A follow
stream ends when the container stops, the client goes away, or after `follow_max_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from hacluster.kubelet.runtime import LogLine, Runtime


class LoggedPod(Protocol):
    runtime: Runtime
    uid: str
    pod: dict[str, Any]

    def waiting_reason(self, container: str) -> str:
        ...


Finder = Callable[[str, str], LoggedPod | None]
StatsSource = Callable[[str], dict[str, Any] | None]
"""The resource usage summary of a node this server serves (by node name; "" for its only node)."""


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def _int(v: str | None) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        return None


def format_line(line: LogLine, timestamps: bool) -> bytes:
    text = line.text if line.text.endswith("\n") else line.text + "\n"
    if timestamps:
        frac = f"{line.time % 1:.9f}"[2:]
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(line.time)) + f".{frac}Z " + text
    return text.encode(errors="replace")


@dataclass
class LogServer:
    """An aiohttp server on 127.0.0.1 serving container logs of the pods `find` knows."""

    find: Finder
    stats: StatsSource | None = None
    follow_max_s: float = 3600.0
    poll_s: float = 0.2
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/stats/summary", self._stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stats(self, request: web.Request) -> web.Response:
        """The Summary API of one node (`?node=NAME` picks it where a fleet serves several)."""
        node = request.query.get("node", "")
        summary = self.stats(node) if self.stats is not None else None
        if summary is None:
            return _status(404, "NotFound", f'node "{node}" is not served here')
        return web.json_response(summary)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info["namespace"], request.match_info["pod"],
                               request.match_info["container"])
        q = request.query
        found = self.find(ns, name)
        if found is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        spec = found.pod.get("spec") or {}
        names = [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        if container not in names:
            return _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        previous = _bool(q.get("previous"))
        got = found.runtime.logs(found.uid, container, previous)
        if got is None:
            if previous:
                return _status(400, "BadRequest",
                               f'previous terminated container "{container}" in pod "{name}" not found')
            reason = found.waiting_reason(container) or "ContainerCreating"
            return _status(400, "BadRequest",
                           f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        lines, running = got
        since = _int(q.get("sinceSeconds"))
        if since is not None:
            cutoff = time.time() - since
            lines = [ln for ln in lines if ln.time >= cutoff]
        tail = _int(q.get("tailLines"))
        if tail is not None and tail >= 0:
            lines = lines[-tail:] if tail else []
        timestamps = _bool(q.get("timestamps"))
        limit = _int(q.get("limitBytes"))
        follow = _bool(q.get("follow")) and not previous
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        sent = 0

        async def emit(batch: list[LogLine]) -> bool:
            nonlocal sent
            for ln in batch:
                data = format_line(ln, timestamps)
                if limit is not None and sent + len(data) > limit:
                    await resp.write(data[:max(0, limit - sent)])
                    return False
                await resp.write(data)
                sent += len(data)
            return True

        more = await emit(lines)
        if follow and more:
            seen = len(got[0])
            deadline = time.monotonic() + self.follow_max_s
            while running and time.monotonic() < deadline:
                await asyncio.sleep(self.poll_s)
                again = found.runtime.logs(found.uid, container, False)
                if again is None:
                    break
                all_lines, running = again
                if len(all_lines) < seen:  # rotated
                    seen = 0
                if not await emit(all_lines[seen:]):
                    break
                seen = len(all_lines)
        await resp.write_eof()
        return resp
