"""One pod's journey through the control plane, step by step, from what the cluster recorded about it.

Pure functions used by the dashboard's flow view and by `hacluster trace pod`: `pod_flow(pod, events, traces)`
walks the seed's pod creation flow — API server → Raft → scheduler → binding → kubelet → image → containers
→ Ready — and dates each step from the pod itself (creationTimestamp, conditions, nodeName, the scheduler's
explanation annotation), its events (Scheduled, Pulling, Pulled, Created, Started, BackOff, Failed) and the
API servers' write traces (`/debug/trace`, hacluster/apiserver/objtrace.py: which master and user, how long
the commit took, term and commit index), in seconds after the create. A step the pod has not reached is
"waiting"; where the flow stopped, the step says why (Unschedulable with the scheduler's message,
ErrImagePull / ImagePullBackOff, CrashLoopBackOff …). `failed_create_flow(namespace, name, traces)` tells where
a create that never committed stopped (503: nothing proposed, no quorum; 504: outcome unknown).

Steps timed from the traces are `precise` (microseconds, against the traced proposal of the create); steps
timed from objects and kubelet events have one-second resolution (against creationTimestamp); when the
create was traced, each of those is placed on the precise timeline and shows the latest time it can have
(`bound`); their order is the flow's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hacluster.format.pods import pod_status_reason
from hacluster.model.timestamps import parse_rfc3339

EXPLANATION_ANNOTATION = "scheduler.hacluster.io/explanation"
LANES = ("client", "API server", "Raft", "scheduler", "kubelet")
DONE, FAILED, WAITING = "done", "failed", "waiting"


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return None


def _event_time(e: Mapping[str, Any]) -> float | None:
    return parse_rfc3339(e.get("eventTime")) or parse_rfc3339(e.get("firstTimestamp")) or \
        parse_rfc3339((e.get("metadata") or {}).get("creationTimestamp"))


def _first(events: list[Mapping[str, Any]], reason: str, contains: str = "") -> Mapping[str, Any] | None:
    found = [e for e in events if e.get("reason") == reason and contains in str(e.get("message", ""))]
    return min(found, key=lambda e: _event_time(e) or 0.0) if found else None


def _explanation(pod: Mapping[str, Any]) -> str:
    """The scheduler's per-plugin explanation (annotation) in one line: nodes feasible, what each filter
    rejected, and the best scores."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(EXPLANATION_ANNOTATION)
    if not raw:
        return ""
    try:
        data = json.loads(raw)
        nodes = data.get("nodes") or {}
        parts = [f"{nodes.get('feasible', '?')} of {nodes.get('total', '?')} nodes feasible"]
        for f in data.get("filters") or []:
            if f.get("rejected"):
                reasons = ", ".join(f"{n} {r}" for r, n in (f.get("reasons") or {}).items())
                parts.append(f"{f.get('plugin')} rejected {f['rejected']}" + (f" ({reasons})" if reasons else ""))
        top = ((data.get("scores") or {}).get("top") or [])[:3]
        if top:
            parts.append("scores " + ", ".join(f"{t.get('node')} {t.get('total')}" for t in top))
        return "; ".join(parts)
    except (ValueError, AttributeError, TypeError):
        return str(raw)[:300]


