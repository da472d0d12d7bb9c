"""An in-process Raft cluster for property tests: N `RaftStore`s (real pysyncobj, real TCP) sharing one
event loop, every peer link through a `tests.property.network.Network` forwarder we can cut, blackhole and
heal, and a client that records what it saw in the history format of `hacluster.consistency.history`.

Used by `tests/property/test_raft_cluster.py`, where Hypothesis chooses the operations and faults, and
every example's history goes through the linearizability checker and the invariants of
`hacluster.model.invariants`. Short Raft timeouts (election 100–200 ms, heartbeat 20 ms, tick 5 ms) keep
an example around a second.

Each key is a pod `default/<key>` whose register value is its annotation `hacluster.io/value`. The
client maps operations onto commands the way the API server does:
- create → `Create`; write → read the local copy, `Replace` it with the new value and `expected_rv`
  (a retried compare-and-set, like the API server's guaranteed update), so a bound pod stays bound;
- cas [expected, new] → read the local copy; if it holds `expected`, `Replace` with its `expected_rv`
  (a stale copy only gives a Conflict: the write is refused, never misapplied);
- delete → `Delete` with grace 0; bind → `Bind` fenced with the proposer's term (not a register
  operation: acknowledged bindings are kept for the binding invariant);
- read → a linearizable barrier and the local copy, or (local=True) the local copy alone, kept apart
  from the checked history (local reads are allowed to be stale) and checked for prefix consistency.
`Unavailable` and refusals by the state are `fail`; `Timeout` or any other error is `info`. An operation
refused as unavailable (nothing was proposed) is tried again for up to `retry_s`, like a client honouring
Retry-After, so operations during an election often succeed once it is over.

Two things are observed besides the client: every Raft view change of every master (for one leader per
term), and what pysyncobj logs at WARNING or above. While a cluster runs, pysyncobj's clock is
`time.monotonic` (see `set_pysyncobj_clock` for the bug this works around).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pysyncobj.syncobj

from hacluster.cluster import launcher
from hacluster.config import ApiConfig, ClusterConfig, MasterConfig, RaftConfig
from hacluster.consistency.history import Event
from hacluster.model import commands as C
from hacluster.model.errors import Timeout, Unavailable
from hacluster.raft.replicated_store import RaftStore
from hacluster.store.api import RaftView
from hacluster.store.state import Result, StoreState
from tests.property.network import Network

NAMESPACE = "default"
VALUE_ANNOTATION = "hacluster.io/value"
T0 = "2026-01-01T00:00:00Z"
SETTLE_TIMEOUT_S = 8.0
REPLACE_ATTEMPTS_MAX = 3
UNAVAILABLE_RETRY_PAUSE_S = 0.02


PEER_SECRET = "property-test-secret"


def fast_raft(**over: Any) -> RaftConfig:
    """Raft timing for in-process tests: fast elections, fast step-down, fast redial."""
    values: dict[str, Any] = dict(election_timeout_ms_min=100, election_timeout_ms_max=200, heartbeat_ms=20,
                                  tick_ms=5, leader_fallback_ms=300, quorum_contact_ms=150,
                                  connection_timeout_ms=200, connection_retry_ms=20)
    values.update(over)
    return RaftConfig(**values)


def set_pysyncobj_clock(clock: Callable[[], float]) -> Callable[[], float]:
    """Make pysyncobj's Raft timestamps come from `clock`; returns the clock it used before.

    pysyncobj stamps `__lastResponseTime` with CLOCK_MONOTONIC_RAW, while `RaftStore._on_tick` ages those
    stamps with `time.monotonic()` (CLOCK_MONOTONIC). The two clocks drift apart by NTP's slewing (0.25 s
    after 44 min of uptime on the CI machine), so a leader's peers look that much older or younger than
    they are: with a 150 ms `quorum_contact_ms` the leader never has a quorum. The harness runs pysyncobj
    on `time.monotonic` so examples do not depend on the host's uptime; `test_raft_cluster` shows the
    bug itself with a simulated offset.
    """
    before: Callable[[], float] = pysyncobj.syncobj.monotonicTime
    pysyncobj.syncobj.monotonicTime = clock
    return before


def _free_port(taken: set[int] | None = None) -> int:
    """A free port below the ephemeral range: the forwarders' listening sockets and every outgoing
    connection take ephemeral ports, which must never be a Raft port a master is about to bind (at start,
    or when it restarts after a kill)."""
    return launcher.free_port(taken)


def pod(key: str, value: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": key, "namespace": NAMESPACE, "uid": f"uid-{key}-{value}",
                         "creationTimestamp": T0, "annotations": {VALUE_ANNOTATION: str(value)}},
            "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "x"}]}}


def value_of(obj: dict[str, Any] | None) -> Any:
    if obj is None:
        return None
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(VALUE_ANNOTATION)
    try:
        return int(str(raw)) if raw is not None else None
    except ValueError:
        return raw


@dataclass
class LocalRead:
    """A read of the local copy (resourceVersion=0): which master (and incarnation), what it saw."""

    node: str
    incarnation: int
    key: str
    value: Any
    revision: int  # the master's revision when it read


@dataclass
class Observations:
    """Everything the client and the observers recorded during one run."""

    events: list[Event] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    local_reads: list[LocalRead] = field(default_factory=list)
    binds: list[tuple[str, str]] = field(default_factory=list)  # acknowledged (pod uid, node)
    trace: list[str] = field(default_factory=list)
    raft_warnings: list[str] = field(default_factory=list)  # what pysyncobj logged at WARNING or above


class _RaftLogCapture(logging.Handler):
    """Keeps pysyncobj's warnings (e.g. "truncating already-applied log entries") for the checks."""

    def __init__(self, into: list[str], trace: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.into = into
        self.trace = trace

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname} {record.name} [{record.threadName}]: {record.getMessage()}"
        self.into.append(text)
        self.trace(text)


