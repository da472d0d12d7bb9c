"""The leader-only scheduling loop: pending pods in, fenced bindings out.

Registered by the master process (`register`, called from `hacluster.cluster.master`) in the leader loop
registry (`hacluster.leader.registry`): it runs only while this master leads a Raft term, receives that
term, and is cancelled (its queues dropped) when leadership ends. One `Scheduler` object lives for one term.

What it does, as kube-scheduler does it:
- follows pods and nodes in the leader's local store (`StoreFollower`), keeps a `ClusterSnapshot` of
  nodes and of what bound pods use, and queues the pods it is responsible for — empty `spec.nodeName`,
  `spec.schedulerName` default-scheduler, no `deletionTimestamp`, no `spec.schedulingGates` — in
  `policy.queue_key` order (priority, then age);
- places them one at a time with the pure `policy.schedule_one` (ties broken by `scheduler.seed`) and
  `assume`s each placement in the snapshot, so the next decision sees it before the binding commits;
- proposes the bindings `Bind` in `Batch`es of up to `batch_max_pods` (and below the log entry size limit
  `proposer.MAX_ENTRY_BYTES`), with up to `inflight_batches_max`
  batches committing while the next pods are placed; every command carries `fence_term=term`, so a
  deposed leader's bindings are refused by the state machine. Each binding carries the decision's
  explanation (`policy.explain`, compact JSON) in the annotation `scheduler.hacluster.io/explanation`;
  a committed binding is announced by a `Scheduled` event, "Successfully assigned default/web to node-2";
- a refused binding (the pod was bound or deleted meanwhile: Conflict/NotFound) forgets the assumption;
  a pod still pending is tried again after its back-off;
- an unschedulable pod gets `PodScheduled=False`, reason `Unschedulable`, with the FitError message
  (a status update with the pod's resourceVersion as precondition, written only when the condition
  changes) and a `FailedScheduling` Warning event (repeats are aggregated by the recorder); it is tried
  again after an exponential back-off (`backoff_initial_s` doubling to `backoff_max_s`) once nodes or
  bound pods changed, and after `unschedulable_max_wait_s` in any case.

Bounded: the queues hold at most one entry per pending pod of the store; batches and in-flight
proposals are capped by config; waits have timeouts. Time comes from injectable clocks.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from hacluster.asyncwait import wait_event
from hacluster.config import SchedulerConfig
from hacluster.leader.events import NORMAL, WARNING, EventRecorder, TakenEvents
from hacluster.leader.informer import StoreFollower
from hacluster.leader.proposer import (
    BATCH_OVERHEAD_BYTES,
    MAX_ENTRY_BYTES,
    FencedProposer,
    NotLeading,
    encoded_size,
)
from hacluster.leader.registry import LeaderContext, LeaderLoopRegistry
from hacluster.model.commands import AnyCommand, Batch, Bind, Replace
from hacluster.model.errors import ApiError
from hacluster.model.timestamps import rfc3339
from hacluster.scheduler.nodeinfo import ClusterSnapshot, SnapshotError, counts_against_node
from hacluster.scheduler.policy import Decision, explain, queue_key, schedule_one
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import DELETED, Result, WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SCHEDULER_NAME = "default-scheduler"
EXPLANATION_ANNOTATION = "scheduler.hacluster.io/explanation"
IDLE_WAIT_S = 1.0  # longest sleep without news (store changes and finished batches wake it earlier)
YIELD_EVERY_PODS = 16  # let the API server and Raft callbacks run while placing a batch
ROOM_PER_POD_BYTES = 4 * 1024  # a batch stops growing when the next command might not fit in MAX_ENTRY_BYTES

_json = msgspec.json.Encoder()


def is_responsible_for(pod: Obj) -> bool:
    """Whether the default scheduler should place this pod now (kube-scheduler's pod informer filter plus
    the SchedulingGates PreEnqueue check)."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return False
    if (spec.get("schedulerName") or SCHEDULER_NAME) != SCHEDULER_NAME:
        return False
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if spec.get("schedulingGates"):
        return False
    return (pod.get("status") or {}).get("phase", "Pending") not in ("Succeeded", "Failed")


def _uid(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}")


