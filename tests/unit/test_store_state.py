"""The pure state machine: revisions, compare-and-set, graceful deletion, binding, fencing, watch history."""

import msgspec

from hacluster.model import commands as C
from hacluster.store.state import ADDED, DELETED, MODIFIED, StoreLimits, StoreState

T0 = "2026-01-01T00:00:00Z"


def boot(limits=None):
    s = StoreState(limits)
    assert s.apply(C.LeaderElected(leader_id="m1", term=1, time=T0, fence_term=1)).ok
    return s


def pod(name, node=None, phase="Pending"):
    spec = {"containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": 30}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": T0},
            "spec": spec, "status": {"phase": phase}}


def create(s, name, **kw):
    return s.apply(C.Create(resource="pods", namespace="default", obj=pod(name, **kw)))


def test_leader_elected_creates_system_namespaces():
    s = boot()
    assert sorted(s.objects["namespaces"]) == ["default", "kube-node-lease", "kube-public", "kube-system"]
    assert s.term_seen == 1


def test_create_assigns_revision_as_resource_version():
    s = boot()
    r1 = create(s, "a")
    r2 = create(s, "b")
    assert r1.ok and r2.ok
    assert int(r2.obj["metadata"]["resourceVersion"]) == int(r1.obj["metadata"]["resourceVersion"]) + 1
    assert r2.obj["metadata"]["resourceVersion"] == str(s.revision)
    assert r1.obj["metadata"]["generation"] == 1
    dup = create(s, "a")
    assert not dup.ok and dup.error.reason == "AlreadyExists" and dup.error.message == 'pods "a" already exists'
    missing = s.apply(C.Create(resource="pods", namespace="nope", obj=pod("x")))
    assert missing.error.reason == "NotFound" and missing.error.message == 'namespaces "nope" not found'


def test_replace_is_compare_and_set():
    s = boot()
    rv = create(s, "a").obj["metadata"]["resourceVersion"]
    new = pod("a")
    new["metadata"]["labels"] = {"x": "1"}
    ok = s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=new, expected_rv=rv))
    assert ok.ok and ok.obj["metadata"]["labels"] == {"x": "1"}
    stale = s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=new, expected_rv=rv))
    assert stale.error.reason == "Conflict" and "the object has been modified" in stale.error.message


def test_unchanged_update_keeps_revision_and_spec_change_bumps_generation():
    s = boot()
    create(s, "a")
    before = s.revision
    same = s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=pod("a")))
    assert same.ok and s.revision == before
    changed = pod("a")
    changed["spec"]["containers"][0]["image"] = "y"
    r = s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=changed))
    assert r.obj["metadata"]["generation"] == 2 and s.revision == before + 1


def test_status_subresource_and_main_resource_own_their_parts():
    s = boot()
    create(s, "a")
    st = pod("a")
    st["status"] = {"phase": "Running"}
    st["spec"]["containers"][0]["image"] = "ignored"
    r = s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=st, subresource="status"))
    assert r.obj["status"] == {"phase": "Running"} and r.obj["spec"]["containers"][0]["image"] == "x"
    main = pod("a")
    main["status"] = {"phase": "Failed"}
    r = s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=main))
    assert r.obj["status"] == {"phase": "Running"}


