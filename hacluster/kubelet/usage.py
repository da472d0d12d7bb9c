"""What one node's pods use, and what follows from it: the `/stats/summary` answer (`kubectl top`), and the
eviction loop — every `eviction_interval_s` it measures memory; below the hard threshold it reports
MemoryPressure (the node lifecycle controller then taints the node) and evicts the first pod of the
kubelet's ranking (`hacluster.kubelet.eviction`), one per interval.

Built by `hacluster.kubelet.agent.Kubelet`; it reads the pods of the pod workers and sets the node loops'
`pressure`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hacluster.kubelet import eviction as ev
from hacluster.kubelet import stats
from hacluster.kubelet.events import EventRecorder
from hacluster.kubelet.nodeloops import NodeLoops
from hacluster.kubelet.nodepart import NodeContext, NodePart
from hacluster.kubelet.podworker import PodEntry, PodWorkers
from hacluster.model.quantity import parse_quantity

log = logging.getLogger(__name__)


class UsageMonitor(NodePart):
    """Memory and CPU use of one node's pods; memory pressure and the evictions it causes."""

    def __init__(self, ctx: NodeContext, *, events: EventRecorder, workers: PodWorkers,
                 node_loops: NodeLoops) -> None:
        super().__init__(ctx)
        self.events = events
        self.workers = workers
        self.node_loops = node_loops
        self.pressure = node_loops.pressure
        self._pressure_seen_at = 0.0

    def memory_usage(self) -> tuple[int, dict[str, dict[str, int]]]:
        """Bytes used by pods in total, and per pod per container."""
        per_pod = {}
        total = 0
        for uid, e in self.workers.pods.items():
            if e.gone:
                continue
            usage = self.runtime.memory_by_container(uid)
            per_pod[uid] = usage
            total += sum(usage.values())
        return total, per_pod


    def stats_summary(self) -> dict[str, Any]:
        """What this node and its pods use now (the `/stats/summary` endpoint; `kubectl top`)."""
        pods = []
        for uid, e in self.workers.pods.items():
            if e.gone:
                continue
            pods.append((e.namespace, e.name, uid, self.runtime.memory_by_container(uid),
                         self.runtime.cpu_millis_by_container(uid)))
        return stats.summary(self.node, pods, parse_quantity(self.profile.base_memory_used).units(), self.clock())

    def check_pressure(self) -> PodEntry | None:
        """One eviction check: update MemoryPressure; evict (and return) the first ranked pod if below the
        threshold."""
        now = self.clock()
        total, per_pod = self.memory_usage()
        capacity = self.profile.capacity_units("memory")
        base = parse_quantity(self.profile.base_memory_used).units()
        threshold_text = self.profile.eviction_hard_memory_available
        threshold = parse_quantity(threshold_text).units()
        available = ev.memory_available(capacity, base, total)
        if available < threshold:
            self._pressure_seen_at = now
            if not self.pressure["MemoryPressure"]:
                self.pressure["MemoryPressure"] = True
                self.events.node_event("Normal", "NodeHasInsufficientMemory",
                                       f"Node {self.node} status is now: NodeHasInsufficientMemory")
                self.node_loops.node_dirty.set()
            self.events.node_event("Warning", "EvictionThresholdMet", "Attempting to reclaim memory")
            candidates = []
            for uid, usage in per_pod.items():
                e = self.workers.pods[uid]
                if e.deleting or e.terminal is not None or not usage:
                    continue
                candidates.append(ev.pod_usage(e.pod, usage))
            ranked = ev.rank_for_memory(candidates)
            if ranked:
                victim = ranked[0]
                e = self.workers.pods[victim.uid]
                message = ev.eviction_message(victim, threshold_text, available)
                self.workers.evict(e, message)
                return e
        elif self.pressure["MemoryPressure"] and \
                now - self._pressure_seen_at >= self.cfg.eviction_pressure_transition_s * self.scale:
            self.pressure["MemoryPressure"] = False
            self.events.node_event("Normal", "NodeHasSufficientMemory",
                                   f"Node {self.node} status is now: NodeHasSufficientMemory")
            self.node_loops.node_dirty.set()
        return None


    async def eviction_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.eviction_interval_s * self.scale)
            try:
                self.check_pressure()
            except Exception:
                log.exception("eviction check of %s failed", self.node)

