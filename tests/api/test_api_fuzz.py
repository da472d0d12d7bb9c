"""Bad input never crashes the API server: Hypothesis bends valid objects into wrong shapes and types and sends
them through every write path. Each answer is either a success or a Kubernetes `Status` with the same code and
a reason, never a 500, and a rejected request stores nothing."""

import copy
import json
import os
import urllib.parse
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import NODE1, pod

PODS = "/api/v1/namespaces/default/pods"
NODES = "/api/v1/nodes"

# 150 fixed examples per test in CI; `FUZZ_N=3000 scripts/test tests/api/test_api_fuzz.py` searches further
# with fresh random examples.
FUZZ_EXAMPLES = os.environ.get("FUZZ_N")
FUZZ = settings(max_examples=int(FUZZ_EXAMPLES or 150), deadline=None, derandomize=FUZZ_EXAMPLES is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False)
    | st.sampled_from(["", "0", "-1", "1Gi", "250m", "1e400", "Always", "a b", "x" * 300, "é", "\x00"])
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def rich_pod(name: str) -> dict[str, Any]:
    """A valid pod that uses most of the fields the validator and the scheduler read."""
    p = pod(name, restartPolicy="OnFailure", priority=5, nodeSelector={"disk": "ssd"},
            tolerations=[{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute",
                          "tolerationSeconds": 30}],
            affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
            terminationGracePeriodSeconds=10)
    p["metadata"].update(labels={"app": "web"}, annotations={"note": "x"},
                         ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                           "uid": "u-1", "controller": True}])
    p["spec"]["containers"][0].update(
        command=["sh", "-c", "true"], env=[{"name": "A", "value": "1"}],
        ports=[{"containerPort": 80, "protocol": "TCP"}],
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})
    return p


def rich_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"zone": "a"}},
            "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}], "unschedulable": False},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON document, the root included."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def bent(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """The template with one to three places replaced by any JSON value (or a key added beside them)."""
    doc: Any = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(doc)))
        value = draw(json_values)
        if not where:
            doc = value
            continue
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.text(max_size=8))] = value
        else:
            parent[where[-1]] = value
    return doc


def revision(api) -> int:
    return api.store.state.revision


async def ensure_target_pod(api) -> dict[str, Any]:
    """The valid pod the bent requests aim at (created by the first example, reused by the others)."""
    code, current, _ = await api.call("GET", f"{PODS}/target")
    if code == 404:
        code, current, _ = await api.call("POST", PODS, rich_pod("target"))
    assert code in (200, 201), current
    return current


async def send(api, method: str, path: str, body: Any, *, content_type: str = "application/json",
               token: str | None = None):
    before = revision(api)
    kw = {"token": token} if token else {}
    code, answer, _ = await api.call(method, path, raw=json.dumps(body).encode(),
                                     headers={"Content-Type": content_type}, **kw)
    assert code < 500, f"{method} {path} answered {code}: {answer}"
    if code >= 400:
        assert isinstance(answer, dict) and answer.get("kind") == "Status", answer
        assert answer["status"] == "Failure" and answer["code"] == code and answer["reason"], answer
        assert revision(api) == before, f"{method} {path} was refused with {code} but changed the store"
    return code, answer


@FUZZ
@given(body=bent(rich_pod("fuzz")))
async def test_pod_create_and_replace(api, body):
    code, _ = await send(api, "POST", PODS, body)
    if code == 201:
        await api.call("DELETE", f"{PODS}/fuzz?gracePeriodSeconds=0")
    current = await ensure_target_pod(api)
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        body["metadata"].setdefault("resourceVersion", current["metadata"]["resourceVersion"])
    await send(api, "PUT", f"{PODS}/target", body)
    await send(api, "PUT", f"{PODS}/target/status", body)


@FUZZ
@given(patch=bent({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}],
                                                                 "activeDeadlineSeconds": 5}}),
       kind=st.sampled_from(["application/merge-patch+json", "application/strategic-merge-patch+json"]))
async def test_pod_merge_patches(api, patch, kind):
    await ensure_target_pod(api)
    await send(api, "PATCH", f"{PODS}/target", patch, content_type=kind)
    await send(api, "PATCH", f"{PODS}/target/status", patch, content_type=kind)


