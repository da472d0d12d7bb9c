"""The Kubernetes REST API of one master: what clients send and what they get back."""

import asyncio
import json

from hacluster.store.local import LocalStore
from tests.api.conftest import ADMIN, NODE1, VIEWER, make_config, pod, serving

PODS = "/api/v1/namespaces/default/pods"


def store_size(api):
    return api.store.state.revision, len(api.store.state.objects["pods"])


async def test_discovery(api):
    code, body, _ = await api.call("GET", "/version", token=None)
    assert code == 200 and body["major"] == "1" and body["gitVersion"].startswith("v1.30")
    code, body, _ = await api.call("GET", "/api")
    assert body["kind"] == "APIVersions" and body["versions"] == ["v1"]
    code, body, _ = await api.call("GET", "/api/v1")
    names = {r["name"] for r in body["resources"]}
    assert {"pods", "pods/status", "pods/binding", "nodes", "nodes/status", "events", "namespaces"} <= names
    pods = next(r for r in body["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["namespaced"] and "watch" in pods["verbs"]
    code, body, _ = await api.call("GET", "/apis")
    assert body["kind"] == "APIGroupList" and {g["name"] for g in body["groups"]} >= {"apps", "coordination.k8s.io"}
    code, body, _ = await api.call("GET", "/apis/apps/v1")
    top = [r["name"] for r in body["resources"] if "/" not in r["name"]]
    assert top == ["deployments", "replicasets"]  # Kubernetes' order, which `kubectl get all` follows
    code, text, _ = await api.call("GET", "/healthz", token=None)
    assert code == 200 and text == "ok"
    code, text, _ = await api.call("GET", "/readyz", token=None)
    assert code == 200
    code, _, resp = await api.call("GET", "/openapi/v2",
                                   headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert code == 200


async def test_create_get_list(api):
    code, body, _ = await api.call("POST", PODS, pod("web", nodeSelector={"disk": "ssd"}))
    assert code == 201
    meta = body["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["resourceVersion"] == str(api.store.state.revision)
    assert body["status"]["phase"] == "Pending" and body["spec"]["schedulerName"] == "default-scheduler"
    code, got, _ = await api.call("GET", f"{PODS}/web")
    assert code == 200 and got == body
    code, lst, _ = await api.call("GET", PODS)
    assert lst["kind"] == "PodList" and lst["apiVersion"] == "v1" and [p["metadata"]["name"] for p in lst["items"]] == ["web"]
    assert lst["metadata"]["resourceVersion"] == str(api.store.state.revision)
    code, everything, _ = await api.call("GET", "/api/v1/pods")
    assert len(everything["items"]) == 1
    code, local, _ = await api.call("GET", f"{PODS}/web?resourceVersion=0")
    assert code == 200


async def test_generate_name(api):
    p = pod("")
    p["metadata"] = {"generateName": "web-"}
    code, body, _ = await api.call("POST", PODS, p)
    assert code == 201 and body["metadata"]["name"].startswith("web-") and len(body["metadata"]["name"]) == 9


async def test_errors_are_statuses_and_store_unchanged(api):
    await api.call("POST", PODS, pod("exists"))
    before = store_size(api)
    cases = [
        ("POST", PODS, {"raw": b"{not json"}, 400, "BadRequest"),
        ("POST", PODS, {"body": pod("x", containers="nginx")}, 400, "BadRequest"),
        ("POST", PODS, {"body": {**pod("x"), "kind": "Service"}}, 400, "BadRequest"),
        ("POST", PODS, {"body": {**pod("x"), "kind": "Node"}}, 400, "BadRequest"),
        ("POST", PODS, {"body": {**pod("x"), "apiVersion": "apps/v1"}}, 400, "BadRequest"),
        ("POST", PODS, {"body": pod("Bad_Name")}, 422, "Invalid"),
        ("POST", PODS, {"body": {"kind": "Pod", "metadata": {"name": "img"}, "spec": {"image": "nginx"}}}, 422, "Invalid"),
        ("POST", PODS, {"body": pod("exists")}, 409, "AlreadyExists"),
        ("POST", "/api/v1/namespaces/nope/pods", {"body": pod("x")}, 404, "NotFound"),
        ("POST", PODS, {"raw": json.dumps(pod("big", x="y" * 70000)).encode()}, 413, "RequestEntityTooLarge"),
        ("GET", f"{PODS}/missing", {}, 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/widgets", {}, 404, "NotFound"),
        ("GET", f"{PODS}?labelSelector=app%20in%20", {}, 400, "BadRequest"),
        ("GET", f"{PODS}?fieldSelector=spec.color%3Dred", {}, 400, "BadRequest"),
        ("PUT", f"{PODS}/exists", {"body": {**pod("exists"), "metadata": {"name": "exists", "resourceVersion": "1"}}},
         409, "Conflict"),
        ("PUT", f"{PODS}/exists", {"body": pod("other")}, 400, "BadRequest"),
        ("PATCH", f"{PODS}/exists", {"raw": b"{}", "headers": {"Content-Type": "text/plain"}}, 415,
         "UnsupportedMediaType"),
    ]
    for method, path, kw, code, reason in cases:
        got, body, _ = await api.call(method, path, **kw)
        assert (got, body.get("reason"), body.get("kind")) == (code, reason, "Status"), (method, path, body)
        assert body["code"] == code and body["status"] == "Failure" and body["message"]
        assert store_size(api) == before, f"{method} {path} changed the store"


async def test_invalid_pod_message_and_causes(api):
    code, body, _ = await api.call("POST", PODS, {"kind": "Pod", "metadata": {"name": "bad"}, "spec": {}})
    assert code == 422
    assert body["message"] == 'Pod "bad" is invalid: spec.containers: Required value'
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value",
                                          "field": "spec.containers"}]
    assert body["details"]["name"] == "bad" and body["details"]["kind"] == "Pod"


async def test_wrong_type_message(api):
    code, body, _ = await api.call("POST", PODS, pod("x", containers="nginx"))
    assert body["message"] == ('Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into '
                               'Go struct field PodSpec.spec.containers of type []v1.Container')


async def test_unknown_fields_warn_or_fail_strictly(api):
    p = pod("w")
    p["spec"]["colour"] = "blue"
    code, body, resp = await api.call("POST", PODS, p)
    assert code == 201 and "colour" not in body["spec"]
    assert 'unknown field \\"spec.colour\\"' in resp.headers["Warning"]
    code, body, _ = await api.call("POST", f"{PODS}?fieldValidation=Strict", {**p, "metadata": {"name": "w2"}})
    assert code == 400 and 'strict decoding error: unknown field "spec.colour"' in body["message"]
    code, body, resp = await api.call("POST", f"{PODS}?fieldValidation=Ignore", {**p, "metadata": {"name": "w3"}})
    assert code == 201 and "colour" not in body["spec"] and "Warning" not in resp.headers
    # A field name is client text: quotes are escaped and control characters blanked, never breaking the header.
    p["spec"] = {**p["spec"], 'a"b\r\nX-Injected: 1': 1, "é": 2}
    code, body, resp = await api.call("POST", PODS, {**p, "metadata": {"name": "w4"}})
    assert code == 201 and "X-Injected" not in resp.headers
    assert resp.headers.getall("Warning")[-2:] == [r'299 - "unknown field \"spec.a\"b  X-Injected: 1\""',
                                                   r'299 - "unknown field \"spec.é\""']


async def test_yaml_bodies_are_read_as_kubernetes_reads_them(api):
    manifest = (b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\n  annotations: {built: 2024-01-01, 1: one}\n"
                b"spec:\n  containers: [{name: c, image: nginx}]\n")
    code, body, _ = await api.call("POST", PODS, raw=manifest, headers={"Content-Type": "application/yaml"})
    assert code == 201 and body["metadata"]["annotations"] == {"built": "2024-01-01", "1": "one"}
    before = store_size(api)
    code, body, _ = await api.call("POST", PODS, raw=manifest.replace(b"name: y", b"name: y2").replace(
        b"image: nginx}", b"image: nginx, x: .inf}"), headers={"Content-Type": "application/yaml"})
    assert code == 400 and body["reason"] == "BadRequest" and "inf has no JSON form" in body["message"]
    assert store_size(api) == before


async def test_authentication_and_authorization(api):
    code, body, _ = await api.call("GET", PODS, token=None)
    assert (code, body["reason"]) == (401, "Unauthorized")
    code, body, _ = await api.call("GET", PODS, token="wrong-token-xx")
    assert code == 401
    code, body, _ = await api.call("GET", PODS, token=VIEWER)
    assert code == 200
    before = store_size(api)
    code, body, _ = await api.call("POST", PODS, pod("v"), token=VIEWER)
    assert code == 403 and body["message"] == ('pods is forbidden: User "viewer" cannot create resource "pods" in '
                                               'API group "" in the namespace "default"')
    assert store_size(api) == before


async def test_node_restriction(api):
    node = {"kind": "Node", "metadata": {"name": "node-1"}}
    assert (await api.call("POST", "/api/v1/nodes", node, token=NODE1))[0] == 201
    code, body, _ = await api.call("POST", "/api/v1/nodes", {"kind": "Node", "metadata": {"name": "node-2"}},
                                   token=NODE1)
    assert code == 403
    await api.call("POST", PODS, pod("mine", nodeName="node-1"))
    await api.call("POST", PODS, pod("theirs", nodeName="node-2"))
    status = {"status": {"phase": "Running"}}
    code, _, _ = await api.call("PATCH", f"{PODS}/mine/status", status, token=NODE1,
                                headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200
    code, body, _ = await api.call("PATCH", f"{PODS}/theirs/status", status, token=NODE1,
                                   headers={"Content-Type": "application/merge-patch+json"})
    assert code == 403 and "can only update pod status for pods with spec.nodeName set to itself" in body["message"]
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"},
             "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}
    assert (await api.call("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease,
                           token=NODE1))[0] == 201
    other = {**lease, "metadata": {"name": "node-2"}}
    assert (await api.call("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", other,
                           token=NODE1))[0] == 403
    assert (await api.call("POST", PODS, pod("sneaky"), token=NODE1))[0] == 403


async def test_patch_types(api):
    await api.call("POST", PODS, pod("p"))
    code, body, _ = await api.call("PATCH", f"{PODS}/p", {"metadata": {"labels": {"a": "1"}}},
                                   headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200 and body["metadata"]["labels"] == {"a": "1"}
    code, body, _ = await api.call("PATCH", f"{PODS}/p", {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}},
                                   headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 200 and body["spec"]["containers"][0]["image"] == "nginx:2"
    assert body["spec"]["containers"][0]["imagePullPolicy"] == "Always", "merged by name, other fields kept"
    code, body, _ = await api.call("PATCH", f"{PODS}/p", [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
                                   headers={"Content-Type": "application/json-patch+json"})
    assert code == 200 and body["metadata"]["labels"] == {"a": "1", "b": "2"}
    code, body, _ = await api.call("PATCH", f"{PODS}/p", {"spec": {"restartPolicy": "Never"}},
                                   headers={"Content-Type": "application/merge-patch+json"})
    assert code == 422 and "pod updates may not change fields" in body["message"]
    code, body, _ = await api.call("PATCH", f"{PODS}/nope", {}, headers={"Content-Type": "application/merge-patch+json"})
    assert code == 404


async def test_delete_semantics(api):
    await api.call("POST", PODS, pod("loose"))
    code, body, _ = await api.call("DELETE", f"{PODS}/loose")
    assert code == 200
    assert (await api.call("GET", f"{PODS}/loose"))[0] == 404, "unscheduled: removed at once"
    await api.call("POST", PODS, pod("bound", nodeName="n1"))
    code, body, _ = await api.call("DELETE", f"{PODS}/bound", {"propagationPolicy": "Background"})
    assert code == 200 and body["metadata"]["deletionTimestamp"] and body["metadata"]["deletionGracePeriodSeconds"] == 30
    assert (await api.call("GET", f"{PODS}/bound"))[0] == 200, "bound: terminating until the kubelet confirms"
    await api.call("DELETE", f"{PODS}/bound?gracePeriodSeconds=0")
    assert (await api.call("GET", f"{PODS}/bound"))[0] == 404
    assert (await api.call("DELETE", f"{PODS}/bound"))[0] == 404


async def test_binding_subresource(api):
    await api.call("POST", PODS, pod("b"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    code, body, _ = await api.call("POST", f"{PODS}/b/binding", binding)
    assert code == 201 and body["status"] == "Success"
    code, body, _ = await api.call("POST", f"{PODS}/b/binding", {**binding, "target": {"kind": "Node", "name": "n2"}})
    assert code == 409 and 'already assigned to node "n1"' in body["message"]


async def test_selectors_and_pagination(api):
    for i in range(7):
        p = pod(f"p{i}", nodeName="n1" if i % 2 else "n2")
        p["metadata"]["labels"] = {"app": "a" if i < 4 else "b"}
        await api.call("POST", PODS, p)
    code, body, _ = await api.call("GET", f"{PODS}?labelSelector=app%3Da")
    assert [p["metadata"]["name"] for p in body["items"]] == ["p0", "p1", "p2", "p3"]
    code, body, _ = await api.call("GET", f"{PODS}?fieldSelector=spec.nodeName%3Dn1&labelSelector=app!%3Da")
    assert [p["metadata"]["name"] for p in body["items"]] == ["p5"]
    names, token, rv = [], "", None
    while True:
        url = f"{PODS}?limit=3" + (f"&continue={token}" if token else "")
        code, body, _ = await api.call("GET", url)
        names += [p["metadata"]["name"] for p in body["items"]]
        rv = rv or body["metadata"]["resourceVersion"]
        assert body["metadata"]["resourceVersion"] == rv
        token = body["metadata"].get("continue")
        if not token:
            break
    assert names == [f"p{i}" for i in range(7)]


async def test_tables_for_kubectl(api):
    await api.call("POST", PODS, pod("t"))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    code, body, _ = await api.call("GET", PODS, headers={"Accept": accept})
    assert body["kind"] == "Table" and body["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in body["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert body["rows"][0]["cells"][:4] == ["t", "0/1", "Pending", "0"]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def read_watch(resp, n, timeout=5):
    out = []
    async def go():
        while len(out) < n:
            line = await resp.content.readline()
            if not line:
                break
            out.append(json.loads(line))
    await asyncio.wait_for(go(), timeout)
    return out


async def test_watch_from_now_and_from_revision(api):
    await api.call("POST", PODS, pod("w0"))
    rv = api.store.state.revision
    resp = await api.client.get(f"{PODS}?watch=true&timeoutSeconds=5",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status == 200
    first = await read_watch(resp, 1)
    assert first[0]["type"] == "ADDED" and first[0]["object"]["metadata"]["name"] == "w0"
    await api.call("POST", PODS, pod("w1"))
    await api.call("PATCH", f"{PODS}/w1", {"metadata": {"labels": {"x": "y"}}},
                   headers={"Content-Type": "application/merge-patch+json"})
    await api.call("DELETE", f"{PODS}/w1")
    evs = await read_watch(resp, 3)
    assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and rvs[0] > rv
    resp.close()
    resp = await api.client.get(f"{PODS}?watch=true&resourceVersion={rv}&timeoutSeconds=5",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    replay = await read_watch(resp, 3)
    assert [e["type"] for e in replay] == ["ADDED", "MODIFIED", "DELETED"]
    resp.close()


async def test_watch_selector_transitions(api):
    await api.call("POST", PODS, pod("s"))
    rv = api.store.state.revision
    resp = await api.client.get(f"{PODS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dx&timeoutSeconds=5",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    patch = {"Content-Type": "application/merge-patch+json"}
    await api.call("PATCH", f"{PODS}/s", {"metadata": {"labels": {"app": "x"}}}, headers=patch)
    await api.call("PATCH", f"{PODS}/s", {"metadata": {"labels": {"app": "y"}}}, headers=patch)
    evs = await read_watch(resp, 2)
    assert [e["type"] for e in evs] == ["ADDED", "DELETED"], "entering the selection is ADDED, leaving it DELETED"
    resp.close()


async def test_watch_too_old_is_410(api):
    api.store.state.history_floor = 5
    resp = await api.client.get(f"{PODS}?watch=true&resourceVersion=1&timeoutSeconds=5",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    evs = await read_watch(resp, 1)
    assert evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410 and evs[0]["object"]["reason"] == "Expired"


async def test_watch_timeout_closes_stream(api):
    resp = await api.client.get(f"{PODS}?watch=true&timeoutSeconds=1", headers={"Authorization": f"Bearer {ADMIN}"})
    body = await asyncio.wait_for(resp.read(), 5)
    assert body == b""


async def test_no_quorum_is_503_and_nothing_stored(api):
    api.store.set_available(False)
    before = store_size(api)
    code, body, resp = await api.call("POST", PODS, pod("q"))
    assert code == 503 and body["reason"] == "ServiceUnavailable" and resp.headers["Retry-After"] == "1"
    code, body, _ = await api.call("GET", PODS)
    assert code == 503, "a default read is linearizable and needs the quorum"
    code, body, _ = await api.call("GET", f"{PODS}?resourceVersion=0")
    assert code == 200, "resourceVersion=0 allows a possibly stale local read"
    assert store_size(api) == before


async def test_events_and_leases(api):
    ev = {"kind": "Event", "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
          "reason": "Scheduled", "message": "hi", "type": "Normal"}
    assert (await api.call("POST", "/api/v1/namespaces/default/events", ev))[0] == 201
    code, body, _ = await api.call("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp")
    assert [e["metadata"]["name"] for e in body["items"]] == ["e1"]
    lease = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": {"name": "n1"},
             "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2026-01-01T00:00:00.000000Z"}}
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    code, body, _ = await api.call("POST", path, lease)
    assert code == 201
    body["spec"]["renewTime"] = "2026-01-01T00:00:10.000000Z"
    code, body, _ = await api.call("PUT", f"{path}/n1", body)
    assert code == 200 and body["spec"]["renewTime"].startswith("2026-01-01T00:00:10")


async def test_metrics_and_debug(api):
    await api.call("GET", PODS)
    code, text, _ = await api.call("GET", "/metrics")
    assert code == 200 and 'apiserver_request_total{code="200",resource="pods",verb="list"}' in text
    code, body, _ = await api.call("GET", "/debug/raft")
    assert body["role"] == "leader" and body["term"] == 1 and "fingerprint" in body
    assert body["journal"] is None, "an unreplicated store keeps no journal"


async def test_storage_faults_need_the_admin_and_write_back_storage(api):
    from tests.api.conftest import VIEWER

    code, body, _ = await api.call("POST", "/debug/storage/fault", {"operation": "fsync", "errno": "EIO"},
                                   token=VIEWER)
    assert code == 403 and body["kind"] == "Status", body
    code, body, _ = await api.call("POST", "/debug/storage/fault", {"operation": "fsync", "errno": "EIO"})
    assert code == 404 and "write-back test storage" in body["message"], body
    code, _, _ = await api.call("GET", "/metrics")
    assert code == 200


async def test_scale_changes_stored_objects_only_through_the_log(api):
    """Issue 13, finding 1: the scale path copied `spec` shallowly and defaulting then changed the stored
    `spec.template.spec` in place — this master's state changed without any command. A dry run proposes
    nothing, so the stored object must come out of it exactly as it went in."""
    import copy

    from hacluster.model import commands as C

    bare = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "namespace": "default", "uid": "uid-rs", "creationTimestamp": "x"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"replicas": 0}}
    assert (await api.store.propose(C.Create(resource="replicasets", namespace="default", obj=bare))).ok
    before = copy.deepcopy(api.store.state.get("replicasets", "default", "rs"))
    proposals = len(api.store.proposals)
    path = "/apis/apps/v1/namespaces/default/replicasets/rs/scale"
    code, body, _ = await api.call("PUT", path + "?dryRun=All", {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                                                  "metadata": {"name": "rs"}, "spec": {"replicas": 3}})
    assert code == 200 and body["spec"]["replicas"] == 3, body
    code, body, _ = await api.call("PATCH", path + "?dryRun=All", {"spec": {"replicas": 4}},
                                   headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200 and body["spec"]["replicas"] == 4, body
    assert len(api.store.proposals) == proposals, "a dry run proposes nothing"
    assert api.store.state.get("replicasets", "default", "rs") == before, "stored object changed outside the log"
    code, body, _ = await api.call("PUT", path, {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                                 "metadata": {"name": "rs"}, "spec": {"replicas": 2}})
    assert code == 200 and body["spec"]["replicas"] == 2, body
    assert api.store.state.fingerprint() == api.store.state.recomputed_fingerprint()


async def test_watch_from_a_future_revision_waits_for_it_and_never_replays(api):
    """Issue 13, finding 5: a watch resumed at a resourceVersion ahead of this master (a follower behind the
    one the client saw last) started from the local revision and delivered events the client had already
    seen. As kube-apiserver's watch cache does, the watch waits (bounded) for the revision and then delivers
    only what follows it."""
    await api.call("POST", PODS, pod("f0"))
    future = api.store.state.revision + 2
    # The answer's headers wait for the revision too: the writes go in while the request is pending.
    watch = asyncio.ensure_future(api.client.get(f"{PODS}?watch=true&resourceVersion={future}&timeoutSeconds=5",
                                                 headers={"Authorization": f"Bearer {ADMIN}"}))
    await asyncio.sleep(0.05)
    for i in range(1, 5):
        await api.call("POST", PODS, pod(f"f{i}"))
    resp = await asyncio.wait_for(watch, 5)
    evs = await read_watch(resp, 2)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert [e["type"] for e in evs] == ["ADDED", "ADDED"] and rvs == [future + 1, future + 2], evs
    resp.close()


async def test_watch_from_a_revision_that_never_comes_is_too_large():
    """...and when the revision does not arrive in time, answers as Kubernetes' NewTooLargeResourceVersionError:
    a 504 Timeout Status, cause ResourceVersionTooLarge, retryAfterSeconds 1, and no event."""
    config = make_config(max_body_bytes=64 * 1024, watch_future_revision_wait_s=0.2)
    async with serving(config, LocalStore()) as api:
        current = api.store.state.revision
        watch = asyncio.ensure_future(api.client.get(
            f"{PODS}?watch=true&resourceVersion={current + 50}&timeoutSeconds=5",
            headers={"Authorization": f"Bearer {ADMIN}"}))
        await asyncio.sleep(0.05)
        await api.call("POST", PODS, pod("late"))
        resp = await asyncio.wait_for(watch, 5)
        evs = await read_watch(resp, 2)
        assert len(evs) == 1 and evs[0]["type"] == "ERROR", evs
        status = evs[0]["object"]
        assert (status["code"], status["reason"]) == (504, "Timeout")
        assert status["message"] == f"Timeout: Too large resource version: {current + 50}, current: {current + 1}"
        assert status["details"]["retryAfterSeconds"] == 1
        assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
        assert status["details"]["causes"][0]["message"] == "Too large resource version"
