"""Hypothesis `RuleBasedStateMachine` over the pure state machine (`hacluster.store.state.StoreState`),
beside a trivial model of what every command should do to a handful of pods.

Every command kind is exercised — Create, Replace (compare-and-set or not, main resource and status
subresource), Delete (graceful and grace 0), Bind (fenced with old, current and newer terms),
LeaderElected, Barrier, Batch — and retried request ids (deduplicated while remembered, with the dedup
memory small enough to forget). After each step the `@invariant`s check: the results and the objects are the model's;
the revision is the newest resourceVersion and every change is in the watch history; resourceVersions only
rise and a pod is bound at most once (`hacluster.model.invariants`); a second StoreState fed the same
commands through the wire encoding holds the same state (deterministic replay); snapshot → msgpack →
restore gives the same state, and a restored replica keeps agreeing with the original on later commands.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from hacluster.model import commands as C
from hacluster.model import invariants as inv
from hacluster.store.state import DELETED, Result, StoreLimits, StoreState

# Shrinking a stateful failure with several distinct errors can take Hypothesis minutes.
pytestmark = pytest.mark.timeout(900)

NS = "default"
NAMES = ("a", "b", "c")
NODES = ("n1", "n2")
PHASES = ("Pending", "Running", "Succeeded")
TIMES = ("2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z")
LIMITS = StoreLimits(watch_history_max=12, dedup_max=4, events_max=100)
SYSTEM_NAMESPACES = 4
GRACE_DEFAULT_S = 30


@dataclass
class ModelPod:
    uid: str
    value: int
    node: str
    phase: str
    rv: int
    grace: int | None = None  # set while terminating
    deletion: str | None = None


def _pod(name: str, uid: str, value: int, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}],
                            "terminationGracePeriodSeconds": GRACE_DEFAULT_S}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": uid, "creationTimestamp": TIMES[0],
                         "annotations": {"v": str(value)}},
            "spec": spec, "status": {"phase": "Pending"}}


def _add_seconds(t: str, s: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")


class StoreMachine(RuleBasedStateMachine):
    """The real StoreState, a replica fed through the wire encoding, and the model."""

    applied = Bundle("applied")  # commands that carried a request id, for retries

    def __init__(self) -> None:
        super().__init__()
        self.state = StoreState(LIMITS)
        self.replica = StoreState(LIMITS)
        self.revision = 0
        self.term_seen = 0
        self.ns_ready = False
        self.pods: dict[str, ModelPod] = {}
        self.dedup: dict[str, tuple[bool, str]] = {}  # request id -> first outcome, oldest first
        self.uids = 0
        self.request_ids = 0
        self.versions: list[dict[str, Any]] = []  # every pod version stored, in order
        self.seen_versions: set[tuple[str, int]] = set()
        self.binds: list[tuple[str, str]] = []
        self.deleted_rvs: list[int] = []  # revisions of the model's removals
        self.deleted_seen: set[int] = set()

    # ------------------------------------------------------------------------------ the model
    def _expect(self, cmd: C.AnyCommand) -> tuple[bool, str]:
        """Apply `cmd` to the model; return (ok, error reason or "")."""
        if cmd.request_id and cmd.request_id in self.dedup:
            return self.dedup[cmd.request_id]
        if cmd.fence_term:
            if cmd.fence_term < self.term_seen:
                return False, "Conflict"
            self.term_seen = cmd.fence_term
        if isinstance(cmd, C.LeaderElected):
            if cmd.term < self.term_seen:
                return False, "Conflict"
            self.term_seen = cmd.term
            if not self.ns_ready:
                self.ns_ready = True
                self.revision += SYSTEM_NAMESPACES
            return True, ""
        if isinstance(cmd, C.Barrier):
            return True, ""
        if isinstance(cmd, C.Batch):
            for sub in cmd.commands:
                self._expect_and_remember(sub)
            return True, ""
        key = f"{NS}/{getattr(cmd, 'name', '') or cmd.obj['metadata']['name']}"  # type: ignore[union-attr]
        pod = self.pods.get(key)
        if isinstance(cmd, C.Create):
            if cmd.namespace != NS or not self.ns_ready:
                return False, "NotFound"
            if pod is not None:
                return False, "AlreadyExists"
            self.revision += 1
            meta = cmd.obj["metadata"]
            self.pods[key] = ModelPod(meta["uid"], int(meta["annotations"]["v"]),
                                      cmd.obj["spec"].get("nodeName", ""), "Pending", self.revision)
            return True, ""
        if pod is None:
            return False, "NotFound"
        if isinstance(cmd, C.Replace):
            if cmd.expected_rv and cmd.expected_rv != str(pod.rv):
                return False, "Conflict"
            uid = (cmd.obj.get("metadata") or {}).get("uid")
            if uid and uid != pod.uid:
                return False, "Conflict"
            if cmd.subresource == "status":
                phase = cmd.obj["status"]["phase"]
                if phase != pod.phase:
                    self.revision += 1
                    pod.phase, pod.rv = phase, self.revision
                return True, ""
            value = int(cmd.obj["metadata"]["annotations"]["v"])
            if value != pod.value:
                self.revision += 1
                pod.value, pod.rv = value, self.revision
            return True, ""
        if isinstance(cmd, C.Delete):
            grace = 0
            if pod.node and pod.phase not in ("Succeeded", "Failed"):
                grace = max(cmd.grace_period_s if cmd.grace_period_s is not None else GRACE_DEFAULT_S, 0)
            if grace > 0:
                if pod.grace is not None and pod.grace <= grace:
                    return True, ""
                deadline = _add_seconds(cmd.time, grace)
                self.revision += 1
                pod.deletion = min(deadline, pod.deletion) if pod.deletion else deadline
                pod.grace, pod.rv = grace, self.revision
                return True, ""
            self.revision += 1
            self.deleted_rvs.append(self.revision)
            del self.pods[key]
            return True, ""
        if isinstance(cmd, C.Bind):
            if cmd.expected_uid and cmd.expected_uid != pod.uid:
                return False, "Conflict"
            if pod.node or pod.grace is not None:
                return False, "Conflict"
            self.revision += 1
            pod.node, pod.rv = cmd.node_name, self.revision
            return True, ""
        raise AssertionError(f"unexpected command {cmd!r}")

    def _expect_and_remember(self, cmd: C.AnyCommand) -> tuple[bool, str]:
        fresh = bool(cmd.request_id) and cmd.request_id not in self.dedup
        ok, reason = self._expect(cmd)
        if fresh:
            self.dedup[cmd.request_id] = (ok, reason)
            while len(self.dedup) > LIMITS.dedup_max:
                del self.dedup[next(iter(self.dedup))]
        return ok, reason

    # -------------------------------------------------------------------------------- running
    def _run(self, cmd: C.AnyCommand) -> Result:
        ok, reason = self._expect_and_remember(cmd)
        result = self.state.apply(cmd)
        twin = self.replica.apply(C.decode(C.encode(cmd)))
        assert (result.ok, _reason(result)) == (ok, reason), f"{cmd!r}: got {result}, model says {ok} {reason}"
        assert (twin.ok, _reason(twin), twin.revision) == (result.ok, _reason(result), result.revision), \
            f"the replica answered {cmd!r} with {twin}, the original with {result}"
        if isinstance(cmd, C.Batch):
            assert len(result.results) == len(cmd.commands)
        if result.ok and isinstance(cmd, C.Bind) and result.obj is not None and not cmd.request_id:
            self.binds.append((str(result.obj["metadata"]["uid"]), cmd.node_name))
        return result

    def _rid(self, use: bool) -> str:
        if not use:
            return ""
        self.request_ids += 1
        return f"req-{self.request_ids}"

    def _current(self, name: str) -> dict[str, Any] | None:
        return self.state.get("pods", NS, name)

    # ----------------------------------------------------------------------------------- rules
    @initialize(elect=st.booleans())
    def start(self, elect: bool) -> None:
        """Most runs begin with a leader (system namespaces exist); the others see creates refused."""
        if elect:
            self._run(C.LeaderElected(leader_id="m1", term=1, time=TIMES[0], fence_term=1))

    @rule(target=applied, delta=st.integers(-1, 2), fenced=st.booleans(), with_id=st.booleans())
    def leader_elected(self, delta: int, fenced: bool, with_id: bool) -> C.AnyCommand:
        term = max(0, self.term_seen + delta)
        cmd = C.LeaderElected(leader_id=f"m{term % 3 + 1}", term=term, time=TIMES[0],
                              fence_term=term if fenced else 0, request_id=self._rid(with_id))
        self._run(cmd)
        return cmd

    @rule(target=applied, name=st.sampled_from(NAMES), value=st.integers(0, 5), node=st.sampled_from(("",) + NODES),
          namespace=st.sampled_from((NS, NS, "nope")), with_id=st.booleans())
    def create(self, name: str, value: int, node: str, namespace: str, with_id: bool) -> C.AnyCommand:
        self.uids += 1
        obj = _pod(name, f"uid-{name}-{self.uids}", value, node)
        obj["metadata"]["namespace"] = namespace
        cmd = C.Create(resource="pods", namespace=namespace, obj=obj, request_id=self._rid(with_id))
        self._run(cmd)
        return cmd

    @rule(target=applied, name=st.sampled_from(NAMES), value=st.integers(0, 5),
          expect=st.sampled_from(("none", "current", "stale")), with_id=st.booleans())
    def replace(self, name: str, value: int, expect: str, with_id: bool) -> Any:
        """Replace the main resource with the stored pod and a new value: compare-and-set against the
        current or a stale resourceVersion, or unconditionally. An unconditional replace is never retried
        (its spec may be stale by then; the API server only ever proposes compare-and-set replaces, which
        is what keeps a bound pod bound)."""
        current = self._current(name)
        obj = copy.deepcopy(current) if current is not None else _pod(name, "uid-none", value)
        obj["metadata"].setdefault("annotations", {})["v"] = str(value)
        rv = obj["metadata"].get("resourceVersion", "1")
        expected = {"none": "", "current": str(rv), "stale": str(int(rv) - 1 if int(rv) > 1 else 999)}[expect]
        cmd = C.Replace(resource="pods", namespace=NS, name=name, obj=obj, expected_rv=expected,
                        request_id=self._rid(with_id and bool(expected)))
        self._run(cmd)
        return cmd if expected else multiple()

    @rule(target=applied, name=st.sampled_from(NAMES), phase=st.sampled_from(PHASES), cas=st.booleans(),
          with_id=st.booleans())
    def replace_status(self, name: str, phase: str, cas: bool, with_id: bool) -> C.AnyCommand:
        current = self._current(name)
        obj = copy.deepcopy(current) if current is not None else _pod(name, "uid-none", 0)
        obj.setdefault("status", {})["phase"] = phase
        obj["spec"]["containers"][0]["image"] = "ignored-by-the-status-subresource"
        expected = str(obj["metadata"].get("resourceVersion", "")) if cas else ""
        cmd = C.Replace(resource="pods", namespace=NS, name=name, obj=obj, subresource="status",
                        expected_rv=expected, request_id=self._rid(with_id))
        self._run(cmd)
        return cmd

    @rule(target=applied, name=st.sampled_from(NAMES), grace=st.sampled_from((None, 0, 5, 60)),
          time=st.sampled_from(TIMES), with_id=st.booleans())
    def delete(self, name: str, grace: int | None, time: str, with_id: bool) -> C.AnyCommand:
        cmd = C.Delete(resource="pods", namespace=NS, name=name, time=time, grace_period_s=grace,
                       request_id=self._rid(with_id))
        self._run(cmd)
        return cmd

    @rule(target=applied, name=st.sampled_from(NAMES), node=st.sampled_from(NODES),
          fence=st.sampled_from(("none", "current", "stale", "newer")), uid=st.sampled_from(("", "right", "wrong")),
          with_id=st.booleans())
    def bind(self, name: str, node: str, fence: str, uid: str, with_id: bool) -> C.AnyCommand:
        current = self._current(name)
        fence_term = {"none": 0, "current": self.term_seen, "stale": self.term_seen - 1,
                      "newer": self.term_seen + 1}[fence]
        expected_uid = {"": "", "right": (current or {}).get("metadata", {}).get("uid", "x"), "wrong": "uid-x"}[uid]
        cmd = C.Bind(namespace=NS, name=name, node_name=node, time=TIMES[0], expected_uid=expected_uid,
                     fence_term=max(fence_term, 0), request_id=self._rid(with_id))
        self._run(cmd)
        return cmd

    @rule(fenced=st.booleans())
    def barrier(self, fenced: bool) -> None:
        before = self.state.revision
        result = self._run(C.Barrier(fence_term=self.term_seen if fenced else 0))
        assert result.ok and result.revision == before == self.state.revision

    @precondition(lambda self: self.ns_ready)
    @rule(target=applied, data=st.data(), size=st.integers(1, 3), with_id=st.booleans())
    def batch(self, data: st.DataObject, size: int, with_id: bool) -> C.AnyCommand:
        subs: list[C.AnyCommand] = []
        for _ in range(size):
            name = data.draw(st.sampled_from(NAMES))
            kind = data.draw(st.sampled_from(("create", "delete", "bind", "replace")))
            if kind == "create":
                self.uids += 1
                subs.append(C.Create(resource="pods", namespace=NS,
                                     obj=_pod(name, f"uid-{name}-{self.uids}", data.draw(st.integers(0, 5)))))
            elif kind == "delete":
                subs.append(C.Delete(resource="pods", namespace=NS, name=name, time=TIMES[0], grace_period_s=0))
            elif kind == "bind":
                subs.append(C.Bind(namespace=NS, name=name, node_name=data.draw(st.sampled_from(NODES)),
                                   time=TIMES[0]))
            else:
                # Compare-and-set against the pod as it was before the batch: a change earlier in the same
                # batch makes it a Conflict, as it would for the API server.
                current = self._current(name)
                obj = copy.deepcopy(current) if current is not None else _pod(name, "", 0)
                obj["metadata"].pop("uid", None)
                obj["metadata"].setdefault("annotations", {})["v"] = str(data.draw(st.integers(0, 5)))
                subs.append(C.Replace(resource="pods", namespace=NS, name=name, obj=obj,
                                      expected_rv=str(obj["metadata"].get("resourceVersion", "1"))))
        cmd = C.Batch(commands=subs, request_id=self._rid(with_id))
        result = self._run(cmd)
        assert result.ok
        return cmd

    @rule(cmd=applied)
    def retry(self, cmd: C.AnyCommand) -> None:
        """A proposal retried with its request id while it is remembered: answered with the first outcome, and
        nothing changes. Proposers retry only so (with the same request id, within the proposal deadline);
        re-running a command whose id was forgotten, or that had none, is not a retry but a second command
        built from old state — a Create with the same UID after that pod was deleted, or a status written
        from a stale copy — which no proposer makes, so it is not generated here."""
        assume(bool(cmd.request_id) and cmd.request_id in self.dedup)
        before = self.state.revision
        self._run(cmd)
        assert self.state.revision == before, "a deduplicated retry changed the state"

    @precondition(lambda self: self.state.revision > 0)
    @rule()
    def replica_from_snapshot(self) -> None:
        """The replica is replaced by a restore of the original's snapshot (through msgpack, as a master
        restarting from its snapshot file would); it must keep agreeing on every later command."""
        blob = msgspec.msgpack.encode(self.state.snapshot())
        self.replica = StoreState.restore(msgspec.msgpack.decode(blob), LIMITS)

    # ------------------------------------------------------------------------------ invariants
    @invariant()
    def matches_the_model(self) -> None:
        s = self.state
        assert s.revision == self.revision
        assert s.term_seen == self.term_seen
        live = {f"{NS}/{p['metadata']['name']}": p for p in s.list_objects("pods", NS)}
        assert set(live) == set(self.pods), f"pods {sorted(live)} but the model has {sorted(self.pods)}"
        for key, obj in live.items():
            m = self.pods[key]
            meta, spec = obj["metadata"], obj["spec"]
            got = (meta["uid"], int(meta["annotations"]["v"]), spec.get("nodeName", ""),
                   obj["status"]["phase"], int(meta["resourceVersion"]), meta.get("deletionGracePeriodSeconds"),
                   meta.get("deletionTimestamp"))
            assert got == (m.uid, m.value, m.node, m.phase, m.rv, m.grace, m.deletion), f"{key}: {got} vs {m}"

    @invariant()
    def revision_is_the_newest_change(self) -> None:
        s = self.state
        rvs = [int(o["metadata"]["resourceVersion"]) for bucket in s.objects.values() for o in bucket.values()]
        assert all(rv <= s.revision for rv in rvs)
        assert len(rvs) == len(set(rvs)), "two objects share a resourceVersion"
        if s.history:
            assert s.history[-1].revision == s.revision
        # Every change since the floor is in the watch history, once, in order.
        events = s.events_since(s.history_floor)
        assert events is not None
        assert [e.revision for e in events] == list(range(s.history_floor + 1, s.revision + 1))
        assert s.events_since(s.revision) == []
        if s.history_floor > 0:
            assert s.events_since(s.history_floor - 1) is None, "an expired revision must answer 410"
        for e in events:
            assert int(e.obj["metadata"]["resourceVersion"]) == e.revision
            if e.type == DELETED:
                self.deleted_seen.add(e.revision)
        assert set(self.deleted_rvs) & set(range(s.history_floor + 1, s.revision + 1)) <= self.deleted_seen

    @invariant()
    def versions_rise_and_pods_bind_once(self) -> None:
        for obj in self.state.list_objects("pods"):
            key = (obj["metadata"]["uid"], int(obj["metadata"]["resourceVersion"]))
            if key not in self.seen_versions:
                self.seen_versions.add(key)
                self.versions.append(copy.deepcopy(obj))
        assert inv.resource_version_violations(self.versions) == []
        assert inv.binding_violations(self.versions) == []
        assert inv.bind_acknowledgement_violations(self.binds) == []

    @invariant()
    def replay_agrees(self) -> None:
        assert self.replica.fingerprint() == self.state.fingerprint()
        assert self.state.fingerprint() == self.state.recomputed_fingerprint(), "incremental fingerprint drifted"
        assert self.replica.revision == self.state.revision
        assert self.replica.objects == self.state.objects
        assert (self.replica.term_seen, self.replica.leader_id) == (self.state.term_seen, self.state.leader_id)
        assert list(self.replica.dedup) == list(self.state.dedup)

    @invariant()
    def snapshot_round_trips(self) -> None:
        blob = msgspec.msgpack.encode(self.state.snapshot())
        restored = StoreState.restore(msgspec.msgpack.decode(blob), LIMITS)
        assert restored.fingerprint() == self.state.fingerprint()
        assert restored.objects == self.state.objects
        assert restored.dedup == self.state.dedup
        assert list(restored.event_keys) == list(self.state.event_keys)
        assert (restored.term_seen, restored.leader_id, restored.history_floor) == \
            (self.state.term_seen, self.state.leader_id, self.state.revision)


def _reason(result: Result) -> str:
    return result.error.reason if result.error is not None else ""


StoreMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None,
                                          derandomize=True, database=None, print_blob=True,
                                          suppress_health_check=[HealthCheck.too_slow])
TestStoreMachine = StoreMachine.TestCase
