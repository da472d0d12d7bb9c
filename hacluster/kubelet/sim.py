"""The simulated container runtime: containers that do what `configs/kubelet/images.yaml` says.

Used by `hacluster kubelet --runtime sim` (the default) and by every node of `hacluster kubelet-fleet`.
A container is a timeline, not a process: from its resolved `Behaviour` (pull time, run time, exit code,
memory over time, readiness delay, reaction to SIGTERM) and its start time, `timeline()` — a pure
function — says what state it is in at any instant, when it becomes ready, when and how it exits (run time
over, memory above `limits.memory` → OOMKilled 137, SIGTERM handled, killed at the end of the grace
period → 137). The runtime only remembers start and stop requests and sets one timer per container at its
next change, to tell the kubelet (`on_change`) that the pod needs a sync. Same seed, same pod names, same
timelines.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacluster.kubelet.behaviour import Behaviour, BehaviourError, ImageCatalogue
from hacluster.kubelet.probes import first_tick_at_or_after, probe_ticks
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
from hacluster.model.quantity import QuantityError, parse_quantity

VERSION = "sim://0.1.0"
OOM_EXIT_CODE = 137
KILL_EXIT_CODE = 137


# ------------------------------------------------------------------------------ pure timeline
def memory_at(points: tuple[tuple[float, int], ...], t: float) -> int:
    """Memory (bytes) `t` seconds after start: linear between points, constant outside them."""
    if not points:
        return 0
    if t <= points[0][0]:
        return points[0][1]
    for (t0, m0), (t1, m1) in zip(points, points[1:], strict=False):
        if t <= t1:
            return int(m0 + (m1 - m0) * (t - t0) / (t1 - t0))
    return points[-1][1]


def memory_crossing(points: tuple[tuple[float, int], ...], limit: int) -> float | None:
    """The first time (seconds after start) memory exceeds `limit`, or None if it never does."""
    if not points:
        return None
    if points[0][1] > limit:
        return 0.0
    for (t0, m0), (t1, m1) in zip(points, points[1:], strict=False):
        if m1 > limit:
            return t0 + (limit - m0) * (t1 - t0) / (m1 - m0) + 1e-9
    return None


@dataclass(frozen=True)
class Outcome:
    """A simulated container at one instant."""

    state: str
    ready: bool
    memory_bytes: int
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    next_change_at: float | None = None
    """The next instant this outcome changes by itself (ready, exit), if any."""


def exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"


def timeline(b: Behaviour, memory_limit: int | None, started_at: float, now: float, *,
             term_at: float | None = None, kill_at: float | None = None,
             liveness_stop_at: float | None = None, liveness_grace_s: float = 30.0) -> Outcome:
    """What a container started at `started_at` with behaviour `b` is doing at `now`. `term_at` is when it
    got SIGTERM, `kill_at` when it gets (or got) SIGKILL; `liveness_stop_at` is when its failing liveness
    probe makes the kubelet stop it (SIGTERM, SIGKILL after `liveness_grace_s`)."""
    if liveness_stop_at is not None and now >= liveness_stop_at:
        term_at = liveness_stop_at if term_at is None else min(term_at, liveness_stop_at)
        kill = liveness_stop_at + liveness_grace_s
        kill_at = kill if kill_at is None else min(kill_at, kill)
    exits: list[tuple[float, int, str]] = []
    if b.run_s is not None:
        exits.append((started_at + b.run_s, b.exit_code, exit_reason(b.exit_code)))
    if memory_limit is not None:
        cross = memory_crossing(b.memory, memory_limit)
        if cross is not None:
            exits.append((started_at + cross, OOM_EXIT_CODE, "OOMKilled"))
    if term_at is not None and b.terminate_s is not None:
        exits.append((term_at + b.terminate_s, b.terminate_exit_code, exit_reason(b.terminate_exit_code)))
    if kill_at is not None:
        exits.append((kill_at, KILL_EXIT_CODE, "Error"))
    first = min(exits, key=lambda e: e[0]) if exits else None
    if first is not None and now >= first[0]:
        return Outcome(EXITED, False, 0, first[0], first[1], first[2])
    ready_at = started_at + b.ready_after_s
    ready = now >= ready_at and term_at is None
    upcoming = [t for t in ([ready_at] if not ready and term_at is None else []) + ([first[0]] if first else [])
                + ([liveness_stop_at] if liveness_stop_at is not None else []) if t > now]
    return Outcome(RUNNING, ready, memory_at(b.memory, now - started_at),
                   next_change_at=min(upcoming) if upcoming else None)


# ------------------------------------------------------------------------------------ runtime
@dataclass(kw_only=True)
class _SimContainer(Attempt):
    behaviour: Behaviour
    started_at: float
    term_at: float | None = None
    kill_at: float | None = None
    liveness_stop_at: float | None = None
    liveness_grace_s: float = 30.0
    liveness_reported: bool = False

    def outcome(self, now: float) -> Outcome:
        return timeline(self.behaviour, self.memory_limit, self.started_at, now, term_at=self.term_at,
                        kill_at=self.kill_at, liveness_stop_at=self.liveness_stop_at,
                        liveness_grace_s=self.liveness_grace_s)

    def record(self, now: float) -> ContainerRecord:
        o = self.outcome(now)
        return ContainerRecord(id=self.id, pod_uid=self.pod_uid, name=self.name, attempt=self.attempt,
                               image=self.image, image_id=self.image_id, state=o.state, created_at=self.created_at,
                               started_at=self.started_at, finished_at=o.finished_at, exit_code=o.exit_code,
                               reason=o.reason, message="", ready=o.ready, memory_bytes=o.memory_bytes,
                               init=self.init)


def probe_schedule(b: Behaviour, pod: dict[str, Any], container: dict[str, Any], started_at: float,
                   scale: float) -> tuple[Behaviour, float | None, float]:
    """The container's probes on the image's data: (behaviour with `ready_after_s` moved to the readiness
    probe's first successful tick, when a failing liveness probe stops it or None, its grace period).
    Probe times are scaled like the image's."""
    stop_at = None
    readiness = container.get("readinessProbe")
    if isinstance(readiness, dict):
        first, period = probe_ticks(readiness, started_at, scale)
        ok_from = first_tick_at_or_after(started_at + b.ready_after_s, first, period)
        ready_at = ok_from + (int(readiness.get("successThreshold") or 1) - 1) * period
        b = b.model_copy(update={"ready_after_s": ready_at - started_at})
    liveness = container.get("livenessProbe")
    grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
    if isinstance(liveness, dict) and b.liveness_fails_after_s is not None:
        first, period = probe_ticks(liveness, started_at, scale)
        failing_from = first_tick_at_or_after(started_at + b.liveness_fails_after_s, first, period)
        stop_at = failing_from + (int(liveness.get("failureThreshold") or 3) - 1) * period
        if liveness.get("terminationGracePeriodSeconds") is not None:
            grace = float(liveness["terminationGracePeriodSeconds"])
    return b, stop_at, grace * scale


def memory_limit_of(container: dict[str, Any]) -> int | None:
    raw = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if raw is None:
        return None
    try:
        return parse_quantity(raw).units()
    except QuantityError:
        return None


def image_id_of(image: str) -> str:
    """A digest-qualified image ID, as containerd reports it: docker.io/library/nginx@sha256:…"""
    repo = _qualified(image).rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


class SimRuntime(RuntimeBase[_SimContainer]):
    """Simulated containers of one node. `clock` gives wall-clock seconds (time.time by default)."""

    name = "sim"
    version = VERSION

    def __init__(self, catalogue: ImageCatalogue, *, node: str = "", clock: Callable[[], float] = time.time,
                 retained_attempts: int = 2) -> None:
        super().__init__(node=node, clock=clock, retained_attempts=retained_attempts)
        self.catalogue = catalogue

    # -------------------------------------------------------------------------------- images
    async def pull_image(self, pod: dict[str, Any], container: dict[str, Any], attempt: int) -> PullResult:
        image = container.get("image", "")
        try:
            b = self.catalogue.behaviour_for(pod, container, attempt)
        except BehaviourError as exc:
            return PullResult(ok=False, message=str(exc))
        t0 = self.clock()
        # A pull of an image already on the node only checks the registry: a tenth of the full time.
        pull_s = b.pull_s * (0.1 if image in self._images else 1.0)
        if pull_s > 0:
            await asyncio.sleep(pull_s)
        if not b.exists:
            ref = _qualified(image)
            return PullResult(ok=False, duration_s=self.clock() - t0, message=(
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed to resolve '
                f'reference "{ref}": {ref}: not found'))
        self._images[image] = b.size_bytes
        return PullResult(ok=True, image_id=image_id_of(image), size_bytes=b.size_bytes,
                          duration_s=self.clock() - t0)

    # ---------------------------------------------------------------------------- containers
    async def start_container(self, pod: dict[str, Any], container: dict[str, Any], attempt: int, *,
                              init: bool, image_id: str) -> ContainerRecord:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        try:
            b = self.catalogue.behaviour_for(pod, container, attempt)
        except BehaviourError as exc:
            raise StartError("CreateContainerError", str(exc)) from exc
        created = self.clock()
        if b.start_s > 0:
            await asyncio.sleep(b.start_s)
        name = container.get("name", "")
        cid = "sim://" + hashlib.sha256(f"{self.node}/{uid}/{name}/{attempt}/{created}".encode()).hexdigest()
        started = self.clock()
        b, stop_at, grace = probe_schedule(b, pod, container, started, self.catalogue.time_scale)
        c = _SimContainer(id=cid, pod_uid=uid, name=name, attempt=attempt, image=container.get("image", ""),
                          image_id=image_id or image_id_of(container.get("image", "")), behaviour=b,
                          memory_limit=memory_limit_of(container), created_at=created, started_at=started,
                          init=init, liveness_stop_at=stop_at, liveness_grace_s=grace)
        for old in self._add(c):
            self._cancel(old)
        self._arm(c)
        return c.record(self.clock())

    def _cancel(self, c: _SimContainer) -> None:
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None

    def _arm(self, c: _SimContainer) -> None:
        """Set the container's timer to its next change (or mark it exited)."""
        self._cancel(c)
        now = self.clock()
        o = c.outcome(now)
        if o.state == EXITED:
            c.exited.set()
            return
        if o.next_change_at is not None:
            loop = asyncio.get_running_loop()
            c.timer = loop.call_later(max(0.0, o.next_change_at - now), self._fire, c)

    def _fire(self, c: _SimContainer) -> None:
        c.timer = None
        if c.pod_uid not in self._pods:
            return
        if c.liveness_stop_at is not None and not c.liveness_reported and self.clock() >= c.liveness_stop_at \
                and c.term_at is None:
            c.liveness_reported = True
            self.on_probe_event(c.pod_uid, c.name, "Warning", "Unhealthy",
                                "Liveness probe failed: the image's liveness_fails_after_s has passed")
            self.on_probe_event(c.pod_uid, c.name, "Normal", "Killing",
                                f"Container {c.name} failed liveness probe, will be restarted")
        self._arm(c)
        self.on_change(c.pod_uid)

    async def stop_container(self, container_id: str, grace_s: float) -> None:
        c = self._find(container_id)
        if c is None:
            return
        now = self.clock()
        if c.outcome(now).state == EXITED:
            return
        if c.term_at is None:
            c.term_at = now
        kill = now + max(0.0, grace_s)
        c.kill_at = kill if c.kill_at is None else min(c.kill_at, kill)
        self._arm(c)
        await c.exited.wait()
        self.on_change(c.pod_uid)

    def remove_pod(self, pod_uid: str) -> None:
        for c in self._pods.pop(pod_uid, ()):
            self._cancel(c)

    def memory_by_container(self, pod_uid: str) -> dict[str, int]:
        now = self.clock()
        out: dict[str, int] = {}
        for c in self._pods.get(pod_uid, ()):
            o = c.outcome(now)
            if o.state == RUNNING:
                out[c.name] = out.get(c.name, 0) + o.memory_bytes
        return out

    def cpu_millis_by_container(self, pod_uid: str) -> dict[str, int]:
        now = self.clock()
        out: dict[str, int] = {}
        for c in self._pods.get(pod_uid, ()):
            if c.outcome(now).state == RUNNING:
                out[c.name] = out.get(c.name, 0) + c.behaviour.cpu_millis
        return out

    def logs(self, pod_uid: str, container: str, previous: bool) -> tuple[list[LogLine], bool] | None:
        c = self._logged(pod_uid, container, previous)
        if c is None:
            return None
        o = c.outcome(self.clock())
        lines = [LogLine(c.started_at, "stdout", line) for line in c.behaviour.log_lines]
        if o.state == EXITED:
            if o.reason == "OOMKilled":
                pass  # the kernel kills it silently
            elif o.exit_code and c.behaviour.log_lines:
                lines.append(LogLine(o.finished_at or c.started_at, "stderr", f"exit status {o.exit_code}"))
        return lines, o.state == RUNNING

    async def close(self) -> None:
        for uid in list(self._pods):
            self.remove_pod(uid)


def _qualified(image: str) -> str:
    name = image.split("@")[0]
    first = name.split("/")[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if ":" not in name.split("/")[-1]:
        name += ":latest"
    return name
