"""The dashboard's collector: what the cluster looks like now, read through its real interfaces.

Used by the dashboard server (one Collector per server). `run(stop)` runs bounded polling loops until
`stop` is set:
- every `raft_period_s` (100 ms) each master's `/debug/raft` (role, term, leader, commit and applied
  index, journal length, peers) and its process state (a dead pid is "down", a stopped one "paused");
- every `links_period_s` Toxiproxy's `GET /proxies` when the cluster has the chaos network (`--chaos`),
  which gives each Raft link as Toxiproxy really has it; otherwise the masters' own view of their peers;
- every `metrics_period_s` each master's `/metrics`, turned into writes/s by answer (ok / 503 / 504);
- the fault log `<state-dir>/chaos/faults.jsonl` (written by `hacluster chaos …` and by the dashboard's controls);
- pods and nodes: one list, then a watch, relisting when the watch ends or its revision is gone, moving
  between masters when one fails.
Changes of role and term become timeline entries; every change raises `version` and wakes `wait_change`,
so a change reaches the page within one polling period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp

from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable
from hacluster.cluster import launcher
from hacluster.cluster.processes import ClusterHandle
from hacluster.dashboard import links as links_mod
from hacluster.dashboard.flow import failed_create_flow, pod_flow
from hacluster.dashboard.pods import NODE_WORDS, PodIndex, node_summary, node_word, pod_summary
from hacluster.dashboard.rates import ANSWER_CLASSES, AnswerRates, write_answers

log = logging.getLogger(__name__)

TIMELINE_MAX = 300
RATE_HISTORY_MAX = 60
NODES_SHOWN_MAX = 60
RELIST_BACKOFF_S = (0.2, 2.0)
NETWORK_FILE = "chaos/network.json"  # written by chaos.network for `hacluster up --chaos`
FAULTS_FILE = "chaos/faults.jsonl"


def process_state(pid: int | None) -> str:
    """"down" (no such process or a zombie), "paused" (stopped by a signal), else "running"."""
    if pid is None or not launcher.pid_alive(pid):
        return "down"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
    except (OSError, IndexError):
        return "running"
    return "paused" if stat[:1] in ("T", "t") else "running"


async def fetch_pod_flow(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """One pod's journey: the pod and its events (through `api`, failing over) and the write traces of every
    master that answers (each knows only the writes it accepted). A pod that does not exist but whose create
    a master traced (503, 504) gets the flow of that failed create; otherwise ClientError 404 as the API
    answered it. Used by the dashboard's flow view and `hacluster trace pod`."""
    traces: list[dict[str, Any]] = []

    async def trace_of(endpoint: str) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            resp = await api.request_once("GET", endpoint, f"/debug/trace/pods/{namespace}/{name}", timeout_s=1.0)
            if resp.code == 200 and isinstance(resp.body, dict):
                traces.extend(w for w in resp.body.get("writes") or [] if isinstance(w, dict))

    await asyncio.gather(*(trace_of(e) for e in api.endpoints))
    try:
        pod = await api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    except ClientError as exc:
        failed = failed_create_flow(namespace, name, traces) if exc.code == 404 else None
        if failed is None:
            raise
        return failed
    events = await api.get(f"/api/v1/namespaces/{namespace}/events",
                           params={"fieldSelector": f"involvedObject.name={name}"})
    return pod_flow(pod, events.get("items") or [], traces)