def _create_trace(traces: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The write that created the object: the last committed Create (earlier ones may have failed)."""
    creates = [t for t in traces if t.get("write") == "Create"]
    committed = [t for t in creates if t.get("outcome") == "committed"]
    pick = committed or creates
    return max(pick, key=lambda t: float(t.get("proposed_at") or 0)) if pick else None


def _accepted_detail(trace: Mapping[str, Any]) -> str:
    role = trace.get("role")
    via = "the leader" if role == "leader" else f"a {role}, which forwarded it to the leader"
    return f"master {trace.get('master')} ({via}), user {trace.get('user') or '?'}"


def _commit_detail(trace: Mapping[str, Any]) -> str:
    ms = float(trace.get("answered_s") or 0) * 1000
    return (f"{trace.get('outcome')} {ms:.1f} ms after it was proposed; term {trace.get('term')}, commit index "
            f"{trace.get('commit_index')} on {trace.get('master')} when it answered")


def failed_create_flow(namespace: str, name: str, traces: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The journey of a pod whose create never committed (so there is no pod), from the masters' traces;
    None if no master recorded a create of it."""
    trace = _create_trace(traces)
    if trace is None:
        return None
    steps = [{"lane": "client", "step": "create requested", "state": DONE, "t_s": 0.0, "precise": True,
              "detail": f"by {trace.get('user') or '?'}"},
             {"lane": "API server", "step": "request accepted", "state": DONE, "t_s": 0.0, "precise": True,
              "detail": _accepted_detail(trace)},
             {"lane": "Raft", "step": "proposed and committed", "state": FAILED, "precise": True,
              "t_s": round(float(trace.get("answered_s") or 0), 3), "detail": _commit_detail(trace) + (
                  " — 503: nothing was proposed (no quorum)" if str(trace.get("outcome", "")).startswith("503")
                  else " — 504: outcome unknown" if str(trace.get("outcome", "")).startswith("504") else "")}]
    return {"pod": name, "namespace": namespace, "status": "not created", "created": trace.get("proposed_at"),
            "lanes": list(LANES), "steps": steps, "stopped_at": "proposed and committed"}


def pod_flow(pod: Mapping[str, Any], events: list[Mapping[str, Any]],
             traces: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The journey of `pod` (a Pod object) given the Events whose involvedObject is that pod and the write
    traces of the masters (optional)."""
    meta = pod.get("metadata") or {}
    created = parse_rfc3339(meta.get("creationTimestamp"))
    status_word = pod_status_reason(pod)
    steps: list[dict[str, Any]] = []

    trace = _create_trace(traces or [])
    proposed = float(trace["proposed_at"]) if trace is not None and trace.get("proposed_at") else None
    # Kubelet status writes of this pod traced by the API servers, oldest first (times to the microsecond).
    kubelet_writes = sorted((t for t in traces or [] if str(t.get("user", "")).startswith("system:node:")
                             and t.get("write") == "Replace" and t.get("outcome") == "committed"),
                            key=lambda t: float(t.get("proposed_at") or 0))

    def finish(stopped: str) -> dict[str, Any]:
        if proposed is not None and created is not None:
            _bound_coarse_steps(steps, created - proposed)
        return _result(pod, created, status_word, steps, stopped=stopped)

    def rel(t: float | None, precise: bool) -> float | None:
        """Seconds after the create: precise times against the traced proposal, one-second stamps against
        creationTimestamp (itself to the second)."""
        base = proposed if precise and proposed is not None else created
        return None if t is None or base is None else round(t - base, 3)

    def step(lane: str, name: str, state: str, t: float | None, detail: str = "", precise: bool = False) -> None:
        steps.append({"lane": lane, "step": name, "state": state, "t_s": rel(t, precise), "precise": precise,
                      "detail": detail})

    if trace is not None and proposed is not None:
        step("client", "create requested", DONE, proposed, f"by {trace.get('user') or '?'}", precise=True)
        step("API server", "request accepted", DONE, proposed, _accepted_detail(trace), precise=True)
        step("Raft", "proposed and committed", DONE, proposed + float(trace.get("answered_s") or 0),
             _commit_detail(trace), precise=True)
    else:
        step("client", "create requested", DONE, created, "")
        step("API server", "request accepted", DONE, created,
             f"uid {meta.get('uid', '?')} (the masters that took it no longer trace it)")
        step("Raft", "proposed and committed", DONE, created,
             "the pod is in the replicated store, so a majority of masters held its create")

    sched = _condition(pod, "PodScheduled")
    scheduled_ev = _first(events, "Scheduled")
    node = (pod.get("spec") or {}).get("nodeName") or ""
    explanation = _explanation(pod)
    if node:
        t = _event_time(scheduled_ev) if scheduled_ev else parse_rfc3339((sched or {}).get("lastTransitionTime"))
        step("scheduler", "scheduler decision", DONE, t,
             f"node {node}" + (f"; {explanation}" if explanation else ""))
        step("Raft", "binding committed", DONE,
             parse_rfc3339((sched or {}).get("lastTransitionTime")) or t,
             str(scheduled_ev.get("message")) if scheduled_ev else f"spec.nodeName = {node}")
    elif sched is not None and sched.get("status") == "False":
        step("scheduler", "scheduler decision", FAILED, parse_rfc3339(sched.get("lastTransitionTime")),
             f"{sched.get('reason', 'Unschedulable')}: {sched.get('message', '')}")
        return finish("scheduler decision")
    else:
        step("scheduler", "scheduler decision", WAITING, None, "waiting for the scheduler on the leader")
        return finish("")

    kubelet_events = [e for e in events if (e.get("source") or {}).get("component") == "kubelet"]
    first_kubelet = min(kubelet_events, key=lambda e: _event_time(e) or 0.0) if kubelet_events else None
    if first_kubelet is None and not (pod.get("status") or {}).get("containerStatuses"):
        step("kubelet", "kubelet picked it up", WAITING, None, f"waiting for the kubelet of {node}")
        return finish("")
    if kubelet_writes and proposed is not None:
        first = kubelet_writes[0]
        step("kubelet", "kubelet picked it up", DONE, float(first["proposed_at"]),
             f"kubelet on {node}: first status update through {first.get('master')}", precise=True)
    else:
        step("kubelet", "kubelet picked it up", DONE, _event_time(first_kubelet) if first_kubelet else None,
             f"kubelet on {node}")

    pulled = _first(events, "Pulled")
    pull_failed = _first(events, "Failed", "ErrImagePull") or _first(events, "Failed", "Failed to pull image") \
        or _first(events, "Failed", "ImagePullBackOff")
    if pulled is not None:
        step("kubelet", "image pulled", DONE, _event_time(pulled), str(pulled.get("message", "")))
    elif pull_failed is not None:
        detail = str((_first(events, "Failed", "Failed to pull image") or pull_failed).get("message", ""))
        step("kubelet", "image pulled", FAILED, _event_time(pull_failed), f"{status_word}: {detail}")
        return finish("image pulled")
    else:
        pulling = _first(events, "Pulling")
        step("kubelet", "image pulled", WAITING, _event_time(pulling) if pulling else None,
             str(pulling.get("message", "")) if pulling else "")
        return finish("")

    started = _first(events, "Started")
    created_ev = _first(events, "Created")
    if started is not None:
        step("kubelet", "containers created and started", DONE, _event_time(started),
             f"{created_ev.get('message', '') if created_ev else ''}; {started.get('message', '')}".strip("; "))
    else:
        step("kubelet", "containers created and started", WAITING, None, "")
        return finish("")

    ready = _condition(pod, "Ready")
    backoff = _first(events, "BackOff", "restarting failed container")
    ready_write = next((t for t in kubelet_writes if t.get("ready")), None)
    if ready is not None and ready.get("status") == "True":
        if ready_write is not None and proposed is not None:
            t_ready = float(ready_write["proposed_at"]) + float(ready_write.get("answered_s") or 0)
            step("kubelet", "Ready", DONE, t_ready,
                 f"status {status_word}; the kubelet's Ready update committed through {ready_write.get('master')}",
                 precise=True)
        else:
            step("kubelet", "Ready", DONE, parse_rfc3339(ready.get("lastTransitionTime")), f"status {status_word}")
        return finish("")
    final_ok = status_word in ("Completed",)
    failing = status_word in ("Error", "CrashLoopBackOff", "OOMKilled", "Evicted", "Unknown") or backoff is not None
    t_end = _event_time(backoff) if backoff is not None else None
    if final_ok:
        step("kubelet", "ended: Completed", DONE, None, "every container exited 0")
    elif failing:
        step("kubelet", f"ended: {status_word}", FAILED, t_end,
             str(backoff.get("message", "")) if backoff is not None else f"status {status_word}")
        return finish(f"ended: {status_word}")
    else:
        step("kubelet", "Ready", WAITING, None, f"status {status_word}")
    return finish("")


def _bound_coarse_steps(steps: list[dict[str, Any]], offset_s: float) -> None:
    """Put the one-second steps on the precise timeline: a stamp of second S (relative to creationTimestamp)
    means a time in [S, S+1) s, i.e. [S + offset, S + 1 + offset) after the traced proposal (offset =
    creationTimestamp − proposal, in (−1, 0]); a step also comes after the step before it and before the
    next precise one. The step then shows the upper bound of that window (`bound`: "at most")."""
    times = [s["t_s"] if s.get("precise") else None for s in steps]
    previous = 0.0
    for i, st in enumerate(steps):
        if st["t_s"] is None:
            continue
        if st.get("precise"):
            previous = st["t_s"]
            continue
        low, high = st["t_s"] + offset_s, st["t_s"] + 1 + offset_s
        later = [t for t in times[i + 1:] if t is not None]
        if later:
            high = min(high, later[0])
        low = max(low, previous)
        st["t_s"], st["bound"] = round(max(low, high), 3), True
        previous = low


def _result(pod: Mapping[str, Any], created: float | None, status_word: str, steps: list[dict[str, Any]],
            stopped: str) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    return {"pod": meta.get("name", ""), "namespace": meta.get("namespace", "default"), "status": status_word,
            "created": created, "lanes": list(LANES), "steps": steps, "stopped_at": stopped}
