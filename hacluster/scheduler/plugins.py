"""kube-scheduler's default-profile filter and score plugins, as pure functions over `NodeInfo`.

`compile_pod` turns a pod into `PodFacts` once per scheduling attempt (tolerations, node selector and
affinity parsed, requests computed); the per-node functions then do only dictionary look-ups and integer
arithmetic. `policy.schedule_one` drives them; tests may call them directly.

Semantics and reason strings follow kubernetes/kubernetes (master ≈ v1.35; the taint reason as v1.30 words it):
`pkg/scheduler/framework/plugins/{nodeunschedulable,nodename,tainttoleration,nodeaffinity,noderesources}`,
`k8s.io/component-helpers/scheduling/corev1` (toleration and node-selector matching) and
`pkg/scheduler/apis/config/v1/default_plugins.go` (filter order and score weights).
Not modelled: NodePorts, volumes, PodTopologySpread, InterPodAffinity, ImageLocality, DRA.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from hacluster.model.pods import PodRequests, compute_pod_requests
from hacluster.model.taints import (
    EFFECT_NO_SCHEDULE,
    EFFECT_PREFER_NO_SCHEDULE,
    Taint,
    Toleration,
    parse_tolerations,
    tolerations_tolerate,
)
from hacluster.scheduler.nodeinfo import NodeInfo

MAX_NODE_SCORE = 100

# Plugin names (pkg/scheduler/framework/plugins/names).
NODE_UNSCHEDULABLE = "NodeUnschedulable"
NODE_NAME = "NodeName"
TAINT_TOLERATION = "TaintToleration"
NODE_AFFINITY = "NodeAffinity"
NODE_RESOURCES_FIT = "NodeResourcesFit"
BALANCED_ALLOCATION = "NodeResourcesBalancedAllocation"

# Filter order of the default profile (default_plugins.go: TaintToleration comes before NodeAffinity).
FILTER_ORDER = (NODE_UNSCHEDULABLE, NODE_NAME, TAINT_TOLERATION, NODE_AFFINITY, NODE_RESOURCES_FIT)
# Score weights of the default profile.
SCORE_WEIGHTS: Mapping[str, int] = {
    TAINT_TOLERATION: 3,
    NODE_AFFINITY: 2,
    NODE_RESOURCES_FIT: 1,
    BALANCED_ALLOCATION: 1,
}

# Filter reasons, worded as kube-scheduler words them.
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
# As Kubernetes v1.30 (the version /version reports) words it: the first untolerated NoSchedule/NoExecute
# taint's key and value, `fmt.Sprintf("node(s) had untolerated taint {%s: %s}", taint.Key, taint.Value)`.
# (kubernetes#134740, v1.35 and backported to 1.34, later dropped them: "node(s) had untolerated taint(s)".)
REASON_UNTOLERATED_TAINT_FORMAT = "node(s) had untolerated taint {{{key}: {value}}}"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_AFFINITY_CONFLICT = "pod affinity terms conflict"
REASON_PREFILTER_AFFINITY = "node(s) didn't satisfy plugin(s) [NodeAffinity]"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_INSUFFICIENT_CPU = "Insufficient cpu"
REASON_INSUFFICIENT_MEMORY = "Insufficient memory"

TAINT_NODE_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


class Rejection(NamedTuple):
    """Why one node was filtered out: the plugin, its reasons, and whether the status is
    UnschedulableAndUnresolvable (preemption can't help) rather than Unschedulable."""

    plugin: str
    reasons: tuple[str, ...]
    unresolvable: bool


REJECT_UNSCHEDULABLE = Rejection(NODE_UNSCHEDULABLE, (REASON_UNSCHEDULABLE,), True)
REJECT_NODE_NAME = Rejection(NODE_NAME, (REASON_NODE_NAME,), True)
REJECT_AFFINITY = Rejection(NODE_AFFINITY, (REASON_AFFINITY,), True)


# ---- label selectors (k8s.io/apimachinery labels.Requirement, component-helpers nodeaffinity) -----

_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_RE = re.compile(_NAME)
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_INT64_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# NodeSelectorOperator values.
OP_IN = "In"
OP_NOT_IN = "NotIn"
OP_EXISTS = "Exists"
OP_DOES_NOT_EXIST = "DoesNotExist"
OP_GT = "Gt"
OP_LT = "Lt"
FIELD_NODE_NAME = "metadata.name"


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and _NAME_RE.fullmatch(name) is not None


def _valid_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and _NAME_RE.fullmatch(value) is not None)