class Collector:
    """Live state of one cluster, as snapshots for the page."""

    def __init__(self, handle: ClusterHandle, *, raft_period_s: float = 0.1, links_period_s: float = 0.2,
                 metrics_period_s: float = 1.0, request_timeout_s: float = 0.5) -> None:
        self.handle = handle
        self.ids = [m.id for m in handle.cfg.masters]
        self.raft_period_s = raft_period_s
        self.links_period_s = links_period_s
        self.metrics_period_s = metrics_period_s
        self.request_timeout_s = request_timeout_s
        self.masters: dict[str, dict[str, Any]] = {mid: {"id": mid, "role": "down", "first": True}
                                                   for mid in self.ids}
        self.rates = {mid: AnswerRates() for mid in self.ids}
        self.rate_history: dict[str, deque[float]] = {mid: deque(maxlen=RATE_HISTORY_MAX) for mid in self.ids}
        self.links: dict[str, dict[str, Any]] = links_mod.links_from_peers(self.ids, self.masters)
        self.network: dict[str, Any] | None = None
        self.timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE_MAX)
        self.pods = PodIndex()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.informers: dict[str, str] = {"pods": "starting", "nodes": "starting"}
        self.version = 0
        self._published = ""
        self._changed = asyncio.Event()
        self._max_term = 0
        self._faults_offset = 0
        self._session: aiohttp.ClientSession | None = None
        self.api = ApiClient(list(handle.apis().values()), handle.admin_token, request_timeout_s=2.0,
                             deadline_s=5.0, connection_limit=8)

    # ------------------------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        """Collect until `stop` is set."""
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.handle.admin_token}"},
                                              timeout=aiohttp.ClientTimeout(total=self.request_timeout_s))
        self._read_faults(initial=True)
        tasks = [asyncio.create_task(coro) for coro in (
            self._loop(self.raft_period_s, self._poll_raft, stop),
            self._loop(self.links_period_s, self._poll_links, stop),
            self._loop(self.metrics_period_s, self._poll_metrics, stop),
            self._informer("pods", "/api/v1/pods", stop),
            self._informer("nodes", "/api/v1/nodes", stop))]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._session.close()
            await self.api.close()

    async def _loop(self, period_s: float, step: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one poll must not stop the dashboard; it is logged
                log.exception("dashboard poll failed")
            self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, period_s - (time.monotonic() - started)))

    async def wait_change(self, seen: int, timeout_s: float) -> int:
        """Wait (at most `timeout_s`) until `version` is past `seen`; returns the version."""
        if self.version == seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
        return self.version

    def publish(self) -> None:
        """Raise `version` and wake the waiters if the snapshot changed."""
        text = json.dumps(self.snapshot(include_time=False), sort_keys=True)
        if text != self._published:
            self._published = text
            self.version += 1
            self._changed.set()
            self._changed = asyncio.Event()

    # ------------------------------------------------------------------------------------ masters
    async def _get_json(self, url: str) -> Any:
        assert self._session is not None
        async with self._session.get(url) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            return await resp.json(content_type=None)

    async def _get_text(self, url: str) -> str:
        assert self._session is not None
        async with self._session.get(url) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            return await resp.text()

    async def _poll_raft(self) -> None:
        rows = await asyncio.gather(*(self._master_row(mid) for mid in self.ids))
        for row in rows:
            self._note_changes(self.masters.get(row["id"]) or {}, row)
            self.masters[row["id"]] = row
        if self.network is None:
            self.links = links_mod.links_from_peers(self.ids, self.masters)
        self._read_faults()

    async def _master_row(self, mid: str) -> dict[str, Any]:
        pid = self.handle.pid(mid)
        proc = process_state(pid)
        row: dict[str, Any] = {"id": mid, "api": self.handle.api(mid), "pid": pid, "role": proc, "term": None,
                               "leader": None, "commit_index": None, "applied_index": None, "log_length": None,
                               "quorum": None, "peers": [], "journal_bytes": self._journal_bytes(mid)}
        if proc != "running":
            return row
        try:
            d = await self._get_json(f"{self.handle.api(mid)}/debug/raft?fingerprint=0")
        except (aiohttp.ClientError, TimeoutError, ValueError):
            row["role"] = "no answer"
            return row
        row.update({k: d.get(k) for k in ("role", "term", "leader", "commit_index", "applied_index", "log_length",
                                          "quorum", "revision")})
        row["peers"] = [{"id": p.get("id"), "connected": p.get("connected")} for p in d.get("peers") or []]
        return row

    def _journal_bytes(self, mid: str) -> int | None:
        path = self.handle.state_dir / self.handle.cfg.data_dir / mid / "raft.journal"
        try:
            return path.stat().st_size
        except OSError:
            return None

    def _note_changes(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        mid = new["id"]
        term = new.get("term") or 0
        if term > self._max_term:
            if self._max_term:
                self._add("election", f"term {term} began ({mid} saw it first)", term=term)
            self._max_term = term
        if old.get("first"):
            if new["role"] == "leader":
                self._add("leader", f"{mid} is the leader in term {term}", master=mid, term=term)
            return
        if new["role"] != old.get("role"):
            before = old.get("role")
            if new["role"] == "leader":
                self._add("leader", f"{mid} became leader in term {term}", master=mid, term=term)
            elif new["role"] in ("down", "paused", "no answer") and before not in (None, "down"):
                self._add("master", f"{mid} is {new['role']}", master=mid)
            elif before in ("down", "paused", "no answer") and new["role"] in ("follower", "candidate"):
                self._add("master", f"{mid} is back as {new['role']}", master=mid)
            elif new["role"] == "candidate":
                self._add("election", f"{mid} stood for election in term {term}", master=mid, term=term)

    def _add(self, kind: str, text: str, *, t: float | None = None, **extra: Any) -> None:
        self.timeline.append({"t": round(t if t is not None else time.time(), 3), "kind": kind, "text": text,
                              **extra})

    def note(self, kind: str, text: str) -> None:
        """A timeline entry from the server (a control the page used, a pod it created)."""
        self._add(kind, text)
        self.publish()

    # -------------------------------------------------------------------------------------- links
    async def _poll_links(self) -> None:
        if self.network is None:
            path = self.handle.state_dir / NETWORK_FILE
            if not path.exists():
                return
            try:
                self.network = json.loads(path.read_text())
            except (OSError, ValueError):
                return
        assert self.network is not None
        url = f"http://127.0.0.1:{self.network['toxiproxy_port']}/proxies"
        try:
            proxies = await self._get_json(url)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.links = {k: {**v, "state": links_mod.DOWN, "why": "Toxiproxy does not answer"}
                          for k, v in links_mod.links_from_peers(self.ids, self.masters).items()}
            return
        self.links = links_mod.links_from_toxiproxy(self.network.get("raft") or [], proxies)

    # ------------------------------------------------------------------------------------ metrics
    async def _poll_metrics(self) -> None:
        async def one(mid: str) -> None:
            if self.masters[mid]["role"] in ("down", "paused"):
                self.rates[mid].stale()
            else:
                try:
                    text = await self._get_text(f"{self.handle.api(mid)}/metrics")
                    self.rates[mid].update(write_answers(text), time.monotonic())
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    self.rates[mid].stale()
            self.rate_history[mid].append(round(sum(self.rates[mid].rates.values()), 1))

        await asyncio.gather(*(one(mid) for mid in self.ids))

    # ------------------------------------------------------------------------------------- faults
    def _read_faults(self, *, initial: bool = False) -> None:
        path = self.handle.state_dir / FAULTS_FILE
        try:
            with path.open() as f:
                f.seek(self._faults_offset)
                text = f.read()
        except OSError:
            return
        end = text.rfind("\n") + 1  # a line being written is read next time
        self._faults_offset += len(text[:end].encode())
        for line in text[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            when = None
            if initial:
                with contextlib.suppress(ValueError, TypeError):
                    when = time.mktime(time.strptime(rec["wall"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            targets = ", ".join(str(t) for t in rec.get("targets") or []) or "nothing"
            word = {"start": "fault", "end": "healed", "repeat": "fault again"}.get(rec.get("event"), "fault")
            self._add("fault" if rec.get("event") != "end" else "heal",
                      f"{word}: {rec.get('kind')} on {targets}", t=when, fault=rec.get("fault"))

    # ------------------------------------------------------------------------------ pods and nodes
    async def _informer(self, what: str, path: str, stop: asyncio.Event) -> None:
        backoff = RELIST_BACKOFF_S[0]
        while not stop.is_set():
            try:
                listed = await self.api.get(path, params={"resourceVersion": "0"})
                rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                self._reset(what, listed.get("items") or [])
                self.informers[what] = "synced"
                self.publish()
                backoff = RELIST_BACKOFF_S[0]
                while not stop.is_set():
                    gone = False
                    async for ev in self.api.watch(path, resource_version=rv, timeout_s=30):
                        etype, obj = ev.get("type"), ev.get("object") or {}
                        if etype == "ERROR":
                            gone = True
                            break
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if etype != "BOOKMARK":
                            self._apply(what, etype, obj)
                    if gone:
                        break
            except asyncio.CancelledError:
                raise
            except (ClientError, Indeterminate, Unreachable, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.informers[what] = f"retrying: {str(exc)[:120]}"
                self.publish()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(RELIST_BACKOFF_S[1], backoff * 2)

    def _reset(self, what: str, items: list[dict[str, Any]]) -> None:
        if what == "pods":
            self.pods.reset([pod_summary(p) for p in items])
        else:
            self.nodes = {s["name"]: s for s in (node_summary(n) for n in items)}

    def _apply(self, what: str, etype: Any, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if what == "pods":
            if etype == "DELETED":
                self.pods.remove(meta.get("namespace", "default"), meta.get("name", ""))
            else:
                self.pods.put(pod_summary(obj))
        elif etype == "DELETED":
            self.nodes.pop(meta.get("name", ""), None)
        else:
            s = node_summary(obj)
            self.nodes[s["name"]] = s

    # ----------------------------------------------------------------------------------- snapshot
    def snapshot(self, *, include_time: bool = True) -> dict[str, Any]:
        """Everything the page draws except the pod list (paged separately)."""
        leaders = [m for m in self.masters.values() if m["role"] == "leader"]
        leader = max(leaders, key=lambda m: m.get("term") or 0)["id"] if leaders else None
        masters = []
        for mid in self.ids:
            m = dict(self.masters[mid])
            m["writes"] = {k: round(self.rates[mid].rates[k], 1) for k in ANSWER_CLASSES}
            m["writes_history"] = list(self.rate_history[mid])
            masters.append(m)
        for link in self.links.values():
            roles = {self.masters[x]["role"] for x in (link["a"], link["b"]) if x in self.masters}
            link["end_down"] = bool(roles & {"down", "paused"})
        node_counts: dict[str, int] = {}
        for n in self.nodes.values():
            w = node_word(n["status"])
            node_counts[w] = node_counts.get(w, 0) + 1
        snap = {
            "cluster": self.handle.cfg.name, "store": self.handle.cfg.store.summary(),
            "masters": masters, "leader": leader, "max_term": self._max_term,
            "chaos": self.network is not None, "links": sorted(self.links.values(), key=lambda x: (x["a"], x["b"])),
            "timeline": list(self.timeline)[-120:],
            "pods": {"total": len(self.pods.items), "counts": self.pods.ordered_counts(), "version": self.pods.version},
            "nodes": {"total": len(self.nodes),
                      "counts": [(w, node_counts[w]) for w in NODE_WORDS if node_counts.get(w)]
                      + sorted((w, n) for w, n in node_counts.items() if w not in NODE_WORDS),
                      "items": sorted(self.nodes.values(), key=lambda n: n["name"])[:NODES_SHOWN_MAX]},
            "informers": dict(self.informers),
        }
        if include_time:
            snap["now"] = round(time.time(), 3)
        return snap
