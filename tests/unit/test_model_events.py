"""The pure event correlator (hacluster/model/events.py): keys, new-or-bump, the bounded LRU, per-object limits."""

from __future__ import annotations

from hacluster.model.events import EventCorrelator, bumped, object_reference

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
POD = {"kind": "Pod", "apiVersion": "v1",
       "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "7"}}
NODE = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1", "uid": "n-uid"}}


def leader() -> EventCorrelator:
    uids = iter(f"uid-{i}" for i in range(1000))
    return EventCorrelator(component="default-scheduler", instance="default-scheduler-m1", keys_max=3,
                           new_uid=lambda: next(uids))


def test_a_new_event_is_named_after_the_object_and_the_time_and_stamped_for_the_store() -> None:
    c = leader()
    ref = object_reference(POD)
    key = c.key(ref, "Warning", "FailedScheduling", "no nodes")
    first = c.correlate(key, ref, now=T0, action="Scheduling")
    assert not first.bump
    ev = first.event
    assert ev["metadata"] == {"name": f"web-1.{int(T0 * 1e9):x}", "namespace": "shop", "uid": "uid-0",
                              "creationTimestamp": "2026-01-01T00:00:00Z"}
    assert (ev["count"], ev["type"], ev["reason"], ev["message"], ev["action"]) == \
        (1, "Warning", "FailedScheduling", "no nodes", "Scheduling")
    assert ev["source"] == {"component": "default-scheduler"}
    assert ev["eventTime"] == "2026-01-01T00:00:00.000000Z"
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2026-01-01T00:00:00Z"
    # Two new events in the same nanosecond still get distinct, rising names.
    other = c.correlate(c.key(ref, "Normal", "Scheduled", "ok"), ref, now=T0).event
    assert other["metadata"]["name"] == f"web-1.{int(T0 * 1e9) + 1:x}"


def test_a_repeat_of_a_written_event_bumps_it_and_nothing_is_remembered_before_remember() -> None:
    c = leader()
    ref = object_reference(POD)
    key = c.key(ref, "Warning", "FailedScheduling", "no nodes")
    first = c.correlate(key, ref, now=T0)
    assert not c.correlate(key, ref, now=T0 + 1).bump, "nothing written yet: still new"
    c.remember(key, first.event)
    again = c.correlate(key, ref, now=T0 + 5)
    assert again.bump and again.event["count"] == 2
    assert again.event["metadata"]["name"] == first.event["metadata"]["name"]
    assert again.event["lastTimestamp"] == "2026-01-01T00:00:05Z"
    assert again.event["firstTimestamp"] == "2026-01-01T00:00:00Z"
    assert first.event["count"] == 1, "the remembered Event is not changed by a bump"
    # Another message, type or object is another Event.
    assert not c.correlate(c.key(ref, "Warning", "FailedScheduling", "other"), ref, now=T0).bump
    node_ref = object_reference(NODE)
    assert not c.correlate(c.key(node_ref, "Warning", "FailedScheduling", "no nodes"), node_ref, now=T0).bump
    assert c.correlate(key, ref, now=T0).event["metadata"]["namespace"] == "shop"
    assert c.correlate(c.key(node_ref, "Normal", "X", "y"), node_ref, now=T0).event["metadata"]["namespace"] == \
        "default"


def test_the_lru_keeps_keys_max_written_events_and_forget_drops_one() -> None:
    c = leader()
    ref = object_reference(POD)
    keys = [c.key(ref, "Normal", "R", str(i)) for i in range(4)]
    for k in keys[:3]:
        c.remember(k, c.correlate(k, ref, now=T0).event)
    c.remember(keys[0], c.correlate(keys[0], ref, now=T0).event)  # written again: most recent now
    c.remember(keys[3], c.correlate(keys[3], ref, now=T0).event)
    assert len(c) == 3
    assert [c.correlate(k, ref, now=T0).bump for k in keys] == [True, False, True, True]
    c.forget(keys[0])
    assert not c.correlate(keys[0], ref, now=T0).bump


def test_the_kubelet_shape_limits_new_events_per_object_and_forgets_a_deleted_pod() -> None:
    c = EventCorrelator(component="kubelet", instance="n1", host="n1", keys_max=100, per_object_max=2)
    ref = {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u1", "apiVersion": "v1",
           "resourceVersion": "", "fieldPath": "spec.containers{app}"}
    k1, k2, k3 = (c.key(ref, "Normal", r, "m") for r in ("Pulling", "Pulled", "Started"))
    first = c.correlate(k1, ref, now=T0).event
    assert first["source"] == {"component": "kubelet", "host": "n1"} and first["eventTime"] is None
    assert set(first["metadata"]) == {"name", "namespace"}
    assert first["reportingComponent"] == "kubelet" and first["reportingInstance"] == "n1"
    for k in (k1, k2):
        assert c.admits(k)
        c.remember(k, c.correlate(k, ref, now=T0).event)
    assert not c.admits(k3), "a third distinct event of the pod is over the limit"
    assert c.admits(k1), "a repeat is always admitted"
    assert c.key(dict(ref, fieldPath="spec.containers{side}"), "Normal", "Pulling", "m") != k1
    c.forget_object("u1")
    assert c.admits(k3) and not c.correlate(k1, ref, now=T0).bump


def test_bumped_copies_and_counts_one_more() -> None:
    ev = {"metadata": {"name": "a.1"}, "count": 3, "lastTimestamp": "x", "involvedObject": {}}
    b = bumped(ev, {"name": "a"}, T0)
    assert (b["count"], b["lastTimestamp"], b["involvedObject"]) == (4, "2026-01-01T00:00:00Z", {"name": "a"})
    assert ev["count"] == 3 and b["metadata"] is not ev["metadata"]
