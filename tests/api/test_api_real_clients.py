"""What the API server does for real Kubernetes clients (kubectl's retries, the Python client's models) beyond
the basics of test_api.py: no Retry-After from a master cut off from the majority (client-go would retry it ten
times, a second apart), read-worded refusals, PrepareForCreate status resets, and Kubernetes' DELETE answers."""

import dataclasses

import pytest

from hacluster.config import MasterConfig
from hacluster.store.api import PeerView
from hacluster.store.local import LocalStore
from tests.api.conftest import ADMIN, make_config, pod, serving

PODS = "/api/v1/namespaces/default/pods"


class PeeredStore(LocalStore):
    """A LocalStore that reports peer links, to play a master of a 3-master cluster."""

    def __init__(self, connected: dict[str, bool]) -> None:
        super().__init__()
        self.connected = connected

    def view(self):
        peers = tuple(PeerView(pid, f"127.0.0.1:{n}", up) for n, (pid, up) in enumerate(sorted(self.connected.items())))
        return dataclasses.replace(super().view(), peers=peers)


@pytest.fixture
async def three_master_api():
    """The API of m1 in a 3-master cluster, over a store whose peer links a test can cut."""
    cfg = make_config()
    cfg = cfg.model_copy(update={"masters": (MasterConfig(id="m1", api_port=1, raft_port=2),
                                             MasterConfig(id="m2", api_port=3, raft_port=4),
                                             MasterConfig(id="m3", api_port=5, raft_port=6))})
    async with serving(cfg, PeeredStore({"m2": True, "m3": True})) as served:
        yield served


async def test_retry_after_only_while_the_majority_is_reachable(three_master_api):
    api = three_master_api
    api.store.set_available(False)
    api.store.connected["m3"] = False  # an election can still finish here: m1 + m2 are a majority
    code, body, resp = await api.call("GET", PODS)
    assert code == 503 and resp.headers.get("Retry-After") == "1"
    assert body["details"]["retryAfterSeconds"] == 1
    api.store.connected["m2"] = False  # cut off: retrying this master is pointless, kubectl must fail at once
    code, body, resp = await api.call("GET", PODS)
    assert code == 503 and "Retry-After" not in resp.headers and "details" not in body
    assert body["reason"] == "ServiceUnavailable" and body["message"].endswith(
        "cannot serve a consistent read; this master reaches 1 of 3 masters: use another master")
    code, body, resp = await api.call("POST", PODS, pod("p"))
    assert code == 503 and "Retry-After" not in resp.headers and "read" not in body["message"]
    code, body, resp = await api.call("GET", f"{PODS}?watch=true")
    assert code == 503 and "Retry-After" not in resp.headers


async def test_refused_read_says_read(api):
    api.store.set_available(False)
    code, body, _ = await api.call("GET", f"{PODS}/x")
    assert code == 503
    assert "cannot serve a consistent read" in body["message"] and "write" not in body["message"]
    code, body, _ = await api.call("GET", "/api/v1/nodes")
    assert code == 503 and body["message"].endswith("cannot serve a consistent read")


async def test_create_resets_status_of_namespaces_and_replicasets(api):
    # `kubectl create ns x` sends "status": {} — Kubernetes' PrepareForCreate makes it Active regardless.
    code, body, _ = await api.call("POST", "/api/v1/namespaces",
                                   {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "team-a"},
                                    "spec": {}, "status": {}})
    assert code == 201 and body["status"] == {"phase": "Active"}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "fe"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fe"}},
                   "template": {"metadata": {"labels": {"app": "fe"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
          "status": {"replicas": 7, "readyReplicas": 7}}
    code, body, _ = await api.call("POST", "/apis/apps/v1/namespaces/default/replicasets", rs)
    assert code == 201 and body["status"] == {"replicas": 0}


async def test_delete_answers_like_kubernetes(api):
    """Pods (ReturnDeletedObject) answer with the pod; nodes, events and ReplicaSets that are gone answer with a
    success Status naming them, which is what the Python client's delete_node/… expect."""
    await api.call("POST", PODS, pod("loose"))
    code, body, _ = await api.call("DELETE", f"{PODS}/loose")
    assert code == 200 and body["kind"] == "Pod"
    code, node, _ = await api.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                             "metadata": {"name": "n1"}})
    code, body, _ = await api.call("DELETE", "/api/v1/nodes/n1")
    assert code == 200 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "details": {"name": "n1", "kind": "nodes", "uid": node["metadata"]["uid"]}}
    code, rs, _ = await api.call("POST", "/apis/apps/v1/namespaces/default/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "fe"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    code, body, _ = await api.call("DELETE", "/apis/apps/v1/namespaces/default/replicasets/fe")
    assert body["status"] == "Success" and body["details"] == {"name": "fe", "group": "apps", "kind": "replicasets",
                                                               "uid": rs["metadata"]["uid"]}
    code, body, _ = await api.call("DELETE", "/api/v1/nodes/n1")
    assert code == 404 and body["message"] == 'nodes "n1" not found'


async def test_token_required_even_for_table_reads(api):
    code, body, _ = await api.call("GET", PODS, token="nope",
                                   headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert code == 401 and body["reason"] == "Unauthorized"
    code, body, _ = await api.call("GET", PODS, token=ADMIN,
                                   headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert code == 200 and body["kind"] == "Table"


async def test_body_arriving_in_pieces_is_read_whole(api):
    """kubectl's PUT of a whole pod over TLS arrives in several records; the server must read to the end
    (StreamReader.read(n) returns only what has arrived), not answer "json parse error: truncated"."""
    import asyncio
    import json as _json

    p = pod("pieces")
    p["metadata"]["annotations"] = {"note": "v" * 8000}
    body = _json.dumps(p).encode()

    async def pieces():
        for i in range(0, len(body), 512):
            yield body[i:i + 512]
            await asyncio.sleep(0.01)

    resp = await api.client.post(PODS, data=pieces(), headers={"Authorization": f"Bearer {ADMIN}",
                                                               "Content-Type": "application/json"})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["metadata"]["annotations"]["note"] == "v" * 8000