json_patch_op = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]) | json_values,
     "path": st.sampled_from(["/metadata/labels/x", "/spec/containers/0/image", "/spec/containers/-",
                              "/metadata/name", "/spec", "", "/", "/spec/containers/9", "~", "/a~2b"])
     | json_values},
    optional={"value": json_values, "from": st.sampled_from(["/metadata/labels", "/nope"]) | json_values})


@FUZZ
@given(ops=st.lists(json_patch_op, max_size=4) | json_values)
async def test_pod_json_patches(api, ops):
    await ensure_target_pod(api)
    await send(api, "PATCH", f"{PODS}/target", ops, content_type="application/json-patch+json")


@FUZZ
@given(body=bent(rich_node("node-1")))
async def test_node_writes(api, body):
    await send(api, "POST", NODES, body)
    code, node, _ = await api.call("GET", f"{NODES}/node-1")
    if code == 404:
        code, node, _ = await api.call("POST", NODES, rich_node("node-1"))
    assert code in (200, 201), node
    await send(api, "PUT", f"{NODES}/node-1/status", body, token=NODE1)
    await send(api, "PATCH", f"{NODES}/node-1", body, content_type="application/strategic-merge-patch+json")


@FUZZ
@given(body=bent({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "target"},
                  "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}))
async def test_bindings(api, body):
    await ensure_target_pod(api)
    await send(api, "POST", f"{PODS}/target/binding", body)


query_values = st.sampled_from(["", "0", "-1", "abc", "1e9", "99999999999999999999", "a=b", "a in (", "!",
                                "spec.nodeName=", "metadata.name!=x,status.phase=Running", "%zz"]) | st.text(max_size=10)


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["labelSelector", "fieldSelector", "limit", "continue",
                                              "resourceVersion", "resourceVersionMatch", "timeoutSeconds",
                                              "gracePeriodSeconds", "propagationPolicy", "dryRun", "pretty"]),
                             query_values, max_size=4))
async def test_list_and_delete_queries(api, query):
    before = revision(api)
    code, answer, _ = await api.call("GET", PODS, params=query)
    assert code < 500 and (code < 400 or answer.get("kind") == "Status"), (query, code, answer)
    assert revision(api) == before
    await ensure_target_pod(api)
    await send(api, "DELETE", f"{PODS}/target?" + urllib.parse.urlencode(query), None)


OTHER_KINDS = {
    "/apis/apps/v1/namespaces/default/replicasets": {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"},
                                             "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
                 "template": {"metadata": {"labels": {"app": "web", "a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}},
    "/api/v1/namespaces/default/events": {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"}, "reason": "Test", "message": "m",
        "type": "Normal", "count": 1, "involvedObject": {"kind": "Pod", "namespace": "default", "name": "target"},
        "source": {"component": "fuzz"}},
    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases": {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}},
    "/api/v1/namespaces": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}},
    "/apis/apps/v1/namespaces/default/deployments": {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dep"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "dep"}}, "minReadySeconds": 1,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "dep"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx", "readinessProbe": {
                                  "httpGet": {"port": 80, "path": "/"}, "periodSeconds": 2}}]}}}},
    "/apis/batch/v1/namespaces/default/jobs": {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job"},
        "spec": {"completions": 2, "parallelism": 1, "backoffLimit": 1,
                 "template": {"spec": {"restartPolicy": "Never", "containers": [
                     {"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 0"],
                      "livenessProbe": {"exec": {"command": ["true"]}}}]}}}},
}


@FUZZ
@given(data=st.data(), collection=st.sampled_from(sorted(OTHER_KINDS)))
async def test_other_kinds_create_and_patch(api, data, collection):
    template = OTHER_KINDS[collection]
    name = template["metadata"]["name"]
    code, _, _ = await api.call("GET", f"{collection}/{name}")
    if code == 404:
        code, created, _ = await api.call("POST", collection, template)
        assert code == 201, created
    body = data.draw(bent(template))
    await send(api, "POST", collection, body)
    await send(api, "PUT", f"{collection}/{name}", body)
    await send(api, "PATCH", f"{collection}/{name}", body, content_type="application/merge-patch+json")


