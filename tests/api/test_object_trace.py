"""The API server's per-object write trace (`/debug/trace/...`): who wrote, on which master, how long the
commit took, the term and commit index seen; failed writes too; bounded."""

from hacluster.apiserver.objtrace import ObjectTraces, object_key
from hacluster.model import commands as cmds
from tests.api.conftest import ADMIN, VIEWER, pod

TRACE = "/debug/trace/pods/default/web"


async def test_writes_of_an_object_are_traced(api):
    code, _, _ = await api.call("POST", "/api/v1/namespaces/default/pods", pod("web"))
    assert code == 201
    code, _, _ = await api.call("PATCH", "/api/v1/namespaces/default/pods/web", {"metadata": {"labels": {"a": "b"}}},
                                headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200
    code, body, _ = await api.call("GET", TRACE, token=VIEWER)
    assert code == 200 and body["master"] == "m1"
    create, patch = body["writes"]
    assert (create["write"], create["user"], create["outcome"], create["role"]) == ("Create", "admin", "committed",
                                                                                    "leader")
    assert create["answered_s"] >= 0 and create["term"] >= 0 and create["commit_index"] >= 1
    assert patch["write"] == "Replace" and patch["proposed_at"] >= create["proposed_at"]


async def test_a_refused_write_is_traced_with_its_answer(api):
    api.store.set_available(False)
    code, _, _ = await api.call("POST", "/api/v1/namespaces/default/pods", pod("web"))
    assert code == 503
    code, body, _ = await api.call("GET", TRACE)
    assert [w["outcome"] for w in body["writes"]] == ["503 ServiceUnavailable"]


async def test_the_trace_needs_a_token_and_unknown_objects_have_none(api):
    code, body, _ = await api.call("GET", TRACE, token=None)
    assert code == 401 and body["kind"] == "Status"
    code, body, _ = await api.call("GET", "/debug/trace/pods/default/nobody", token=ADMIN)
    assert code == 200 and body["writes"] == []


def test_object_keys_and_bounds():
    assert object_key(cmds.Bind(namespace="default", name="web", node_name="n", time="t")) == ("pods", "default", "web")
    assert object_key(cmds.Create(resource="nodes", namespace="", obj={"metadata": {"name": "n1"}})) == (
        "nodes", "_", "n1")
    assert object_key(cmds.Barrier()) is None
    traces = ObjectTraces(objects_max=2, writes_max=3)
    for i in range(5):
        traces.record(("pods", "default", "a"), {"i": i})
    traces.record(("pods", "default", "b"), {"i": 0})
    traces.record(("pods", "default", "c"), {"i": 0})
    assert traces.get(("pods", "default", "a")) == []  # least recently written: forgotten
    assert [w["i"] for w in traces.get(("pods", "default", "b"))] == [0]
    traces.record(("pods", "default", "b"), {"i": 1})
    traces.record(("pods", "default", "b"), {"i": 2})
    traces.record(("pods", "default", "b"), {"i": 3})
    assert [w["i"] for w in traces.get(("pods", "default", "b"))] == [1, 2, 3]