class InProcessCluster:
    """N Raft masters in this process behind a controllable network. Use as `async with`."""

    def __init__(self, masters: int = 3, *, raft: RaftConfig | None = None, proposal_timeout_s: float = 0.4,
                 data_dir: Path | None = None, raft_clock: Callable[[], float] | None = time.monotonic,
                 retry_s: float = 0.5) -> None:
        self.ids = [f"m{i + 1}" for i in range(masters)]
        taken: set[int] = set()
        ports = {mid: _free_port(taken) for mid in self.ids}
        self.cfg = ClusterConfig(
            name="property",
            masters=tuple(MasterConfig(id=mid, raft_port=ports[mid]) for mid in self.ids),
            # By default peers authenticate as in production (hacluster.raft.peer_wire). Tests that pass
            # their own timings run without: a blackholed link then looks connected to its dialer at once,
            # as tests/property/test_elections.py relies on (with a secret the dialer waits for the key
            # exchange, which a blackhole never answers, and never starts an election).
            raft=raft or fast_raft(password=PEER_SECRET),
            api=ApiConfig(proposal_timeout_s=proposal_timeout_s))
        self.addresses = {mid: f"127.0.0.1:{ports[mid]}" for mid in self.ids}
        self.net = Network(self.addresses)
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="hacluster-prop-")) if data_dir is None else data_dir
        self.stores: dict[str, RaftStore | None] = {mid: None for mid in self.ids}
        self.incarnation: dict[str, int] = {mid: 0 for mid in self.ids}
        self.obs = Observations()
        self._next_process = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = time.monotonic()
        self._raft_clock = raft_clock
        self.retry_s = retry_s
        self._log_capture = _RaftLogCapture(self.obs.raft_warnings, self.log)
        self._clock_before: Callable[[], float] | None = None

    # ---------------------------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> InProcessCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._raft_clock is not None:
            self._clock_before = set_pysyncobj_clock(self._raft_clock)
        logging.getLogger("pysyncobj").addHandler(self._log_capture)
        self.net.start()
        for mid in self.ids:
            self._start_store(mid)

    def _start_store(self, mid: str) -> None:
        assert self._loop is not None
        store = RaftStore(self.cfg, mid, data_dir=self.data_dir / mid, dial_addresses=self.net.dial_addresses(mid))
        inc = self.incarnation[mid]
        store.add_view_listener(functools.partial(self._on_view, mid, inc))
        store.start(self._loop)
        self.stores[mid] = store
        thread = getattr(store._sync, "_SyncObj__thread", None)
        self.log(f"{mid} started (incarnation {inc}, Raft {self.addresses[mid]}, tick thread "
                 f"{getattr(thread, 'name', '?')})")

    def _on_view(self, mid: str, incarnation: int, view: RaftView) -> None:
        self.obs.views.append({"time": time.monotonic_ns(), "master": mid, "incarnation": incarnation,
                               "role": view.role, "term": view.term, "leader": view.leader,
                               "quorum": view.quorum})
        self.log(f"{mid} is {view.role} in term {view.term} (leader {view.leader}, quorum {view.quorum}, "
                 f"commit {view.commit_index}, applied {view.applied_index})")

    async def stop(self) -> None:
        for mid in self.ids:
            await self._stop_store(mid)
        await asyncio.to_thread(self.net.stop)
        logging.getLogger("pysyncobj").removeHandler(self._log_capture)
        if self._clock_before is not None:
            set_pysyncobj_clock(self._clock_before)
            self._clock_before = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _stop_store(self, mid: str) -> None:
        store = self.stores[mid]
        if store is None:
            return
        self.stores[mid] = None
        sync = store._sync  # the pysyncobj node: wait for its tick thread so the port and journal are free
        store.stop()
        if sync is not None:
            await asyncio.to_thread(sync._SyncObj__thread.join, 5.0)

    def log(self, text: str) -> None:
        self.obs.trace.append(f"{time.monotonic() - self._t0:7.3f}s {text}")

    # ------------------------------------------------------------------------------------- status
    def alive(self) -> list[str]:
        return [mid for mid in self.ids if self.stores[mid] is not None]

    def view(self, mid: str) -> RaftView | None:
        store = self.stores[mid]
        return None if store is None else store.view()

    def leader(self) -> str | None:
        """The live master that believes it leads with a quorum, highest term first."""
        best: tuple[int, str] | None = None
        for mid in self.alive():
            v = self.view(mid)
            if v is not None and v.role == "leader" and v.quorum and (best is None or v.term > best[0]):
                best = (v.term, mid)
        return None if best is None else best[1]

    async def wait_leader(self, timeout_s: float = 5.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ld = self.leader()
            if ld is not None:
                return ld
            await asyncio.sleep(0.01)
        raise AssertionError(f"no leader within {timeout_s} s: {self.describe()}")

    def describe(self) -> str:
        parts = []
        for mid in self.ids:
            v = self.view(mid)
            parts.append(f"{mid}: down" if v is None else
                         f"{mid}: {v.role} t{v.term} leader={v.leader} q={v.quorum} applied={v.applied_index}")
        return "; ".join(parts) + f"; faulty links {self.net.faulty_pairs()}"

    async def bootstrap(self) -> None:
        """Wait for a leader and let it record its term and create the system namespaces."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            ld = await self.wait_leader(max(0.1, deadline - time.monotonic()))
            store = self.stores[ld]
            view = self.view(ld)
            assert store is not None and view is not None
            try:
                res = await store.propose(C.LeaderElected(leader_id=ld, term=view.term, time=T0,
                                                          fence_term=view.term, request_id="bootstrap"))
                if res.ok or store.read(lambda s: "default" in s.objects["namespaces"]):
                    return
            except (Unavailable, Timeout):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"bootstrap failed: {self.describe()}")

    # ------------------------------------------------------------------------------------- faults
    async def kill(self, mid: str) -> None:
        """Stop a master's Raft node (its journal stays, as after a crash)."""
        self.log(f"kill {mid}")
        await self._stop_store(mid)

    async def restart(self, mid: str) -> None:
        """Start a stopped master again from its journal (no-op if it runs)."""
        if self.stores[mid] is not None:
            return
        self.log(f"restart {mid}")
        self.incarnation[mid] += 1
        self._start_store(mid)

    async def heal_all(self) -> None:
        self.log("heal all")
        await asyncio.to_thread(self.net.heal)
        for mid in self.ids:
            await self.restart(mid)

    async def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> dict[str, dict[str, Any]]:
        """After a heal: wait for a leader, commit a barrier in its term, then until every master has
        applied the same index. Returns {master: {applied_index, revision, fingerprint}}."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ld = await self.wait_leader(max(0.1, deadline - time.monotonic()))
            store = self.stores[ld]
            assert store is not None
            try:
                await store.propose(C.Barrier(), timeout_s=1.0)
                break
            except (Unavailable, Timeout):
                continue
        else:
            raise AssertionError(f"no barrier committed after the heal: {self.describe()}")
        last: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            last = self.state_samples()
            indexes = {s["applied_index"] for s in last.values()}
            states = {(s["fingerprint"], s["revision"]) for s in last.values()}
            if len(indexes) == 1 and len(states) == 1:
                return last
            await asyncio.sleep(0.01)
        raise AssertionError(f"masters did not converge after the heal: {last}; {self.describe()}")

    def state_samples(self) -> dict[str, dict[str, Any]]:
        out = {}
        for mid in self.alive():
            store = self.stores[mid]
            assert store is not None
            revision, fingerprint = store.read(lambda s: (s.revision, s.fingerprint()))
            out[mid] = {"master": mid, "applied_index": store.view().applied_index, "revision": revision,
                        "fingerprint": fingerprint}
        return out

    def read_state(self, mid: str, fn: Callable[[StoreState], Any]) -> Any:
        store = self.stores[mid]
        assert store is not None, f"{mid} is down"
        return store.read(fn)

    # ------------------------------------------------------------------------------------- client
    def _record(self, process: int, etype: str, f: str, key: str, value: Any, **extra: Any) -> None:
        ev_value = tuple(value) if isinstance(value, list) else value
        self.obs.events.append(Event(process, etype, f, f"{NAMESPACE}/{key}", ev_value,  # type: ignore[arg-type]
                                     time.monotonic_ns(), {k: v for k, v in extra.items() if v is not None}))

    def new_process(self) -> int:
        self._next_process += 1
        return self._next_process

    async def operate(self, mid: str, f: str, key: str, value: Any = None, *, local: bool = False,
                      node_name: str = "", final: bool = False) -> str:
        """Run one operation through master `mid`, record it, return its outcome (ok / fail / info).
        `final` marks the reads after the heal in the history (extra field "final")."""
        if f == "bind":
            return await self._bind(mid, key, node_name)
        if f == "read" and local:
            store = self.stores[mid]
            if store is not None:
                obj, revision = store.read(lambda s: (s.get("pods", NAMESPACE, key), s.revision))
                self.obs.local_reads.append(LocalRead(mid, self.incarnation[mid], key, value_of(obj), revision))
                self.log(f"{mid} local read {key} -> {value_of(obj)} @ {revision}")
            return "ok"
        process = self.new_process()
        flag = True if final else None
        self._record(process, "invoke", f, key, None if f == "read" else value, node=mid, final=flag)
        status, result, error = await self._perform(mid, f, key, value)
        out_value = result if f == "read" else value
        self._record(process, status, f, key, out_value if status != "info" or f != "read" else None,
                     node=mid, error=error, final=flag)
        self.log(f"{mid} {f} {key} {value!r} -> {status} {result!r} {error or ''}")
        return status

    async def _perform(self, mid: str, f: str, key: str, value: Any) -> tuple[str, Any, str | None]:
        """One operation; while the master answers "unavailable" (nothing was proposed: no leader yet, or
        no quorum) it is tried again, as a client honouring Retry-After would, for up to `retry_s`."""
        deadline = time.monotonic() + self.retry_s
        while True:
            status, result, error = await self._perform_once(mid, f, key, value)
            if status != "fail" or not (error or "").startswith("Unavailable") or time.monotonic() > deadline:
                return status, result, error
            await asyncio.sleep(UNAVAILABLE_RETRY_PAUSE_S)

    async def _perform_once(self, mid: str, f: str, key: str, value: Any) -> tuple[str, Any, str | None]:
        store = self.stores[mid]
        if store is None:
            return "fail", None, "master down (connection refused)"
        try:
            if f == "read":
                try:
                    await store.linearizable_barrier()
                except (Unavailable, Timeout) as exc:
                    return "fail", None, f"{type(exc).__name__}: {exc}"  # a read changes nothing
                return "ok", value_of(store.read(lambda s: s.get("pods", NAMESPACE, key))), None
            if f == "create":
                res = await store.propose(C.Create(resource="pods", namespace=NAMESPACE, obj=pod(key, value)))
                return self._outcome(res)
            if f == "delete":
                res = await store.propose(C.Delete(resource="pods", namespace=NAMESPACE, name=key, time=T0,
                                                   grace_period_s=0))
                return self._outcome(res)
            if f in ("write", "cas"):
                return await self._replace(store, f, key, value)
            raise ValueError(f"unknown operation {f}")
        except Unavailable as exc:
            return "fail", None, f"Unavailable: {exc}"
        except Timeout as exc:
            return "info", None, f"Timeout: {exc}"
        except Exception as exc:  # anything unexpected: the outcome is unknown
            return "info", None, f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _outcome(res: Result) -> tuple[str, Any, str | None]:
        if res.ok:
            return "ok", None, None
        return "fail", None, res.error.reason if res.error else "refused"

    async def _replace(self, store: RaftStore, f: str, key: str, value: Any) -> tuple[str, Any, str | None]:
        reason = "Conflict"
        for _ in range(REPLACE_ATTEMPTS_MAX):
            current = store.read(lambda s: s.get("pods", NAMESPACE, key))
            if current is None:
                return "fail", None, "NotFound (local copy)"
            if f == "cas" and value_of(current) != value[0]:
                return "fail", None, f"value is {value_of(current)!r} (local copy)"
            new_value = value if f == "write" else value[1]
            meta = dict(current["metadata"])
            meta["annotations"] = {**(meta.get("annotations") or {}), VALUE_ANNOTATION: str(new_value)}
            obj = {**current, "metadata": meta}
            res = await store.propose(C.Replace(resource="pods", namespace=NAMESPACE, name=key, obj=obj,
                                                expected_rv=str(current["metadata"]["resourceVersion"])))
            if res.ok:
                return "ok", None, None
            reason = res.error.reason if res.error else "refused"
            if reason != "Conflict":
                return "fail", None, reason
            await store.linearizable_barrier()  # the local copy was stale: catch up, then try again
        return "fail", None, reason

    async def _bind(self, mid: str, key: str, node_name: str) -> str:
        store = self.stores[mid]
        if store is None:
            return "fail"
        view = store.view()
        current = store.read(lambda s: s.get("pods", NAMESPACE, key))
        uid = (current or {}).get("metadata", {}).get("uid", "")
        try:
            res = await store.propose(C.Bind(namespace=NAMESPACE, name=key, node_name=node_name, time=T0,
                                             expected_uid=uid, fence_term=view.term))
        except Unavailable:
            return "fail"
        except Timeout:
            return "info"
        if res.ok and res.obj is not None:
            self.obs.binds.append((str(res.obj["metadata"]["uid"]), node_name))
            self.log(f"{mid} bind {key} -> {node_name}: ok")
            return "ok"
        self.log(f"{mid} bind {key} -> {node_name}: {res.error.reason if res.error else 'refused'}")
        return "fail"
