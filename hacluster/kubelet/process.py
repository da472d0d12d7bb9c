"""The process container runtime: every container is a real local process.

Used by `hacluster kubelet --runtime process`. A container runs `command` + `args` (with `$(VAR)`
references expanded from its `env`, as Kubernetes does) in `workingDir` (created if missing, as runc does;
default: a directory of its own under the kubelet's root), with `env` plus PATH and HOSTNAME, in a session
of its own. Its stdout and stderr go through pipes into a log file in the CRI format
(`<RFC3339Nano> stdout F <line>`, `hacluster.kubelet.crilog`), rotated at `log_max_bytes`, which the log
endpoint serves.

Memory limits are enforced the way the kernel's OOM killer does it, never with RLIMIT_AS (which turns an
overrun into a failed allocation and a different exit):
- a memory cgroup per container (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`) when one can be
  created here: the kernel kills the process; its `oom_kill` counter tells us it was OOM;
- otherwise a watchdog that sums the resident memory of the container's process tree every
  `watchdog_interval_s` and SIGKILLs the tree once it exceeds the limit.
Either way the container ends with exit code 137 and reason OOMKilled.

Stopping sends SIGTERM to the container's process group and SIGKILL after the grace period. When a
container's main process exits, whatever it left running in its group is killed (a container is one unit).
Containers die with the kubelet (PR_SET_PDEATHSIG through setpriv(1)), so even a SIGKILLed kubelet leaves
no process behind; a kubelet stopped with SIGTERM kills its containers itself. Exit
codes are real: the process's own, or 128 + the signal that ended it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacluster.asyncwait import wait_event
from hacluster.kubelet.behaviour import ImageCatalogue
from hacluster.kubelet.crilog import LogWriter, read_cri_log, remove_log
from hacluster.kubelet.probes import ProbeTracker, probe_ticks, run_probe
from hacluster.kubelet.runtime import (
    EXITED,
    RUNNING,
    Attempt,
    ContainerRecord,
    LogLine,
    PullResult,
    RuntimeBase,
    StartError,
)
from hacluster.kubelet.sim import image_id_of, memory_limit_of

log = logging.getLogger(__name__)

VERSION = "process://0.1.0"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")
SLEEP_FOREVER = [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, unknown ones kept, $$ escapes $."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, text)


def container_argv(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    command = [expand(str(x), env) for x in container.get("command") or []]
    args = [expand(str(x), env) for x in container.get("args") or []]
    argv = command + args
    return argv or list(SLEEP_FOREVER)


_SETPRIV = shutil.which("setpriv")
"""util-linux's setpriv, to give every container PR_SET_PDEATHSIG=SIGKILL (it dies with the kubelet)."""


