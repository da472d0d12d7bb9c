"""The container runtime interface of the kubelet (a small CRI): records, results and the `Runtime` protocol.

Implemented by `hacluster.kubelet.sim.SimRuntime` (containers that behave as configured data) and
`hacluster.kubelet.process.ProcessRuntime` (containers that are real local processes), both built on
`RuntimeBase`: the table of container attempts by pod and what reads it the same way in both. The kubelet agent
(`hacluster.kubelet.agent`) calls it; the pure status code (`hacluster.kubelet.status`) reads its
`ContainerRecord`s. Times in records are wall-clock seconds (`time.time()` or the injected clock).

Contract and failures:
- `pull_image` returns a `PullResult`; a failed pull is `ok=False` with the runtime's message, never raises
  for a missing image.
- `start_container` creates and starts one container attempt and returns its record; if the runtime
  cannot start it (no such executable, bad working directory) it raises `StartError` and records an exited
  attempt (exit code 128, reason StartError) so the kubelet backs off as for a crash.
- `stop_container` sends SIGTERM, waits up to the grace period, then SIGKILL; it returns once the
  container has exited. Stopping an exited container is a no-op.
- `on_change` is called (on the event loop) with a pod UID whenever a container of that pod changes state
  by itself (exits, is OOMKilled, becomes ready): the kubelet then syncs that pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

CREATED, RUNNING, EXITED = "created", "running", "exited"


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One container attempt as the runtime sees it now (CRI's ContainerStatus)."""

    id: str
    """The containerID as Kubernetes prints it: "sim://<hex>", "process://<pid>-<hex>"."""
    pod_uid: str
    name: str
    attempt: int
    """0 for the first run, then 1, 2 … (restartCount of the container while it runs)."""
    image: str
    image_id: str
    state: str
    """CREATED, RUNNING or EXITED."""
    created_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    reason: str
    """On exit: Completed, Error, OOMKilled or StartError; "" otherwise."""
    message: str
    ready: bool
    memory_bytes: int
    """Resident memory now (0 once exited)."""
    init: bool = False


@dataclass(frozen=True, slots=True)
class PullResult:
    ok: bool
    image_id: str = ""
    size_bytes: int = 0
    message: str = ""
    """Why the pull failed, in the runtime's words."""
    duration_s: float = 0.0


class StartError(Exception):
    """The runtime could not start the container; `reason` is CreateContainerError or RunContainerError."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class LogLine:
    time: float
    stream: str
    text: str


ProbeEventSink = Callable[[str, str, str, str, str], None]
"""Called with (pod uid, container, type, reason, message) when a probe fails ("Unhealthy") or a liveness
failure stops a container ("Killing"); the kubelet turns it into a pod event."""


class Runtime(Protocol):
    name: str
    """"sim" or "process"."""
    version: str
    """containerRuntimeVersion as the node reports it, e.g. "sim://0.1.0"."""
    on_change: Callable[[str], None]
    on_probe_event: ProbeEventSink

    async def pull_image(self, pod: dict[str, Any], container: dict[str, Any], attempt: int) -> PullResult:
        ...

    def image_present(self, image: str) -> bool:
        ...

    def images(self) -> list[tuple[str, int]]:
        """Images on the node: (name, size in bytes)."""
        ...

    async def start_container(self, pod: dict[str, Any], container: dict[str, Any], attempt: int, *,
                              init: bool, image_id: str) -> ContainerRecord:
        ...

    async def stop_container(self, container_id: str, grace_s: float) -> None:
        ...

    def containers(self, pod_uid: str) -> list[ContainerRecord]:
        """Every known attempt of the pod's containers (at most the last two per name), oldest first."""
        ...

    def memory_by_container(self, pod_uid: str) -> dict[str, int]:
        """Resident memory (bytes) of the pod's running containers, by container name."""
        ...

    def cpu_millis_by_container(self, pod_uid: str) -> dict[str, int]:
        """CPU used now by each running container of the pod, in millicores (for `kubectl top`)."""
        ...

    def remove_pod(self, pod_uid: str) -> None:
        """Forget a pod whose containers have all exited (its records and logs)."""
        ...

    def logs(self, pod_uid: str, container: str, previous: bool) -> tuple[list[LogLine], bool] | None:
        """The log lines of the container's current (or previous) attempt and whether it still runs; None if
        there is no such attempt."""
        ...

    async def close(self) -> None:
        """Stop everything at once (node shutdown): kill every container."""
        ...


# ------------------------------------------------------------------------------ the runtime base
@dataclass(kw_only=True)
class Attempt:
    """One container attempt as a runtime keeps it (mutable; `record()` is its `ContainerRecord` now)."""

    pod_uid: str
    name: str
    init: bool
    attempt: int
    id: str  # the containerID, as in `ContainerRecord`
    image: str
    image_id: str
    created_at: float
    memory_limit: int | None
    timer: asyncio.TimerHandle | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, now: float) -> ContainerRecord:
        raise NotImplementedError


A = TypeVar("A", bound=Attempt)


class RuntimeBase(Generic[A]):
    """The container attempts of one node's pods, by pod UID and oldest first, as both runtimes keep them;
    the `Runtime` methods that only read that table, and the image list."""

    name: str
    version: str

    def __init__(self, *, node: str, clock: Callable[[], float], retained_attempts: int) -> None:
        self.node = node
        self.clock = clock
        self.retained_attempts = retained_attempts
        self.on_change: Callable[[str], None] = lambda uid: None
        self.on_probe_event: ProbeEventSink = lambda uid, container, etype, reason, message: None
        self._pods: dict[str, list[A]] = {}
        self._images: dict[str, int] = {}

    def image_present(self, image: str) -> bool:
        return image in self._images

    def images(self) -> list[tuple[str, int]]:
        return sorted(self._images.items())

    def _add(self, c: A) -> list[A]:
        """Add a new attempt; return the older attempts of the same container beyond `retained_attempts`,
        which are forgotten (the caller releases what they hold)."""
        attempts = self._pods.setdefault(c.pod_uid, [])
        attempts.append(c)
        same = [x for x in attempts if x.name == c.name and x.init == c.init]
        dropped = same[:-self.retained_attempts]
        for old in dropped:
            attempts.remove(old)
        return dropped

    def _find(self, container_id: str) -> A | None:
        for attempts in self._pods.values():
            for c in attempts:
                if c.id == container_id:
                    return c
        return None

    def _logged(self, pod_uid: str, container: str, previous: bool) -> A | None:
        """The attempt whose logs `logs()` shows: the container's last one, or the one before it."""
        attempts = [c for c in self._pods.get(pod_uid, ()) if c.name == container]
        if not attempts or (previous and len(attempts) < 2):
            return None
        return attempts[-2] if previous else attempts[-1]

    def containers(self, pod_uid: str) -> list[ContainerRecord]:
        now = self.clock()
        return [c.record(now) for c in self._pods.get(pod_uid, ())]

    def pod_uids(self) -> list[str]:
        return list(self._pods)