@FUZZ
@given(options=bent({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                     "propagationPolicy": "Background", "preconditions": {"uid": "u", "resourceVersion": "1"},
                     "dryRun": ["All"]}),
       eviction=bent({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "target"},
                      "deleteOptions": {"gracePeriodSeconds": 0}}))
async def test_delete_options_and_evictions(api, options, eviction):
    await ensure_target_pod(api)
    await send(api, "POST", f"{PODS}/target/eviction", eviction)
    await ensure_target_pod(api)
    await send(api, "DELETE", f"{PODS}/target", options)


@FUZZ
@given(scale=bent({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "rs"},
                   "spec": {"replicas": 3}}))
async def test_scale(api, scale):
    rs = "/apis/apps/v1/namespaces/default/replicasets"
    code, _, _ = await api.call("GET", f"{rs}/rs")
    if code == 404:
        code, created, _ = await api.call("POST", rs, OTHER_KINDS[rs])
        assert code == 201, created
    await send(api, "PUT", f"{rs}/rs/scale", scale)
    await send(api, "PATCH", f"{rs}/rs/scale", scale, content_type="application/merge-patch+json")


# ----------------------------------------------------------------------------------------------- raw bodies
# What a JSON or YAML parser can be made to do, not only what the schema allows: nesting, numbers beyond any
# Go type, NaN/Infinity literals, huge strings, duplicate keys, invalid UTF-8 and unpaired surrogates,
# truncation, stray bytes. Every write path gets them; each answer is a success or a 4xx Status.
HOSTILE_LITERALS = [
    b"1e400", b"-1e999", b"1.5e-400", b"9" * 40, b"-" + b"9" * 400, b"NaN", b"Infinity", b"-Infinity", b"-0",
    b"0x10", b"01", b"tru", b'"\\ud800"', b'"\\udfff\\ud800"', b'"\xff\xfe"', b'"\xc3"', b'"\\u0000"',
    b'"' + b"x" * 70_000 + b'"', b"[" * 300 + b"]" * 300, b'{"a":' * 200 + b"1" + b"}" * 200,
    b"[" * 20_000 + b"]" * 20_000, b'"' + "é".encode() * 1000 + b'"', b"[]", b"{}", b"null",
]
SENTINEL = "__hostile__"


@st.composite
def hostile_body(draw: st.DrawFn, template: Any) -> bytes:
    how = draw(st.sampled_from(["literal", "duplicate", "truncate", "insert", "binary", "yaml"]))
    if how == "binary":
        return draw(st.binary(max_size=200))
    doc: Any = copy.deepcopy(template)
    where = draw(st.sampled_from(paths(doc)))
    if how in ("literal", "duplicate"):
        if not where:
            doc = SENTINEL
        else:
            parent = doc
            for step in where[:-1]:
                parent = parent[step]
            if how == "duplicate" and isinstance(parent, dict):
                parent[SENTINEL] = draw(json_values)
                raw = json.dumps(doc).encode()
                return raw.replace(json.dumps(SENTINEL).encode(), json.dumps(where[-1]).encode(), 1)
            parent[where[-1]] = SENTINEL
        return json.dumps(doc).encode().replace(json.dumps(SENTINEL).encode(), draw(st.sampled_from(HOSTILE_LITERALS)))
    raw = json.dumps(doc).encode()
    if how == "truncate":
        return raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    return draw(st.sampled_from([  # yaml: anchors, aliases, tags and nesting
        b"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e]\n",
        b"metadata: " + b"[" * 3000 + b"]" * 3000, b"metadata: !!binary aGVsbG8=", b"metadata: !!python/object {}",
        b"metadata: {name: .inf}", b"? [a, b]\n: c", b"metadata:\n  name: a\n  name: b\n", b"\t- x",
        b"metadata: {name: \xff}", b"{{{{", b"metadata: 2024-01-01T00:00:00Z"]))


