"""Readiness and liveness probes: running one probe, and what a series of results means.

Used by the container runtimes. The process runtime runs real probes against its processes — `exec` (the
command in the container's environment and working directory; exit 0 is success), `httpGet` (a GET to
127.0.0.1:port; 200–399 is success) and `tcpSocket` (a connection is success) — every `periodSeconds`
after `initialDelaySeconds`, each bounded by `timeoutSeconds`. The simulated runtime uses `probe_ticks`
to place its data-driven results on the same schedule. `ProbeTracker` applies Kubernetes'
`successThreshold` / `failureThreshold`: a readiness probe starts failed and a liveness probe starts
succeeded, as the kubelet's prober workers do. The API server has already applied the probe defaults
(`hacluster.model.validation.default_probe`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

Obj = dict[str, Any]
OUTPUT_MAX_B = 10 * 1024


@dataclass
class ProbeTracker:
    """Consecutive results of one probe of one container, and the verdict they give."""

    success_threshold: int
    failure_threshold: int
    result: bool
    successes: int = 0
    failures: int = 0

    @classmethod
    def for_probe(cls, probe: Obj, *, readiness: bool) -> ProbeTracker:
        return cls(success_threshold=int(probe.get("successThreshold") or 1),
                   failure_threshold=int(probe.get("failureThreshold") or 3), result=not readiness)

    def observe(self, ok: bool) -> bool:
        """Record one result; True if the verdict changed."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.result and self.successes >= self.success_threshold:
                self.result = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.result and self.failures >= self.failure_threshold:
                self.result = False
                return True
        return False


def probe_ticks(probe: Obj, started_at: float, scale: float = 1.0) -> tuple[float, float]:
    """(first probe time, period) of a probe of a container started at `started_at`, seconds × `scale`."""
    return (started_at + float(probe.get("initialDelaySeconds") or 0) * scale,
            max(float(probe.get("periodSeconds") or 10), 1.0) * scale)


def first_tick_at_or_after(t: float, first: float, period: float) -> float:
    """The first probe time (first + k·period) not before `t`."""
    if t <= first:
        return first
    k = -(-(t - first) // period)
    return first + k * period


def container_port(container: Obj, port: Any) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.get("ports") or ():
            if p.get("name") == port:
                return int(p.get("containerPort") or 0) or None
    return None


async def run_probe(probe: Obj, container: Obj, *, env: dict[str, str], cwd: Path) -> tuple[bool, str]:
    """Run one probe against a process container: (success, what failed, in the kubelet's words)."""
    timeout_s = float(probe.get("timeoutSeconds") or 1)
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(probe.get("exec"), dict):
                return await _exec(probe["exec"], env, cwd)
            if isinstance(probe.get("httpGet"), dict):
                return await _http(probe["httpGet"], container, timeout_s)
            if isinstance(probe.get("tcpSocket"), dict):
                return await _tcp(probe["tcpSocket"], container)
    except TimeoutError:
        return False, f"probe timed out after {timeout_s:g}s"
    return False, "probe has no handler (exec, httpGet or tcpSocket)"


async def _exec(spec: Obj, env: dict[str, str], cwd: Path) -> tuple[bool, str]:
    argv = [str(a) for a in spec.get("command") or ()]
    if not argv:
        return False, "exec probe has no command"
    try:
        p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                 cwd=str(cwd), env=env, start_new_session=True)
    except OSError as exc:
        return False, f'exec: "{argv[0]}": {exc.strerror or exc}'
    try:
        out, _ = await p.communicate()
    except asyncio.CancelledError:
        try:
            os.killpg(p.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        await p.wait()
        raise
    if p.returncode == 0:
        return True, ""
    text = out[:OUTPUT_MAX_B].decode(errors="replace").strip()
    return False, text or f"command {argv!r} exited with {p.returncode}"


async def _http(spec: Obj, container: Obj, timeout_s: float) -> tuple[bool, str]:
    port = container_port(container, spec.get("port"))
    if port is None:
        return False, f"unknown port {spec.get('port')!r}"
    scheme = str(spec.get("scheme") or "HTTP").lower()
    path = str(spec.get("path") or "/")
    url = f"{scheme}://127.0.0.1:{port}{path if path.startswith('/') else '/' + path}"
    headers = {str(h.get("name")): str(h.get("value")) for h in spec.get("httpHeaders") or () if h.get("name")}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(url, headers=headers, ssl=False, allow_redirects=False) as r:
                if 200 <= r.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {r.status}"
    except (aiohttp.ClientError, OSError) as exc:
        return False, f'Get "{url}": {exc}'


async def _tcp(spec: Obj, container: Obj) -> tuple[bool, str]:
    port = container_port(container, spec.get("port"))
    if port is None:
        return False, f"unknown port {spec.get('port')!r}"
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return False, f"dial tcp 127.0.0.1:{port}: {exc.strerror or exc}"
    writer.close()
    return True, ""
