"""Validation collects every error with its field path, worded as Kubernetes words it; defaults match."""

import copy

from hacluster.model.errors import invalid
from hacluster.model.validation import (
    default_object,
    qos_class,
    validate_node,
    validate_pod,
    validate_pod_update,
    validate_replicaset,
)


def pod(**spec):
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    base["spec"].update(spec)
    return base


def rendered(causes):
    return [c.render() for c in causes]


def test_valid_pod_has_no_errors():
    assert validate_pod(pod()) == []


def test_containers_required():
    p = pod()
    del p["spec"]["containers"]
    assert rendered(validate_pod(p)) == ["spec.containers: Required value"]
    assert str(invalid("Pod", "web", validate_pod(p))) == 'Pod "web" is invalid: spec.containers: Required value'


def test_every_error_is_collected_with_its_path():
    p = pod(containers=[{"name": "c", "image": ""}, {"name": "c", "image": "x"}, {"name": "Bad_Name", "image": "y"}],
            restartPolicy="Sometimes")
    p["metadata"]["name"] = "Web!"
    out = rendered(validate_pod(p))
    assert out[0].startswith('metadata.name: Invalid value: "Web!": a lowercase RFC 1123 subdomain must consist')
    assert "spec.containers[0].image: Required value" in out
    assert 'spec.containers[1].name: Duplicate value: "c"' in out
    assert any(o.startswith('spec.containers[2].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label')
               for o in out)
    assert ('spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", '
            '"Never"') in out
    msg = str(invalid("Pod", "Web!", validate_pod(p)))
    assert msg.startswith('Pod "Web!" is invalid: [metadata.name: Invalid value')


def test_requests_must_not_exceed_limits():
    p = pod(containers=[{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "1Gi"},
                                                                  "limits": {"cpu": "1", "memory": "1Gi"}}}])
    assert rendered(validate_pod(p)) == [
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1']


def test_quantities_validated():
    p = pod(containers=[{"name": "c", "image": "x", "resources": {"requests": {"cpu": "lots", "memory": "-1Gi"},
                                                                  "limits": {"nvidia": "1"}}}])
    out = rendered(validate_pod(p))
    assert any("requests[cpu]" in o and "quantities must match the regular expression" in o for o in out)
    assert 'spec.containers[0].resources.requests[memory]: Invalid value: "-1Gi": must be greater than or equal to 0' in out
    assert any("limits[nvidia]" in o and "must be a standard resource type or fully qualified" in o for o in out)


def test_labels_tolerations_affinity():
    p = pod(nodeSelector={"bad key": "v"},
            tolerations=[{"key": "k", "operator": "Exists", "value": "v"},
                         {"operator": "Equal", "value": "x"},
                         {"key": "k", "effect": "Sometimes"},
                         {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
            affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]},
                                      {"key": "n", "operator": "Gt", "values": ["x"]},
                                      {"key": "z", "operator": "In"}]}]}}})
    out = rendered(validate_pod(p))
    assert any(o.startswith('spec.nodeSelector: Invalid value: "bad key"') for o in out)
    assert any("value must be empty when `operator` is 'Exists'" in o for o in out)
    assert any("operator must be Exists when `key` is empty" in o for o in out)
    assert any('spec.tolerations[2].effect: Unsupported value: "Sometimes"' in o for o in out)
    assert any("effect must be 'NoExecute' when `tolerationSeconds` is set" in o for o in out)
    assert any('matchExpressions[0].operator: Unsupported value: "Near"' in o for o in out)
    assert any("matchExpressions[1].values[0]" in o for o in out)
    assert any("matchExpressions[2].values: Required value" in o for o in out)


def test_defaults_like_kubernetes():
    p = pod(containers=[{"name": "c", "image": "nginx", "resources": {"limits": {"cpu": "0.5", "memory": "1Gi"}}},
                        {"name": "d", "image": "busybox:1.36"}])
    default_object("pods", p)
    s = p["spec"]
    assert s["restartPolicy"] == "Always"
    assert s["terminationGracePeriodSeconds"] == 30
    assert s["schedulerName"] == "default-scheduler"
    assert s["dnsPolicy"] == "ClusterFirst"
    assert s["containers"][0]["imagePullPolicy"] == "Always"
    assert s["containers"][1]["imagePullPolicy"] == "IfNotPresent"
    assert s["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert {t["key"] for t in s["tolerations"]} == {"node.kubernetes.io/not-ready",
                                                    "node.kubernetes.io/unreachable"}
    assert p["status"] == {"phase": "Pending", "qosClass": "Burstable"}


def test_qos_classes():
    assert qos_class({"containers": [{"name": "c"}]}) == "BestEffort"
    g = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                       "requests": {"cpu": "1000m", "memory": "1Gi"}}}]}
    assert qos_class(g) == "Guaranteed"
    b = {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}
    assert qos_class(b) == "Burstable"
    # As qos.GetPodQOS: only cpu and memory count, and a zero quantity is no request at all.
    assert qos_class({"containers": [{"resources": {"limits": {"ephemeral-storage": "1Gi"}}}]}) == "BestEffort"
    assert qos_class({"containers": [{"resources": {"requests": {"cpu": "0"}}}]}) == "BestEffort"
    half = {"containers": [g["containers"][0], {"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]}
    assert qos_class(half) == "Burstable", "every container needs both limits"


def test_pod_spec_is_immutable_but_image():
    old = pod()
    default_object("pods", old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    assert validate_pod_update(new, old) == []
    new["spec"]["restartPolicy"] = "Never"
    out = rendered(validate_pod_update(new, old))
    assert len(out) == 1 and out[0].startswith("spec: Forbidden: pod updates may not change fields other than")


def test_node_taints():
    node = {"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}, {"effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "x"}}}
    out = rendered(validate_node(node))
    assert any('spec.taints[0].effect: Unsupported value: "Sometimes"' in o for o in out)
    assert "spec.taints[1].key: Required value" in out
    assert any(o.startswith("status.capacity[cpu]") for o in out)


def test_replicaset_selector_must_match_template():
    rs = {"metadata": {"name": "rs", "namespace": "default"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
                   "template": {"metadata": {"labels": {"app": "b"}},
                                "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    out = rendered(validate_replicaset(rs))
    assert any("`selector` does not match template `labels`" in o for o in out)
