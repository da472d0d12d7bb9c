"""Pods and nodes as the dashboard lists and counts them, with kubectl's words.

Pure functions used by the collector: a pod is kept as a small summary (name, namespace, the STATUS word
that `kubectl get pods` prints — computed by the API server's own printer — ready, restarts, node, created),
never as the whole object, so 10,000 pods stay cheap; `PodIndex` holds the summaries, keeps the count per
word up to date as watch events arrive, and cuts pages for the page's list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from hacluster.format.nodes import node_status
from hacluster.format.pods import pod_ready, pod_status_reason
from hacluster.model.timestamps import parse_rfc3339

# The seed's pod states in the order of the flow, then the rest; the page shows every word it meets.
POD_WORDS = ("Pending", "ContainerCreating", "Running", "Completed", "Error", "CrashLoopBackOff", "ErrImagePull",
             "ImagePullBackOff", "Terminating", "Evicted", "OOMKilled", "Unknown")
NODE_WORDS = ("Ready", "NotReady", "Unknown")
PAGE_SIZE_MAX = 200


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount") or 0) for c in statuses if isinstance(c, Mapping))


def pod_summary(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the dashboard keeps of a pod."""
    meta = pod.get("metadata") or {}
    return {"name": meta.get("name", ""), "namespace": meta.get("namespace", "default"),
            "status": pod_status_reason(pod), "ready": pod_ready(pod), "restarts": _restarts(pod),
            "node": (pod.get("spec") or {}).get("nodeName") or "",
            "created": parse_rfc3339(meta.get("creationTimestamp")) or 0.0}


def node_summary(node: Mapping[str, Any]) -> dict[str, Any]:
    """What the dashboard keeps of a node: its name and the STATUS of `kubectl get nodes`."""
    return {"name": (node.get("metadata") or {}).get("name", ""), "status": node_status(node)}


def node_word(status: str) -> str:
    """Ready / NotReady / Unknown, without ",SchedulingDisabled"."""
    return status.split(",", 1)[0]


class PodIndex:
    """Summaries by `namespace/name`, with live counts by STATUS word."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()
        self.version = 0
        """Raised on every change, so readers know when to re-read a page."""

    def reset(self, summaries: list[dict[str, Any]]) -> None:
        self.items = {f"{s['namespace']}/{s['name']}": s for s in summaries}
        self.counts = Counter(s["status"] for s in self.items.values())
        self.version += 1

    def put(self, summary: dict[str, Any]) -> None:
        key = f"{summary['namespace']}/{summary['name']}"
        old = self.items.get(key)
        if old == summary:
            return
        if old is not None:
            self._uncount(old["status"])
        self.items[key] = summary
        self.counts[summary["status"]] += 1
        self.version += 1

    def remove(self, namespace: str, name: str) -> None:
        old = self.items.pop(f"{namespace}/{name}", None)
        if old is not None:
            self._uncount(old["status"])
            self.version += 1

    def _uncount(self, word: str) -> None:
        self.counts[word] -= 1
        if self.counts[word] <= 0:
            del self.counts[word]

    def ordered_counts(self, words: tuple[str, ...] = POD_WORDS) -> list[tuple[str, int]]:
        """Counts in the order of `words`, then any other word alphabetically."""
        known = [(w, self.counts[w]) for w in words if self.counts.get(w)]
        rest = sorted((w, n) for w, n in self.counts.items() if w not in words and n)
        return known + rest

    def page(self, *, status: str = "", query: str = "", offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """Newest first, optionally only one STATUS word and names containing `query`."""
        limit = max(1, min(limit, PAGE_SIZE_MAX))
        rows = [s for s in self.items.values()
                if (not status or s["status"] == status) and (not query or query in s["name"])]
        rows.sort(key=lambda s: (-s["created"], s["namespace"], s["name"]))
        offset = max(0, offset)
        return {"total": len(rows), "offset": offset, "limit": limit, "items": rows[offset:offset + limit],
                "version": self.version}