def _node_scheduling_fields(node: Obj | None) -> tuple[Any, ...]:
    """What of a node the filters and scores read (heartbeats and conditions alone change nothing)."""
    if node is None:
        return ()
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return (meta.get("labels"), spec.get("taints"), spec.get("unschedulable"), status.get("allocatable"))


@dataclass
class _Unschedulable:
    """A pod waiting after a failed attempt."""

    attempts: int
    not_before: float  # monotonic: end of its back-off
    give_up_wait_at: float  # monotonic: tried again even without a cluster change
    cluster_changed: bool = False


@dataclass
class _Planned:
    """One command of an outgoing batch and what to do with its result."""

    kind: str  # "bind" | "status"
    uid: str
    pod: Obj
    node: str = ""


class Scheduler:
    """The scheduling loop of one leadership term (see the module docstring)."""

    def __init__(self, store: ReplicatedStore, settings: SchedulerConfig, *, instance: str = "",
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.recorder = EventRecorder(component=SCHEDULER_NAME, instance=f"{SCHEDULER_NAME}-{instance or 'local'}",
                                      clock=clock, queue_max=settings.events_queue_max)
        self.follower = StoreFollower(store, ("pods", "nodes"))
        self.snapshot = ClusterSnapshot()
        self.pending: dict[str, Obj] = {}  # uid -> latest pod object the scheduler is responsible for
        self.active: list[tuple[tuple[Any, ...], int, str]] = []  # heap of (queue_key, seq, uid)
        self.in_active: set[str] = set()
        self.unschedulable: dict[str, _Unschedulable] = {}
        self.attempts: dict[str, int] = {}  # failed attempts of pods still pending (for back-off)
        self.inflight: dict[str, str] = {}  # uid -> node of a binding proposed and not yet answered
        self.start_index = 0
        self.bound = 0
        self.failed = 0
        self._seq = 0
        # (time, seq, uid) of every moment an unschedulable pod may become due: its give-up time, and its
        # back-off end once the cluster (or the pod) changed. Stale items (the pod left, or backed off
        # again) are skipped when popped, so promoting costs O(log n) per pod, not a walk over all of them.
        self._due: list[tuple[float, int, str]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.inflight_batches_max)
        self._batches: set[asyncio.Task[None]] = set()
        self._stopped: NotLeading | None = None
        self._proposer: FencedProposer | None = None

    # ------------------------------------------------------------------------------------ running
    async def run(self, term: int) -> None:
        """Schedule until cancelled or no longer leading `term`."""
        self._proposer = proposer = FencedProposer(self.store, term, component="scheduler",
                                                   timeout_s=self.settings.proposal_timeout_s)
        helpers = [asyncio.ensure_future(self.recorder.run(proposer)), asyncio.ensure_future(self._pump())]
        log.info("scheduler starts in term %d", term)
        try:
            self._relist()
            while True:
                await self.step()
                await asyncio.sleep(0)  # a cooperative yield: a store that answers at once never starves others
        except NotLeading as exc:
            log.info("scheduler stops: %s", exc)
        finally:
            for task in [*helpers, *self._batches]:
                task.cancel()
            await asyncio.gather(*helpers, *self._batches, return_exceptions=True)

    async def step(self) -> bool:
        """One round: take in store changes, promote due pods, place and propose one batch (or wait).
        Returns True if it proposed something. Raises NotLeading when the term is over."""
        if self._stopped is not None:
            raise self._stopped
        assert self._proposer is not None, "run() or start() first"
        self._sync()
        self._promote(self.monotonic())
        if self.active and not self._slots.locked():
            planned, size = await self._place_batch()
            if planned:
                await self._slots.acquire()
                # The events this pass queued (FailedScheduling above all) ride in the same Raft entry: one
                # round per pass instead of two, which is most of the Raft work at low load.
                events = self.recorder.take(MAX_ENTRY_BYTES - size)
                task = asyncio.ensure_future(self._propose_batch(planned, events))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
                return True
            return False
        await self._wait(self._wait_s())
        return False

    def start(self, term: int) -> None:
        """Prepare for driving `step()` by hand (tests): proposer for `term` and an initial list."""
        self._proposer = FencedProposer(self.store, term, component="scheduler",
                                        timeout_s=self.settings.proposal_timeout_s)
        self._relist()

    async def drain(self) -> None:
        """Wait for every proposed batch to be answered (tests)."""
        while self._batches:
            await asyncio.gather(*list(self._batches), return_exceptions=True)

    def _wait_s(self) -> float:
        if self.active and self._slots.locked():
            return IDLE_WAIT_S  # a finishing batch wakes us
        due = (self._due[0][0] if self._due else float("inf")) - self.monotonic()
        return max(0.0, min(IDLE_WAIT_S, due))

    async def _wait(self, timeout_s: float) -> None:
        if timeout_s <= 0 or self.follower.behind():
            return
        idle = not self.active  # nothing queued (not merely waiting for a batch in flight to be answered)
        self._wake.clear()
        if await wait_event(self._wake, timeout_s) and idle and self.settings.batch_window_ms > 0:
            # Woken from idle by a change: let the next few arrive too (see SchedulerConfig.batch_window_ms).
            await asyncio.sleep(self.settings.batch_window_ms / 1000)

    async def _pump(self) -> None:
        """Turn store changes into wake-ups of the loop."""
        seen = self.follower.revision
        while True:
            seen = await self.store.wait_for_change(seen, IDLE_WAIT_S)
            if seen > self.follower.revision:
                self._wake.set()

    # ------------------------------------------------------------------------- following the store
    def _relist(self) -> None:
        objs = self.follower.list_all()
        self.snapshot = ClusterSnapshot(objs["nodes"], [p for p in objs["pods"] if counts_against_node(p)])
        by_uid = {_uid(p): p for p in objs["pods"]}
        for uid, node in list(self.inflight.items()):  # proposed, outcome not yet known: keep them counted
            pod = by_uid.get(uid)
            if pod is not None and not (pod.get("spec") or {}).get("nodeName") and self.snapshot.get(node):
                try:
                    self.snapshot.assume(pod, node)
                except SnapshotError:
                    pass
        self.pending = {}
        self.active, self.in_active = [], set()
        for pod in objs["pods"]:
            if is_responsible_for(pod):
                uid = _uid(pod)
                self.pending[uid] = pod
                if uid not in self.inflight and uid not in self.unschedulable:
                    self._push(uid, pod)
        self.unschedulable = {u: e for u, e in self.unschedulable.items() if u in self.pending}
        self.attempts = {u: n for u, n in self.attempts.items() if u in self.pending}
        self._cluster_changed()
        log.info("scheduler listed %d nodes, %d pending pods at revision %d", self.snapshot.num_nodes,
                 len(self.pending), self.follower.revision)

    def _sync(self) -> None:
        events = self.follower.poll()
        if events is None:
            log.warning("scheduler fell behind the store's history: relisting")
            self._relist()
            return
        changed = False
        for ev in events:
            if ev.resource == "pods":
                changed = self._on_pod(ev) or changed
            else:
                changed = self._on_node(ev) or changed
        if changed:
            self._cluster_changed()

    def _on_node(self, ev: WatchEvent) -> bool:
        if ev.type == DELETED:
            self.snapshot.remove_node(ev.obj)
            return True
        if ev.prev is not None and _node_scheduling_fields(ev.prev) == _node_scheduling_fields(ev.obj) \
                and self.snapshot.get(ev.obj["metadata"]["name"]) is not None:
            return False  # a heartbeat or condition change: nothing a filter reads
        self.snapshot.update_node(ev.obj)
        return True

    def _on_pod(self, ev: WatchEvent) -> bool:
        """Apply one pod change; True if it may make room for unschedulable pods."""
        pod = ev.obj
        uid = _uid(pod)
        if ev.type == DELETED:
            freed = self.snapshot.node_of(uid) is not None and not self.snapshot.is_assumed(uid)
            self.snapshot.remove_pod(uid)
            self._drop(uid)
            return freed
        if (pod.get("spec") or {}).get("nodeName"):
            self._drop(uid)
            where = counts_against_node(pod)
            before = self.snapshot.node_of(uid)
            if before != where:
                self.snapshot.add_pod(pod)
            elif where is not None:
                self.snapshot.confirm(uid)  # our assumption, now stored: no need to recount it
            return before is not None and where is None  # finished: its requests are free again
        if not is_responsible_for(pod):
            self._drop(uid)
            return False
        self.pending[uid] = pod
        if uid in self.inflight:
            return False
        entry = self.unschedulable.get(uid)
        if entry is not None:
            prev_spec = (ev.prev or {}).get("spec")
            prev_labels = ((ev.prev or {}).get("metadata") or {}).get("labels")
            if prev_spec != pod.get("spec") or prev_labels != pod["metadata"].get("labels"):
                self._mark_changed(uid, entry)  # the pod itself changed (a toleration added...)
            return False
        if uid not in self.in_active:
            self._push(uid, pod)
        return False

    def _drop(self, uid: str) -> None:
        self.pending.pop(uid, None)
        self.unschedulable.pop(uid, None)
        self.attempts.pop(uid, None)
        self.in_active.discard(uid)  # its heap entry is skipped when popped

    def _push(self, uid: str, pod: Obj) -> None:
        self._seq += 1
        heapq.heappush(self.active, (queue_key(pod), self._seq, uid))
        self.in_active.add(uid)

    def _cluster_changed(self) -> None:
        """Nodes or bound pods changed: unschedulable pods may fit now (after their back-off)."""
        for uid, entry in self.unschedulable.items():
            self._mark_changed(uid, entry)

    def _mark_changed(self, uid: str, entry: _Unschedulable) -> None:
        """The pod may fit now: it is due at the end of its back-off (once, however often it is marked)."""
        if not entry.cluster_changed:
            entry.cluster_changed = True
            self._due_at(entry.not_before, uid)

    def _due_at(self, when: float, uid: str) -> None:
        self._seq += 1
        heapq.heappush(self._due, (when, self._seq, uid))

    def _promote(self, now: float) -> None:
        """Move unschedulable pods whose time has come back to the active queue."""
        due = self._due
        while due and due[0][0] <= now:
            _, _, uid = heapq.heappop(due)
            entry = self.unschedulable.get(uid)
            if entry is not None and ((entry.cluster_changed and now >= entry.not_before)
                                      or now >= entry.give_up_wait_at):
                del self.unschedulable[uid]
                self._push(uid, self.pending[uid])

    # ----------------------------------------------------------------------------------- placing
    async def _place_batch(self) -> tuple[list[tuple[_Planned, AnyCommand]], int]:
        """The next batch of placements and status updates, and its encoded size in bytes."""
        planned: list[tuple[_Planned, AnyCommand]] = []
        now_text = rfc3339(self.clock())
        tried = 0
        size = BATCH_OVERHEAD_BYTES
        s = self.settings
        while self.active and tried < s.batch_max_pods and size < MAX_ENTRY_BYTES - ROOM_PER_POD_BYTES:
            _, _, uid = heapq.heappop(self.active)
            if uid not in self.in_active:
                continue  # stale entry: the pod left the queue
            self.in_active.discard(uid)
            pod = self.pending[uid]
            tried += 1
            decision, self.start_index = schedule_one(pod, self.snapshot, seed=s.seed, start_index=self.start_index,
                                                      percentage_of_nodes_to_score=s.percentage_of_nodes_to_score)
            if decision.node_name is not None:
                command = self._plan_binding(uid, pod, decision, now_text)
                if command is not None:
                    planned.append((_Planned("bind", uid, pod, decision.node_name), command))
                    size += encoded_size(command)
            else:
                status = self._plan_unschedulable(uid, pod, decision, now_text)
                if status is not None:
                    planned.append((_Planned("status", uid, pod), status))
                    size += encoded_size(status)
            if tried % YIELD_EVERY_PODS == 0:
                await asyncio.sleep(0)  # a cooperative yield, not a wait: nothing else changes our state
        return planned, size

    def _plan_binding(self, uid: str, pod: Obj, decision: Decision, now_text: str) -> AnyCommand | None:
        node = decision.node_name
        assert node is not None
        try:
            self.snapshot.assume(pod, node)
        except SnapshotError as exc:  # a bug if it happens: retry the pod later rather than crash
            log.error("scheduler cannot assume %s on %s: %s", _uid(pod), node, exc)
            self._back_off(uid)
            return None
        self.inflight[uid] = node
        meta = pod["metadata"]
        note = _json.encode(explain(decision)).decode()
        log.info("scheduler placed %s/%s on %s (%d/%d nodes feasible)", meta.get("namespace"), meta.get("name"),
                 node, decision.feasible_nodes, decision.total_nodes)
        return Bind(namespace=meta.get("namespace", ""), name=meta["name"], node_name=node, time=now_text,
                    expected_uid=meta.get("uid", ""), annotations={EXPLANATION_ANNOTATION: note})

    def _plan_unschedulable(self, uid: str, pod: Obj, decision: Decision, now_text: str) -> AnyCommand | None:
        """Back-off, FailedScheduling event, and the PodScheduled=False status update if it changes."""
        self.failed += 1
        meta = pod["metadata"]
        self._back_off(uid)
        log.info("scheduler could not place %s/%s: %s", meta.get("namespace"), meta.get("name"), decision.message)
        self.recorder.emit(pod, WARNING, "FailedScheduling", decision.message)
        status = dict(pod.get("status") or {})
        conditions = list(status.get("conditions") or [])
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current is not None and current.get("status") == "False" and current.get("reason") == "Unschedulable" \
                and current.get("message") == decision.message:
            return None
        condition = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                     "lastTransitionTime": now_text if current is None or current.get("status") != "False"
                     else current.get("lastTransitionTime", now_text),
                     "reason": "Unschedulable", "message": decision.message}
        status["conditions"] = [c for c in conditions if c.get("type") != "PodScheduled"] + [condition]
        return Replace(resource="pods", namespace=meta.get("namespace", ""), name=meta["name"],
                       obj={"metadata": {"uid": meta.get("uid")}, "status": status},
                       expected_rv=str(meta.get("resourceVersion", "")), subresource="status")

    def _back_off(self, uid: str) -> None:
        attempts = self.attempts.get(uid, 0) + 1
        self.attempts[uid] = attempts
        s = self.settings
        backoff = min(s.backoff_initial_s * 2 ** (attempts - 1), s.backoff_max_s)
        now = self.monotonic()
        entry = _Unschedulable(attempts, now + backoff, now + max(s.unschedulable_max_wait_s, backoff))
        self.unschedulable[uid] = entry
        self._due_at(entry.give_up_wait_at, uid)

    # ---------------------------------------------------------------------------------- proposing
    async def _propose_batch(self, planned: list[tuple[_Planned, AnyCommand]], events: TakenEvents) -> None:
        assert self._proposer is not None
        commands = [c for _, c in planned] + events.commands
        try:
            try:
                result = await self._proposer.propose(Batch(commands=commands))
                results: Sequence[Result] = result.results if result.ok else [result] * len(commands)
            except NotLeading as exc:
                self._stopped = exc
                return
            except ApiError as exc:  # definite (the proposer retries the others): nothing was applied
                log.warning("scheduler batch refused: %s", exc)
                results = [Result(ok=False)] * len(commands)
            self.recorder.settle(events, results[len(planned):])
            for (plan, _), r in zip(planned, results[:len(planned)], strict=True):
                if plan.kind == "bind":
                    self._binding_answered(plan, r)
        finally:
            self._slots.release()
            self._wake.set()

    def _binding_answered(self, plan: _Planned, result: Result) -> None:
        self.inflight.pop(plan.uid, None)
        meta = plan.pod["metadata"]
        if result.ok:
            self.bound += 1
            self.attempts.pop(plan.uid, None)
            self.recorder.emit(result.obj or plan.pod, NORMAL, "Scheduled",
                               f"Successfully assigned {meta.get('namespace')}/{meta.get('name')} to {plan.node}",
                               action="Binding")
            return
        if self.snapshot.is_assumed(plan.uid):
            self.snapshot.forget(plan.uid)
        why = result.error.message if result.error else "no answer"
        log.info("scheduler binding of %s/%s to %s refused: %s", meta.get("namespace"), meta.get("name"),
                 plan.node, why)
        pod = self.pending.get(plan.uid)
        if pod is not None and plan.uid not in self.unschedulable:
            self._back_off(plan.uid)
            self._mark_changed(plan.uid, self.unschedulable[plan.uid])


async def run_scheduler(ctx: LeaderContext, term: int) -> None:
    """One term of the scheduler on the leading master."""
    await Scheduler(ctx.store, ctx.cfg.scheduler, instance=ctx.master_id).run(term)


def register(registry: LeaderLoopRegistry) -> None:
    """Add the scheduler to the leader-only loops (called by `hacluster.cluster.master.leader_loop_registry`)."""
    registry.add("scheduler", run_scheduler)