def parse_int64(text: str) -> int | None:
    """Go's `strconv.ParseInt(text, 10, 64)`: an optional sign and decimal digits, in int64 range."""
    if not _INT64_RE.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


@dataclass(frozen=True, slots=True)
class SelectorTerm:
    """A parsed `NodeSelectorTerm`: its label requirements and field requirements, ANDed.

    `valid` is False when the term failed to parse (unknown operator, wrong number of values, Gt/Lt
    value not an integer, bad key); such a term matches no node, as in kube-scheduler, which ignores the
    parse error of a required term when another term matches.
    """

    labels: tuple[tuple[str, str, Any], ...]
    fields: tuple[tuple[str, str, str], ...]
    valid: bool

    def matches(self, labels: Mapping[str, str], node_name: str) -> bool:
        """Whether a node with these labels and name satisfies every requirement of the term."""
        if not self.valid:
            return False
        for key, op, arg in self.labels:
            if op == OP_IN:
                value = labels.get(key)
                if value is None or value not in arg:
                    return False
            elif op == OP_NOT_IN:
                value = labels.get(key)
                if value is not None and value in arg:
                    return False
            elif op == OP_EXISTS:
                if key not in labels:
                    return False
            elif op == OP_DOES_NOT_EXIST:
                if key in labels:
                    return False
            else:  # Gt, Lt: the node's label must be an integer beyond the bound
                value = labels.get(key)
                number = parse_int64(value) if value is not None else None
                if number is None or (number <= arg if op == OP_GT else number >= arg):
                    return False
        if self.fields and node_name:
            for key, op, want in self.fields:
                have = node_name if key == FIELD_NODE_NAME else ""
                if (have == want) != (op == OP_IN):
                    return False
        return True


def _parse_label_requirement(expr: Mapping[str, Any]) -> tuple[str, str, Any] | None:
    key = str(expr.get("key") or "")
    op = str(expr.get("operator") or "")
    values = [str(v) for v in expr.get("values") or ()]
    if not _valid_label_key(key):
        return None
    if op in (OP_IN, OP_NOT_IN):
        if not values or not all(_valid_label_value(v) for v in values):
            return None
        return key, op, frozenset(values)
    if op in (OP_EXISTS, OP_DOES_NOT_EXIST):
        return (key, op, None) if not values else None
    if op in (OP_GT, OP_LT):
        bound = parse_int64(values[0]) if len(values) == 1 else None
        return (key, op, bound) if bound is not None else None
    return None


def _parse_field_requirement(expr: Mapping[str, Any]) -> tuple[str, str, str] | None:
    op = str(expr.get("operator") or "")
    values = list(expr.get("values") or ())
    if op not in (OP_IN, OP_NOT_IN) or len(values) != 1:
        return None
    return str(expr.get("key") or ""), op, str(values[0])


def parse_selector_term(term: Mapping[str, Any]) -> SelectorTerm | None:
    """Parse a `NodeSelectorTerm`; None for an empty term (which selects no node)."""
    exprs = term.get("matchExpressions") or ()
    field_exprs = term.get("matchFields") or ()
    if not exprs and not field_exprs:
        return None
    labels = [_parse_label_requirement(e) for e in exprs]
    fields = [_parse_field_requirement(e) for e in field_exprs]
    valid = all(r is not None for r in labels) and all(r is not None for r in fields)
    return SelectorTerm(
        labels=tuple(r for r in labels if r is not None),
        fields=tuple(r for r in fields if r is not None),
        valid=valid,
    )


