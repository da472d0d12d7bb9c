"""The kubelet's node loops: registration of the Node (capacity, allocatable, labels, taints, addresses,
nodeInfo, conditions, the log endpoint's port), re-registering if the Node is deleted; the Lease in
kube-node-lease renewed every `node_lease_renew_s`; node status posted when a condition changes (compared
with the Node the API holds) or at least every `node_status_report_s`.

Built by `hacluster.kubelet.agent.Kubelet`; the usage monitor (`hacluster.kubelet.usage`) sets `pressure`
and marks the status dirty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hacluster.asyncwait import wait_event
from hacluster.client import ClientError, Indeterminate
from hacluster.kubelet import nodestatus as ns
from hacluster.kubelet.apicalls import FAST_WRITE, RETRY_S, ApiErrors
from hacluster.kubelet.nodepart import NodeContext, NodePart

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class NodeLoops(NodePart):
    """One node's Node object and Lease."""

    def __init__(self, ctx: NodeContext, *, labels: dict[str, str], taints: list[Obj], log_port: int) -> None:
        super().__init__(ctx)
        self.labels = labels
        self.taints = taints
        self.log_port = log_port
        self.node_uid = ""
        self.node_view: Obj | None = None
        self.pressure = {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False}
        self.node_dirty = asyncio.Event()
        self._last_post = 0.0
        self.registered = asyncio.Event()
        self.ready = asyncio.Event()
        self.lease_renewals = 0
        self.lease_failures = 0

    def _node_status(self, old_conditions: list[Obj]) -> Obj:
        return ns.node_status(self.identity, self.profile, pressure=self.pressure, ready=True,
                              old_conditions=old_conditions, kubelet_port=self.log_port,
                              images=self.runtime.images(), now=self.clock())

    def _profile_taints(self) -> list[Obj]:
        return [t.model_dump() for t in self.profile.taints] + self.taints

    async def register(self) -> None:
        """Create the Node (or adopt the existing one, refreshing its labels), then post its status."""
        delay = RETRY_S[0]
        path = f"/api/v1/nodes/{self.node}"
        while True:
            try:
                body = ns.node_object(self.identity, self.profile, labels=self.labels, taints=self._profile_taints(),
                                      status=self._node_status([]))
                try:
                    node = await self.api.post("/api/v1/nodes", body)
                except ClientError as exc:
                    if exc.code != 409:
                        raise
                    current = await self.api.get(path)
                    labels = ns.node_labels(self.identity, self.profile, self.labels)
                    if any((current.get("metadata", {}).get("labels") or {}).get(k) != v for k, v in labels.items()):
                        current = await self.api.patch(path, {"metadata": {"labels": labels}})
                    node = await self.api.patch(path + "/status", {"status": self._node_status(
                        (current.get("status") or {}).get("conditions") or [])})
                except Indeterminate:
                    await asyncio.sleep(delay)  # the create may have happened: the next attempt finds out (409)
                    continue
                self.node_uid = node["metadata"]["uid"]
                self.node_view = node
                self._last_post = time.monotonic()
                self.registered.set()
                self.ready.set()
                log.info("node %s registered", self.node)
                return
            except ApiErrors as exc:
                log.warning("registering node %s: %s", self.node, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_S[1])

    async def node_status_loop(self) -> None:
        path = f"/api/v1/nodes/{self.node}"
        while True:
            await wait_event(self.node_dirty, self.cfg.node_status_update_s)
            self.node_dirty.clear()
            try:
                await self._sync_node_status(path)
            except ApiErrors as exc:
                log.info("node status of %s: %s", self.node, exc)
                await asyncio.sleep(RETRY_S[0])
                self.node_dirty.set()

    async def _sync_node_status(self, path: str) -> None:
        try:
            current = await self.api.get(path, params={"resourceVersion": "0"})
        except ClientError as exc:
            if exc.code != 404:
                raise
            log.warning("node %s was deleted: registering again", self.node)
            await self.register()
            return
        self.node_view = current
        old = current.get("status") or {}
        new = self._node_status(old.get("conditions") or [])
        changed = (ns.conditions_differ(old.get("conditions") or [], new["conditions"])
                   or any(old.get(k) != new[k] for k in ("capacity", "allocatable", "daemonEndpoints", "addresses",
                                                         "nodeInfo", "images")))
        if changed or time.monotonic() - self._last_post >= self.cfg.node_status_report_s:
            self.node_view = await self.api.patch(path + "/status", {"status": new})
            self._last_post = time.monotonic()
            self.ready.set()
        else:
            self.ready.set()
        # The memory-pressure taint follows the MemoryPressure condition; as in Kubernetes, the node lifecycle
        # controller (hacluster.controllers.nodelifecycle) adds and removes it, not the kubelet.

    async def lease_loop(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns.LEASE_NAMESPACE}/leases"
        rv = ""
        period = self.cfg.node_lease_renew_s
        while True:
            started = time.monotonic()
            try:
                body = ns.lease_object(self.node, self.node_uid, self.cfg.node_lease_duration_s, self.clock(), rv)
                if rv:
                    lease = await self.api.put(f"{path}/{self.node}", body, params=FAST_WRITE,
                                               deadline_s=max(period, 2.0))
                else:
                    try:
                        current = await self.api.get(f"{path}/{self.node}", deadline_s=max(period, 2.0))
                        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                        lease = await self.api.put(f"{path}/{self.node}", body, deadline_s=max(period, 2.0))
                    except ClientError as exc:
                        if exc.code != 404:
                            raise
                        body["metadata"].pop("resourceVersion", None)
                        lease = await self.api.post(path, body, deadline_s=max(period, 2.0))
                rv = lease["metadata"]["resourceVersion"]
                self.lease_renewals += 1
            except ApiErrors as exc:
                self.lease_failures += 1
                rv = ""  # re-read the lease next time (a conflict, or an outcome we do not know)
                log.info("lease of %s not renewed: %s", self.node, exc)
                await asyncio.sleep(min(period, 0.5))
                continue
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
