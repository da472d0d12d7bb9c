"""The kubelet's pod source: lists and watches the pods bound to its node (`fieldSelector=spec.nodeName=<node>`),
resuming from the last resourceVersion and relisting after 410; the API client moves between masters on
connection errors, 503 and 504. A pod is forgotten only once the API says it is gone (a DELETED event, or
absent from a relist), so no pod the kubelet runs is ever lost track of.

Built by `hacluster.kubelet.agent.Kubelet` (which runs `watch_loop` unless a fleet's shared watch feeds it
through `apply_listing` / `apply_event`); it hands every pod to the pod workers (`hacluster.kubelet.podworker`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable, retry_after_s
from hacluster.kubelet.apicalls import RETRY_S, is_transport_error, list_all
from hacluster.kubelet.podworker import PodWorkers

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class PodSource:
    """The list/watch of one node's pods, applied to its pod workers."""

    def __init__(self, node: str, api: ApiClient, workers: PodWorkers) -> None:
        self.node = node
        self.api = api
        self.workers = workers
        self.resource_version = ""
        self.relists = 0
        self.watch_restarts = 0

    async def watch_loop(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node}"}
        delay = RETRY_S[0]
        while True:
            try:
                if not self.resource_version:
                    await self._relist(selector)
                cfg = self.workers.cfg
                timeout = random.randint(cfg.watch_timeout_s_min, cfg.watch_timeout_s_max)
                stream = cast(AsyncGenerator[Obj, None], self.api.watch(
                    "/api/v1/pods", resource_version=self.resource_version, timeout_s=timeout, params=selector))
                try:
                    expired = await self._consume(stream)
                finally:
                    await stream.aclose()
                self.watch_restarts += 1
                delay = RETRY_S[0]
                if expired:
                    await asyncio.sleep(RETRY_S[0])
            except ClientError as exc:
                self.watch_restarts += 1
                if exc.code == 410:
                    self.resource_version = ""
                log.info("pod watch of %s: %s", self.node, exc)
                await asyncio.sleep(max(delay, retry_after_s(exc)))  # a 429 (watch cap) asks for a pause
                delay = min(delay * 2, RETRY_S[1])
            except (TimeoutError, Indeterminate, Unreachable, OSError, ValueError) as exc:
                self.watch_restarts += 1
                log.info("pod watch of %s: %s: %s", self.node, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_S[1])
            except Exception as exc:  # aiohttp's ClientError family and payload errors
                if not is_transport_error(exc):
                    raise
                self.watch_restarts += 1
                log.info("pod watch of %s: %s: %s", self.node, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_S[1])

    async def _consume(self, stream: AsyncIterator[Obj]) -> bool:
        """Apply watch events until the stream ends; True if it ended with an error (410: relist)."""
        async for event in stream:
            etype = str(event.get("type") or "")
            obj = event.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    self.resource_version = ""  # too old: relist
                return True
            rv = (obj.get("metadata") or {}).get("resourceVersion", "")
            if etype == "BOOKMARK":
                self.resource_version = rv or self.resource_version
                continue
            self.apply_event(etype, obj)
            if rv:
                self.resource_version = rv
        return False

    async def _relist(self, selector: dict[str, str]) -> None:
        items, rv = await list_all(self.api, "/api/v1/pods", selector, page_size=self.workers.cfg.list_page_size)
        self.apply_listing(items)
        self.resource_version = rv

    def apply_listing(self, items: list[Obj]) -> None:
        """A complete list of this node's pods (a relist): adopt what is new, forget what the API no longer has."""
        self.relists += 1
        present = set()
        for obj in items:
            present.add(obj["metadata"]["uid"])
            self.workers.upsert(obj)
        for uid, e in list(self.workers.pods.items()):
            if uid not in present and not e.gone:
                self.workers.pod_gone(e.pod)

    def apply_event(self, etype: str, obj: Obj) -> None:
        """One watch event about a pod of this node (for a watch shared by several nodes)."""
        if etype == "DELETED":
            self.workers.pod_gone(obj)
        elif etype in ("ADDED", "MODIFIED"):
            self.workers.upsert(obj)
