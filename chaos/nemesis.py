"""Nemeses: the faults a chaos run injects, each bounded in time and undone at its end.

Used by the chaos runner (`chaos.runner`) and the interactive `hacluster chaos …` commands. Partition
shapes are pure functions of the master ids (tested without sockets); `Nemesis` applies a `FaultSpec` to a
running cluster — signals to processes, toxics and disabled proxies on Toxiproxy — records the start and end
of each fault in `faults.jsonl`, and keeps what it must undo so that `heal_all()` can restore everything
(also on Ctrl-C, an exception or a timeout).

Fault kinds:
- kill / kill-leader / kill-follower / kill-two: SIGKILL masters, restart them at the end (kill-leader and
  kill-follower repeat every `every_s` if set); while a master is dead its API proxies refuse connections,
  as its closed port would; restart: SIGTERM then start again.
- pause / pause-leader: SIGSTOP, SIGCONT at the end — the classic stale-leader case.
  On the etcd engine a master's machine is the master and its etcd member: kill and pause act on both (the
  leader is then the master beside the etcd leader).
- isolate / isolate-leader: cut every Raft link of one master (optionally its clients' API links too).
- split: a minority (with the current leader, or a random one) cut from the majority;
  even-split: two equal halves (N = 2, 4); bridge: two halves that cannot see each other and one master
  that sees both; ring: each master sees only its two neighbours.
- latency / bandwidth / slicer: shape every Raft link or the leader's.
- kill-kubelet: SIGKILL a kubelet, restart it at the end.
- power-cut / power-cut-leader / power-cut-follower / power-cut-minority / power-cut-all: a power cut of
  one master, the leader, a random follower, a random minority, or every master at once (a data-centre
  outage): SIGKILL of masters running on the write-back test storage, which loses everything they wrote
  but had not fsynced, as a power cut loses the page cache; they are started again at the end. Refused on
  masters with real storage, where a SIGKILL loses nothing the kernel already holds and the fault would
  claim a loss it cannot cause.
- disk-fault: the target's journal writes (or fsyncs) fail with ENOSPC or EIO (`/debug/storage/fault`);
  the master must fail-stop rather than acknowledge what it could not persist. At the end the fault is
  cleared and a master that stopped is started again (it catches up from the leader).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.network import ChaosNetwork, Undo
from chaos.scenario import POWER_KINDS, FaultSpec
from hacluster.asyncwait import wait_event
from hacluster.cluster import etcd_members, launcher
from hacluster.cluster.processes import ClusterHandle, exits_within


# ------------------------------------------------------------------------- partition shapes (pure)
def pairs_between(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    return [(x, y) for x in a for y in b]


def isolate_pairs(ids: list[str], target: str) -> list[tuple[str, str]]:
    return pairs_between([target], [i for i in ids if i != target])


def minority_split(ids: list[str], minority_size: int, include: str | None,
                   rng: random.Random) -> tuple[list[str], list[str]]:
    """(minority, majority): the minority holds `include` (e.g. the leader) when given."""
    pool = sorted(ids)
    minority = [include] if include else []
    rest = [i for i in pool if i not in minority]
    rng.shuffle(rest)
    minority += rest[: max(0, minority_size - len(minority))]
    return sorted(minority), sorted(i for i in pool if i not in minority)


def even_halves(ids: list[str]) -> tuple[list[str], list[str]]:
    pool = sorted(ids)
    half = len(pool) // 2
    return pool[:half], pool[half:]


def bridge_shape(ids: list[str]) -> tuple[list[str], str, list[str]]:
    """(left, bridge, right): left and right cannot see each other; the bridge sees both."""
    pool = sorted(ids)
    k = (len(pool) - 1) // 2
    return pool[:k], pool[k], pool[k + 1:]


def ring_cuts(ids: list[str]) -> list[tuple[str, str]]:
    """Every pair that is not adjacent on the ring of sorted ids."""
    pool = sorted(ids)
    n = len(pool)
    keep = {frozenset((pool[i], pool[(i + 1) % n])) for i in range(n)}
    return [(a, b) for a, b in itertools.combinations(pool, 2) if frozenset((a, b)) not in keep]


# --------------------------------------------------------------------------------- the nemesis
@dataclass
class ActiveFault:
    index: int
    spec: FaultSpec
    targets: list[str]
    undo: list[Undo] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    killed_kubelets: list[str] = field(default_factory=list)
    disk_faults: list[str] = field(default_factory=list)  # masters whose storage fault must be cleared
    refusing: dict[str, list[Undo]] = field(default_factory=dict)  # killed master -> its disabled API proxies

# The test storage under which a SIGKILL is a power cut (`hacluster master --unsafe-test-storage`).
POWER_CUT_STORAGE = "write-back"


class FaultLog:
    """`faults.jsonl`: one line per fault start and end (monotonic ns + wall clock)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    def write(self, event: str, fault: ActiveFault, **detail: Any) -> None:
        rec = {"time": time.monotonic_ns(), "wall": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "event": event, "fault": fault.index, "kind": fault.spec.kind, "targets": fault.targets,
               "partition": fault.spec.partition if "isolate" in fault.spec.kind or fault.spec.kind in (
                   "split", "even-split", "bridge", "ring") else None, **detail}
        self.records.append(rec)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(rec) + "\n")


