"""Table tests for the scheduler's pure policy (hacluster.scheduler.{nodeinfo,plugins,policy}).

Expected messages and scores are kube-scheduler's (kubernetes master ≈ v1.35); the comment on each table
names the source it mirrors. Run: .venv/bin/python -m pytest tests/unit/test_scheduler_policy.py -q
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacluster.model.pods import DEFAULT_MEMORY_REQUEST, PodRequests, compute_pod_requests
from hacluster.scheduler.nodeinfo import (
    ClusterSnapshot,
    SnapshotError,
)
from hacluster.scheduler.plugins import (
    BALANCED_ALLOCATION,
    NODE_AFFINITY,
    NODE_RESOURCES_FIT,
    TAINT_TOLERATION,
    compile_pod,
    default_normalize,
)
from hacluster.scheduler.policy import (
    NO_NODES_MESSAGE,
    Decision,
    explain,
    num_feasible_nodes_to_find,
    order_queue,
    queue_key,
    schedule_one,
)

Gi = 1024**3
Mi = 1024**2

# ---- builders --------------------------------------------------------------------------------------


def node(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    }


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> dict[str, str]:
    return {"key": key, "value": value, "effect": effect}


def container(
    requests: dict[str, str] | None = None, limits: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = requests
    if limits is not None:
        res["limits"] = limits
    return {"name": "c", "image": "img", "resources": res, **extra}


def pod(
    name: str = "p",
    cpu: str | None = None,
    memory: str | None = None,
    *,
    namespace: str = "default",
    node_name: str | None = None,
    phase: str | None = None,
    priority: int | None = None,
    **spec: Any,
) -> dict[str, Any]:
    requests = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    body: dict[str, Any] = {"containers": [container(requests)]}
    body.update(spec)
    if node_name is not None:
        body["nodeName"] = node_name
    if priority is not None:
        body["priority"] = priority
    out: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": body,
    }
    if phase is not None:
        out["status"] = {"phase": phase}
    return out


def affinity(*terms: list[dict[str, Any]], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    node_terms: list[dict[str, Any]] = [{"matchExpressions": t} for t in terms]
    if fields is not None:
        node_terms.append({"matchFields": fields})
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": node_terms}}
    }


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": op}
    if values:
        out["values"] = list(values)
    return out


def schedule(
    p: dict[str, Any], nodes: Sequence[dict[str, Any]], pods: Sequence[dict[str, Any]] = (), seed: int = 0
) -> Decision:
    decision, _ = schedule_one(p, ClusterSnapshot(nodes, pods), seed=seed)
    return decision


# ---- pod requests (component-helpers resource.PodRequests, API defaulting of requests from limits) -----

REQUEST_CASES = [
    ("mixed cpu units sum", {"containers": [container({"cpu": "250m"}), container({"cpu": "0.5"})]}, 750, 0),
    (
        "mixed memory units sum",
        {"containers": [container({"memory": "512Mi"}), container({"memory": "1Gi"})]},
        0,
        512 * Mi + Gi,
    ),
    ("decimal memory units", {"containers": [container({"memory": "1G"})]}, 0, 10**9),
    (
        "limits only -> requests = limits",
        {"containers": [container(limits={"cpu": "1", "memory": "1Gi"})]},
        1000,
        Gi,
    ),
    ("request wins over limit", {"containers": [container({"cpu": "100m"}, {"cpu": "2"})]}, 100, 0),
    (
        "init container peak beats sum",
        {
            "containers": [container({"cpu": "200m", "memory": "100Mi"})] * 2,
            "initContainers": [container({"cpu": "1", "memory": "50Mi"})],
        },
        1000,
        200 * Mi,
    ),
    (
        "sum beats smaller init container",
        {"containers": [container({"cpu": "600m"})] * 2, "initContainers": [container({"cpu": "1"})]},
        1200,
        0,
    ),
    (
        "sidecar adds to containers and later inits",
        {
            "containers": [container({"cpu": "500m"})],
            "initContainers": [container({"cpu": "100m"}, restartPolicy="Always"), container({"cpu": "1"})],
        },
        1100,
        0,
    ),
    (
        "overhead added",
        {"containers": [container({"cpu": "1"})], "overhead": {"cpu": "250m", "memory": "120Mi"}},
        1250,
        120 * Mi,
    ),
    (
        "pod-level requests override",
        {"containers": [container({"cpu": "1"})], "resources": {"requests": {"cpu": "3"}}},
        3000,
        0,
    ),
    ("tiny cpu rounds up like MilliValue", {"containers": [container({"cpu": "0.0001"})]}, 1, 0),
    ("no requests at all", {"containers": [container()]}, 0, 0),
]


@pytest.mark.parametrize(
    ("spec", "cpu", "memory"), [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES]
)
def test_pod_requests(spec: dict[str, Any], cpu: int, memory: int) -> None:
    req = compute_pod_requests({"metadata": {"name": "p"}, "spec": spec})
    assert (req.milli_cpu, req.memory) == (cpu, memory)


def test_nonzero_defaults_only_for_missing_requests() -> None:
    req = compute_pod_requests(
        {"spec": {"containers": [container(), container({"cpu": "0"}), container({"memory": "1Gi"})]}}
    )
    # container 1 gets both defaults, container 2 asked for 0 cpu explicitly (kept) + default memory,
    # container 3 default cpu + its memory.
    assert req.nonzero_milli_cpu == 100 + 0 + 100
    assert req.nonzero_memory == 2 * DEFAULT_MEMORY_REQUEST + Gi
    assert (req.milli_cpu, req.memory) == (0, Gi)


def test_extended_resources_are_fitted() -> None:
    gpu_pod = pod(containers=[container({"nvidia.com/gpu": "1"})])
    gpu_node = node("gpu")
    gpu_node["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    d = schedule(gpu_pod, [node("plain"), gpu_node])
    assert d.node_name == "gpu"
    assert d.filter_results["plain"] == ("Insufficient nvidia.com/gpu",)


# ---- NodeResourcesFit filter (noderesources/fit.go fitsRequest) ------------------------------------------

FIT_CASES = [
    ("fits exactly", pod(cpu="250m", memory="512Mi"), node("n", cpu="250m", memory="512Mi"), [], "n", ()),
    (
        "0.5 + 250m of 1 cpu",
        pod(cpu="0.5"),
        node("n", cpu="1"),
        [pod("old", cpu="250m", node_name="n")],
        "n",
        (),
    ),
    (
        "cpu short",
        pod(cpu="0.5"),
        node("n", cpu="1"),
        [pod("old", cpu="600m", node_name="n")],
        None,
        ("Insufficient cpu",),
    ),
    (
        "memory short",
        pod(memory="1Gi"),
        node("n", memory="1536Mi"),
        [pod("old", memory="768Mi", node_name="n")],
        None,
        ("Insufficient memory",),
    ),
    (
        "both short",
        pod(cpu="5", memory="9Gi"),
        node("n"),
        [],
        None,
        ("Insufficient cpu", "Insufficient memory"),
    ),
    (
        "too many pods",
        pod(),
        node("n", pods="2"),
        [pod("a", node_name="n"), pod("b", node_name="n")],
        None,
        ("Too many pods",),
    ),
    (
        "too many pods listed first",
        pod(cpu="8"),
        node("n", pods="1"),
        [pod("a", node_name="n")],
        None,
        ("Too many pods", "Insufficient cpu"),
    ),
    (
        "finished pods free their node",
        pod(cpu="1"),
        node("n", cpu="1"),
        [
            pod("done", cpu="1", node_name="n", phase="Succeeded"),
            pod("dead", cpu="1", node_name="n", phase="Failed"),
        ],
        "n",
        (),
    ),
    (
        "limits-only container counts",
        pod(containers=[container(limits={"cpu": "1500m"})]),
        node("n", cpu="1"),
        [],
        None,
        ("Insufficient cpu",),
    ),
    (
        "init container peak counts",
        pod(containers=[container({"cpu": "100m"})], initContainers=[container({"cpu": "2"})]),
        node("n", cpu="1"),
        [],
        None,
        ("Insufficient cpu",),
    ),
    (
        "zero-request pod fits an overcommitted node",
        pod(),
        node("n", cpu="1"),
        [pod("big", cpu="3", node_name="n")],
        "n",
        (),
    ),
    (
        "node without allocatable pods takes none",
        pod(),
        {"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1"}}},
        [],
        None,
        ("Too many pods",),
    ),
]


@pytest.mark.parametrize(
    ("p", "n", "existing", "chosen", "reasons"), [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES]
)
def test_resource_fit(
    p: dict[str, Any],
    n: dict[str, Any],
    existing: list[dict[str, Any]],
    chosen: str | None,
    reasons: tuple[str, ...],
) -> None:
    d = schedule(p, [n], existing)
    assert d.node_name == chosen
    assert d.filter_results["n"] == reasons
    if reasons:
        assert d.rejected_by == {"n": NODE_RESOURCES_FIT}


# ---- NodeAffinity filter (nodeaffinity plugin, component-helpers nodeaffinity, labels.Requirement) -------

LABELS = {"disktype": "ssd", "zone": "a", "cores": "16", "gen": "v2"}

AFFINITY_CASES = [
    ("nodeSelector match", {"nodeSelector": {"disktype": "ssd"}}, True),
    ("nodeSelector mismatch", {"nodeSelector": {"disktype": "hdd"}}, False),
    ("nodeSelector all must match", {"nodeSelector": {"disktype": "ssd", "zone": "b"}}, False),
    ("In", {"affinity": affinity([expr("zone", "In", "b", "a")])}, True),
    ("In miss", {"affinity": affinity([expr("zone", "In", "b")])}, False),
    ("In missing label", {"affinity": affinity([expr("rack", "In", "1")])}, False),
    ("NotIn", {"affinity": affinity([expr("zone", "NotIn", "b")])}, True),
    ("NotIn hit", {"affinity": affinity([expr("zone", "NotIn", "a")])}, False),
    ("NotIn missing label matches", {"affinity": affinity([expr("rack", "NotIn", "1")])}, True),
    ("Exists", {"affinity": affinity([expr("gen", "Exists")])}, True),
    ("Exists miss", {"affinity": affinity([expr("gpu", "Exists")])}, False),
    ("DoesNotExist", {"affinity": affinity([expr("gpu", "DoesNotExist")])}, True),
    ("DoesNotExist miss", {"affinity": affinity([expr("gen", "DoesNotExist")])}, False),
    ("Gt", {"affinity": affinity([expr("cores", "Gt", "8")])}, True),
    ("Gt equal is not greater", {"affinity": affinity([expr("cores", "Gt", "16")])}, False),
    ("Lt", {"affinity": affinity([expr("cores", "Lt", "32")])}, True),
    ("Lt miss", {"affinity": affinity([expr("cores", "Lt", "16")])}, False),
    ("Gt on non-integer label", {"affinity": affinity([expr("gen", "Gt", "1")])}, False),
    ("Gt with non-integer value never matches", {"affinity": affinity([expr("cores", "Gt", "a")])}, False),
    ("Gt on missing label", {"affinity": affinity([expr("ram", "Gt", "1")])}, False),
    (
        "expressions are ANDed",
        {"affinity": affinity([expr("zone", "In", "a"), expr("disktype", "In", "hdd")])},
        False,
    ),
    (
        "expressions all true",
        {"affinity": affinity([expr("zone", "In", "a"), expr("cores", "Gt", "4")])},
        True,
    ),
    (
        "terms are ORed",
        {"affinity": affinity([expr("zone", "In", "b")], [expr("disktype", "In", "ssd")])},
        True,
    ),
    (
        "no term matches",
        {"affinity": affinity([expr("zone", "In", "b")], [expr("disktype", "In", "hdd")])},
        False,
    ),
    (
        "invalid term skipped, other term matches",
        {"affinity": affinity([expr("zone", "Bogus", "b")], [expr("zone", "In", "a")])},
        True,
    ),
    (
        "selector and affinity both needed",
        {"nodeSelector": {"disktype": "hdd"}, "affinity": affinity([expr("zone", "In", "a")])},
        False,
    ),
    (
        "empty term list matches nothing",
        {
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
            }
        },
        False,
    ),
    (
        "empty term matches nothing",
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}
                }
            }
        },
        False,
    ),
    ("matchFields metadata.name In", {"affinity": affinity(fields=[expr("metadata.name", "In", "n")])}, True),
    (
        "matchFields metadata.name NotIn",
        {"affinity": affinity(fields=[expr("metadata.name", "NotIn", "n")])},
        False,
    ),
]


@pytest.mark.parametrize(
    ("spec", "fits"), [c[1:] for c in AFFINITY_CASES], ids=[c[0] for c in AFFINITY_CASES]
)
def test_node_affinity(spec: dict[str, Any], fits: bool) -> None:
    d = schedule(pod(**spec), [node("n", labels=LABELS)])
    assert d.node_name == ("n" if fits else None)
    if not fits:
        assert d.filter_results == {"n": ("node(s) didn't match Pod's node affinity/selector",)}
        assert d.rejected_by == {"n": NODE_AFFINITY}


def test_match_fields_prefilter_limits_nodes() -> None:
    """A DaemonSet-style pod pinned by matchFields only evaluates its node; the others are reported as
    "didn't satisfy plugin(s) [NodeAffinity]" (PreFilterResult)."""
    p = pod(cpu="8", affinity=affinity(fields=[expr("metadata.name", "In", "b")]))
    d = schedule(p, [node("a"), node("b"), node("c")])
    assert d.evaluated_nodes == 1
    assert d.message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    ok = schedule(pod(affinity=affinity(fields=[expr("metadata.name", "In", "b")])), [node("a"), node("b")])
    assert ok.node_name == "b" and list(ok.filter_results) == ["b"]


def test_match_fields_conflicting_terms() -> None:
    both = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [expr("metadata.name", "In", "a"), expr("metadata.name", "In", "b")]}
                ]
            }
        }
    }
    d = schedule(pod(affinity=both), [node("a"), node("b")])
    assert d.message == (
        "0/2 nodes are available: pod affinity terms conflict. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
    assert d.evaluated_nodes == 0


# ---- TaintToleration filter (tainttoleration plugin, v1.Toleration.ToleratesTaint) ---------------------


def tol(
    key: str = "", operator: str = "", value: str = "", effect: str = "", seconds: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": operator, "value": value, "effect": effect}
    if seconds is not None:
        out["tolerationSeconds"] = seconds
    return out


GPU = taint("dedicated", "gpu", "NoSchedule")
NOT_READY = taint("node.kubernetes.io/not-ready", "", "NoExecute")
UNREACHABLE = taint("node.kubernetes.io/unreachable", "", "NoExecute")
DEFAULT_TOLERATIONS = [
    tol("node.kubernetes.io/not-ready", "Exists", effect="NoExecute", seconds=300),
    tol("node.kubernetes.io/unreachable", "Exists", effect="NoExecute", seconds=300),
]

TAINT_CASES = [
    ("no toleration", [GPU], [], False),
    ("Equal matches", [GPU], [tol("dedicated", "Equal", "gpu", "NoSchedule")], True),
    ("empty operator means Equal", [GPU], [tol("dedicated", "", "gpu", "NoSchedule")], True),
    ("Equal wrong value", [GPU], [tol("dedicated", "Equal", "cpu", "NoSchedule")], False),
    ("Equal wrong key", [GPU], [tol("special", "Equal", "gpu", "NoSchedule")], False),
    ("Exists ignores value", [GPU], [tol("dedicated", "Exists", effect="NoSchedule")], True),
    ("empty key Exists tolerates everything", [GPU, NOT_READY], [tol(operator="Exists")], True),
    ("empty effect matches all effects", [GPU], [tol("dedicated", "Equal", "gpu")], True),
    ("effect mismatch", [GPU], [tol("dedicated", "Equal", "gpu", "NoExecute")], False),
    ("PreferNoSchedule never blocks", [taint("x", "y", "PreferNoSchedule")], [], True),
    ("NoExecute blocks", [taint("x", "y", "NoExecute")], [], False),
    (
        "NoExecute tolerated with tolerationSeconds",
        [taint("x", "y", "NoExecute")],
        [tol("x", "Equal", "y", "NoExecute", seconds=60)],
        True,
    ),
    ("not-ready blocks", [NOT_READY], [], False),
    ("unreachable blocks", [UNREACHABLE], [], False),
    ("not-ready tolerated by default tolerations", [NOT_READY], DEFAULT_TOLERATIONS, True),
    ("unreachable tolerated by default tolerations", [UNREACHABLE], DEFAULT_TOLERATIONS, True),
    ("default tolerations don't cover other taints", [NOT_READY, GPU], DEFAULT_TOLERATIONS, False),
    ("every taint must be tolerated", [GPU, taint("x", "y")], [tol("dedicated", "Exists")], False),
    ("Gt operator is off (alpha gate)", [taint("level", "5")], [tol("level", "Gt", "3")], False),
]


def _tolerates(t: dict[str, Any], taint: dict[str, str]) -> bool:
    """v1.Toleration.ToleratesTaint, written out independently for the expected reason."""
    if t["effect"] and t["effect"] != taint["effect"]:
        return False
    if t["key"] and t["key"] != taint["key"]:
        return False
    if t["operator"] == "Exists":
        return True
    return t["operator"] in ("", "Equal") and t["value"] == taint["value"]


@pytest.mark.parametrize(
    ("taints", "tolerations", "fits"), [c[1:] for c in TAINT_CASES], ids=[c[0] for c in TAINT_CASES]
)
def test_taints(taints: list[dict[str, str]], tolerations: list[dict[str, Any]], fits: bool) -> None:
    d = schedule(pod(tolerations=tolerations), [node("n", taints=taints)])
    assert d.node_name == ("n" if fits else None)
    if not fits:
        first = next(t for t in taints if t["effect"] in ("NoSchedule", "NoExecute")
                     and not any(_tolerates(x, t) for x in tolerations))
        want = f"node(s) had untolerated taint {{{first['key']}: {first['value']}}}"
        assert d.filter_results["n"] == (want,)


def test_untolerated_taint_reason_names_the_first_untolerated_taint_per_node() -> None:
    """v1.30's TaintToleration reason carries key and value of the node's first untolerated
    NoSchedule/NoExecute taint (in the node's order), so different taints count separately."""
    nodes = [
        node("a", taints=[taint("soft", "x", "PreferNoSchedule"), GPU, NOT_READY]),
        node("b", taints=[NOT_READY, GPU]),
        node("c", taints=[GPU]),
    ]
    d = schedule(pod(tolerations=[tol("dedicated", "Exists")]), nodes)
    assert d.filter_results == {
        "a": ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",),
        "b": ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",),
        "c": (),
    }
    d = schedule(pod(), nodes)
    assert d.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
        "2 node(s) had untolerated taint {dedicated: gpu}. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )


# ---- NodeUnschedulable / NodeName ---------------------------------------------------------------------

UNSCHEDULABLE_CASES = [
    ("cordoned", [], False),
    (
        "tolerates unschedulable taint",
        [tol("node.kubernetes.io/unschedulable", "Exists", effect="NoSchedule")],
        True,
    ),
    ("tolerates everything", [tol(operator="Exists")], True),
    ("wrong effect", [tol("node.kubernetes.io/unschedulable", "Exists", effect="NoExecute")], False),
]


@pytest.mark.parametrize(
    ("tolerations", "fits"), [c[1:] for c in UNSCHEDULABLE_CASES], ids=[c[0] for c in UNSCHEDULABLE_CASES]
)
def test_unschedulable(tolerations: list[dict[str, Any]], fits: bool) -> None:
    d = schedule(pod(tolerations=tolerations), [node("n", unschedulable=True)])
    assert d.node_name == ("n" if fits else None)
    if not fits:
        assert d.message == (
            "0/1 nodes are available: 1 node(s) were unschedulable. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )


def test_node_name_filter() -> None:
    d = schedule(pod(node_name="b"), [node("a"), node("b")])
    assert d.node_name == "b"
    assert d.filter_results["a"] == ("node(s) didn't match the requested node name",)


def test_first_failing_filter_decides() -> None:
    """Filters run in the default profile's order and stop at the first failure: a cordoned, tainted,
    too-small node is reported only as unschedulable; taints are checked before affinity."""
    d = schedule(
        pod(cpu="64", nodeSelector={"x": "y"}),
        [node("a", unschedulable=True, taints=[GPU]), node("b", taints=[GPU]), node("c")],
    )
    assert d.rejected_by == {"a": "NodeUnschedulable", "b": "TaintToleration", "c": "NodeAffinity"}


# ---- FitError messages (framework/types.go FitError.Error, defaultpreemption, preemption.Evaluator) -----

TWO_TAINTED = [node("a"), node("b", taints=[GPU]), node("c", taints=[GPU])]
TWELVE = [node(f"t{i:02d}", taints=[GPU]) for i in range(10)] + [
    node("u1", unschedulable=True),
    node("u2", unschedulable=True),
]
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"

# (id, pod, nodes, pods already placed, filter part of the message, preemption part)
MESSAGE_CASES = [
    (
        "brief example: cpu beyond any node, untolerated taints",
        pod(cpu="8"),
        TWO_TAINTED,
        [],
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}.",
        f"preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}.",
    ),
    (
        "cpu used by same-priority pods: no victims",
        pod(cpu="2"),
        TWO_TAINTED,
        [pod("x", cpu="3", node_name="a")],
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}.",
        f"preemption: 0/3 nodes are available: 1 {NO_VICTIMS}, 2 {NOT_HELPFUL}.",
    ),
    (
        "two reasons from one node",
        pod(cpu="3", memory="7Gi"),
        [node("a")],
        [pod("x", cpu="2", memory="2Gi", node_name="a")],
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
        f"preemption: 0/1 nodes are available: 1 {NO_VICTIMS}.",
    ),
    (
        "too many pods is resolvable by preemption in principle",
        pod(),
        [node("a", pods="1")],
        [pod("x", node_name="a")],
        "0/1 nodes are available: 1 Too many pods.",
        f"preemption: 0/1 nodes are available: 1 {NO_VICTIMS}.",
    ),
    (
        "victims too small to help",
        pod(cpu="3", priority=100),
        [node("a")],
        [pod("hi", cpu="2", node_name="a", priority=1000), pod("lo", cpu="500m", node_name="a", priority=0)],
        "0/1 nodes are available: 1 Insufficient cpu.",
        "preemption: 0/1 nodes are available: 1 Insufficient cpu.",
    ),
    (
        "histogram sorted as strings: 10 before 2",
        pod(cpu="1"),
        TWELVE,
        [],
        "0/12 nodes are available: 10 node(s) had untolerated taint {dedicated: gpu}, "
        "2 node(s) were unschedulable.",
        f"preemption: 0/12 nodes are available: 12 {NOT_HELPFUL}.",
    ),
    (
        "preemptionPolicy Never",
        pod(cpu="8", preemptionPolicy="Never"),
        [node("a")],
        [],
        "0/1 nodes are available: 1 Insufficient cpu.",
        "preemption: not eligible due to preemptionPolicy=Never.",
    ),
    ("no nodes", pod(), [], [], NO_NODES_MESSAGE, ""),
]