def test_graceful_deletion_of_bound_pods():
    s = boot()
    create(s, "unbound")
    gone = s.apply(C.Delete(resource="pods", namespace="default", name="unbound", time=T0))
    assert gone.ok and "default/unbound" not in s.objects["pods"]
    create(s, "bound", node="n1")
    r = s.apply(C.Delete(resource="pods", namespace="default", name="bound", time=T0))
    meta = r.obj["metadata"]
    assert meta["deletionTimestamp"] == "2026-01-01T00:00:30Z" and meta["deletionGracePeriodSeconds"] == 30
    assert "default/bound" in s.objects["pods"]
    longer = s.apply(C.Delete(resource="pods", namespace="default", name="bound", time=T0, grace_period_s=60))
    assert longer.obj["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:30Z", "a deletion only shortens"
    s.apply(C.Delete(resource="pods", namespace="default", name="bound", time=T0, grace_period_s=0))
    assert "default/bound" not in s.objects["pods"]
    create(s, "done", node="n1", phase="Succeeded")
    s.apply(C.Delete(resource="pods", namespace="default", name="done", time=T0))
    assert "default/done" not in s.objects["pods"]


def test_bind_once_and_fenced_by_term():
    s = boot()
    create(s, "a")
    r = s.apply(C.Bind(namespace="default", name="a", node_name="n1", time=T0, fence_term=1))
    assert r.ok and r.obj["spec"]["nodeName"] == "n1"
    assert {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
            "lastTransitionTime": T0} in r.obj["status"]["conditions"]
    again = s.apply(C.Bind(namespace="default", name="a", node_name="n2", time=T0, fence_term=1))
    assert again.error.reason == "Conflict" and 'already assigned to node "n1"' in again.error.message
    create(s, "b")
    assert s.apply(C.LeaderElected(leader_id="m2", term=3, time=T0, fence_term=3)).ok
    stale = s.apply(C.Bind(namespace="default", name="b", node_name="n1", time=T0, fence_term=1))
    assert stale.error.reason == "Conflict" and "fenced" in stale.error.message
    assert s.fenced_refusals == 1
    assert "nodeName" not in s.objects["pods"]["default/b"]["spec"]


def test_request_ids_make_retries_idempotent():
    s = boot()
    cmd = C.Create(resource="pods", namespace="default", obj=pod("a"), request_id="req-1")
    first = s.apply(cmd)
    rev = s.revision
    second = s.apply(cmd)
    assert second is first and s.revision == rev


def test_watch_history_and_expiry():
    s = boot(StoreLimits(watch_history_max=5))
    start = s.revision
    for i in range(3):
        create(s, f"p{i}")
    evs = s.events_since(start)
    assert [e.type for e in evs] == [ADDED] * 3
    assert [e.revision for e in evs] == [start + 1, start + 2, start + 3]
    s.apply(C.Delete(resource="pods", namespace="default", name="p0", time=T0))
    assert s.events_since(start + 3)[0].type == DELETED
    for i in range(10):
        create(s, f"q{i}")
    assert s.events_since(start) is None, "history overflowed: 410 Expired"
    assert len(s.events_since(s.revision - 5)) == 5


def test_modified_event_carries_previous_object():
    s = boot()
    create(s, "a")
    rev = s.revision
    st = pod("a")
    st["status"] = {"phase": "Running"}
    s.apply(C.Replace(resource="pods", namespace="default", name="a", obj=st, subresource="status"))
    ev = s.events_since(rev)[0]
    assert ev.type == MODIFIED and ev.prev["status"] == {"phase": "Pending"} and ev.obj["status"]["phase"] == "Running"


def test_events_are_bounded():
    s = boot(StoreLimits(events_max=3))
    for i in range(5):
        s.apply(C.Create(resource="events", namespace="default",
                         obj={"metadata": {"name": f"e{i}", "namespace": "default"}, "reason": "X"}))
    assert sorted(s.objects["events"]) == ["default/e2", "default/e3", "default/e4"]


def test_never_raises_on_bad_commands():
    s = boot()
    r = s.apply(C.Create(resource="nope", namespace="", obj={"metadata": {"name": "x"}}))
    assert not r.ok
    r = s.apply(C.Create(resource="pods", namespace="default", obj={"metadata": "not a dict"}))
    assert not r.ok and r.error.reason in ("InternalError", "Invalid")


def test_same_commands_same_state_and_snapshot_roundtrip():
    cmds = [C.LeaderElected(leader_id="m1", term=1, time=T0, fence_term=1)]
    cmds += [C.Create(resource="pods", namespace="default", obj=pod(f"p{i}"), request_id=f"r{i}") for i in range(20)]
    cmds += [C.Bind(namespace="default", name=f"p{i}", node_name="n1", time=T0) for i in range(0, 20, 3)]
    cmds += [C.Delete(resource="pods", namespace="default", name=f"p{i}", time=T0) for i in range(0, 20, 2)]
    a, b = StoreState(), StoreState()
    for c in cmds:
        wire = C.decode(C.encode(c))
        a.apply(c)
        b.apply(wire)
    assert a.fingerprint() == b.fingerprint()
    assert a.objects == b.objects
    blob = msgspec.msgpack.encode(a.snapshot())
    restored = StoreState.restore(msgspec.msgpack.decode(blob))
    assert restored.fingerprint() == a.fingerprint() and restored.objects == a.objects
    assert restored.apply(cmds[1]).ok, "dedup table survives the snapshot"
    assert restored.revision == a.revision


def test_stored_objects_refuse_changes_outside_apply():
    """Issue 13, finding 1: readers get the stored objects themselves; changing one in place would change this
    master's state without a command. Every stored object, watch event and result is read-only."""
    import copy

    import pytest

    s = boot()
    r = create(s, "a")
    stored = s.get("pods", "default", "a")
    for obj in (stored, r.obj, s.history[-1].obj, s.list_objects("pods")[0]):
        with pytest.raises(TypeError):
            obj["spec"]["containers"][0]["image"] = "changed"
        with pytest.raises(TypeError):
            obj["spec"].setdefault("restartPolicy", "Always")
        with pytest.raises(TypeError):
            obj["spec"]["containers"].append({"name": "d"})
        with pytest.raises(TypeError):
            obj["metadata"].pop("uid")
    mine = copy.deepcopy(stored)
    mine["spec"]["containers"][0]["image"] = "changed"  # a deep copy is the caller's own
    assert s.get("pods", "default", "a")["spec"]["containers"][0]["image"] == "x"
    assert s.fingerprint() == s.recomputed_fingerprint()


def test_fingerprint_covers_object_content():
    """Issue 13, findings 1 and 6: the fingerprint digested only key@resourceVersion, so two masters whose
    objects differ in content (same keys, same revisions) looked converged."""
    a, b = boot(), boot()
    create(a, "p")
    other = pod("p")
    other["spec"]["containers"][0]["image"] = "y"
    b.apply(C.Create(resource="pods", namespace="default", obj=other))
    assert a.revision == b.revision and list(a.objects["pods"]) == list(b.objects["pods"])
    assert a.fingerprint() != b.fingerprint()
    # Kept incrementally by apply: it always equals the digest computed from scratch, also after deletes,
    # replaces, a namespace deletion and a snapshot round trip.
    for i in range(5):
        create(a, f"q{i}")
    team = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    assert a.apply(C.Create(resource="namespaces", namespace="", obj=team)).ok
    in_team = pod("t")
    in_team["metadata"]["namespace"] = "team"
    assert a.apply(C.Create(resource="pods", namespace="team", obj=in_team)).ok
    a.apply(C.Bind(namespace="default", name="q1", node_name="n", time=T0))
    a.apply(C.Delete(resource="pods", namespace="default", name="q2", time=T0))
    assert a.fingerprint() == a.recomputed_fingerprint()
    restored = StoreState.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(a.snapshot())))
    assert restored.fingerprint() == a.fingerprint()
    assert a.apply(C.Delete(resource="namespaces", namespace="", name="team", time=T0)).ok
    assert a.fingerprint() == a.recomputed_fingerprint() != restored.fingerprint()


def test_fingerprint_costs_nothing_however_large_the_store():
    """Issue 13, finding 6: `/debug/raft` computed the fingerprint by walking every object under the store
    lock — 20k objects held the Raft tick thread off its heartbeats for tens of milliseconds per poll
    (scripts/bench-observer-stall). It is kept by `apply`; taking it reads no object."""

    class Untouchable(dict):
        def _walked(self, *args):
            raise AssertionError("fingerprint() walked the store")

        __iter__ = keys = items = values = _walked

    s = boot()
    for i in range(50):
        create(s, f"p{i}")
    expected = s.fingerprint()
    s.objects = Untouchable(s.objects)
    assert s.fingerprint() == expected