async def send_raw(api, method: str, path: str, raw: bytes, content_type: str, token: str | None = None):
    before = revision(api)
    kw = {"token": token} if token else {}
    code, answer, _ = await api.call(method, path, raw=raw, headers={"Content-Type": content_type}, **kw)
    assert code < 500, f"{method} {path} answered {code} for {raw[:200]!r}: {answer}"
    if code >= 400:
        assert isinstance(answer, dict) and answer.get("kind") == "Status", answer
        assert answer["status"] == "Failure" and answer["code"] == code and answer["reason"], answer
        assert revision(api) == before, f"{method} {path} was refused with {code} but changed the store"
    return code


RS = "/apis/apps/v1/namespaces/default/replicasets"
WRITE_PATHS = [  # (method, path, template, content type unless yaml); every write route of the API
    ("POST", PODS, "pod", "application/json"),
    ("PUT", f"{PODS}/target", "pod", "application/json"),
    ("PUT", f"{PODS}/target/status", "pod", "application/json"),
    ("PATCH", f"{PODS}/target", "pod", "application/merge-patch+json"),
    ("PATCH", f"{PODS}/target", "pod", "application/strategic-merge-patch+json"),
    ("PATCH", f"{PODS}/target", "jsonpatch", "application/json-patch+json"),
    ("PATCH", f"{PODS}/target/status", "pod", "application/merge-patch+json"),
    ("POST", f"{PODS}/target/binding", "binding", "application/json"),
    ("POST", f"{PODS}/target/eviction", "eviction", "application/json"),
    ("DELETE", f"{PODS}/target", "deleteoptions", "application/json"),
    ("POST", NODES, "node", "application/json"),
    ("PUT", f"{NODES}/node-1", "node", "application/json"),
    ("PUT", f"{NODES}/node-1/status", "node", "application/json"),
    ("PATCH", f"{NODES}/node-1", "node", "application/strategic-merge-patch+json"),
    ("PUT", f"{RS}/rs/scale", "scale", "application/json"),
    ("PATCH", f"{RS}/rs/scale", "scale", "application/merge-patch+json"),
] + [(m, p, c, "application/json") for c in sorted(OTHER_KINDS) for m, p in
     (("POST", c), ("PUT", f"{c}/{OTHER_KINDS[c]['metadata']['name']}"))] + [
    ("PATCH", f"{c}/{OTHER_KINDS[c]['metadata']['name']}", c, "application/merge-patch+json")
    for c in sorted(OTHER_KINDS)]
TEMPLATES: dict[str, Any] = {
    "pod": rich_pod("target"), "node": rich_node("node-1"),
    "jsonpatch": [{"op": "replace", "path": "/metadata/labels", "value": {"a": "b"}}],
    "binding": {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "target"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}},
    "eviction": {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "target"},
                 "deleteOptions": {"gracePeriodSeconds": 0}},
    "deleteoptions": {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                      "preconditions": {"uid": "u"}},
    "scale": {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "rs"}, "spec": {"replicas": 3}},
    **OTHER_KINDS,
}


async def ensure_targets(api) -> None:
    await ensure_target_pod(api)
    for path, body in ((f"{NODES}/node-1", rich_node("node-1")), (f"{RS}/rs", OTHER_KINDS[RS]),
                       *((f"{c}/{t['metadata']['name']}", t) for c, t in OTHER_KINDS.items())):
        code, _, _ = await api.call("GET", path)
        if code == 404:
            code, created, _ = await api.call("POST", path.rsplit("/", 1)[0], body)
            assert code == 201, created


@FUZZ
@given(data=st.data(), route=st.sampled_from(WRITE_PATHS), yaml_body=st.booleans())
async def test_raw_bodies_on_every_write_path(api, data, route, yaml_body):
    method, path, template, content_type = route
    await ensure_targets(api)
    raw = data.draw(hostile_body(TEMPLATES[template]))
    if yaml_body and content_type == "application/json":
        content_type = "application/yaml"
    token = NODE1 if path.endswith("node-1/status") else None
    await send_raw(api, method, path, raw, content_type, token=token)


@FUZZ
@given(review=bent({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "group": "apps",
                                                    "resource": "deployments", "subresource": "scale"}}}))
async def test_access_reviews(api, review):
    await send(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
