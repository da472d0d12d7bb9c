"""The scheduler's pure policy: pick a node for one pod, or say exactly why none fits.

Called by the leader-only scheduling loop (which owns the queue, the clock and the I/O): it pops pods in
`queue_key` order, calls `schedule_one(pod, snapshot, seed=..., start_index=...)`, proposes a binding for
`decision.node_name` (then `snapshot.assume(pod, node)`), or records `decision.message` as the pod's
`PodScheduled=False/Unschedulable` condition and `FailedScheduling` event. `explain(decision)` is a small
JSON-able summary for an annotation or event.

Behaves like kube-scheduler's default profile (kubernetes/kubernetes master ≈ v1.35,
`pkg/scheduler/schedule_one.go`): filters run from a rotating start index only until
`num_feasible_nodes_to_find` feasible nodes are found; a single feasible node is taken unscored;
otherwise the highest weighted total wins and ties are broken by a random choice seeded from
`seed` and the pod's namespace/name, so a run is reproducible. On failure the message is kube-scheduler's
FitError text including the DefaultPreemption suffix. This module never preempts: when kube-scheduler
would have found victims, `Decision.preemption_candidates` names the nodes and the message carries no
preemption clause (as kube-scheduler's does after a successful preemption).

Pure: no I/O, no clock, no global random state; the snapshot is only read.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacluster.model.pods import PodRequests, pod_priority
from hacluster.model.timestamps import parse_rfc3339
from hacluster.scheduler.nodeinfo import ClusterSnapshot, NodeInfo
from hacluster.scheduler.plugins import (
    BALANCED_ALLOCATION,
    FILTER_ORDER,
    NODE_AFFINITY,
    NODE_RESOURCES_FIT,
    REASON_AFFINITY_CONFLICT,
    REASON_PREFILTER_AFFINITY,
    SCORE_WEIGHTS,
    TAINT_TOLERATION,
    PodFacts,
    Rejection,
    compile_pod,
    fit_rejection,
    run_filters,
    score_nodes,
)

# schedule_one.go
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
NO_NODES_MESSAGE = "no nodes available to schedule pods"  # ErrNoNodesAvailable
# DefaultPreemption / preemption.Evaluator
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_PREEMPTION_VICTIMS = "No preemption victims found for incoming pod"
PREEMPTION_NEVER = "not eligible due to preemptionPolicy=Never."

EXPLAIN_TOP_NODES = 3  # candidates listed by `explain`


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one scheduling attempt. Treat the dicts as read-only.

    node_name: the chosen node, or None if the pod is unschedulable now.
    message: "" on success; otherwise kube-scheduler's text, e.g. "0/3 nodes are available: 1 Insufficient
        cpu, 2 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/3 nodes are available: 1 No
        preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.", or
        "no nodes available to schedule pods".
    filter_results: for every node the filters ran on, its rejection reasons (() = feasible).
    rejected_by: for every rejected node, the filter plugin that rejected it.
    scores: per scored node, each score plugin's normalised 0–100 score (before weights). Empty when
        fewer than two nodes were feasible (kube-scheduler does not score a lone candidate).
    totals: per scored node, the weighted sum that decided (weights in `plugins.SCORE_WEIGHTS`).
    evaluated_nodes / feasible_nodes / total_nodes: nodes filtered, nodes that passed, nodes known.
    preemption_candidates: on failure, nodes where evicting lower-priority pods would make room
        (kube-scheduler would preempt there; this policy does not).
    """

    node_name: str | None
    message: str
    filter_results: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rejected_by: dict[str, str] = field(default_factory=dict)
    scores: dict[str, dict[str, int]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    evaluated_nodes: int = 0
    feasible_nodes: int = 0
    total_nodes: int = 0
    preemption_candidates: tuple[str, ...] = ()

    @property
    def scheduled(self) -> bool:
        """True if a node was chosen."""
        return self.node_name is not None


def num_feasible_nodes_to_find(num_all_nodes: int, percentage_of_nodes_to_score: int = 0) -> int:
    """How many feasible nodes to find before filtering stops (`numFeasibleNodesToFind`).

    All nodes below 100; otherwise `percentage_of_nodes_to_score` percent (0 = adaptive:
    50 - nodes/125, at least 5), and never fewer than 100.
    """
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    percentage = percentage_of_nodes_to_score
    if percentage == 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def _histogram(counts: Mapping[str, int]) -> str:
    """FitError's reason list: "<count> <reason>" strings sorted as Go's sort.Strings, comma-joined."""
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def fit_error_message(
    total_nodes: int, counts: Mapping[str, int], post_filter: str = "", pre_filter: str = ""
) -> str:
    """`FitError.Error()`: "0/N nodes are available: <PreFilterMsg or reason histogram>. <PostFilterMsg>"."""
    message = f"0/{total_nodes} nodes are available:"
    if pre_filter:
        message += f" {pre_filter}."
    elif counts:
        message += f" {_histogram(counts)}."
    if post_filter:
        message += f" {post_filter}"
    return message


def _victims_room(pod_priority_value: int, node: NodeInfo) -> tuple[PodRequests, int] | None:
    """The summed requests of the pods on `node` with lower priority than the preemptor, or None."""
    cpu = mem = 0
    scalars: dict[str, int] = {}
    count = 0
    for req in node.pods.values():
        if req.priority < pod_priority_value:
            count += 1
            cpu += req.milli_cpu
            mem += req.memory
            for name, value in req.scalars:
                scalars[name] = scalars.get(name, 0) + value
    if not count:
        return None
    freed = PodRequests(cpu, mem, 0, 0, tuple(sorted(scalars.items())), 0)
    return freed, count


def preemption_outcome(
    pod: PodFacts, snapshot: ClusterSnapshot, rejections: Mapping[str, Rejection]
) -> tuple[str, tuple[str, ...]]:
    """What DefaultPreemption's PostFilter would report, without evicting anything.

    Returns (message, candidates). Nodes rejected as unresolvable (and nodes never filtered) count as
    "Preemption is not helpful for scheduling"; a resource-rejected node with no lower-priority pod gives
    "No preemption victims found for incoming pod"; one that still doesn't fit with all of them gone
    gives the fit reasons again. If some node would fit, kube-scheduler preempts: the message is "" and
    those nodes are returned as candidates.
    """
    if pod.preemption_never:
        return f"preemption: {PREEMPTION_NEVER}", ()
    statuses: Counter[str] = Counter()
    evaluated = 0
    candidates: list[str] = []
    priority = pod.requests.priority
    for name, rejection in rejections.items():
        if rejection.unresolvable:
            continue
        node = snapshot.get(name)
        if node is None:
            continue
        evaluated += 1
        room = _victims_room(priority, node)
        if room is None:
            statuses[NO_PREEMPTION_VICTIMS] += 1
            continue
        still = fit_rejection(pod.requests, node, freed=room[0], freed_pods=room[1])
        if still is None:
            candidates.append(name)
        else:
            statuses.update(still.reasons)
    if candidates:
        return "", tuple(candidates)
    not_helpful = snapshot.num_nodes - evaluated
    if not_helpful > 0:
        statuses[PREEMPTION_NOT_HELPFUL] += not_helpful
    return f"preemption: {fit_error_message(snapshot.num_nodes, statuses)}", ()


def _rng_for(seed: int, pod: PodFacts) -> random.Random:
    return random.Random(f"{seed}/{pod.namespace}/{pod.name}")


def schedule_one(
    pod: Mapping[str, Any],
    snapshot: ClusterSnapshot,
    *,
    seed: int,
    start_index: int = 0,
    percentage_of_nodes_to_score: int = 0,
) -> tuple[Decision, int]:
    """Choose a node for `pod` in `snapshot`, returning the decision and the next start index.

    The caller keeps the returned index and passes it to the next call so that, in a large cluster,
    every node gets its turn at being filtered (kube-scheduler's `nextStartNodeIndex`). `seed` makes tie
    breaking reproducible. The snapshot is not modified: assume the pod yourself if you bind it.
    Never raises for any pod or node the API server could have stored.
    """
    total = snapshot.num_nodes
    if total == 0:
        return Decision(None, NO_NODES_MESSAGE), start_index
    facts = compile_pod(pod)
    nodes = snapshot.node_infos()

    # NodeAffinity PreFilter: pods pinned to node names (DaemonSet pods) only look at those nodes.
    absent_reason = ""
    if facts.prefilter_names is not None:
        if not facts.prefilter_names:
            post, _ = preemption_outcome(facts, snapshot, {})
            message = fit_error_message(total, {}, post_filter=post, pre_filter=REASON_AFFINITY_CONFLICT)
            return Decision(None, message, total_nodes=total), start_index
        names = facts.prefilter_names
        nodes = [n for n in nodes if n.name in names]
        absent_reason = REASON_PREFILTER_AFFINITY

    count = len(nodes)
    to_find = num_feasible_nodes_to_find(count, percentage_of_nodes_to_score)
    feasible: list[NodeInfo] = []
    results: dict[str, tuple[str, ...]] = {}
    rejections: dict[str, Rejection] = {}
    for i in range(count):
        node = nodes[(start_index + i) % count]
        rejection = run_filters(facts, node)
        if rejection is None:
            results[node.name] = ()
            feasible.append(node)
            if len(feasible) >= to_find:
                break
        else:
            results[node.name] = rejection.reasons
            rejections[node.name] = rejection
    next_index = (start_index + len(results)) % total
    rejected_by = {name: r.plugin for name, r in rejections.items()}

    if not feasible:
        reasons: Counter[str] = Counter()
        for rejection in rejections.values():
            reasons.update(rejection.reasons)
        if absent_reason and total > len(rejections):
            reasons[absent_reason] += total - len(rejections)
        post, candidates = preemption_outcome(facts, snapshot, rejections)
        decision = Decision(
            None,
            fit_error_message(total, reasons, post_filter=post),
            results,
            rejected_by,
            evaluated_nodes=len(results),
            feasible_nodes=0,
            total_nodes=total,
            preemption_candidates=candidates,
        )
        return decision, next_index

    if len(feasible) == 1:
        return Decision(
            feasible[0].name,
            "",
            results,
            rejected_by,
            evaluated_nodes=len(results),
            feasible_nodes=1,
            total_nodes=total,
        ), next_index

    per_node, node_totals = score_nodes(facts, feasible)
    scores: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    best = -1
    ties: list[str] = []
    for node, node_scores, value in zip(feasible, per_node, node_totals, strict=True):
        scores[node.name] = node_scores
        totals[node.name] = value
        if value > best:
            best, ties = value, [node.name]
        elif value == best:
            ties.append(node.name)
    chosen = ties[0] if len(ties) == 1 else _rng_for(seed, facts).choice(ties)
    decision = Decision(
        chosen,
        "",
        results,
        rejected_by,
        scores,
        totals,
        evaluated_nodes=len(results),
        feasible_nodes=len(feasible),
        total_nodes=total,
    )
    return decision, next_index


def explain(decision: Decision, *, top: int = EXPLAIN_TOP_NODES) -> dict[str, Any]:
    """A compact, JSON-able account of a decision for an annotation or event.

    {"result": "Scheduled"|"Unschedulable", "node", "message", "nodes": {total, evaluated, feasible},
     "filters": [{"plugin", "evaluated", "rejected", "reasons": {reason: count}}] in filter order,
     "scores": {"weights": {...}, "top": [{"node", "total", "plugins": {...}}]} (best first, ties by name),
     "preemptionCandidates": [...] (only when non-empty)}
    """
    rejected: dict[str, Counter[str]] = {plugin: Counter() for plugin in FILTER_ORDER}
    rejected_nodes: Counter[str] = Counter()
    for node, plugin in decision.rejected_by.items():
        rejected_nodes[plugin] += 1
        rejected.setdefault(plugin, Counter()).update(decision.filter_results.get(node, ()))
    filters = []
    reaching = decision.evaluated_nodes
    for plugin in FILTER_ORDER:
        filters.append(
            {
                "plugin": plugin,
                "evaluated": reaching,
                "rejected": rejected_nodes[plugin],
                "reasons": dict(sorted(rejected[plugin].items())),
            }
        )
        reaching -= rejected_nodes[plugin]
    ranked = heapq.nsmallest(max(top, 0), decision.totals.items(), key=lambda kv: (-kv[1], kv[0]))
    out: dict[str, Any] = {
        "result": "Scheduled" if decision.scheduled else "Unschedulable",
        "node": decision.node_name,
        "message": decision.message,
        "nodes": {
            "total": decision.total_nodes,
            "evaluated": decision.evaluated_nodes,
            "feasible": decision.feasible_nodes,
        },
        "filters": filters,
        "scores": {
            "weights": {
                p: SCORE_WEIGHTS[p]
                for p in (TAINT_TOLERATION, NODE_AFFINITY, NODE_RESOURCES_FIT, BALANCED_ALLOCATION)
            },
            "top": [
                {"node": name, "total": value, "plugins": dict(decision.scores.get(name, {}))}
                for name, value in ranked
            ],
        },
    }
    if decision.preemption_candidates:
        out["preemptionCandidates"] = list(decision.preemption_candidates)
    return out


def _creation_seconds(pod: Mapping[str, Any]) -> float | None:
    return parse_rfc3339((pod.get("metadata") or {}).get("creationTimestamp"))


def queue_key(pod: Mapping[str, Any]) -> tuple[int, int, float, str, str]:
    """Sort key for the scheduling queue (PrioritySort): higher `spec.priority` first, then older
    `metadata.creationTimestamp` (pods without one last), then namespace and name."""
    meta = pod.get("metadata") or {}
    created = _creation_seconds(pod)
    return (
        -pod_priority(pod),
        0 if created is not None else 1,
        created if created is not None else 0.0,
        str(meta.get("namespace") or "default"),
        str(meta.get("name") or ""),
    )


def order_queue(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods in scheduling-queue order (`queue_key`)."""
    return sorted(pods, key=queue_key)