@pytest.mark.parametrize(
    ("p", "nodes", "existing", "filter_part", "preemption_part"),
    [c[1:] for c in MESSAGE_CASES],
    ids=[c[0] for c in MESSAGE_CASES],
)
def test_unschedulable_messages(
    p: dict[str, Any],
    nodes: list[dict[str, Any]],
    existing: list[dict[str, Any]],
    filter_part: str,
    preemption_part: str,
) -> None:
    d = schedule(p, nodes, existing)
    assert d.node_name is None
    assert d.message == f"{filter_part} {preemption_part}".strip()
    assert d.evaluated_nodes == len(nodes)
    assert d.feasible_nodes == 0


def test_preemption_would_help() -> None:
    """With lower-priority victims whose eviction makes room, kube-scheduler preempts and reports no
    preemption clause; this policy does not evict but names the candidates."""
    d = schedule(
        pod(cpu="3", priority=100),
        [node("a"), node("b", taints=[GPU])],
        [pod("lo", cpu="2", node_name="a", priority=0)],
    )
    assert d.node_name is None
    assert d.message == (
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
    )
    assert d.preemption_candidates == ("a",)
    assert explain(d)["preemptionCandidates"] == ["a"]


# ---- scores (least_allocated.go, balanced_allocation.go, node_affinity.go, taint_toleration.go) ---------


