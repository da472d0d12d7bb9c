"""`EtcdStore`: the `ReplicatedStore` of a master whose objects live in etcd (`store.engine: etcd`).

Opened by `hacluster.cluster.engines` (one per master process, i.e. per API server). It runs three tasks:
- the sync task: one list of the keyspace, then one etcd watch (with previous values) from the revision
  after it, mirrored into the watch cache (`hacluster.etcd.cache`); when etcd has compacted past the
  cache (the watch was down too long) it lists again, and watches from older revisions get 410;
- the status task: this master's etcd member's status (role, term, leader, raft index), published as the
  `RaftView` (`/debug/raft`, `hacluster status`, chaos samples) — what etcd says, nothing computed here;
- the election task (`hacluster.etcd.election`): the leader-only loops' lease.

`propose(command)` plans the command with the pure state machine against the cache and commits it with
one etcd transaction that compares the mod revision of every key the plan read, plus, for a leader loop's
command (`fence_term`), the leadership key's create revision (fencing); see `hacluster.etcd.plan`. On a
failed compare the cache catches up and the command is planned again (at most `PLAN_ATTEMPTS_MAX` times).
A plan that writes nothing (a refusal such as NotFound, or a no-op) is planned once more after a read
barrier, so what it answers is true of etcd's current state. Failures keep the store's contract
(`hacluster.etcd.client`): 503 nothing was done, 504 outcome unknown. Request ids are not remembered
across attempts: a proposal that ended 504 is not retried here (a retry by the caller is a new write,
refused by the state machine if the first one did commit: AlreadyExists, Conflict, already bound).

`linearizable_barrier()` reads etcd's current revision with a linearizable (quorum) read and waits until
the cache has caught up with it — the consistent reads from cache of Kubernetes 1.31 (KEP-2340); barriers
are coalesced like the pysyncobj engine's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import msgspec
from aetcd import rpc

from hacluster.asyncwait import CoalescedBarrier, wait_event
from hacluster.config import ClusterConfig
from hacluster.etcd import layout
from hacluster.etcd.cache import Change, WatchCache
from hacluster.etcd.client import Compacted, EtcdClient, TlsFiles
from hacluster.etcd.election import LeaseElection
from hacluster.etcd.plan import Plan, with_revision
from hacluster.model import commands as cmds
from hacluster.model.errors import ApiError, BadRequest, ErrorInfo, Timeout, Unavailable
from hacluster.store.api import Leadership, RaftView
from hacluster.store.state import Result, StoreLimits, StoreState

log = logging.getLogger(__name__)
T = TypeVar("T")

PLAN_ATTEMPTS_MAX = 8
"""Plans of one command before giving up on a key that keeps moving (then 503: nothing was written)."""
LIST_PAGE_LIMIT = 500
"""Keys per Range request of the initial list (etcd's own default request size limit is 1.5 MiB)."""
STATUS_PERIOD_S = 0.2
"""How often this master's etcd member is asked for its status (role, term, leader, raft index)."""
RESYNC_WAIT_S_MIN = 0.05
RESYNC_WAIT_S_MAX = 1.0
CACHE_WAIT_AFTER_WRITE_S = 2.0
"""How long a committed write waits for the watch to bring it into the cache before it is answered (so a
client reads its own write from this master); the write is answered as committed either way."""
PROGRESS_REQUEST_AFTER_S = 0.05
"""A barrier still waiting for the cache after this long asks etcd for a watch progress notification (a
revision of a key outside the watched keyspace brings no event)."""


def endpoints_of(cfg: ClusterConfig, master_id: str) -> list[str]:
    """Client URLs this master uses: `store.etcd.endpoints`, else the members `hacluster up` runs, the one
    beside this master first."""
    if cfg.store.etcd.endpoints:
        return list(cfg.store.etcd.endpoints)
    me = cfg.master(master_id)
    others = [m for m in cfg.masters if m.id != master_id]
    return [f"http://{m.host}:{m.etcd_client_port}" for m in (me, *others)]


class EtcdStore:
    """See the module docstring."""

    def __init__(self, cfg: ClusterConfig, master_id: str, *, endpoints: list[str] | None = None,
                 dial_addresses: dict[str, str] | None = None,
                 on_proposal_outcome: Callable[[str], None] | None = None, **_unused: Any) -> None:
        self.cfg = cfg
        self.id = master_id
        urls = endpoints or endpoints_of(cfg, master_id)
        self._urls = list(urls)  # as etcd's member list names them (before any proxy)
        dial = dial_addresses or {}
        # The chaos network routes this master's etcd client links through proxies (host:port -> proxy).
        urls = [_dialled(u, dial) for u in urls]
        e = cfg.store.etcd
        self.client = EtcdClient(urls, TlsFiles(e.ca_file, e.cert_file, e.key_file))
        self.prefix = e.prefix
        self.leader_key = layout.leader_key(e.prefix)
        self._cache = WatchCache(StoreLimits(watch_history_max=cfg.store.watch_history_max))
        self._on_outcome = on_proposal_outcome
        self.proposal_stats: dict[str, int] = {}
        self._view = RaftView(id=master_id, role="follower", term=0, leader=None, commit_index=0,
                              applied_index=0, quorum=False)
        self._view_listeners: list[Callable[[RaftView], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._change = asyncio.Event()
        self._synced = False  # the cache holds a full list and its watch runs
        self._progress_wanted = asyncio.Event()
        self._member_names: dict[int, str] = {}
        self._member_endpoint: dict[int, int] = {}  # member id -> index of its endpoint (as etcd lists it)
        self._barrier = CoalescedBarrier(self._barrier_once, self._barrier_cancelled)
        self.election = LeaseElection(self.client, master_id, ttl_s=e.leader_lease_ttl_s,
                                      request_timeout_s=cfg.api.proposal_timeout_s,
                                      holder_in_cache=self._leader_in_cache, on_change=self._announce,
                                      key=self.leader_key)

    # ---------------------------------------------------------------------------- lifecycle
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._change = asyncio.Event()
        self._progress_wanted = asyncio.Event()
        self._tasks = [loop.create_task(self._sync_forever()), loop.create_task(self._status_forever()),
                       loop.create_task(self.election.run(self._wait_synced))]

    def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks and self._loop is not None and not self._loop.is_closed():
            # Give the lease back so another master's loops take over at once rather than after its TTL.
            self._loop.create_task(self._close())

    async def _close(self) -> None:
        await self.election.resign()
        await self.client.close()

    async def aclose(self) -> None:
        """Stop, give the leader loops' lease back and close the connections (awaited by the master)."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close()

    # -------------------------------------------------------------------------------- views
    def view(self) -> RaftView:
        return self._view

    def add_view_listener(self, fn: Callable[[RaftView], None]) -> None:
        self._view_listeners.append(fn)

    def leadership(self) -> Leadership:
        """The leader-only loops' leadership: the etcd lease (`hacluster.etcd.election`)."""
        return self.election.leadership()

    def _announce(self) -> None:
        for fn in list(self._view_listeners):
            try:
                fn(self._view)
            except Exception:
                log.exception("view listener failed")

    def _leader_in_cache(self) -> tuple[str, int]:
        return self._cache.leader_holder, self._cache.leader_create_revision

    # -------------------------------------------------------------------------------- reads
    def read(self, fn: Callable[[StoreState], T]) -> T:
        return fn(self._cache)  # the cache changes only on the event loop, between awaits

    @property
    def revision(self) -> int:
        return self._cache.revision

    async def wait_for_change(self, after_revision: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self._cache.revision <= after_revision:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await wait_event(self._change, remaining):
                break
        return self._cache.revision

    async def _catch_up(self, revision: int, deadline: float) -> bool:
        """Wait until the cache holds `revision` (or the deadline); True if it does."""
        asked = False
        while self._cache.revision < revision:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = remaining if asked else min(remaining, PROGRESS_REQUEST_AFTER_S)
            if not await wait_event(self._change, step) and not asked:
                self._progress_wanted.set()
                asked = True
        return True

    async def _wait_synced(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self._synced:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await wait_event(self._change, remaining):
                return self._synced
        return True

    async def _current_revision(self, timeout_s: float) -> int:
        """etcd's revision now, by a linearizable read (it goes through the etcd leader's ReadIndex)."""
        resp = await self.client.range(rpc.RangeRequest(key=layout.BARRIER_KEY, count_only=True), timeout_s,
                                       what="read barrier")
        return int(resp.header.revision)

    async def linearizable_barrier(self) -> None:
        """Coalesced: every caller waits for a barrier whose etcd read started after it arrived."""
        await self._barrier.wait()

    def _barrier_cancelled(self) -> Unavailable:
        return Unavailable(f"hacluster master {self.id}: the read barrier was cancelled", retry_after_s=1)

    async def _barrier_once(self) -> None:
        timeout = self.cfg.api.proposal_timeout_s
        deadline = time.monotonic() + timeout
        revision = await self._current_revision(timeout)
        if not await self._catch_up(revision, deadline):
            raise Unavailable(f"hacluster master {self.id}: the watch cache did not reach etcd revision "
                              f"{revision} within {timeout:g}s (at {self._cache.revision})", retry_after_s=1)

    # ------------------------------------------------------------------------------ writes
    def _count(self, outcome: str) -> None:
        self.proposal_stats[outcome] = self.proposal_stats.get(outcome, 0) + 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def propose(self, command: cmds.AnyCommand, *, timeout_s: float | None = None) -> Result:
        """See `hacluster.store.api.ReplicatedStore.propose` and the module docstring."""
        try:
            command = cmds.as_replicated(command)  # values the encoding refuses are refused here too
        except cmds.CommandEncodingError as exc:
            raise BadRequest(str(exc)) from exc
        timeout = self.cfg.api.proposal_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        if isinstance(command, cmds.Barrier):
            await self.linearizable_barrier()
            return Result(ok=True, revision=self._cache.revision)
        if not self._synced:
            self._count("unavailable")
            raise Unavailable(f"hacluster master {self.id}: not yet synchronised with etcd; the write was not "
                              "made", retry_after_s=1)
        try:
            result = await self._propose(command, deadline)
        except Timeout:
            self._count("unknown")
            raise
        except ApiError:
            self._count("unavailable")
            raise
        self._count("committed")
        return result

    async def _propose(self, command: cmds.AnyCommand, deadline: float) -> Result:
        fence = command.fence_term
        fresh = False  # has the cache been brought up to a revision read after this call began?
        for _ in range(PLAN_ATTEMPTS_MAX):
            if fence and self._cache.leader_create_revision != fence and fresh:
                return _fenced(fence, self._cache.leader_create_revision)
            plan = Plan(self._cache)
            result = plan.run(command)
            writes = plan.writes()
            if not writes:
                if fresh:
                    return result
                await self._barrier_until(deadline)
                fresh = True
                continue
            request = self._txn(plan, writes, fence)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            resp = await self.client.txn(request, remaining)
            revision = int(resp.header.revision)
            if resp.succeeded:
                await self._catch_up(revision, time.monotonic() + CACHE_WAIT_AFTER_WRITE_S)
                return with_revision(result, plan.base_revision, revision)
            # Something the plan read has moved (or the leadership changed): catch up, plan again.
            if not await self._catch_up(revision, deadline):
                break
            fresh = True
        raise Unavailable(f"hacluster master {self.id}: the objects this write depends on kept changing (or the "
                          "watch cache lags); the write was not made", retry_after_s=1)

    async def _barrier_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Unavailable(f"hacluster master {self.id}: no time left to confirm against etcd; nothing was "
                              "written", retry_after_s=1)
        revision = await self._current_revision(remaining)
        if not await self._catch_up(revision, deadline):
            raise Unavailable(f"hacluster master {self.id}: the watch cache lags etcd; nothing was written",
                              retry_after_s=1)

    def _txn(self, plan: Plan, writes: dict[tuple[str, str], Any], fence: int) -> Any:
        compares = []
        for (plural, key), mod in plan.reads.items():
            compares.append(rpc.Compare(key=layout.object_key(self.prefix, plural, key),
                                        target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod))
        if fence:
            # Fencing: the leadership key is still the one this loop was elected with (same create revision).
            compares.append(rpc.Compare(key=self.leader_key, target=rpc.Compare.CREATE,
                                        result=rpc.Compare.EQUAL, create_revision=fence))
        ops = []
        for (plural, key), obj in writes.items():
            k = layout.object_key(self.prefix, plural, key)
            if obj is None:
                ops.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k)))
            else:
                ops.append(rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=layout.encode(obj))))
        return rpc.TxnRequest(compare=compares, success=ops)

    # ------------------------------------------------------------------------------ sync
    async def _sync_forever(self) -> None:
        wait_s = RESYNC_WAIT_S_MIN
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    self._synced = True
                    self._signal_change()
                await self._watch()
                wait_s = RESYNC_WAIT_S_MIN
            except asyncio.CancelledError:
                raise
            except Compacted:
                log.warning("etcd compacted past this master's watch cache (at %d): listing again",
                            self._cache.revision)
                need_list = True
            except (ApiError, grpc.aio.AioRpcError, OSError) as exc:
                log.info("etcd watch of master %s interrupted: %s", self.id, exc)
                if isinstance(exc, Unavailable) or (isinstance(exc, grpc.aio.AioRpcError)
                                                    and exc.code() == grpc.StatusCode.UNAVAILABLE):
                    # unreachable, or its member lost its leader (etcd cancels require-leader watches)
                    self.client.failed_over(self.client.endpoints.index(self.client.current))
                await asyncio.sleep(wait_s)  # bounded back-off before reconnecting the watch
                wait_s = min(wait_s * 2, RESYNC_WAIT_S_MAX)
            except Exception:
                log.exception("etcd watch of master %s failed", self.id)
                await asyncio.sleep(RESYNC_WAIT_S_MAX)

    async def _list(self) -> None:
        timeout = max(self.cfg.api.proposal_timeout_s, 5.0)
        start = self.prefix.encode()
        end = _prefix_end(start)
        revision = 0
        objects: list[tuple[str, str, Any, int]] = []
        key = start
        for _ in range(1_000_000):  # bounded: one page per LIST_PAGE_LIMIT keys
            resp = await self.client.range(rpc.RangeRequest(key=key, range_end=end, limit=LIST_PAGE_LIMIT,
                                                            revision=revision), timeout, what="list")
            revision = revision or int(resp.header.revision)
            for kv in resp.kvs:
                where = layout.split_key(self.prefix, kv.key)
                if where is None:
                    continue
                try:
                    obj = layout.decode(kv.value, kv.mod_revision)
                except (ValueError, msgspec.DecodeError):
                    log.warning("etcd key %r does not hold a Kubernetes object; ignored", kv.key)
                    continue
                objects.append((where[0], where[1], obj, kv.create_revision))
            if not resp.more or not resp.kvs:
                break
            key = resp.kvs[-1].key + b"\x00"
        lead = await self.client.range(rpc.RangeRequest(key=self.leader_key, revision=revision), timeout,
                                       what="list")
        self._cache.load(revision, objects)
        self._set_leader(lead.kvs[0] if lead.kvs else None)
        log.info("master %s listed %d objects from etcd at revision %d", self.id, len(objects), revision)

    def _set_leader(self, kv: Any) -> None:
        holder, created = (kv.value.decode(errors="replace"), int(kv.create_revision)) if kv is not None else ("", 0)
        if (holder, created) != (self._cache.leader_holder, self._cache.leader_create_revision):
            self._cache.leader_holder, self._cache.leader_create_revision = holder, created
            self._cache.term_seen = created
            self._cache.leader_id = holder
            self.election.holder_changed()

    async def _requests(self, first: Any) -> Any:
        """The watch stream's requests: the watch, then a progress request whenever a barrier wants one."""
        yield rpc.WatchRequest(create_request=first)
        while True:
            await self._progress_wanted.wait()
            self._progress_wanted.clear()
            yield rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())

    async def _watch(self) -> None:
        create = rpc.WatchCreateRequest(key=b"/", range_end=b"0", start_revision=self._cache.revision + 1,
                                        prev_kv=True)
        i = self.client.endpoints.index(self.client.current)
        call = rpc.WatchStub(self.client.channel(i)).Watch(self._requests(create), metadata=(("hasleader", "true"),))
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(int(resp.compact_revision))
                if resp.canceled:
                    raise Unavailable(f"etcd watch canceled: {resp.cancel_reason}")
                if resp.created:
                    continue
                if not resp.events:
                    # A progress notification: every event up to this revision has been delivered.
                    self._cache.advance(int(resp.header.revision))
                    self._signal_change()
                    continue
                self._apply_events(resp.events)
        finally:
            call.cancel()

    def _apply_events(self, events: Any) -> None:
        changes: list[Change] = []
        revision = 0
        for ev in events:
            kv = ev.kv
            rev = int(kv.mod_revision)
            if revision and rev != revision:
                self._cache.observe(revision, changes)
                changes = []
            revision = rev
            if kv.key == self.leader_key:
                self._set_leader(kv if ev.type == rpc.Event.PUT else None)
                continue
            where = layout.split_key(self.prefix, kv.key)
            if where is None:
                continue
            if ev.type == rpc.Event.DELETE:
                changes.append(Change(where[0], where[1], None, None))
                continue
            try:
                obj = layout.decode(kv.value, rev)
            except (ValueError, msgspec.DecodeError):
                log.warning("etcd key %r does not hold a Kubernetes object; ignored", kv.key)
                continue
            changes.append(Change(where[0], where[1], obj, None))
        if revision:
            self._cache.observe(revision, changes)
        self._signal_change()

    def _signal_change(self) -> None:
        ev, self._change = self._change, asyncio.Event()
        ev.set()

    # ----------------------------------------------------------------------------- status
    async def _status_forever(self) -> None:
        while True:
            try:
                await self._status_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("etcd status of master %s failed", self.id)
            await asyncio.sleep(STATUS_PERIOD_S)  # a poll period: etcd has no status push

    async def _status_once(self) -> None:
        view = await self._status_view()
        if (view.term, view.leader) != (self._view.term, self._view.leader):
            # etcd's Status reads the member's leader and term one after the other, not atomically: a sample
            # taken while an election settles can pair the new leader with the old term (two leaders in one
            # term, to whoever samples us). Publish a new (term, leader) only once a second sample agrees.
            again = await self._status_view()
            if (again.term, again.leader) != (view.term, view.leader):
                return
            view = again
        changed = (view.role, view.term, view.leader, view.quorum) != (
            self._view.role, self._view.term, self._view.leader, self._view.quorum)
        self._view = view
        if changed:
            self._announce()

    async def _status_view(self) -> RaftView:
        timeout = 0.5
        try:
            st = await self.client.status(0, timeout)
            local_ok = True
        except ApiError:
            local_ok = False
            self.client.failed_over(0)  # the member beside us is gone: serve through another one meanwhile
            try:
                st = await self.client.status(self.client.endpoints.index(self.client.current), timeout)
            except ApiError:
                st = None
        if local_ok and st is not None and int(st.leader):
            self.client.prefer_local()
        elif local_ok:
            self.client.failed_over(0)  # it answers but has no leader: its requests would all fail
        if st is None:
            return RaftView(id=self.id, role="follower", term=self._view.term, leader=None,
                            commit_index=self._view.commit_index, applied_index=self._view.applied_index,
                            quorum=False, elections=self._elections())
        leader_id = int(st.leader)
        if leader_id and leader_id not in self._member_names:
            await self._refresh_members()
        leader = self._member_names.get(leader_id) if leader_id else None
        mine = local_ok and leader_id and leader_id == int(st.header.member_id)
        # etcd's raftTerm is the term of the member's last *applied* entry, not its Raft term: a follower
        # that cannot answer its leader (cut off one way) names the new leader but stays at the old term.
        # The term shown beside a leader is the one that leader reports of itself.
        term = int(st.raftTerm)
        if leader_id and not mine:
            index = self._member_endpoint.get(leader_id)
            try:
                lst = await self.client.status(index, timeout) if index is not None else None
            except ApiError:
                lst = None
            if lst is not None and int(lst.leader) == leader_id:
                term = max(term, int(lst.raftTerm))
            else:
                leader = None  # not confirmed by the leader itself (yet): no leader to show
        role = "leader" if mine else ("follower" if leader else "candidate")
        return RaftView(id=self.id, role=role, term=term, leader=leader, commit_index=int(st.raftIndex),
                        applied_index=int(st.raftAppliedIndex or st.raftIndex),
                        quorum=bool(leader_id) and self._synced, elections=self._elections())

    def _elections(self) -> dict[str, Any]:
        lead = self.election.leadership()
        return {"engine": "etcd", "endpoint": self.client.current.url, "leader_loops": lead.holder,
                "leader_loops_term": lead.term}

    async def _refresh_members(self) -> None:
        try:
            resp = await self.client.members(self.client.endpoints.index(self.client.current), 0.5)
        except ApiError:
            return
        self._member_names = {int(m.ID): m.name or f"{m.ID:x}" for m in resp.members}
        self._member_endpoint = {int(m.ID): self._urls.index(u) for m in resp.members for u in m.clientURLs
                                 if u in self._urls}


def _fenced(term: int, now: int) -> Result:
    """The state machine's own refusal of a fenced command (`hacluster.leader.proposer.is_fenced`)."""
    return Result(ok=False, error=ErrorInfo(
        reason="Conflict", message=f"fenced: proposed by the leader loops of term {term}, but the leadership "
        f"key is now at create revision {now or 'none'} (a newer leader has taken over)"))


def _prefix_end(prefix: bytes) -> bytes:
    """The etcd range end of every key starting with `prefix`."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\x00"


def _dialled(url: str, dial: dict[str, str]) -> str:
    for real, proxy in dial.items():
        if url.endswith("//" + real):
            return url.replace("//" + real, "//" + proxy)
    return url