# ---------------------------------------------------------------------------------- memory
class MemoryCgroups:
    """Per-container memory cgroups under one parent, v2 or v1, if this machine lets us make them."""

    def __init__(self, parent: Path, version: int) -> None:
        self.parent = parent
        self.version = version

    @classmethod
    def create(cls, node: str) -> MemoryCgroups | None:
        candidates: list[tuple[Path, int]] = []
        root = Path("/sys/fs/cgroup")
        if (root / "cgroup.controllers").exists():
            candidates.append((root, 2))
        unified = root / "unified"
        if (unified / "cgroup.controllers").exists():
            candidates.append((unified, 2))
        if (root / "memory" / "memory.limit_in_bytes").exists():
            candidates.append((root / "memory", 1))
        for base, version in candidates:
            if version == 2:
                try:
                    if "memory" not in (base / "cgroup.controllers").read_text().split():
                        continue
                except OSError:
                    continue
            parent = base / "hacluster" / node
            try:
                parent.mkdir(parents=True, exist_ok=True)
                if version == 2:
                    for p in (base / "hacluster", parent):
                        (p / "cgroup.subtree_control").write_text("+memory")
                probe = parent / "probe"
                probe.mkdir(exist_ok=True)
                limit_file = probe / ("memory.max" if version == 2 else "memory.limit_in_bytes")
                limit_file.write_text(str(64 * 1024 * 1024))
                probe.rmdir()
            except OSError as exc:
                log.info("memory cgroup at %s not usable: %s", parent, exc)
                continue
            return cls(parent, version)
        return None

    def make(self, name: str, limit_bytes: int) -> Path:
        path = self.parent / name
        path.mkdir(exist_ok=True)
        if self.version == 2:
            (path / "memory.max").write_text(str(limit_bytes))
            try:
                (path / "memory.swap.max").write_text("0")
            except OSError:
                pass
        else:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            try:
                (path / "memory.swappiness").write_text("0")
            except OSError:
                pass
        return path

    def procs_file(self, path: Path) -> str:
        return str(path / "cgroup.procs")

    def oom_kills(self, path: Path) -> int:
        try:
            text = (path / ("memory.events" if self.version == 2 else "memory.oom_control")).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "oom_kill":
                return int(parts[1])
        return 0

    def usage(self, path: Path) -> int:
        try:
            return int((path / ("memory.current" if self.version == 2 else "memory.usage_in_bytes")).read_text())
        except (OSError, ValueError):
            return 0

    def remove(self, path: Path) -> None:
        for _ in range(20):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)

    def remove_parent(self) -> None:
        for child in list(self.parent.iterdir()) if self.parent.exists() else []:
            if child.is_dir():
                self.remove(child)
        self.remove(self.parent)


def tree_pids(pid: int) -> list[int]:
    """`pid` and every descendant (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo.extend(int(x) for x in f.read().split())
                except OSError:
                    continue
        except OSError:
            continue
    return out


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used (utime + stime of /proc/<pid>/stat)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, ValueError, IndexError):
            continue
    return total / _CLOCK_TICKS_PER_S


# ------------------------------------------------------------------------------------ runtime
@dataclass(kw_only=True)
class _Proc(Attempt):
    log_path: Path
    ready_at: float = 0.0
    probe_ready: bool | None = None
    """The readiness probe's verdict (None: the container has no readiness probe)."""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    pid: int = 0
    cgroup: Path | None = None
    oom_by_watchdog: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def record(self, now: float, memory: int = 0) -> ContainerRecord:
        running = self.finished_at is None
        return ContainerRecord(id=self.id, pod_uid=self.pod_uid, name=self.name, attempt=self.attempt,
                               image=self.image, image_id=self.image_id, state=RUNNING if running else EXITED,
                               created_at=self.created_at, started_at=self.started_at, finished_at=self.finished_at,
                               exit_code=self.exit_code, reason=self.reason, message=self.message,
                               ready=running and (self.probe_ready if self.probe_ready is not None
                                                  else now >= self.ready_at),
                               memory_bytes=memory if running else 0,
                               init=self.init)