def test_scores_match_kube_formulas() -> None:
    d = schedule(pod(cpu="1", memory="2Gi"), [node("a"), node("b", cpu="8", memory="8Gi")])
    # a: cpu (4000-1000)*100//4000 = 75, mem (8-2)/8 -> 75; fractions 0.25, 0.25 -> balanced 100
    # b: cpu (8000-1000)*100//8000 = 87, mem 75 -> (87+75)//2 = 81;
    #    fractions .125 and .25 -> int((1 - .0625) * 100) = 93
    assert d.scores["a"] == {NODE_RESOURCES_FIT: 75, BALANCED_ALLOCATION: 100, TAINT_TOLERATION: 100}
    assert d.scores["b"] == {NODE_RESOURCES_FIT: 81, BALANCED_ALLOCATION: 93, TAINT_TOLERATION: 100}
    assert d.totals == {"a": 75 + 100 + 300, "b": 81 + 93 + 300}
    assert d.node_name == "a"


def test_prefers_emptier_node() -> None:
    existing = [pod("x", cpu="2", memory="4Gi", node_name="busy")]
    d = schedule(pod(cpu="500m", memory="1Gi"), [node("busy"), node("idle")], existing)
    assert d.node_name == "idle"
    assert d.scores["idle"][NODE_RESOURCES_FIT] > d.scores["busy"][NODE_RESOURCES_FIT]


def test_least_allocated_counts_default_requests() -> None:
    """Pods without requests count as 100m/200Mi for LeastAllocated, so they spread."""
    existing = [pod(f"x{i}", node_name="a") for i in range(10)]
    d = schedule(pod(), [node("a"), node("b")], existing)
    assert d.node_name == "b"
    assert BALANCED_ALLOCATION not in d.scores["b"]  # best-effort pods skip BalancedAllocation


def test_balanced_allocation_prefers_balance() -> None:
    # Same free fraction overall, but on "skew" cpu is nearly used up while memory is idle.
    existing = [pod("x", cpu="3", node_name="skew"), pod("y", cpu="1500m", memory="3Gi", node_name="even")]
    d = schedule(pod(cpu="500m", memory="1Gi"), [node("skew"), node("even")], existing)
    assert d.scores["even"][BALANCED_ALLOCATION] > d.scores["skew"][BALANCED_ALLOCATION]
    assert d.node_name == "even"


def test_preferred_affinity_weights() -> None:
    prefs = [
        {"weight": 80, "preference": {"matchExpressions": [expr("zone", "In", "a")]}},
        {"weight": 20, "preference": {"matchExpressions": [expr("disk", "In", "ssd")]}},
    ]
    p = pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": prefs}})
    nodes = [
        node("none"),
        node("ssd", labels={"disk": "ssd"}),
        node("za", labels={"zone": "a"}),
        node("both", labels={"zone": "a", "disk": "ssd"}),
    ]
    d = schedule(p, nodes)
    assert {n: s[NODE_AFFINITY] for n, s in d.scores.items()} == {"none": 0, "ssd": 20, "za": 80, "both": 100}
    assert d.node_name == "both"


def test_prefer_no_schedule() -> None:
    soft = taint("maintenance", "soon", "PreferNoSchedule")
    d = schedule(
        pod(),
        [
            node("two", taints=[soft, taint("old", "", "PreferNoSchedule")]),
            node("one", taints=[soft]),
            node("clean"),
        ],
    )
    assert {n: s[TAINT_TOLERATION] for n, s in d.scores.items()} == {"two": 0, "one": 50, "clean": 100}
    assert d.node_name == "clean"
    tolerant = schedule(
        pod(tolerations=[tol("maintenance", "Exists"), tol("old", "Exists", effect="PreferNoSchedule")]),
        [node("two", taints=[soft, taint("old", "", "PreferNoSchedule")]), node("clean")],
    )
    assert tolerant.scores["two"][TAINT_TOLERATION] == 100


NORMALIZE_CASES = [
    ([0, 0, 0], False, [0, 0, 0]),
    ([0, 0, 0], True, [100, 100, 100]),
    ([1, 2, 4], False, [25, 50, 100]),
    ([1, 2, 3], True, [67, 34, 0]),
]


@pytest.mark.parametrize(("raw", "reverse", "expected"), NORMALIZE_CASES)
def test_default_normalize(raw: list[int], reverse: bool, expected: list[int]) -> None:
    assert default_normalize(raw, reverse) == expected


def test_single_feasible_node_is_not_scored() -> None:
    d = schedule(pod(), [node("a"), node("b", unschedulable=True)])
    assert d.node_name == "a" and d.scores == {} and d.feasible_nodes == 1


# ---- how many nodes are looked at (schedule_one.go numFeasibleNodesToFind, nextStartNodeIndex) ----------


@pytest.mark.parametrize(
    ("nodes", "percentage", "expected"),
    [
        (3, 0, 3),
        (99, 0, 99),
        (100, 0, 100),
        (150, 0, 100),
        (1000, 0, 420),
        (5000, 0, 500),
        (6000, 0, 300),
        (20000, 0, 1000),
        (1000, 10, 100),
        (1000, 100, 1000),
    ],
)
def test_num_feasible_nodes_to_find(nodes: int, percentage: int, expected: int) -> None:
    assert num_feasible_nodes_to_find(nodes, percentage) == expected


def test_rotating_start_index_on_large_cluster() -> None:
    snapshot = ClusterSnapshot([node(f"n{i:04d}") for i in range(1000)])
    d, nxt = schedule_one(pod("p1"), snapshot, seed=1)
    assert (d.evaluated_nodes, d.feasible_nodes, nxt) == (420, 420, 420)
    assert "n0000" in d.filter_results and "n0420" not in d.filter_results
    d2, nxt2 = schedule_one(pod("p2"), snapshot, seed=1, start_index=nxt)
    assert "n0420" in d2.filter_results and "n0000" not in d2.filter_results
    assert nxt2 == 840
    _, nxt3 = schedule_one(pod("p3"), snapshot, seed=1, start_index=nxt2)
    assert nxt3 == (840 + 420) % 1000


def test_failed_nodes_count_towards_evaluated() -> None:
    nodes = [node(f"a{i:03d}", taints=[GPU]) for i in range(50)] + [node(f"n{i:03d}") for i in range(150)]
    d, nxt = schedule_one(pod(), ClusterSnapshot(nodes), seed=0)
    assert d.feasible_nodes == 100 and d.evaluated_nodes == 150 and nxt == 150


# ---- determinism ----------------------------------------------------------------------------------------


def run_sequence(seed: int, count: int = 30) -> list[str | None]:
    snapshot = ClusterSnapshot([node(f"n{i}", cpu="64", memory="256Gi") for i in range(8)])
    chosen: list[str | None] = []
    index = 0
    for i in range(count):
        p = pod(f"p{i:02d}", cpu="100m", memory="128Mi")
        d, index = schedule_one(p, snapshot, seed=seed, start_index=index)
        chosen.append(d.node_name)
        if d.node_name:
            snapshot.assume(p, d.node_name)
    return chosen


def test_same_seed_same_choices() -> None:
    assert run_sequence(7) == run_sequence(7)


def test_ties_follow_the_seed() -> None:
    nodes = [node("a"), node("b"), node("c"), node("d")]
    picks = {schedule(pod("same"), nodes, seed=s).node_name for s in range(40)}
    assert len(picks) > 1
    assert run_sequence(1) != run_sequence(2)


# ---- snapshot bookkeeping ------------------------------------------------------------------------------


def test_snapshot_incremental_updates() -> None:
    snap = ClusterSnapshot([node("a", cpu="2")])
    snap.add_pod(pod("x", cpu="1", node_name="b"))  # node not known yet: kept aside
    assert snap.num_nodes == 1 and snap.get("b") is None
    snap.add_node(node("b", cpu="2"))
    b = snap.get("b")
    assert b is not None and b.requested_milli_cpu == 1000
    snap.update_pod(pod("x", cpu="1", node_name="b", phase="Succeeded"))
    assert b.requested_milli_cpu == 0 and not b.pods
    snap.add_pod(pod("y", cpu="500m", node_name="a"))
    snap.remove_pod(pod("y", node_name="a"))
    a = snap.get("a")
    assert a is not None and a.requested_milli_cpu == 0
    snap.update_node(node("a", cpu="3", labels={"k": "v"}))
    assert a.alloc_milli_cpu == 3000 and a.labels == {"k": "v"}
    snap.add_pod(pod("z", cpu="1", node_name="a"))
    snap.remove_node("a")
    assert [n.name for n in snap] == ["b"]
    snap.add_node(node("a", cpu="3"))  # comes back with its pod still counted
    again = snap.get("a")
    assert again is not None and again.requested_milli_cpu == 1000
    assert [n.name for n in snap] == ["a", "b"]


def test_assume_and_forget() -> None:
    snap = ClusterSnapshot([node("a", cpu="1")])
    p = pod("p", cpu="600m")
    d, _ = schedule_one(p, snap, seed=0)
    assert d.node_name == "a"
    snap.assume(p, "a")
    assert snap.is_assumed(p) and snap.node_of(p) == "a"
    d2, _ = schedule_one(pod("q", cpu="600m"), snap, seed=0)
    assert d2.node_name is None and d2.filter_results["a"] == ("Insufficient cpu",)
    with pytest.raises(SnapshotError):
        snap.assume(p, "a")
    snap.forget(p)
    assert not snap.is_assumed(p) and snap.node_of(p) is None
    with pytest.raises(SnapshotError):
        snap.forget(p)
    with pytest.raises(SnapshotError):
        snap.assume(p, "nowhere")


def test_watch_event_confirms_assumed_pod() -> None:
    snap = ClusterSnapshot([node("a")])
    p = pod("p", cpu="1")
    snap.assume(p, "a")
    snap.add_pod(pod("p", cpu="1", node_name="a"))
    assert not snap.is_assumed(p)
    info = snap.get("a")
    assert info is not None and info.requested_milli_cpu == 1000


def test_compile_pod_is_total() -> None:
    """Odd but storable inputs don't raise."""
    facts = compile_pod(
        {
            "metadata": {"name": "odd"},
            "spec": {
                "containers": [container({"cpu": "not-a-quantity"})],
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 5, "preference": {"matchExpressions": [expr("k", "Gt", "x")]}}
                        ]
                    }
                },
            },
        }
    )
    assert facts.requests == PodRequests(0, 0, 100, DEFAULT_MEMORY_REQUEST, (), 0)
    assert facts.preferred_terms == ()


# ---- queue order, explain ----------------------------------------------------------------------------


def test_queue_order() -> None:
    def qp(name: str, priority: int | None, created: str | None) -> dict[str, Any]:
        p = pod(name, priority=priority)
        if created:
            p["metadata"]["creationTimestamp"] = created
        return p

    pods = [
        qp("late", 0, "2025-01-01T00:00:05Z"),
        qp("none", 0, None),
        qp("early", 0, "2025-01-01T00:00:01Z"),
        qp("vip", 1000, "2025-01-02T00:00:00Z"),
        qp("b-same", 0, "2025-01-01T00:00:03Z"),
        qp("a-same", 0, "2025-01-01T00:00:03Z"),
        qp("low", -5, "2024-01-01T00:00:00Z"),
    ]
    assert [p["metadata"]["name"] for p in order_queue(pods)] == [
        "vip",
        "early",
        "a-same",
        "b-same",
        "late",
        "none",
        "low",
    ]
    assert queue_key(pods[3]) < queue_key(pods[0])


def test_explain_is_compact_json() -> None:
    nodes = [node("a"), node("b", taints=[GPU]), node("c", cpu="2"), node("d", unschedulable=True)]
    d = schedule(pod(cpu="1"), nodes)
    out = explain(d, top=2)
    json.dumps(out)
    assert out["result"] == "Scheduled" and out["node"] == d.node_name
    assert out["nodes"] == {"total": 4, "evaluated": 4, "feasible": 2}
    by_plugin = {f["plugin"]: f for f in out["filters"]}
    assert by_plugin["NodeUnschedulable"] == {
        "plugin": "NodeUnschedulable",
        "evaluated": 4,
        "rejected": 1,
        "reasons": {"node(s) were unschedulable": 1},
    }
    assert by_plugin["TaintToleration"]["evaluated"] == 3 and by_plugin["TaintToleration"]["rejected"] == 1
    assert by_plugin["NodeResourcesFit"] == {
        "plugin": "NodeResourcesFit",
        "evaluated": 2,
        "rejected": 0,
        "reasons": {},
    }
    top = out["scores"]["top"]
    assert [t["node"] for t in top] == ["a", "c"] and top[0]["total"] == d.totals["a"]
    failed = explain(schedule(pod(cpu="9"), [node("a")]))
    assert failed["result"] == "Unschedulable" and failed["scores"]["top"] == []


# ---- property: never over capacity, never on a node that fails its filters ----------------------------

TAINT_POOL = [
    taint("dedicated", "gpu"),
    taint("node.kubernetes.io/not-ready", "", "NoExecute"),
    taint("soft", "x", "PreferNoSchedule"),
]
TOLERATION_POOL = [
    tol("dedicated", "Equal", "gpu", "NoSchedule"),
    tol("node.kubernetes.io/not-ready", "Exists"),
    tol(operator="Exists"),
]

node_specs = st.lists(
    st.tuples(
        st.integers(0, 4000),  # millicores
        st.integers(0, 4096),  # MiB
        st.integers(0, 6),  # pods
        st.lists(st.sampled_from(range(len(TAINT_POOL))), max_size=2, unique=True),
        st.sampled_from(["ssd", "hdd", None]),
        st.booleans(),  # unschedulable
    ),
    min_size=0,
    max_size=8,
)
pod_specs = st.lists(
    st.tuples(
        st.integers(0, 2000),
        st.integers(0, 2048),
        st.lists(st.sampled_from(range(len(TOLERATION_POOL))), max_size=2, unique=True),
        st.sampled_from(["ssd", "hdd", None]),
    ),
    min_size=1,
    max_size=25,
)


PodShape = tuple[int, int, list[int], str | None]  # millicores, MiB, tolerations, disk selector
NodeShape = tuple[int, int, int, list[int], str | None, bool]  # millicores, MiB, pods, taints, disk, cordoned


def oracle_allows(spec: PodShape, n: NodeShape, used: tuple[int, int, int]) -> bool:
    """An independent, naive statement of the filters for the generated shapes."""
    cpu, mem, tols, disk = spec
    n_cpu, n_mem, n_pods, taints, n_disk, cordoned = n
    tolerate_all = 2 in tols
    if cordoned and not tolerate_all:
        return False
    for t in taints:
        if t == 0 and not (tolerate_all or 0 in tols):
            return False
        if t == 1 and not (tolerate_all or 1 in tols):
            return False
    if disk is not None and n_disk != disk:
        return False
    u_cpu, u_mem, u_pods = used
    if u_pods + 1 > n_pods:
        return False
    if cpu > 0 and cpu > n_cpu - u_cpu:
        return False
    return not (mem > 0 and mem > n_mem - u_mem)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=node_specs, pods=pod_specs, seed=st.integers(0, 2**32))
def test_property_capacity_and_filters_hold(nodes: list[Any], pods: list[Any], seed: int) -> None:
    node_objs = []
    for i, (cpu, mem, npods, taints, disk, cordoned) in enumerate(nodes):
        node_objs.append(
            node(
                f"n{i}",
                cpu=f"{cpu}m",
                memory=f"{mem}Mi",
                pods=str(npods),
                labels={"disk": disk} if disk else {},
                taints=[TAINT_POOL[t] for t in taints],
                unschedulable=cordoned,
            )
        )
    snapshot = ClusterSnapshot(node_objs)
    used = {f"n{i}": [0, 0, 0] for i in range(len(nodes))}
    index = 0
    for j, (cpu, mem, tols, disk) in enumerate(pods):
        requests = {}
        if cpu:
            requests["cpu"] = f"{cpu}m"
        if mem:
            requests["memory"] = f"{mem}Mi"
        p: dict[str, Any] = {
            "metadata": {"name": f"p{j}", "namespace": "prop", "uid": f"u{j}"},
            "spec": {"containers": [container(requests)], "tolerations": [TOLERATION_POOL[t] for t in tols]},
        }
        if disk:
            p["spec"]["nodeSelector"] = {"disk": disk}
        allowed = {
            f"n{i}"
            for i, n in enumerate(nodes)
            if oracle_allows(
                (cpu, mem, tols, disk), n, (used[f"n{i}"][0], used[f"n{i}"][1], used[f"n{i}"][2])
            )
        }
        d, index = schedule_one(p, snapshot, seed=seed, start_index=index)
        assert 0 <= index < max(len(nodes), 1)
        if d.node_name is None:
            assert not allowed, (d.message, allowed)
            continue
        assert d.node_name in allowed
        snapshot.assume(p, d.node_name)
        u = used[d.node_name]
        u[0] += cpu
        u[1] += mem
        u[2] += 1
    for info in snapshot:
        assert info.requested_milli_cpu <= info.alloc_milli_cpu
        assert info.requested_memory <= info.alloc_memory
        assert len(info.pods) <= info.alloc_pods
        assert info.requested_milli_cpu == used[info.name][0]
        assert info.requested_memory == used[info.name][1] * Mi