# ---- the pod, parsed once --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodFacts:
    """Everything the plugins need from one pod, parsed once per scheduling attempt.

    `required_terms` is None when the pod has no required node affinity (an empty tuple means it has one
    that matches nothing); `prefilter_names` is NodeAffinity's PreFilter result: the only node names the
    pod's `matchFields metadata.name In` terms allow, or None for all nodes (an empty set is the
    "pod affinity terms conflict" rejection).
    """

    namespace: str
    name: str
    requests: PodRequests
    node_name: str
    tolerations: tuple[Toleration, ...]
    prefer_tolerations: tuple[Toleration, ...]
    tolerates_everything: bool
    tolerates_unschedulable: bool
    node_selector: tuple[tuple[str, str], ...]
    required_terms: tuple[SelectorTerm, ...] | None
    preferred_terms: tuple[tuple[int, SelectorTerm], ...]
    prefilter_names: frozenset[str] | None
    preemption_never: bool

    @property
    def has_required_affinity(self) -> bool:
        """True if NodeAffinity's filter has anything to check for this pod."""
        return bool(self.node_selector) or self.required_terms is not None


def _prefilter_names(required: Mapping[str, Any] | None) -> frozenset[str] | None:
    """NodeAffinity.PreFilter: the node names pinned by `matchFields metadata.name In` in every term."""
    if required is None:
        return None
    terms = required.get("nodeSelectorTerms") or ()
    if not terms:
        return None
    names: set[str] = set()
    for term in terms:
        term_names: set[str] | None = None
        for req in term.get("matchFields") or ():
            if req.get("key") == FIELD_NODE_NAME and req.get("operator") == OP_IN:
                values = {str(v) for v in req.get("values") or ()}
                term_names = values if term_names is None else term_names & values
        if term_names is None:
            return None  # this term doesn't pin names; terms are ORed, so every node may match
        names |= term_names
    return frozenset(names)