class ProcessRuntime(RuntimeBase[_Proc]):
    """Containers of one node as local processes under `root_dir`."""

    name = "process"
    version = VERSION

    def __init__(self, root_dir: Path, *, node: str, catalogue: ImageCatalogue | None = None,
                 memory_enforcement: str = "auto", watchdog_interval_s: float = 0.05,
                 log_max_bytes: int = 10 * 1024 * 1024, time_scale: float = 1.0,
                 clock: Callable[[], float] = time.time, retained_attempts: int = 2) -> None:
        super().__init__(node=node, clock=clock, retained_attempts=retained_attempts)
        self.root = Path(root_dir)
        self.catalogue = catalogue
        self.watchdog_interval_s = watchdog_interval_s
        self.log_max_bytes = log_max_bytes
        self.time_scale = time_scale
        self._cpu_samples: dict[str, tuple[float, float]] = {}  # container id -> (monotonic s, CPU s used)
        self.cgroups: MemoryCgroups | None = None
        if memory_enforcement in ("auto", "cgroup"):
            self.cgroups = MemoryCgroups.create(node)
            if self.cgroups is None and memory_enforcement == "cgroup":
                raise RuntimeError("memory_enforcement is 'cgroup' but no memory cgroup can be created here")
        self.enforcement = f"cgroup v{self.cgroups.version}" if self.cgroups else "rss watchdog"

    # -------------------------------------------------------------------------------- images
    async def pull_image(self, pod: dict[str, Any], container: dict[str, Any], attempt: int) -> PullResult:
        """Processes need no image: a pull succeeds at once unless the images file says the image does not
        exist (so ErrImagePull can be shown with this runtime too)."""
        image = container.get("image", "")
        if self.catalogue is not None and not self.catalogue.exists(image):
            return PullResult(ok=False, message=f'rpc error: code = NotFound desc = failed to pull and unpack image '
                                                f'"{image}": not found')
        self._images[image] = 0
        return PullResult(ok=True, image_id=image_id_of(image), size_bytes=0)

    # ---------------------------------------------------------------------------- containers
    async def start_container(self, pod: dict[str, Any], container: dict[str, Any], attempt: int, *,
                              init: bool, image_id: str) -> ContainerRecord:
        meta = pod.get("metadata") or {}
        uid, ns, pod_name = meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", "")
        name = container.get("name", "")
        created = self.clock()
        cid_hex = hashlib.sha256(f"{self.node}/{uid}/{name}/{attempt}/{created}".encode()).hexdigest()
        pod_dir = self.root / "pods" / f"{ns}_{pod_name}_{uid}"
        proc = _Proc(id=f"process://{cid_hex}", pod_uid=uid, name=name, attempt=attempt,
                     image=container.get("image", ""), image_id=image_id or image_id_of(container.get("image", "")),
                     init=init, created_at=created, log_path=pod_dir / name / f"{attempt}.log",
                     memory_limit=memory_limit_of(container))
        for old in self._add(proc):
            remove_log(old.log_path)
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOSTNAME": pod_name,
               "HOME": str(pod_dir / name / "home")}
        for e in container.get("env") or []:
            if isinstance(e, dict) and e.get("name"):
                env[str(e["name"])] = expand(str(e.get("value") or ""), env)
        argv = container_argv(container, env)
        workdir = Path(container.get("workingDir") or (pod_dir / name / "work"))
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
            exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env["PATH"])
            if exe is None or not os.access(exe, os.X_OK):
                raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
        except OSError as exc:
            msg = exc.strerror if exc.strerror and not isinstance(exc, FileNotFoundError) else str(exc)
            return self._start_failed(proc, msg)
        writer = LogWriter(proc.log_path, self.log_max_bytes)
        cgroup_procs: str | None = None
        if self.cgroups is not None and proc.memory_limit is not None:
            try:
                proc.cgroup = self.cgroups.make(cid_hex[:16], proc.memory_limit)
                cgroup_procs = self.cgroups.procs_file(proc.cgroup)
            except OSError as exc:
                log.warning("cgroup for %s/%s failed (%s); using the RSS watchdog", pod_name, name, exc)
                proc.cgroup = None
        # No Python code runs between fork and exec (it can deadlock in a process with threads): a new session
        # comes from start_new_session, the cgroup from a shell that writes its own pid and execs, and
        # PR_SET_PDEATHSIG from setpriv(1) where it exists.
        full = [exe, *argv[1:]]
        if _SETPRIV:
            full = [_SETPRIV, "--pdeathsig", "KILL", "--", *full]
        if cgroup_procs is not None:
            full = ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", cgroup_procs, *full]
        try:
            p = await asyncio.create_subprocess_exec(
                *full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(workdir), env=env, start_new_session=True, close_fds=True)
        except (OSError, subprocess_error()) as exc:
            writer.close()
            if proc.cgroup is not None and self.cgroups is not None:
                self.cgroups.remove(proc.cgroup)
            return self._start_failed(proc, str(exc))
        proc.pid = p.pid
        proc.started_at = self.clock()
        if isinstance(container.get("readinessProbe"), dict):
            proc.probe_ready = False
        if isinstance(container.get("readinessProbe"), dict) or isinstance(container.get("livenessProbe"), dict):
            proc.tasks.append(asyncio.ensure_future(self._probe(proc, pod, container, env, workdir)))
        readers = [asyncio.ensure_future(self._pump(p.stdout, "stdout", writer)),
                   asyncio.ensure_future(self._pump(p.stderr, "stderr", writer))]
        proc.tasks.extend(readers)
        if proc.memory_limit is not None and proc.cgroup is None:
            proc.tasks.append(asyncio.ensure_future(self._watchdog(proc)))
        proc.tasks.append(asyncio.ensure_future(self._wait(proc, p, readers, writer)))
        return proc.record(self.clock(), 0)

    async def _probe(self, proc: _Proc, pod: dict[str, Any], container: dict[str, Any], env: dict[str, str],
                     cwd: Path) -> None:
        """Run the container's readiness and liveness probes on their schedule while it runs: readiness sets
        whether it is ready; a liveness verdict of failure stops it (the kubelet then restarts it)."""
        now = time.monotonic()
        schedule: list[tuple[float, float, str, dict[str, Any], ProbeTracker]] = []
        for kind in ("readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if isinstance(probe, dict):
                first, period = probe_ticks(probe, now, self.time_scale)
                schedule.append((first, period, kind, probe, ProbeTracker.for_probe(probe,
                                                                                  readiness=kind == "readinessProbe")))
        while proc.finished_at is None and schedule:
            schedule.sort(key=lambda e: e[0])
            at, period, kind, probe, tracker = schedule[0]
            await asyncio.sleep(max(0.0, at - time.monotonic()))  # the probe's own period: a schedule
            if proc.finished_at is not None:
                return
            ok, why = await run_probe(probe, container, env=env, cwd=cwd)
            if proc.finished_at is not None:
                return
            schedule[0] = (max(at + period, time.monotonic()), period, kind, probe, tracker)
            changed = tracker.observe(ok)
            word = "Readiness" if kind == "readinessProbe" else "Liveness"
            if not ok:
                self.on_probe_event(proc.pod_uid, proc.name, "Warning", "Unhealthy", f"{word} probe failed: {why}")
            if kind == "readinessProbe" and changed:
                proc.probe_ready = tracker.result
                self.on_change(proc.pod_uid)
            elif kind == "livenessProbe" and changed and not tracker.result:
                self.on_probe_event(proc.pod_uid, proc.name, "Normal", "Killing",
                                    f"Container {proc.name} failed liveness probe, will be restarted")
                grace = probe.get("terminationGracePeriodSeconds")
                if grace is None:
                    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                await self.stop_container(proc.id, float(grace) * self.time_scale)
                return

    def _start_failed(self, proc: _Proc, message: str) -> ContainerRecord:
        now = self.clock()
        proc.started_at = 0.0  # containerd reports a container that never started as started at the epoch
        proc.finished_at = now
        proc.exit_code = 128
        proc.reason = "StartError"
        proc.message = (f"failed to create containerd task: failed to create shim task: OCI runtime create "
                        f"failed: runc create failed: unable to start container process: {message}: unknown")
        proc.exited.set()
        raise StartError("RunContainerError", proc.message)

    async def _pump(self, stream: asyncio.StreamReader | None, name: str, writer: LogWriter) -> None:
        if stream is None:
            return
        buf = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                writer.write(name, line, False)
            if len(buf) >= 16384:
                writer.write(name, buf, True)
                buf = b""
        if buf:
            writer.write(name, buf, False)

    async def _watchdog(self, proc: _Proc) -> None:
        assert proc.memory_limit is not None
        while proc.finished_at is None:
            if rss_bytes(tree_pids(proc.pid)) > proc.memory_limit:
                proc.oom_by_watchdog = True
                _killpg(proc.pid, signal.SIGKILL)
                return
            await asyncio.sleep(self.watchdog_interval_s)

    async def _wait(self, proc: _Proc, p: asyncio.subprocess.Process, readers: list[asyncio.Task[None]],
                    writer: LogWriter) -> None:
        rc = await p.wait()
        _killpg(proc.pid, signal.SIGKILL)  # the container is one unit: nothing of it outlives its main process
        _, pending = await asyncio.wait(readers, timeout=2.0)
        for r in pending:
            r.cancel()
        writer.close()
        code = rc if rc >= 0 else 128 - rc
        oom = proc.oom_by_watchdog
        if proc.cgroup is not None and self.cgroups is not None:
            # As containerd reports it: any OOM kill in the container's cgroup makes the reason OOMKilled, with
            # the main process's own exit code (137 when the kernel killed the main process itself).
            oom = oom or self.cgroups.oom_kills(proc.cgroup) > 0
            self.cgroups.remove(proc.cgroup)
        proc.exit_code = 137 if proc.oom_by_watchdog else code
        proc.reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        proc.finished_at = self.clock()
        if proc.timer is not None:
            proc.timer.cancel()
        proc.exited.set()
        self.on_change(proc.pod_uid)

    async def stop_container(self, container_id: str, grace_s: float) -> None:
        c = self._find(container_id)
        if c is None or c.finished_at is not None:
            return
        _killpg(c.pid, signal.SIGTERM)
        if not await wait_event(c.exited, grace_s):
            _killpg(c.pid, signal.SIGKILL)
            await c.exited.wait()

    def _memory(self, c: _Proc) -> int:
        if c.finished_at is not None:
            return 0
        if c.cgroup is not None and self.cgroups is not None:
            return self.cgroups.usage(c.cgroup)
        return rss_bytes(tree_pids(c.pid))

    def memory_by_container(self, pod_uid: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self._pods.get(pod_uid, ()):
            if c.finished_at is None:
                out[c.name] = out.get(c.name, 0) + self._memory(c)
        return out

    def cpu_millis_by_container(self, pod_uid: str) -> dict[str, int]:
        """Millicores used since the previous call for the same container (since its start the first time),
        from the CPU time of its process tree."""
        now = time.monotonic()
        out: dict[str, int] = {}
        for c in self._pods.get(pod_uid, ()):
            if c.finished_at is not None or not c.pid:
                continue
            used = cpu_seconds(tree_pids(c.pid))
            running_s = self.clock() - c.started_at if c.started_at else 0.0
            then, used_then = self._cpu_samples.get(c.id, (now - max(running_s, 1e-3), 0.0))
            self._cpu_samples[c.id] = (now, used)
            out[c.name] = out.get(c.name, 0) + max(int((used - used_then) / max(now - then, 1e-3) * 1000), 0)
        return out

    def remove_pod(self, pod_uid: str) -> None:
        for c in self._pods.get(pod_uid, ()):
            self._cpu_samples.pop(c.id, None)
        procs = self._pods.pop(pod_uid, [])
        for c in procs:
            if c.finished_at is None:
                _killpg(c.pid, signal.SIGKILL)
        if procs:
            shutil.rmtree(procs[0].log_path.parent.parent, ignore_errors=True)

    def logs(self, pod_uid: str, container: str, previous: bool) -> tuple[list[LogLine], bool] | None:
        c = self._logged(pod_uid, container, previous)
        if c is None or (c.started_at is None and c.reason != "StartError"):
            return None
        return read_cri_log(c.log_path), c.finished_at is None

    async def close(self) -> None:
        procs = [c for attempts in self._pods.values() for c in attempts]
        for c in procs:
            if c.finished_at is None and c.pid:
                _killpg(c.pid, signal.SIGKILL)
        waits = [asyncio.ensure_future(c.exited.wait()) for c in procs if c.pid]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=3.0)
            for w in pending:
                w.cancel()
        if self.cgroups is not None:
            self.cgroups.remove_parent()


def subprocess_error() -> type[Exception]:
    import subprocess

    return subprocess.SubprocessError


def _killpg(pid: int, sig: int) -> None:
    if pid <= 0:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass



