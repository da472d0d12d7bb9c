"""The node lifecycle controller: lost nodes become Unknown and tainted, their pods are evicted.

A leader-only loop (registered by `hacluster.controllers.registry`), like kube-controller-manager's
node-lifecycle controller and its NoExecute taint manager. Every `node_monitor_period_s` it reads the
leader's local store and:

1. **Heartbeats.** A node's heartbeat is a change of its Lease's `spec.renewTime` (namespace
   kube-node-lease) or of its Ready condition's `lastHeartbeatTime`. Like Kubernetes it remembers *when it
   observed* the last change (its own clock), not the timestamps themselves, so clock skew does not matter;
   a node first seen in this term gets a full grace period.
2. **Lost nodes.** After `node_monitor_grace_period_s` without a heartbeat, the node's Ready,
   MemoryPressure, DiskPressure and PIDPressure conditions become Unknown — reason NodeStatusUnknown,
   "Kubelet stopped posting node status." (NodeStatusNeverUpdated / "Kubelet never posted node status."
   for a condition never reported) — and a `NodeNotReady` event is recorded. When a node's Ready stops
   being True, the Ready condition of its pods is set to False with a `NodeNotReady` event on each pod.
3. **Taints.** `node.kubernetes.io/unreachable` (NoExecute and NoSchedule) while the node is lost;
   `node.kubernetes.io/not-ready` (NoExecute and NoSchedule) while it reports Ready=False; and the
   NoSchedule taints of the other conditions (memory-, disk-, pid-pressure, network-unavailable) and of
   `spec.unschedulable`. New taints get `timeAdded`. When the heartbeat returns, the unreachable taints
   are removed (Ready itself is the kubelet's to report again).
4. **Eviction.** A pod on a node with NoExecute taints is evicted when it does not tolerate one of them,
   or once the smallest `tolerationSeconds` of the tolerations it uses — scaled by
   `toleration_seconds_scale` — has passed since the taint was added (the API server's default
   toleration is 300 s). On an unreachable node the pod first gets `status.reason: NodeLost` and
   "Node N which was running pod P is unresponsive" (so kubectl shows it as Unknown once deleting), and a
   `DisruptionTarget` condition; then it is deleted gracefully and a `TaintManagerEviction` event is
   recorded. The ReplicaSet controller then replaces it on another node.

Two safeguards, as Kubernetes has them: when *every* node is unhealthy at once — no heartbeat, or
Ready=False — ("full disruption"), the
problem is more likely the control plane or the network than the nodes, so no NoExecute taint is added
(existing ones are removed) and nothing is evicted until some node is healthy again; and when this
controller itself did not run for longer than the grace period (its master was paused or starved), it
judges heartbeats afresh instead of declaring every node lost.

Every write is fenced by the term (`FencedProposer`); node updates carry the node's resourceVersion as a
precondition, so a kubelet's concurrent status update is never overwritten (the next pass retries).
Time comes from the injectable `clock` (seconds since the epoch); tests drive `reconcile()` with a fake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacluster.config import ControllersConfig
from hacluster.controllers.syncloop import LeaderController
from hacluster.leader.events import NORMAL, WARNING
from hacluster.leader.proposer import NotLeading, batches
from hacluster.model.commands import AnyCommand, Delete, Replace
from hacluster.model.conditions import condition, ready_status
from hacluster.model.taints import Taint, Toleration, toleration_tolerates
from hacluster.model.timestamps import parse_rfc3339, rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import Result, StoreState

log = logging.getLogger(__name__)
Obj = dict[str, Any]

COMPONENT = "node-controller"
LEASE_NAMESPACE = "kube-node-lease"
BATCH_MAX_COMMANDS = 100

TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
NO_EXECUTE, NO_SCHEDULE = "NoExecute", "NoSchedule"
# nodelifecycle's nodeConditionToTaintKeyStatusMap (the NoSchedule tainting pass), Ready handled apart.
CONDITION_TAINTS = {
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
CONTROLLER_TAINT_KEYS = frozenset({TAINT_UNREACHABLE, TAINT_NOT_READY, TAINT_UNSCHEDULABLE, *CONDITION_TAINTS.values()})
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")

NODE_LOST_REASON = "NodeLost"
NODE_LOST_MESSAGE = "Node {node} which was running pod {pod} is unresponsive"
STATUS_UNKNOWN = ("NodeStatusUnknown", "Kubelet stopped posting node status.")
STATUS_NEVER_UPDATED = ("NodeStatusNeverUpdated", "Kubelet never posted node status.")


def _tolerations(pod: Obj) -> list[tuple[Toleration, Obj]]:
    out = []
    for t in (pod.get("spec") or {}).get("tolerations") or ():
        out.append((Toleration(str(t.get("key") or ""), str(t.get("operator") or ""), str(t.get("value") or ""),
                               str(t.get("effect") or "")), t))
    return out


def eviction_delay_s(pod: Obj, no_execute: list[Obj]) -> float | None:
    """How long after the taints appeared the pod must go: 0 when some taint is not tolerated, the least
    `tolerationSeconds` of the tolerations used (k8s `getMinTolerationTime`), or None for never."""
    tolerations = _tolerations(pod)
    used: list[Obj] = []
    for raw in no_execute:
        taint = Taint(str(raw.get("key") or ""), str(raw.get("value") or ""), str(raw.get("effect") or ""))
        match = next((t for parsed, t in tolerations if toleration_tolerates(parsed, taint)), None)
        if match is None:
            return 0.0
        used.append(match)
    least: float | None = None
    for t in used:
        seconds = t.get("tolerationSeconds")
        if isinstance(seconds, int) and not isinstance(seconds, bool):
            if seconds <= 0:
                return 0.0
            least = seconds if least is None else min(least, seconds)
    return least


@dataclass
class _Health:
    """What this controller last saw of a node's heartbeats, and when (its clock)."""

    probe: float
    lease_renew: Any
    ready_heartbeat: Any
    ready: str


@dataclass
class Pass:
    """What one reconcile pass did (for logs and tests)."""

    lost: list[str]
    marked_unknown: list[str]
    pods_not_ready: list[str]
    tainted: list[str]
    evicted: list[str]
    full_disruption: bool = False


class NodeLifecycleController(LeaderController):
    """The node lifecycle controller of one leadership term (see the module docstring)."""

    component = COMPONENT

    def __init__(self, store: ReplicatedStore, settings: ControllersConfig, *, instance: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, settings, instance=instance, clock=clock)
        self.health: dict[str, _Health] = {}
        self.first_seen_taint: dict[tuple[str, str], float] = {}
        self.last_pass: float | None = None
        self.full_disruption = False

    async def run(self, term: int) -> None:
        """Monitor nodes every `node_monitor_period_s` until cancelled or no longer leading `term`."""
        self.start(term)
        assert self.proposer is not None
        events = asyncio.ensure_future(self.recorder.run(self.proposer))
        log.info("node lifecycle controller starts in term %d", term)
        try:
            while True:
                await self.reconcile()
                await asyncio.sleep(self.settings.node_monitor_period_s)  # the monitor period (a timer)
        except NotLeading as exc:
            log.info("node lifecycle controller stops: %s", exc)
        finally:
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)

    # ---------------------------------------------------------------------------------- reading
    def _read(self) -> tuple[list[Obj], dict[str, Obj], dict[str, list[Obj]]]:
        def snap(s: StoreState) -> tuple[list[Obj], dict[str, Obj], dict[str, list[Obj]]]:
            nodes = list(s.objects["nodes"].values())
            prefix = LEASE_NAMESPACE + "/"
            leases = {o["metadata"]["name"]: o for k, o in s.objects["leases"].items() if k.startswith(prefix)}
            pods: dict[str, list[Obj]] = defaultdict(list)
            if not nodes:
                return nodes, leases, pods  # no node, no bound pod to look at (a walk over every pod, each second)
            for p in s.objects["pods"].values():
                node = (p.get("spec") or {}).get("nodeName")
                if node:
                    pods[node].append(p)
            return nodes, leases, pods
        return self.store.read(snap)

    # -------------------------------------------------------------------------------- reconcile
    async def reconcile(self) -> Pass:
        """One monitoring pass (see the module docstring); raises NotLeading when the term is over."""
        now = self.clock()
        grace = self.settings.node_monitor_grace_period_s
        nodes, leases, pods_by_node = self._read()
        done = Pass([], [], [], [], [])
        if self.last_pass is not None and now - self.last_pass > grace:
            # This controller itself did not run (master paused or starved): it saw nothing of that time.
            log.warning("node lifecycle: no monitoring pass for %.1fs; judging heartbeats afresh", now - self.last_pass)
            for health in self.health.values():
                health.probe = now
        self.last_pass = now

        # 1. heartbeats
        names = set()
        lost: set[str] = set()
        was_ready: dict[str, str] = {}
        for node in nodes:
            name = node["metadata"]["name"]
            names.add(name)
            renew = ((leases.get(name) or {}).get("spec") or {}).get("renewTime")
            beat = (condition(node, "Ready") or {}).get("lastHeartbeatTime")
            seen = self.health.get(name)
            if seen is None:
                seen = self.health[name] = _Health(now, renew, beat, ready_status(node))
            elif renew != seen.lease_renew or beat != seen.ready_heartbeat:
                seen.probe, seen.lease_renew, seen.ready_heartbeat = now, renew, beat
            was_ready[name] = seen.ready
            if now - seen.probe > grace:
                lost.add(name)
        for gone in set(self.health) - names:
            del self.health[gone]
        done.lost = sorted(lost)
        unhealthy = [n for n in nodes if n["metadata"]["name"] in lost or ready_status(n) == "False"]
        full_disruption = bool(nodes) and len(unhealthy) == len(nodes)
        if full_disruption and not self.full_disruption:
            log.warning("node lifecycle: all %d nodes are unhealthy; assuming a control-plane or network problem "
                        "and evicting nothing until some node is healthy again", len(nodes))
        self.full_disruption = done.full_disruption = full_disruption

        # 2. lost nodes: conditions Unknown
        commands: list[AnyCommand] = []
        for node in nodes:
            name = node["metadata"]["name"]
            if name in lost:
                status = self._unknown_status(node, now)
                if status is not None:
                    commands.append(Replace(resource="nodes", namespace="", name=name,
                                            obj={"metadata": {"uid": node["metadata"].get("uid")}, "status": status},
                                            expected_rv=str(node["metadata"]["resourceVersion"]),
                                            subresource="status"))
        for c, r in await self._propose_all(commands):
            name = getattr(c, "name", "")
            if r.ok and r.obj is not None:
                done.marked_unknown.append(name)
                log.warning("node %s: no heartbeat for %.1fs, Ready is now Unknown", name,
                            now - self.health[name].probe)
                self.recorder.emit(r.obj, NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        if done.marked_unknown:
            nodes, leases, pods_by_node = self._read()

        # ... and pods of nodes whose Ready stopped being True are not ready
        commands = []
        for node in nodes:
            name = node["metadata"]["name"]
            ready = ready_status(node)
            known = self.health.get(name)
            if known is None:  # registered since this pass began: judged from the next pass on
                continue
            known.ready = ready
            if was_ready.get(name) == "True" and ready != "True":
                for pod in pods_by_node.get(name, ()):
                    update = self._pod_not_ready(pod, now)
                    if update is not None:
                        commands.append(update)
        for c, r in await self._propose_all(commands):
            if r.ok and r.obj is not None:
                done.pods_not_ready.append(f"{getattr(c, 'namespace', '')}/{getattr(c, 'name', '')}")
                self.recorder.emit(r.obj, WARNING, "NodeNotReady", "Node is not ready")

        # 3. taints
        commands = []
        for node in nodes:
            name = node["metadata"]["name"]
            taints = self._desired_taints(node, name in lost, now, no_execute=not full_disruption)
            if taints is not None:
                spec = dict(node.get("spec") or {})
                spec["taints"] = taints
                commands.append(Replace(resource="nodes", namespace="", name=name, obj={**node, "spec": spec},
                                        expected_rv=str(node["metadata"]["resourceVersion"])))
        for c, r in await self._propose_all(commands):
            name = getattr(c, "name", "")
            if r.ok and r.obj is not None:
                done.tainted.append(name)
                log.info("node %s: taints now %s", name, [f"{t['key']}:{t['effect']}" for t in
                                                         (r.obj.get("spec") or {}).get("taints") or ()])
        if done.tainted:
            nodes, leases, pods_by_node = self._read()

        # 4. evictions
        commands = []
        for node in nodes if not full_disruption else ():
            name = node["metadata"]["name"]
            no_execute = [t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == NO_EXECUTE]
            if not no_execute:
                self.first_seen_taint = {k: v for k, v in self.first_seen_taint.items() if k[0] != name}
                continue
            since = self._taints_since(name, no_execute, now)
            unreachable = any(t.get("key") == TAINT_UNREACHABLE for t in no_execute)
            for pod in pods_by_node.get(name, ()):
                if (pod.get("metadata") or {}).get("deletionTimestamp"):
                    continue
                delay = eviction_delay_s(pod, no_execute)
                if delay is None or now < since + delay * self.settings.toleration_seconds_scale:
                    continue
                commands.extend(self._evict(pod, name, unreachable, now))
        for c, r in await self._propose_all(commands):
            if isinstance(c, Delete) and r.ok:
                done.evicted.append(f"{c.namespace}/{c.name}")
        return done

    async def _propose_all(self, commands: list[AnyCommand]) -> list[tuple[AnyCommand, Result]]:
        """Propose in Batches of at most BATCH_MAX_COMMANDS; pair each command with its result."""
        assert self.proposer is not None
        out: list[tuple[AnyCommand, Result]] = []
        for batch in batches(commands, max_count=BATCH_MAX_COMMANDS):
            chunk = batch.commands
            result = await self.proposer.propose(batch)
            results = result.results if result.ok else tuple(result for _ in chunk)
            for c, r in zip(chunk, results, strict=True):
                out.append((c, r))
                if not r.ok:
                    log.info("%s: %s of %s refused: %s", COMPONENT, type(c).__name__, getattr(c, "name", ""),
                             r.error.message if r.error else "?")
        return out

    # --------------------------------------------------------------------------------- pieces
    def _unknown_status(self, node: Obj, now: float) -> Obj | None:
        """The node's status with the monitored conditions Unknown, or None if they already are."""
        status = dict(node.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or ()]
        by_type = {c.get("type"): c for c in conditions}
        changed = False
        stamp = rfc3339(now)
        for ctype in MONITORED_CONDITIONS:
            c = by_type.get(ctype)
            if c is None:
                reason, message = STATUS_NEVER_UPDATED
                conditions.append({"type": ctype, "status": "Unknown", "reason": reason, "message": message,
                                   "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                                   "lastTransitionTime": stamp})
                changed = True
            elif c.get("status") != "Unknown":
                reason, message = STATUS_UNKNOWN
                c.update(status="Unknown", reason=reason, message=message, lastTransitionTime=stamp)
                changed = True
        if not changed:
            return None
        status["conditions"] = conditions
        return status

    def _pod_not_ready(self, pod: Obj, now: float) -> AnyCommand | None:
        """k8s MarkPodsNotReady: flip an existing Ready condition to False."""
        status = dict(pod.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or ()]
        for c in conditions:
            if c.get("type") == "Ready":
                if c.get("status") == "False":
                    return None
                c.update(status="False", lastTransitionTime=rfc3339(now))
                status["conditions"] = conditions
                meta = pod["metadata"]
                return Replace(resource="pods", namespace=meta.get("namespace", ""), name=meta["name"],
                               obj={"metadata": {"uid": meta.get("uid")}, "status": status},
                               expected_rv=str(meta["resourceVersion"]), subresource="status")
        return None

    def _desired_taints(self, node: Obj, lost: bool, now: float, *, no_execute: bool = True) -> list[Obj] | None:
        """The node's taints with the controller-owned ones as they should be; None if unchanged.
        Without `no_execute` (full disruption) the NoExecute ones are left out, so nothing is evicted."""
        current = list((node.get("spec") or {}).get("taints") or ())
        want: list[tuple[str, str]] = []
        ready = ready_status(node)
        if lost:
            want += [(TAINT_UNREACHABLE, NO_EXECUTE), (TAINT_UNREACHABLE, NO_SCHEDULE)]
        elif ready == "False":
            want += [(TAINT_NOT_READY, NO_EXECUTE), (TAINT_NOT_READY, NO_SCHEDULE)]
        if not no_execute:
            want = [w for w in want if w[1] != NO_EXECUTE]
        for (ctype, cstatus), key in CONDITION_TAINTS.items():
            c = condition(node, ctype)
            if c is not None and c.get("status") == cstatus:
                want.append((key, NO_SCHEDULE))
        if (node.get("spec") or {}).get("unschedulable"):
            want.append((TAINT_UNSCHEDULABLE, NO_SCHEDULE))
        have = {(t.get("key"), t.get("effect")) for t in current if t.get("key") in CONTROLLER_TAINT_KEYS}
        if have == set(want):
            return None
        kept = [t for t in current
                if t.get("key") not in CONTROLLER_TAINT_KEYS or (t.get("key"), t.get("effect")) in want]
        stamp = rfc3339(now)
        for key, effect in want:
            if (key, effect) not in have:
                kept.append({"key": key, "effect": effect, "timeAdded": stamp})
        return kept

    def _taints_since(self, node: str, no_execute: list[Obj], now: float) -> float:
        """When the node's NoExecute taints appeared: the earliest `timeAdded`, or when first seen."""
        times = []
        for t in no_execute:
            added = parse_rfc3339(t.get("timeAdded"))
            if added is None:
                added = self.first_seen_taint.setdefault((node, str(t.get("key"))), now)
            times.append(added)
        return min(times)

    def _evict(self, pod: Obj, node: str, unreachable: bool, now: float) -> list[AnyCommand]:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
        status = dict(pod.get("status") or {})
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
        conditions.append({"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": rfc3339(now), "reason": "DeletionByTaintManager",
                           "message": "Taint manager: deleting due to NoExecute taint"})
        status["conditions"] = conditions
        if unreachable:
            status["reason"] = NODE_LOST_REASON
            status["message"] = NODE_LOST_MESSAGE.format(node=node, pod=name)
        log.warning("evicting pod %s/%s from node %s (NoExecute taint not tolerated any longer)", ns, name, node)
        self.recorder.emit(pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")
        return [Replace(resource="pods", namespace=ns, name=name, obj={"metadata": {"uid": uid}, "status": status},
                        subresource="status"),
                Delete(resource="pods", namespace=ns, name=name, time=rfc3339(now), expected_uid=uid)]