def compile_pod(pod: Mapping[str, Any]) -> PodFacts:
    """Parse what the plugins need from a pod. Never raises on malformed affinity: a term that does
    not parse matches no node, a preferred term that does not parse is ignored."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    tolerations = parse_tolerations(spec)
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    required_terms: tuple[SelectorTerm, ...] | None = None
    if required is not None:
        parsed = (parse_selector_term(t) for t in required.get("nodeSelectorTerms") or ())
        required_terms = tuple(t for t in parsed if t is not None)
    preferred: list[tuple[int, SelectorTerm]] = []
    for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
        weight = p.get("weight") or 0
        term = parse_selector_term(p.get("preference") or {})
        if isinstance(weight, int) and weight and term is not None and term.valid:
            preferred.append((weight, term))
    unschedulable_taint = Taint(TAINT_NODE_UNSCHEDULABLE, "", EFFECT_NO_SCHEDULE)
    return PodFacts(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        requests=compute_pod_requests(pod),
        node_name=str(spec.get("nodeName") or ""),
        tolerations=tolerations,
        prefer_tolerations=tuple(t for t in tolerations if t.effect in ("", EFFECT_PREFER_NO_SCHEDULE)),
        tolerates_everything=any(
            t.key == "" and t.operator == "Exists" and t.effect == "" for t in tolerations
        ),
        tolerates_unschedulable=tolerations_tolerate(tolerations, unschedulable_taint),
        node_selector=tuple((str(k), str(v)) for k, v in (spec.get("nodeSelector") or {}).items()),
        required_terms=required_terms,
        preferred_terms=tuple(preferred),
        prefilter_names=_prefilter_names(required),
        preemption_never=spec.get("preemptionPolicy") == "Never",
    )


# ---- filters ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def taint_rejection(taint: Taint) -> Rejection:
    """TaintToleration's (UnschedulableAndUnresolvable) rejection for a node whose first untolerated
    taint is `taint`: "node(s) had untolerated taint {dedicated: gpu}"."""
    reason = REASON_UNTOLERATED_TAINT_FORMAT.format(key=taint.key, value=taint.value)
    return Rejection(TAINT_TOLERATION, (reason,), True)


def untolerated_taint(pod: PodFacts, node: NodeInfo) -> Taint | None:
    """TaintToleration filter: the first NoSchedule/NoExecute taint the pod does not tolerate."""
    if pod.tolerates_everything:
        return None
    for taint in node.hard_taints:
        if not tolerations_tolerate(pod.tolerations, taint):
            return taint
    return None


def matches_required_affinity(pod: PodFacts, node: NodeInfo) -> bool:
    """NodeAffinity filter: `spec.nodeSelector` (all labels equal) and, if present, at least one
    required `nodeSelectorTerm`."""
    labels = node.labels
    for key, value in pod.node_selector:
        if labels.get(key) != value:
            return False
    if pod.required_terms is None:
        return True
    return any(term.matches(labels, node.name) for term in pod.required_terms)


def fit_rejection(
    req: PodRequests, node: NodeInfo, *, freed: PodRequests | None = None, freed_pods: int = 0
) -> Rejection | None:
    """NodeResourcesFit filter (`fitsRequest`), optionally as if `freed`/`freed_pods` were removed.

    Reasons in kube-scheduler's order: Too many pods, cpu, memory, ephemeral-storage, then extended
    resources (sorted here; Go's map order is random). The status is unresolvable when some request
    exceeds the node's whole allocatable, so no preemption could make room.
    """
    used_cpu, used_mem = node.requested_milli_cpu, node.requested_memory
    used_pods = len(node.pods) - freed_pods
    if freed is not None:
        used_cpu -= freed.milli_cpu
        used_mem -= freed.memory
    reasons: list[str] = []
    unresolvable = False
    if used_pods + 1 > node.alloc_pods:
        reasons.append(REASON_TOO_MANY_PODS)
    if not req.is_zero:
        cpu = req.milli_cpu
        if cpu > 0 and cpu > node.alloc_milli_cpu - used_cpu:
            reasons.append(REASON_INSUFFICIENT_CPU)
            unresolvable = unresolvable or cpu > node.alloc_milli_cpu
        mem = req.memory
        if mem > 0 and mem > node.alloc_memory - used_mem:
            reasons.append(REASON_INSUFFICIENT_MEMORY)
            unresolvable = unresolvable or mem > node.alloc_memory
        if req.scalars:
            freed_scalars = dict(freed.scalars) if freed is not None else {}
            for name, amount in req.scalars:
                alloc = node.alloc_scalars.get(name, 0)
                used = node.requested_scalars.get(name, 0) - freed_scalars.get(name, 0)
                if amount > alloc - used:
                    reasons.append(f"Insufficient {name}")
                    unresolvable = unresolvable or amount > alloc
    if not reasons:
        return None
    return Rejection(NODE_RESOURCES_FIT, tuple(reasons), unresolvable)


def run_filters(pod: PodFacts, node: NodeInfo) -> Rejection | None:
    """Run the filters in the default profile's order; the first that fails decides (as in
    `RunFilterPlugins`). None means the node is feasible."""
    if node.unschedulable and not pod.tolerates_unschedulable:
        return REJECT_UNSCHEDULABLE
    if pod.node_name and pod.node_name != node.name:
        return REJECT_NODE_NAME
    if node.hard_taints:
        taint = untolerated_taint(pod, node)
        if taint is not None:
            return taint_rejection(taint)
    if (pod.node_selector or pod.required_terms is not None) and not matches_required_affinity(pod, node):
        return REJECT_AFFINITY
    req = pod.requests
    if (
        len(node.pods) < node.alloc_pods
        and not req.scalars
        and req.milli_cpu <= node.alloc_milli_cpu - node.requested_milli_cpu
        and req.memory <= node.alloc_memory - node.requested_memory
    ):
        return None  # fast path: plainly fits; fit_rejection decides every other case
    return fit_rejection(req, node)


# ---- scores ----------------------------------------------------------------------------------------


def least_allocated_score(req: PodRequests, node: NodeInfo) -> int:
    """NodeResourcesFit score, LeastAllocated strategy, cpu and memory weight 1 each:
    mean over resources with allocatable of `(allocatable - requested) * 100 // allocatable`, with
    requests counted the non-zero way (100m / 200Mi for containers that ask for nothing)."""
    total = weights = 0
    cap = node.alloc_milli_cpu
    if cap:
        used = node.nonzero_milli_cpu + req.nonzero_milli_cpu
        total += (cap - used) * MAX_NODE_SCORE // cap if used <= cap else 0
        weights += 1
    cap = node.alloc_memory
    if cap:
        used = node.nonzero_memory + req.nonzero_memory
        total += (cap - used) * MAX_NODE_SCORE // cap if used <= cap else 0
        weights += 1
    return total // weights if weights else 0


def balanced_allocation_score(req: PodRequests, node: NodeInfo) -> int:
    """NodeResourcesBalancedAllocation: `int((1 - std) * 100)` over the cpu and memory fractions
    requested (actual requests, capped at 1); with two resources std is |f_cpu - f_mem| / 2, with
    fewer it is 0 (a resource the node has no allocatable of is left out)."""
    cap_cpu, cap_mem = node.alloc_milli_cpu, node.alloc_memory
    if not (cap_cpu and cap_mem):
        return MAX_NODE_SCORE
    f_cpu = (node.requested_milli_cpu + req.milli_cpu) / cap_cpu
    f_cpu = min(f_cpu, 1.0)
    f_mem = (node.requested_memory + req.memory) / cap_mem
    f_mem = min(f_mem, 1.0)
    return int((1 - abs((f_cpu - f_mem) / 2)) * MAX_NODE_SCORE)


def balanced_allocation_skipped(req: PodRequests) -> bool:
    """BalancedAllocation's PreScore skips best-effort pods (no cpu or memory request), kubernetes#129138."""
    return req.milli_cpu == 0 and req.memory == 0


