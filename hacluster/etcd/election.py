"""Leadership of the leader-only loops (scheduler, controllers) on the etcd engine: an etcd lease.

As kube-scheduler and kube-controller-manager elect themselves through a Lease object, each master
campaigns for one etcd key (`layout.leader_key`) attached to an etcd lease of `ttl_s` seconds:
a transaction creates the key only if it does not exist. The holder renews the lease every third of its
TTL; a holder that cannot (paused, cut off from etcd's majority) lets it expire, etcd deletes the key, and
another master's campaign creates it anew. The *term* of a leadership is the key's create revision:
unique and rising, and it is what fences — every write of the leader loops is an etcd transaction that
also compares the key's create revision with its term (`hacluster.etcd.store`), so a holder that lost
the lease without noticing cannot write anything, even if it is still running its loops.

The holder also steps down by itself when it has not renewed the lease for `ttl_s` minus a margin, so that
in the normal case its loops stop before another master's start. Safety never depends on that timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aetcd import rpc

from hacluster.asyncwait import wait_event
from hacluster.etcd import layout
from hacluster.etcd.client import EtcdClient
from hacluster.model.errors import ApiError
from hacluster.store.api import Leadership

log = logging.getLogger(__name__)

STEP_DOWN_MARGIN_S = 0.5
"""The holder considers its lease gone this long before etcd would expire it (counting from the renewal
request it sent, which etcd received later still)."""
SYNC_WAIT_S = 1.0


class LeaseElection:
    """One master's candidacy for the leader loops (see the module docstring). Runs on the event loop."""

    def __init__(self, client: EtcdClient, master_id: str, *, ttl_s: int, request_timeout_s: float,
                 holder_in_cache: Callable[[], tuple[str, int]], on_change: Callable[[], None],
                 key: bytes = layout.leader_key("/registry/")) -> None:
        self.client = client
        self.key = key
        self.id = master_id
        self.ttl_s = ttl_s
        self.request_timeout_s = request_timeout_s
        self._holder_in_cache = holder_in_cache
        self._on_change = on_change
        self._wake = asyncio.Event()
        self.term = 0  # create revision of the leadership key while this master holds it, else 0
        self._lease_id = 0
        self._valid_until = 0.0
        self.campaigns = 0
        self.step_downs = 0

    def leadership(self) -> Leadership:
        holder, created = self._holder_in_cache()
        leading = self.term != 0 and time.monotonic() < self._valid_until
        if leading:
            return Leadership(True, self.term, self.id)
        return Leadership(False, created, holder or None)

    def holder_changed(self) -> None:
        """The watch saw the leadership key change (called by the store's sync task)."""
        self._wake.set()

    async def run(self, wait_synced: Callable[[float], Awaitable[bool]]) -> None:
        while not await wait_synced(SYNC_WAIT_S):
            pass  # each wait is bounded; the store keeps trying to reach etcd meanwhile
        period_s = self.ttl_s / 3
        while True:
            self._wake.clear()
            try:
                if self.term:
                    await self._renew()
                else:
                    await self._campaign()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                log.info("leader election of master %s: %s", self.id, exc)
            if self.term and time.monotonic() >= self._valid_until:
                self._step_down("the lease was not renewed in time")
            await wait_event(self._wake, period_s)

    async def _campaign(self) -> None:
        holder, created = self._holder_in_cache()
        if created:
            return  # someone holds it; the watch wakes us when the key goes
        if not self._lease_id:
            grant = await self.client.lease_grant(self.ttl_s, self.request_timeout_s)
            self._lease_id = int(grant.ID)
        self.campaigns += 1
        sent = time.monotonic()
        req = rpc.TxnRequest(
            compare=[rpc.Compare(key=self.key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL,
                                 create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=self.key, value=self.id.encode(),
                                                              lease=self._lease_id))])
        try:
            resp = await self.client.txn(req, self.request_timeout_s, what="leader election")
        except ApiError:
            self._lease_id = 0  # whatever happened, a fresh lease next time; this one expires on its own
            raise
        if resp.succeeded:
            self.term = int(resp.header.revision)
            self._valid_until = sent + self.ttl_s - STEP_DOWN_MARGIN_S
            log.warning("master %s holds the leader loops' lease (term %d)", self.id, self.term)
            self._on_change()

    async def _renew(self) -> None:
        holder, created = self._holder_in_cache()
        if created and created != self.term:
            self._step_down(f"the leadership key now belongs to {holder} (term {created})")
            return
        sent = time.monotonic()
        ttl = await self.client.lease_keepalive(self._lease_id, self.request_timeout_s)
        if ttl <= 0:
            self._step_down("etcd reports the lease expired")
            return
        self._valid_until = sent + ttl - STEP_DOWN_MARGIN_S

    def _step_down(self, why: str) -> None:
        log.warning("master %s no longer leads the leader loops (term %d): %s", self.id, self.term, why)
        self.term = 0
        self._lease_id = 0
        self.step_downs += 1
        self._on_change()

    async def resign(self) -> None:
        """Give the lease back (shutdown), so another master takes over without waiting for its TTL."""
        lease, self._lease_id = self._lease_id, 0
        self.term = 0
        if lease:
            try:
                await self.client.lease_revoke(lease, 0.5)
            except ApiError:
                pass  # it expires on its own
