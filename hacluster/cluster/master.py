"""One master process: the replicated store, the API server and the leader-only loops, wired together.

Started by `hacluster master --config FILE --id ID` (which `hacluster up` spawns once per master). It
runs until SIGTERM or SIGINT, then stops serving, cancels the leader loops and leaves the Raft cluster.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from hacluster.apiserver import audit, limits
from hacluster.apiserver.metrics import MasterMetrics
from hacluster.apiserver.server import ApiServer
from hacluster.cluster.engines import open_store
from hacluster.cluster.pki import pki_paths
from hacluster.config import ClusterConfig, load_config
from hacluster.controllers.registry import register as register_controllers
from hacluster.leader.leadership import LeaderLoops
from hacluster.leader.registry import LeaderContext, LeaderLoopRegistry
from hacluster.raft.journal import JournalCorrupt
from hacluster.scheduler.loop import register as register_scheduler
from hacluster.store.api import RaftView

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 50_000
GIL_SWITCH_INTERVAL_S = 0.005
"""How long a thread may hold the GIL while another waits for it: CPython's default, set explicitly because it
was measured. A master's Raft thread waits for the GIL at each step of a write while the event loop's thread
runs Python code, so a shorter interval (0.5 ms) looked like it would cut latency; side by side with etcd
(3 etcd members against 3 masters, two alternating pairs of runs on 2 cores) it did not: 5 ms was as fast or
faster at 1, 16 and 64 clients (64 clients: 962 and 743 creates/s against 729 and 706) and its 1-client p50
no slower (6.6 and 7.5 ms against 7.1 and 7.6 ms)."""
STOP_GRACE_S = 2.0  # open requests (watches, log follows) get this long when a master stops


def leader_loop_registry() -> LeaderLoopRegistry:
    """The control-plane components that run on the leader: the scheduler and the controllers. Imported
    plainly: a component that cannot be imported stops the master (it must never run without one)."""
    registry = LeaderLoopRegistry()
    register_scheduler(registry)
    register_controllers(registry)
    return registry


class Master:
    """Everything one master runs, for a process or for an in-process test cluster."""

    def __init__(self, cfg: ClusterConfig, master_id: str, *, data_dir: Path | None,
                 dial_addresses: dict[str, str] | None = None, with_leader_loops: bool = True,
                 tls: tuple[Path, Path] | None = None, storage_mode: str = "disk",
                 state_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.id = master_id
        self.metrics = MasterMetrics()
        self.store = open_store(cfg, master_id, data_dir=data_dir, dial_addresses=dial_addresses,
                               on_proposal_outcome=lambda o: self.metrics.proposals.labels(o).inc(),
                               storage_mode=storage_mode, on_fsync=self.metrics.journal_fsync.observe)
        self.audit_log = None
        if state_dir is not None:  # the audit trail lives beside the cluster's logs (`hacluster audit` reads it)
            self.audit_log = audit.AuditLog(audit.log_path(state_dir, master_id),
                                            max_bytes=cfg.api.audit_log_max_bytes, backups=cfg.api.audit_log_backups)
        self.api = ApiServer(cfg, master_id, self.store, metrics=self.metrics, audit_log=self.audit_log)
        self.leader_loops = LeaderLoops(self.store, master_id)
        if with_leader_loops:
            leader_loop_registry().install(LeaderContext(cfg, master_id, self.store), self.leader_loops)
        self._runner: web.AppRunner | None = None
        self._tls = tls
        self._last_leader: str | None = None
        self._had_quorum = False

    def _on_view(self, view: RaftView) -> None:
        if view.leader != self._last_leader:
            if view.leader is not None:
                self.metrics.leader_changes.inc()
            self._last_leader = view.leader
        if self._had_quorum and not view.quorum:
            self.api.stop_watches(spread_s=self.cfg.api.watch_stop_spread_s)
        self._had_quorum = view.quorum
        self.leader_loops.on_view(view)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.add_view_listener(self._on_view)
        self.store.start(loop)
        self._runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=STOP_GRACE_S, **limits.server_options(self.cfg.api))
        await self._runner.setup()
        me = self.cfg.master(self.id)
        site = web.TCPSite(self._runner, me.listen_host, me.api_port, reuse_address=True, backlog=1024)
        await site.start()
        if self._tls is not None and me.api_tls_port:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            tls_site = web.TCPSite(self._runner, me.listen_host, me.api_tls_port, ssl_context=ctx,
                                   reuse_address=True, backlog=1024)
            await tls_site.start()

    async def stop(self) -> None:
        self.api.stop_watches()
        await self.leader_loops.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        aclose = getattr(self.store, "aclose", None)  # an engine with connections to close (etcd)
        if aclose is not None:
            await aclose()
        self.store.stop()
        if self.audit_log is not None:
            self.audit_log.close()


async def _serve(config_path: str, master_id: str, storage_mode: str) -> None:
    cfg = load_config(config_path)
    data_dir = Path(config_path).resolve().parent / cfg.data_dir / master_id
    state_dir = Path(config_path).resolve().parent
    dial = _dial_addresses(state_dir, master_id)
    pki = pki_paths(state_dir)
    tls = (pki["cert"], pki["key"]) if pki["cert"].exists() else None
    master = Master(cfg, master_id, data_dir=data_dir, dial_addresses=dial, tls=tls, storage_mode=storage_mode,
                    state_dir=state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await master.start()
    except JournalCorrupt as exc:
        log.critical("%s", exc)
        raise SystemExit(1) from None
    me = cfg.master(master_id)
    fsync = "on" if cfg.raft.fsync else "off"
    print(f"master {master_id} serving {me.api_url()} raft {me.raft_address} "
          f"(journal: {storage_mode} storage, fsync {fsync})", flush=True)
    await stop.wait()
    await master.stop()


def _dial_addresses(state_dir: Path, master_id: str) -> dict[str, str]:
    """Raft dial overrides written by the chaos layer (`raft-links.yaml`): peer address -> proxy address."""
    path = state_dir / "raft-links.yaml"
    if not path.exists():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get(master_id) or {})


def run(config_path: str, master_id: str, storage_mode: str = "disk") -> None:
    """Entry point of `hacluster master`; `storage_mode` "write-back" only for tests (see
    `hacluster.raft.storage`)."""
    from hacluster.config import env_log_level

    # The store holds every object as plain dicts: hundreds of thousands of container objects that never
    # form cycles. CPython's default thresholds make the cyclic collector walk all of them again and again
    # under write load (measured: ~10% of a follower's CPU); collect young garbage less often instead.
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 1000)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    logging.basicConfig(level=env_log_level(), stream=sys.stderr,
                        format=f"%(asctime)s {master_id} %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(config_path, master_id, storage_mode))
    else:
        uvloop.run(_serve(config_path, master_id, storage_mode))