class Nemesis:
    """Applies and undoes faults on one cluster."""

    def __init__(self, handle: ClusterHandle, network: ChaosNetwork | None, *, seed: int,
                 log: FaultLog, restart_kubelet: Callable[[str], None] | None = None) -> None:
        self.handle = handle
        self.net = network
        self.rng = random.Random(seed)
        self.log = log
        self.active: dict[int, ActiveFault] = {}
        self.restart_kubelet = restart_kubelet
        self.ids = [m.id for m in handle.cfg.masters]

    # ------------------------------------------------------------------------------ helpers
    def leader(self) -> str | None:
        rows = launcher.cluster_status(self.handle, timeout_s=0.3)
        leaders = sorted((r for r in rows if r["role"] == "leader"), key=lambda r: -(r["term"] or 0))
        return leaders[0]["id"] if leaders else None

    def _followers(self) -> list[str]:
        rows = launcher.cluster_status(self.handle, timeout_s=0.3)
        return sorted(r["id"] for r in rows if r["role"] in ("follower", "candidate"))

    def _machine_pids(self, mid: str) -> list[int]:
        """The processes of master `mid`'s machine: the master, and on the etcd engine its etcd member too
        (a killed or paused master takes its member with it, as a machine failure would)."""
        pids = [self.handle.pid(mid)]
        if etcd_members.runs_members(self.handle.cfg):
            pids.append(launcher.read_pid(self.handle.state_dir, etcd_members.member_name(mid)))
        return [p for p in pids if p is not None]

    def _kill(self, mid: str) -> None:
        for pid in self._machine_pids(mid):
            if launcher.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    def _kill_master(self, fault: ActiveFault, mid: str) -> None:
        """SIGKILL a master, and make its clients' proxies refuse connections. A dead master's port is closed:
        a client's connect is refused, a definite "not processed". Through a live Toxiproxy proxy it would
        instead see a connection accepted and then reset — indistinguishable from a master that died while
        answering, so every such request would be recorded as "outcome unknown"."""
        self._kill(mid)
        fault.killed.append(mid)
        if self.net is not None:
            fault.refusing[mid] = self.net.cut_api(mid, tag=f"f{fault.index}-killed")

    def _revive_master(self, fault: ActiveFault, mid: str) -> None:
        """Start a killed master again and let its clients' connections through once more."""
        self._restart(mid)
        if self.net is not None:
            self.net.undo(fault.refusing.pop(mid, []))

    def _restart(self, mid: str) -> None:
        if etcd_members.runs_members(self.handle.cfg):
            member = launcher.read_pid(self.handle.state_dir, etcd_members.member_name(mid))
            if member is None or not launcher.pid_alive(member):
                etcd_members.start_member(self.handle, mid)
        pid = self.handle.pid(mid)
        if pid is None or not launcher.pid_alive(pid):
            launcher.start_master(self.handle, mid)

    def _power_cut(self, fault: ActiveFault) -> None:
        """SIGKILL every target at once (all signals sent before any is waited for, so no master outlives
        another by more than the signal's delivery), after checking they run on write-back storage."""
        rows = {r["id"]: r for r in launcher.cluster_status(self.handle, timeout_s=0.5)}
        for mid in fault.targets:
            storage = rows.get(mid, {}).get("storage")
            if storage != POWER_CUT_STORAGE:
                raise RuntimeError(f"power cut of {mid}: it runs on {storage or 'real'} storage, where a SIGKILL "
                                   f"loses no written data; start the cluster with test storage "
                                   f"{POWER_CUT_STORAGE!r} (chaos runs do when a scenario has a power fault)")
        pids = []
        for mid in fault.targets:
            pid = self.handle.pid(mid)
            if pid is not None and launcher.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                pids.append(pid)
            fault.killed.append(mid)
        if self.net is not None:  # as for a kill: a client of a dead master is never let in (see _kill_master)
            for mid in fault.targets:
                fault.refusing[mid] = self.net.cut_api(mid, tag=f"f{fault.index}-power")
        deadline = time.monotonic() + launcher.STOP_TIMEOUT_S
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # not our child (the interactive command): wait until it is gone
                while launcher.pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)

    def _storage_fault(self, mid: str, body: dict[str, Any]) -> None:
        """POST a fault (or {"clear": true}) to a master's /debug/storage/fault. A refusal is a RuntimeError
        carrying the master's reason; a master that does not answer raises URLError (an OSError)."""
        req = urllib.request.Request(f"{self.handle.api(mid)}/debug/storage/fault", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.handle.admin_token}",
                                              "Content-Type": "application/json"})
        pid = self.handle.pid(mid)
        try:
            with urllib.request.urlopen(req, timeout=2.0) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            try:
                reason = json.loads(raw).get("message", raw)
            except (ValueError, AttributeError):
                reason = raw
            raise RuntimeError(f"disk fault on {mid}: /debug/storage/fault answered {exc.code}: {reason}") from exc
        except (ConnectionError, urllib.error.URLError):
            # The fault may bite before its answer is written: the master's next journal write (a leader
            # loop's proposal, pysyncobj's metadata) fails and the master fail-stops mid-request. That is the
            # fault taking effect; a master that is still running did not answer, which is an error.
            if body.get("clear") or pid is None or not exits_within(pid, 5.0):
                raise

    def _end_disk_fault(self, mid: str) -> bool:
        """Clear the fault on a master still running; start it again if it stopped. True if it had stopped."""
        pid = self.handle.pid(mid)
        if pid is not None and launcher.pid_alive(pid):
            try:
                self._storage_fault(mid, {"clear": True})
                return False
            except (urllib.error.URLError, OSError):
                # Refused while it is stopping (fail-stop in progress): wait for the exit, bounded.
                deadline = time.monotonic() + launcher.STOP_TIMEOUT_S
                while launcher.pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if launcher.pid_alive(pid):
                    raise
        if pid is not None:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        launcher.start_master(self.handle, mid)
        return True

    def _need_net(self) -> ChaosNetwork:
        if self.net is None:
            raise RuntimeError("this fault needs the chaos network (start the cluster with --chaos)")
        return self.net

    def _links_of(self, spec: FaultSpec) -> list[tuple[str, str]]:
        if spec.links == "leader":
            ld = self.leader()
            return isolate_pairs(self.ids, ld) if ld else []
        return list(itertools.combinations(sorted(self.ids), 2))

    # ------------------------------------------------------------------------------ apply
    def start(self, index: int, spec: FaultSpec) -> ActiveFault:
        """Inject the fault now (blocking: call through asyncio.to_thread from async code)."""
        fault = ActiveFault(index, spec, [])
        kind = spec.kind
        tag = f"f{index}"
        if kind in ("kill", "restart", "pause", "power-cut") and not spec.target:
            raise ValueError(f"fault {index} ({kind}) needs a target master")
        if kind == "kill":
            fault.targets = [spec.target]
        elif kind == "kill-leader":
            ld = self.leader()
            fault.targets = [ld] if ld else []
        elif kind == "kill-follower":
            fs = self._followers()
            fault.targets = [self.rng.choice(fs)] if fs else []
        elif kind == "kill-two":
            ld = self.leader()
            others = [i for i in sorted(self.ids) if i != ld]
            fault.targets = ([ld] if ld else []) + others[: 2 - (1 if ld else 0)]
        if kind in ("kill", "kill-leader", "kill-follower", "kill-two"):
            for mid in fault.targets:
                self._kill_master(fault, mid)
        elif kind == "restart":
            fault.targets = [spec.target]
            pid = self.handle.pid(spec.target)
            if pid:
                launcher.stop_pid(pid)
            launcher.start_master(self.handle, spec.target)
        elif kind in ("pause", "pause-leader"):
            victim = spec.target if kind == "pause" else self.leader()
            if victim:
                for pid in self._machine_pids(victim):
                    os.kill(pid, signal.SIGSTOP)
                    fault.paused.append(pid)
                fault.targets = [victim]
        elif kind in ("isolate", "isolate-leader"):
            net = self._need_net()
            cut_off = spec.target if kind == "isolate" else self.leader()
            if cut_off:
                fault.targets = [cut_off]
                fault.undo += net.cut_pairs(isolate_pairs(self.ids, cut_off), kind=spec.partition,
                                            direction=spec.direction, tag=tag)
                if spec.clients_too:
                    fault.undo += net.cut_api(cut_off, tag=tag)
        elif kind == "split":
            net = self._need_net()
            include = self.leader() if spec.target in ("", "leader") else (spec.target or None)
            minority, majority = minority_split(self.ids, (len(self.ids) - 1) // 2, include, self.rng)
            fault.targets = minority
            fault.undo += net.cut_pairs(pairs_between(minority, majority), kind=spec.partition, tag=tag)
        elif kind == "even-split":
            net = self._need_net()
            a, b = even_halves(self.ids)
            fault.targets = a + ["|"] + b
            fault.undo += net.cut_pairs(pairs_between(a, b), kind=spec.partition, tag=tag)
        elif kind == "bridge":
            net = self._need_net()
            left, bridge, right = bridge_shape(self.ids)
            fault.targets = left + [f"<{bridge}>"] + right
            fault.undo += net.cut_pairs(pairs_between(left, right), kind=spec.partition, tag=tag)
        elif kind == "ring":
            net = self._need_net()
            fault.targets = sorted(self.ids)
            fault.undo += net.cut_pairs(ring_cuts(self.ids), kind=spec.partition, tag=tag)
        elif kind in ("latency", "bandwidth", "slicer"):
            net = self._need_net()
            attrs: dict[str, Any] = {
                "latency": {"latency": spec.latency_ms, "jitter": spec.jitter_ms},
                "bandwidth": {"rate": spec.rate_kb_s},
                "slicer": {"average_size": 64, "size_variation": 32, "delay": 200},
            }[kind]
            pairs = self._links_of(spec)
            fault.targets = [f"{x}-{y}" for x, y in pairs]
            for x, y in pairs:
                fault.undo += net.shape(x, y, kind, attrs, tag=tag)
        elif kind in POWER_KINDS:
            if kind == "power-cut":
                fault.targets = [spec.target]
            elif kind == "power-cut-leader":
                ld = self.leader()
                fault.targets = [ld] if ld else []
            elif kind == "power-cut-follower":
                fs = self._followers()
                fault.targets = [self.rng.choice(fs)] if fs else []
            elif kind == "power-cut-minority":
                fault.targets, _ = minority_split(self.ids, (len(self.ids) - 1) // 2, None, self.rng)
            else:
                fault.targets = sorted(self.ids)
            self._power_cut(fault)
        elif kind == "disk-fault":
            if spec.target in ("", "leader"):
                ld = self.leader()
                victim = ld or ""
            elif spec.target == "follower":
                fs = self._followers()
                victim = self.rng.choice(fs) if fs else ""
            else:
                victim = spec.target
            if victim:
                self._storage_fault(victim, {"operation": spec.operation, "errno": spec.errno})
                fault.targets = [victim]
                fault.disk_faults.append(victim)
        elif kind == "kill-kubelet":
            pid = launcher.read_pid(self.handle.state_dir, spec.target)
            if pid and launcher.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                fault.killed_kubelets.append(spec.target)
            fault.targets = [spec.target]
        self.active[index] = fault
        detail: dict[str, str] = {"errno": spec.errno, "operation": spec.operation} if kind == "disk-fault" else {}
        if kind in POWER_KINDS:
            detail = {"storage": POWER_CUT_STORAGE}
        self.log.write("start", fault, **detail)
        return fault

    def repeat(self, index: int) -> None:
        """kill-leader / kill-follower with every_s: bring the last victim back and kill the next one."""
        fault = self.active.get(index)
        if fault is None:
            return
        for mid in fault.killed:
            self._revive_master(fault, mid)
        fault.killed = []
        if fault.spec.kind == "kill-leader":
            ld = self.leader()
            victims = [ld] if ld else []
        else:
            fs = self._followers()
            victims = [self.rng.choice(fs)] if fs else []
        for mid in victims:
            self._kill_master(fault, mid)
        fault.targets = victims
        self.log.write("repeat", fault)

    def end(self, index: int) -> None:
        """Undo one fault (blocking)."""
        fault = self.active.pop(index, None)
        if fault is None:
            return
        if self.net is not None and fault.undo:
            self.net.undo(fault.undo)
        for pid in fault.paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for mid in fault.killed:
            self._revive_master(fault, mid)
        fail_stopped = [mid for mid in fault.disk_faults if self._end_disk_fault(mid)]
        for node in fault.killed_kubelets:
            if self.restart_kubelet is not None:
                self.restart_kubelet(node)
        self.log.write("end", fault, **({"fail_stopped": fail_stopped} if fault.spec.kind == "disk-fault" else {}))

    def heal_all(self) -> None:
        """Undo every active fault, then reset Toxiproxy and make sure every master runs."""
        for index in list(self.active):
            try:
                self.end(index)
            except Exception:
                pass
        if self.net is not None:
            try:
                self.net.heal()
            except Exception:
                pass
        for mid in self.ids:
            for pid in self._machine_pids(mid):
                if launcher.pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
            self._restart(mid)  # whichever of its processes is not running


async def run_schedule(nemesis: Nemesis, faults: tuple[FaultSpec, ...], t0: float,
                       stop: asyncio.Event) -> None:
    """Apply `faults` at their times (relative to monotonic `t0`) and undo each at its end."""
    events: list[tuple[float, int, str]] = []
    for i, f in enumerate(faults):
        events.append((f.at_s, 0, f"start:{i}"))
        if f.every_s > 0 and f.kind in ("kill-leader", "kill-follower"):
            k = 1
            while f.every_s * k < f.duration_s - 1e-9:
                events.append((f.at_s + f.every_s * k, 1, f"repeat:{i}"))
                k += 1
        events.append((f.at_s + f.duration_s, 2, f"end:{i}"))
    events.sort()
    for at, _, what in events:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            if await wait_event(stop, delay):
                return  # stopped early: the caller heals everything
        action, idx = what.split(":")
        i = int(idx)
        if action == "start":
            await asyncio.to_thread(nemesis.start, i, faults[i])
        elif action == "repeat":
            await asyncio.to_thread(nemesis.repeat, i)
        else:
            await asyncio.to_thread(nemesis.end, i)