def node_affinity_raw_score(pod: PodFacts, node: NodeInfo) -> int:
    """NodeAffinity score before normalising: the summed weights of matching preferred terms."""
    labels, name = node.labels, node.name
    return sum(weight for weight, term in pod.preferred_terms if term.matches(labels, name))


def taint_toleration_raw_score(pod: PodFacts, node: NodeInfo) -> int:
    """TaintToleration score before normalising: how many PreferNoSchedule taints the pod's
    PreferNoSchedule (or effect-less) tolerations leave untolerated."""
    if not node.soft_taints:
        return 0
    return sum(1 for taint in node.soft_taints if not tolerations_tolerate(pod.prefer_tolerations, taint))


def default_normalize(scores: list[int], reverse: bool) -> list[int]:
    """helper.DefaultNormalizeScore: scale to [0, 100] by the maximum; `reverse` flips it (all-zero
    input becomes all 100 when reversed, stays 0 otherwise)."""
    highest = max(scores, default=0)
    if highest == 0:
        return [MAX_NODE_SCORE] * len(scores) if reverse else list(scores)
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * s // highest for s in scores]
    return [MAX_NODE_SCORE * s // highest for s in scores]


def score_nodes(pod: PodFacts, nodes: Sequence[NodeInfo]) -> tuple[list[dict[str, int]], list[int]]:
    """Run the score plugins over the feasible nodes.

    Returns, per node in order, each plugin's normalised 0–100 score (before weighting; plugins whose
    PreScore skips this pod are absent) and the weighted total that ranks the node.
    """
    req = pod.requests
    skip_balanced = balanced_allocation_skipped(req)
    w_fit, w_bal = SCORE_WEIGHTS[NODE_RESOURCES_FIT], SCORE_WEIGHTS[BALANCED_ALLOCATION]
    w_aff, w_taint = SCORE_WEIGHTS[NODE_AFFINITY], SCORE_WEIGHTS[TAINT_TOLERATION]
    per_node: list[dict[str, int]] = []
    totals: list[int] = []
    for node in nodes:
        fit = least_allocated_score(req, node)
        if skip_balanced:
            per_node.append({NODE_RESOURCES_FIT: fit})
            totals.append(w_fit * fit)
        else:
            balanced = balanced_allocation_score(req, node)
            per_node.append({NODE_RESOURCES_FIT: fit, BALANCED_ALLOCATION: balanced})
            totals.append(w_fit * fit + w_bal * balanced)
    if pod.preferred_terms:
        raw = default_normalize([node_affinity_raw_score(pod, n) for n in nodes], reverse=False)
        for i, value in enumerate(raw):
            per_node[i][NODE_AFFINITY] = value
            totals[i] += w_aff * value
    raw = default_normalize([taint_toleration_raw_score(pod, n) for n in nodes], reverse=True)
    for i, value in enumerate(raw):
        per_node[i][TAINT_TOLERATION] = value
        totals[i] += w_taint * value
    return per_node, totals


def weighted_total(scores: Mapping[str, int]) -> int:
    """A node's final score from its per-plugin scores: each times its default-profile weight, summed."""
    return sum(SCORE_WEIGHTS[plugin] * value for plugin, value in scores.items())
