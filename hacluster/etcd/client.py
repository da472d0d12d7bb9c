"""The etcd connection of one master: aetcd's generated gRPC stubs over a list of endpoints.

Used by `hacluster.etcd.store` and `hacluster.etcd.election`. Requests go to one endpoint at a time, the
first (the member beside this master) by preference; a request refused because the endpoint cannot be
reached moves the connection to the next endpoint, as etcd's own client balancer does, and the caller may
try again. `local_status()` always asks the first endpoint (what `/debug/raft` shows of "this master's"
etcd member).

Failures are mapped once, here, onto the store's contract (`hacluster.store.api`):
- `Unavailable` (503, nothing was done): the endpoint could not be reached, etcd has no leader, or refused
  the request before proposing it (too many requests);
- `Timeout` (504, outcome unknown): our deadline passed or etcd answered "request timed out",
  "leader changed", lost the connection mid-request — a write may still commit, exactly as etcd says.
  For reads (`write=False`) the same failures are `Unavailable`: a read changes nothing.
- `Compacted`: the revision asked for is older than etcd's compaction (the caller relists; 410 to clients).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from hacluster.model.errors import ApiError, Timeout, Unavailable

log = logging.getLogger(__name__)

# Reconnect quickly to an endpoint that comes back (gRPC's default backoff starts at 1 s and grows to 120 s),
# and notice a dead connection (a blackholed link holds it open) within seconds. etcd refuses client pings
# more often than its --grpc-keepalive-min-time (5 s by default): 5 s is the most we may ask of any etcd.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)
# etcd answers requests carrying this metadata with "no leader" at once when its member has no leader
# (clientv3.WithRequireLeader), instead of letting them wait for one: a quick, definite 503.
REQUIRE_LEADER = (("hasleader", "true"),)

# gRPC UNAVAILABLE details that mean the request never reached an etcd member's Raft log.
_NOT_SENT = ("failed to connect", "connection refused", "dns resolution", "no leader", "not capable",
             "too many requests", "empty address list", "unreachable")


class Compacted(Exception):
    """The revision asked for has been compacted away in etcd."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"etcd revision compacted (now at {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class Endpoint:
    url: str
    target: str  # host:port
    tls: bool


@dataclass(frozen=True)
class TlsFiles:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"etcd endpoint {url!r}: expected http(s)://host:port")
    return Endpoint(url, f"{parts.hostname}:{parts.port}", parts.scheme == "https")


def _not_sent(exc: grpc.aio.AioRpcError) -> bool:
    details = (exc.details() or "").lower()
    return exc.code() == grpc.StatusCode.UNAVAILABLE and any(s in details for s in _NOT_SENT)


def map_error(exc: grpc.aio.AioRpcError, what: str, endpoint: str, *, write: bool) -> ApiError:
    """The store-contract error for a failed etcd request (see the module docstring)."""
    code, details = exc.code(), exc.details() or ""
    msg = f"etcd {endpoint}: {what}: {code.name.lower()}: {details}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED or _not_sent(exc):
        return Unavailable(msg + "; nothing was done", retry_after_s=1)
    if not write:
        return Unavailable(msg, retry_after_s=1)
    return Timeout(msg + "; the write may or may not have been committed", retry_after_s=1)


class EtcdClient:
    """One master's connection to etcd (see the module docstring). All methods run on the event loop."""

    def __init__(self, endpoints: list[str], tls: TlsFiles | None = None) -> None:
        if not endpoints:
            raise ValueError("store.etcd: no endpoints")
        self.endpoints = [parse_endpoint(u) for u in endpoints]
        self.tls = tls or TlsFiles()
        self._current = 0
        self._channels: dict[int, grpc.aio.Channel] = {}

    # ------------------------------------------------------------------------------ channels
    def _credentials(self) -> grpc.ChannelCredentials:
        def read(p: str) -> bytes | None:
            return Path(p).read_bytes() if p else None
        return grpc.ssl_channel_credentials(read(self.tls.ca_file), read(self.tls.key_file),
                                            read(self.tls.cert_file))

    def channel(self, index: int) -> grpc.aio.Channel:
        ch = self._channels.get(index)
        if ch is None:
            ep = self.endpoints[index]
            if ep.tls:
                ch = grpc.aio.secure_channel(ep.target, self._credentials(), options=CHANNEL_OPTIONS)
            else:
                ch = grpc.aio.insecure_channel(ep.target, options=CHANNEL_OPTIONS)
            self._channels[index] = ch
        return ch

    @property
    def current(self) -> Endpoint:
        return self.endpoints[self._current]

    def failed_over(self, index: int) -> None:
        """The endpoint `index` could not be reached: use the next one (unless another request moved on)."""
        if index == self._current and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)
            log.warning("etcd endpoint %s unreachable; using %s", self.endpoints[index].url, self.current.url)

    def prefer_local(self) -> None:
        """The first endpoint answered again: go back to it."""
        if self._current != 0:
            log.warning("etcd endpoint %s answers again; using it", self.endpoints[0].url)
            self._current = 0

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for ch in channels.values():
            await ch.close()

    # ------------------------------------------------------------------------------ requests
    async def _call(self, stub: str, method: str, request: Any, timeout_s: float, *, what: str,
                    write: bool, index: int | None = None) -> Any:
        i = self._current if index is None else index
        ep = self.endpoints[i]
        fn = getattr(getattr(rpc, stub)(self.channel(i)), method)
        try:
            return await fn(request, timeout=timeout_s, metadata=REQUIRE_LEADER)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (exc.details() or ""):
                raise Compacted(0) from exc
            if index is None and _not_sent(exc) and "leader" not in (exc.details() or ""):
                self.failed_over(i)
            raise map_error(exc, what, ep.url, write=write) from exc

    async def range(self, request: Any, timeout_s: float, *, what: str = "read") -> Any:
        return await self._call("KVStub", "Range", request, timeout_s, what=what, write=False)

    async def txn(self, request: Any, timeout_s: float, *, what: str = "write") -> Any:
        return await self._call("KVStub", "Txn", request, timeout_s, what=what, write=True)

    async def lease_grant(self, ttl_s: int, timeout_s: float) -> Any:
        return await self._call("LeaseStub", "LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl_s), timeout_s,
                                what="lease grant", write=False)

    async def lease_revoke(self, lease_id: int, timeout_s: float) -> Any:
        return await self._call("LeaseStub", "LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease_id), timeout_s,
                                what="lease revoke", write=True)

    async def lease_keepalive(self, lease_id: int, timeout_s: float) -> int:
        """Renew the lease once; its remaining TTL in seconds (≤ 0: the lease is gone)."""
        ep = self.current
        call = rpc.LeaseStub(self.channel(self._current)).LeaseKeepAlive(
            iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=timeout_s, metadata=REQUIRE_LEADER)
        try:
            async for reply in call:
                return int(reply.TTL)
        except grpc.aio.AioRpcError as exc:
            raise map_error(exc, "lease keep-alive", ep.url, write=False) from exc
        finally:
            call.cancel()
        return 0

    async def status(self, index: int, timeout_s: float) -> Any:
        return await self._call("MaintenanceStub", "Status", rpc.StatusRequest(), timeout_s, what="status",
                                write=False, index=index)

    async def members(self, index: int, timeout_s: float) -> Any:
        return await self._call("ClusterStub", "MemberList", rpc.MemberListRequest(), timeout_s,
                                what="member list", write=False, index=index)
