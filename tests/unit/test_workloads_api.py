"""The pure parts behind Deployments, Jobs, `kubectl top` and `kubectl auth can-i`: validation with
Kubernetes' wording, table rows, the kubelet's usage summary and the metrics built from it, the access
answers from the real authorizer, and the sim runtime's command-line behaviour."""

from __future__ import annotations

from datetime import UTC, datetime

from hacluster.apiserver.auth import User
from hacluster.apiserver.metrics_api import cpu_quantity, memory_quantity, node_metrics, pod_metrics
from hacluster.apiserver.reviews import access_allowed, rules_for
from hacluster.format.tables import TABLE_BUILDERS
from hacluster.format.workloads import deployment_row, job_row
from hacluster.kubelet.behaviour import ImageCatalogue
from hacluster.kubelet.stats import summary
from hacluster.model import validation

ADMIN = User("admin", ("system:masters",))
VIEWER = User("viewer", ("viewers",))
NODE = User("system:node:node-1", ("system:nodes",))


def deployment(**strategy):
    d = {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    if strategy:
        d["spec"]["strategy"] = strategy
    validation.default_object("deployments", d)
    return d


def causes(obj, plural="deployments"):
    return [(c.field, c.message) for c in validation.VALIDATORS[plural](obj)]


def test_deployment_defaults_are_kubernetes():
    d = deployment()
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert d["spec"]["replicas"] == 1 and d["spec"]["revisionHistoryLimit"] == 10
    assert d["spec"]["progressDeadlineSeconds"] == 600
    assert causes(d) == []


def test_deployment_validation_words_as_kubernetes():
    d = deployment(type="RollingUpdate", rollingUpdate={"maxSurge": 0, "maxUnavailable": "0%"})
    assert causes(d) == [("spec.strategy.rollingUpdate.maxUnavailable",
                          'Invalid value: "0%": may not be 0 when `maxSurge` is 0')]
    d = deployment(type="RollingUpdate", rollingUpdate={"maxSurge": "x", "maxUnavailable": "120%"})
    fields = [f for f, _ in causes(d)]
    assert fields == ["spec.strategy.rollingUpdate.maxSurge", "spec.strategy.rollingUpdate.maxUnavailable"]
    d = deployment(type="Recreate", rollingUpdate={})
    assert causes(d) == [("spec.strategy.rollingUpdate",
                          "Forbidden: may not be specified when strategy `type` is 'Recreate'")]
    d = deployment(type="Blue")
    assert causes(d)[0][0] == "spec.strategy.type"
    d = deployment()
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    assert causes(d)[0][0] == "spec.template.metadata.labels"


def test_tables_for_deployments_and_jobs():
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    d = deployment()
    d["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    d["spec"]["replicas"] = 4
    d["status"] = {"readyReplicas": 3, "updatedReplicas": 4, "availableReplicas": 3}
    assert deployment_row(d, now) == ["web", "3/4", 4, 3, "10m", "c", "nginx", "app=web"]
    j = {"metadata": {"name": "once", "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"job-name": "once"}},
                  "template": {"spec": {"containers": [{"name": "once", "image": "busybox"}]}}},
         "status": {"succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:04Z",
                    "conditions": [{"type": "Complete", "status": "True"}]}}
    assert job_row(j, now) == ["once", "Complete", "1/1", "4s", "10m", "once", "busybox", "job-name=once"]
    assert "deployments" in TABLE_BUILDERS and "jobs" in TABLE_BUILDERS


def test_summary_and_metrics_from_what_the_runtime_measures():
    s = summary("node-1", [("default", "web-1", "u1", {"c": 24 * 2**20}, {"c": 2})], 512 * 2**20, 1_700_000_000.0)
    assert s["node"]["memory"]["workingSetBytes"] == 536 * 2**20
    assert s["node"]["cpu"]["usageNanoCores"] == 2_000_000
    node = {"metadata": {"name": "node-1", "labels": {"a": "b"}}}
    nm = node_metrics(node, s)
    assert nm["usage"] == {"cpu": "2000000n", "memory": "548864Ki"} and nm["metadata"]["name"] == "node-1"
    pod = {"metadata": {"name": "web-1", "namespace": "default", "uid": "u1"}}
    pm = pod_metrics(pod, s["pods"][0])
    assert pm["containers"] == [{"name": "c", "usage": {"cpu": "2000000n", "memory": "24576Ki"}}]
    assert cpu_quantity(0) == "0n" and memory_quantity(1023) == "0Ki"


def test_access_answers_come_from_the_authorizer():
    assert access_allowed(ADMIN, {"verb": "create", "resource": "pods", "namespace": "default"})[0]
    assert access_allowed(ADMIN, {"verb": "*", "resource": "*"})[0]
    assert access_allowed(VIEWER, {"verb": "list", "resource": "deployments", "group": "apps"})[0]
    assert access_allowed(VIEWER, {"verb": "create", "resource": "pods", "namespace": "default"}) == (False, "")
    assert not access_allowed(VIEWER, {"verb": "*", "resource": "pods"})[0]
    # NodeRestriction: a kubelet may update its own node only
    assert access_allowed(NODE, {"verb": "update", "resource": "nodes", "name": "node-1"})[0]
    assert not access_allowed(NODE, {"verb": "update", "resource": "nodes", "name": "node-2"})[0]
    assert rules_for(ADMIN)[0] == [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    assert rules_for(VIEWER)[0][0]["verbs"] == ["get", "list", "watch"]


def test_a_command_line_decides_how_a_sim_container_ends():
    cat = ImageCatalogue.load(seed=1)
    meta = {"metadata": {"name": "once-x", "namespace": "default"}}
    ok = cat.behaviour_for(meta, {"name": "once", "image": "busybox", "command": ["sh", "-c", "exit 0"]}, 0)
    assert ok.run_s is not None and ok.exit_code == 0 and ok.size_bytes == 4300000  # busybox's image data kept
    bad = cat.behaviour_for(meta, {"name": "once", "image": "busybox", "command": ["sh", "-c", "exit 3"]}, 0)
    assert bad.run_s is not None and bad.exit_code != 0
    server = cat.behaviour_for(meta, {"name": "web", "image": "nginx"}, 0)
    assert server.run_s is None and server.cpu_millis == 1


def test_protobuf_reviews_as_kubectl_132_sends_them():
    from hacluster.apiserver.discovery import _pb_bytes
    from hacluster.apiserver.protowire import ProtobufError, decode_review

    attrs = _pb_bytes(1, b"default") + _pb_bytes(2, b"create") + _pb_bytes(5, b"pods")
    review = _pb_bytes(1, b"") + _pb_bytes(2, _pb_bytes(1, attrs))
    type_meta = _pb_bytes(1, b"authorization.k8s.io/v1") + _pb_bytes(2, b"SelfSubjectAccessReview")
    body = b"k8s\x00" + _pb_bytes(1, type_meta) + _pb_bytes(2, review) + _pb_bytes(4, b"application/vnd.kubernetes.protobuf")
    assert decode_review(body) == {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "create",
                                                                   "resource": "pods"}}}
    whoami = b"k8s\x00" + _pb_bytes(1, _pb_bytes(1, b"authentication.k8s.io/v1") + _pb_bytes(2, b"SelfSubjectReview"))
    assert decode_review(whoami)["kind"] == "SelfSubjectReview"
    for bad in (b"{}", b"k8s\x00\x0a\xff", b"k8s\x00\x0b"):
        try:
            decode_review(bad)
        except ProtobufError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_hacluster_describe_prints_what_kubectl_prints_for_deployments_and_jobs():
    from hacluster.cli.describe import describe_deployment, describe_job

    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    d = deployment()
    d["metadata"].update(creationTimestamp="2026-01-01T00:00:00Z", labels={"app": "web"},
                         annotations={"deployment.kubernetes.io/revision": "2"})
    d["spec"]["replicas"] = 3
    d["status"] = {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                   "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                                  {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
    new = {"metadata": {"name": "web-abc"}, "spec": {"replicas": 3}, "status": {"replicas": 3}}
    text = describe_deployment(d, [], new, None, now)
    lines = text.splitlines()
    assert lines[0].split() == ["Name:", "web"] and lines[0].index("web") == 24  # kubectl's column
    assert "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in lines
    assert "RollingUpdateStrategy:  25% max unavailable, 25% max surge" in lines
    words = [ln.split() for ln in lines]
    assert ["OldReplicaSets:", "<none>"] in words
    assert ["NewReplicaSet:", "web-abc", "(3/3", "replicas", "created)"] in words
    assert "  Progressing    True    NewReplicaSetAvailable" in lines
    job = {"metadata": {"name": "once", "namespace": "default"},
           "spec": {"parallelism": 1, "completions": 1, "completionMode": "NonIndexed", "suspend": False,
                    "backoffLimit": 6, "selector": {"matchLabels": {"job-name": "once"}},
                    "template": {"spec": {"containers": [{"name": "once", "image": "busybox"}]}}},
           "status": {"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:04Z", "succeeded": 1,
                      "ready": 0}}
    lines = describe_job(job, None, now).splitlines()
    assert lines[:3] == ["Name:             once", "Namespace:        default", "Selector:         job-name=once"]
    assert "Duration:         4s" in lines and "Pods Statuses:    0 Active (0 Ready) / 1 Succeeded / 0 Failed" in lines
