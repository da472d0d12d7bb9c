"""A deliberately UNSAFE replication engine: primary-backup, asynchronous replication, timeout failover.

Opened by `hacluster.cluster.engines` as "unsafe-async-primary" — only when the config says
`store.unsafe_async_primary.loses_acknowledged_writes: true` — and started by the split-brain experiment
(`chaos/splitbrain.py`) to show, measured, what Raft's quorum prevents. It keeps the `ReplicatedStore`
contract's shape over the same pure state machine (`hacluster.store.state`), but not its guarantees:

- the primary applies a write, acknowledges it, and only then sends it to the backups (no quorum, no wait);
- a backup forwards writes to its primary and answers with the primary's result;
- a backup that hears nothing from its primary for the failover timeout promotes itself with a higher epoch
  (`hacluster.unsafe.failover`): in a partition both sides then have a primary and both acknowledge writes;
- when primaries meet again, the higher epoch wins and the loser takes the winner's copy whole, so every
  write only the loser had — acknowledged to its clients — is gone;
- reads on a primary are local (it believes it is the primary), and nothing is written to disk.

Everything runs on the master's event loop; peer links are plain TCP (`hacluster.unsafe.links`), routed
through the chaos network's proxies exactly like the Raft engine's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from hacluster.asyncwait import wait_event
from hacluster.config import ClusterConfig
from hacluster.ids import new_request_id
from hacluster.model import commands as cmds
from hacluster.model.errors import BadRequest, ErrorInfo, Timeout, Unavailable
from hacluster.store.api import PeerView, RaftView
from hacluster.store.state import Result, StoreLimits, StoreState, result_from_plain, result_to_plain
from hacluster.unsafe import failover
from hacluster.unsafe.failover import BACKUP, PRIMARY, Decision
from hacluster.unsafe.links import LinkSettings, PeerLinks

log = logging.getLogger(__name__)
T = TypeVar("T")

ENGINE = "unsafe-async-primary"
ENGINE_FAILED_EXIT_CODE = 70  # EX_SOFTWARE
SYNC_RETRY_S = 1.0  # a backup waiting for the primary's copy asks again after this long
_ROLE_VIEW = {PRIMARY: "leader", BACKUP: "follower"}  # the words every status reader already knows


class UnsafeAsyncPrimaryStore:
    """A `ReplicatedStore` whose replication loses acknowledged writes in a partition (see the module)."""

    def __init__(self, cfg: ClusterConfig, master_id: str, *, data_dir: str | Path | None = None,
                 dial_addresses: dict[str, str] | None = None,
                 on_proposal_outcome: Callable[[str], None] | None = None,
                 storage_mode: str = "disk", on_fsync: Callable[[float], None] | None = None) -> None:
        if not cfg.store.unsafe_async_primary.loses_acknowledged_writes:
            raise ValueError("the unsafe-async-primary engine needs "
                             "store.unsafe_async_primary.loses_acknowledged_writes: true")
        if storage_mode != "disk":
            # It writes nothing to disk, so test storage (power cuts, disk faults) has nothing to act on.
            raise ValueError(f"the unsafe-async-primary engine keeps nothing on disk: storage mode "
                             f"{storage_mode!r} does not apply")
        del data_dir, on_fsync  # nothing is persisted: a restarted master starts empty and copies the primary
        self.cfg = cfg
        self.id = master_id
        self.settings = cfg.store.unsafe_async_primary
        self._limits = StoreLimits(watch_history_max=cfg.store.watch_history_max)
        self._state = StoreState(self._limits)
        self._lock = threading.Lock()  # read() may be called from worker threads (metrics, dumps)
        self._seq = 0  # commands applied to this copy; the primary's stream position
        self._fo = failover.initial(master_id, tuple(m.id for m in cfg.masters), time.monotonic())
        self._syncing = False  # waiting for the primary's copy (after following a new primary)
        self._sync_asked_at = 0.0
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._rids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._change_event = asyncio.Event()
        self._view_changed = asyncio.Event()
        self._view = RaftView(master_id, "follower", 0, None, 0, 0, False)
        self._listeners: list[Callable[[RaftView], None]] = []
        self._on_outcome = on_proposal_outcome
        self._ticker: asyncio.Task[None] | None = None
        self.counters = {"promotions": 0, "step_downs": 0, "resyncs": 0}
        addresses = {m.id: m.raft_address for m in cfg.masters}
        self.links = PeerLinks(master_id, addresses, dial_addresses or {},
                               LinkSettings(password=cfg.raft.password,
                                            retry_s=self.settings.link_retry_ms / 1000,
                                            silence_timeout_s=self.settings.link_silence_timeout_ms / 1000,
                                            send_buffer_max_bytes=self.settings.send_buffer_max_bytes),
                               self._on_message)

    # ------------------------------------------------------------------------------- lifecycle
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._change_event = asyncio.Event()
        self._view_changed = asyncio.Event()
        self._ticker = loop.create_task(self._run())
        self._ticker.add_done_callback(self._engine_ended)

    @staticmethod
    def _engine_ended(task: asyncio.Task[None]) -> None:
        """The engine's task ends only when stopped; if it failed (its peer port could not be bound, a bug),
        stop the master rather than let it serve with no replication at all."""
        if task.cancelled() or task.exception() is None:
            return
        log.critical("unsafe-async-primary engine failed: %r; stopping this master", task.exception())
        os._exit(ENGINE_FAILED_EXIT_CODE)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    async def _run(self) -> None:
        await self.links.start()
        period = self.settings.heartbeat_ms / 1000
        try:
            while True:
                self._tick()
                await asyncio.sleep(period)  # the heartbeat period: the tick is the engine's clock
        finally:
            await self.links.stop()

    def _tick(self) -> None:
        now = time.monotonic()
        self._take(failover.on_tick(self._fo, now, self.settings.failover_timeout_ms / 1000,
                                    self.settings.failover_stagger_ms / 1000))
        beat = {"t": "hb", "role": self._fo.role, "epoch": self._fo.epoch, "seq": self._seq}
        for peer in self._peers():
            self.links.send(peer, beat)
        if self._syncing and self._fo.primary is not None and now - self._sync_asked_at > SYNC_RETRY_S:
            self._ask_sync()
        self._publish()

    def _peers(self) -> list[str]:
        return [m for m in self._fo.members if m != self.id]

    # --------------------------------------------------------------------------- failover steps
    def _take(self, d: Decision) -> None:
        before = self._fo
        self._fo = d.state
        if d.promoted:
            self.counters["promotions"] += 1
            self._syncing = False
            log.warning("UNSAFE engine: %s promoted itself to primary of epoch %d (heard nothing from %s for "
                        "the failover timeout; nobody was asked)", self.id, d.state.epoch, before.primary or "anyone")
        if d.stepped_down:
            self.counters["step_downs"] += 1
            log.warning("UNSAFE engine: %s steps down: %s is primary of epoch %d; this copy (seq %d, epoch %d) "
                        "is replaced and the writes only it had are discarded", self.id, d.state.primary,
                        d.state.epoch, self._seq, before.epoch)
        if d.resync:
            self._syncing = True
            self._ask_sync()
        if (before.role, before.epoch, before.primary) != (d.state.role, d.state.epoch, d.state.primary):
            self._publish()

    def _ask_sync(self) -> None:
        self._sync_asked_at = time.monotonic()
        if self._fo.primary is not None:
            self.links.send(self._fo.primary, {"t": "sync_req", "epoch": self._fo.epoch})

    # ------------------------------------------------------------------------------- messages
    def _on_message(self, peer: str, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == "hb":
            self._take(failover.on_heartbeat(self._fo, peer, str(msg["role"]), int(msg["epoch"]), time.monotonic()))
            # Entries travel before the heartbeat on the same connection, so the primary's position at its
            # heartbeat is this copy's: ahead means entries were lost with a dropped connection (and no later
            # entry may show the gap); behind means the primary restarted empty in the same epoch.
            if (not self._syncing and failover.accepts_entry(self._fo, peer, int(msg["epoch"]))
                    and int(msg["seq"]) != self._seq):
                self._syncing = True
                self._ask_sync()
        elif kind == "entry":
            self._on_entry(peer, msg)
        elif kind == "sync_req":
            if self._fo.role == PRIMARY:
                with self._lock:
                    snapshot = self._state.snapshot()
                self.links.send(peer, {"t": "sync", "epoch": self._fo.epoch, "seq": self._seq, "state": snapshot})
        elif kind == "sync":
            self._on_sync(peer, msg)
        elif kind == "fwd":
            self._on_forwarded(peer, msg)
        elif kind == "fwd_res":
            fut = self._pending.pop(str(msg["rid"]), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _on_entry(self, peer: str, msg: dict[str, Any]) -> None:
        if self._syncing or not failover.accepts_entry(self._fo, peer, int(msg["epoch"])):
            return
        seq = int(msg["seq"])
        if seq <= self._seq:
            return  # already in this copy (it came with the primary's copy)
        if seq != self._seq + 1:
            log.info("entry %d from %s after %d: a gap, copying the primary", seq, peer, self._seq)
            self._syncing = True
            self._ask_sync()
            return
        self._apply_payload(bytes(msg["payload"]))

    def _on_sync(self, peer: str, msg: dict[str, Any]) -> None:
        if not (self._fo.role == BACKUP and self._fo.primary == peer and int(msg["epoch"]) == self._fo.epoch):
            return  # a copy from a primary this master no longer follows
        restored = StoreState.restore(msg["state"], self._limits)
        with self._lock:
            self._state = restored
            self._seq = int(msg["seq"])
        self.counters["resyncs"] += 1
        self._syncing = False
        self._signal_change()
        self._publish()

    def _on_forwarded(self, peer: str, msg: dict[str, Any]) -> None:
        rid = msg["rid"]
        if self._fo.role != PRIMARY:
            self.links.send(peer, {"t": "fwd_res", "rid": rid, "ok": False,
                                   "error": f"{self.id} is not the primary"})
            return
        result = self._apply_as_primary(bytes(msg["payload"]))
        self.links.send(peer, {"t": "fwd_res", "rid": rid, "ok": True, "result": result_to_plain(result),
                               "epoch": self._fo.epoch, "seq": self._seq})

    # ------------------------------------------------------------------------------- applying
    def _apply_payload(self, payload: bytes) -> Result:
        try:
            command = cmds.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            result = Result(ok=False, error=ErrorInfo(reason="BadRequest", message=f"undecodable command: {exc}"))
        else:
            with self._lock:
                result = self._state.apply(command)
        self._seq += 1
        self._signal_change()
        return result

    def _apply_as_primary(self, payload: bytes) -> Result:
        """Apply, then send to the backups without waiting: the write is acknowledged before any backup has
        it (the asynchronous replication that loses writes when this primary is cut off or replaced)."""
        result = self._apply_payload(payload)
        entry = {"t": "entry", "epoch": self._fo.epoch, "seq": self._seq, "payload": payload}
        for peer in self._peers():
            self.links.send(peer, entry)
        return result

    def _signal_change(self) -> None:
        ev, self._change_event = self._change_event, asyncio.Event()
        ev.set()

    # ------------------------------------------------------------------------------- the view
    def _quorum(self, now: float) -> bool:
        """May this master serve writes now? The primary always may (it asks nobody); a backup while its
        copy is current and its primary was heard within the failover timeout."""
        if self._fo.role == PRIMARY:
            return True
        return (self._fo.primary is not None and not self._syncing and self.links.connected(self._fo.primary)
                and now - self._fo.heard_primary_at < self.settings.failover_timeout_ms / 1000)

    def _publish(self) -> None:
        now = time.monotonic()
        peers = tuple(PeerView(p, self.links.addresses[p], self.links.connected(p)) for p in self._peers())
        view = RaftView(self.id, _ROLE_VIEW[self._fo.role], self._fo.epoch, self._fo.primary, self._seq, self._seq,
                        self._quorum(now), peers, self._seq,
                        {"engine": ENGINE, "unsafe": True, **self.counters})
        old, self._view = self._view, view
        if (old.role, old.term, old.leader, old.quorum) != (view.role, view.term, view.leader, view.quorum):
            ev, self._view_changed = self._view_changed, asyncio.Event()
            ev.set()
            for fn in list(self._listeners):
                try:
                    fn(view)
                except Exception:
                    log.exception("view listener failed")

    def view(self) -> RaftView:
        return self._view

    def add_view_listener(self, fn: Callable[[RaftView], None]) -> None:
        self._listeners.append(fn)

    # ------------------------------------------------------------------------- the store contract
    def read(self, fn: Callable[[StoreState], T]) -> T:
        with self._lock:
            return fn(self._state)

    async def wait_for_change(self, after_revision: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self._state.revision <= after_revision:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await wait_event(self._change_event, remaining):
                break
        return self._state.revision

    def _count(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def propose(self, command: cmds.AnyCommand, *, timeout_s: float | None = None) -> Result:
        """Primary: apply and acknowledge at once. Backup: forward to the primary and return its result
        (503 when no primary is reachable — not sent; 504 when the primary did not answer in time)."""
        if not command.request_id and not isinstance(command, cmds.Barrier):
            command = msgspec.structs.replace(command, request_id=new_request_id())
        try:
            payload = cmds.encode_checked(command)
        except cmds.CommandEncodingError as exc:
            raise BadRequest(str(exc)) from exc
        if self._fo.role == PRIMARY:
            self._count("committed")
            result = self._apply_as_primary(payload)
            self._publish()
            return result
        primary = self._fo.primary
        if primary is None or not self._quorum(time.monotonic()):
            self._count("unavailable")
            raise Unavailable(f"hacluster master {self.id}: no reachable primary (unsafe-async-primary); the write "
                              "was not made", retry_after_s=1)
        assert self._loop is not None, "start() first"
        timeout = self.cfg.api.proposal_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        rid = f"{self.id}-{next(self._rids)}"
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[rid] = fut
        if not self.links.send(primary, {"t": "fwd", "rid": rid, "payload": payload}):
            self._pending.pop(rid, None)
            self._count("unavailable")
            raise Unavailable(f"hacluster master {self.id}: the link to primary {primary} is down; the write was "
                              "not made", retry_after_s=1)
        try:
            await asyncio.wait({fut}, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            self._pending.pop(rid, None)
        if not fut.done() or fut.cancelled():
            self._count("unknown")
            raise Timeout(f"Timeout: primary {primary} did not answer within {timeout:g}s; the write may or may "
                          "not have been made", retry_after_s=1)
        answer = fut.result()
        if not answer.get("ok"):
            self._count("unavailable")
            raise Unavailable(f"hacluster master {self.id}: {answer.get('error')}; the write was not made",
                              retry_after_s=1)
        self._count("committed")
        # Read-your-writes on this backup: wait (bounded) until the primary's stream reached this copy.
        seq = int(answer["seq"])
        while self._seq < seq and int(answer["epoch"]) == self._fo.epoch:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await wait_event(self._change_event, remaining):
                break
        return result_from_plain(answer["result"])

    async def linearizable_barrier(self) -> None:
        """Not linearizable: a primary answers from its own copy at once, however cut off it is; a backup
        first brings its copy up to the primary's position."""
        if self._fo.role == PRIMARY:
            return
        await self.propose(cmds.Barrier())


def open_unsafe_async_primary(cfg: ClusterConfig, master_id: str, **options: Any) -> UnsafeAsyncPrimaryStore:
    """The opener `hacluster.cluster.engines` registers under "unsafe-async-primary"."""
    return UnsafeAsyncPrimaryStore(cfg, master_id, **options)
