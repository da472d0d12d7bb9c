"""A recorded watch of every pod during a chaos run, failing over between masters, and the final state.

Started by the chaos runner beside the workload (`WatchRecorder.run`), through the same proxied API links
as the workload, so client-side faults reach it too. It lists pods once (linearizable), then watches from
the list's resourceVersion on one master; when the stream ends (the master lost its quorum and closed its
watches, the connection broke, or it went silent for `idle_timeout_s`) it resumes from the last
resourceVersion it saw on the next master; on 410 Expired it lists again and notes why. Every list,
stream start, event, bookmark and stream end goes to `watch.jsonl`, one JSON object a line:

    {"time": ns, "kind": "list",  "master": "m1", "rv": 12, "reason": "start"|"expired", "objects": [pod…]}
    {"time": ns, "kind": "start", "stream": 3, "master": "m2", "from_rv": 57}
    {"time": ns, "kind": "event", "stream": 3, "master": "m2", "type": "MODIFIED", "key": "default/chaos-1",
     "uid": "…", "rv": 58, "value": 41, "node": "", "object": pod}
    {"time": ns, "kind": "bookmark", "stream": 3, "rv": 60}
    {"time": ns, "kind": "end", "stream": 3, "master": "m2", "last_rv": 60, "reason": "closed by server"}
    {"time": ns, "kind": "error", "master": "m1", "op": "list"|"watch", "error": "HTTP 503 ServiceUnavailable: …"}

A watch refused outright (503: that master has no quorum) is an "error", not a stream; a stream is what
began with a 200 and promises every change after its `from_rv` until it ends.

Pods are trimmed to what the checkers read (`trim_pod`): name, namespace, uid, resourceVersion, the
workload's value annotation, nodeName, the resources of containers and init containers, overhead, phase.

After the heal, `record_final` (observer outside the network: the masters' real addresses) writes
- `watch-replay.jsonl`: one watch from the first list's resourceVersion, on a healed master, read until
  the server ends it: the reference sequence of every pod change, complete up to `upto` (that master's
  revision before the replay began) when it ends normally;
- `final-state.json`: quiescent Raft samples of every master (applied index, revision, fingerprint, taken
  twice in a row unchanged) and each master's final pods and nodes.
`hacluster.consistency.invariants.check_run` reads all three.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from chaos.jsonlines import JsonLinesFile
from chaos.workload import VALUE_ANNOTATION
from hacluster.model import invariants as inv

PODS_PATH = "/api/v1/pods"
NODES_PATH = "/api/v1/nodes"
IDLE_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 3.0
RESUME_PAUSE_S = 0.05
REPLAY_IDLE_S = 0.3
REPLAY_SERVER_TIMEOUT_S = 1
FINAL_SAMPLE_ROUNDS_MAX = 40
FINAL_SAMPLE_PAUSE_S = 0.05


def trim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The parts of a pod the invariant checkers use."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    out_meta: dict[str, Any] = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta}
    if VALUE_ANNOTATION in annotations:
        out_meta["annotations"] = {VALUE_ANNOTATION: annotations[VALUE_ANNOTATION]}

    def containers(items: Any, keep_restart: bool) -> list[dict[str, Any]]:
        out = []
        for c in items or ():
            d: dict[str, Any] = {"name": c.get("name", "")}
            if c.get("resources"):
                d["resources"] = c["resources"]
            if keep_restart and c.get("restartPolicy"):
                d["restartPolicy"] = c["restartPolicy"]
            out.append(d)
        return out

    out_spec: dict[str, Any] = {"containers": containers(spec.get("containers"), False)}
    if spec.get("initContainers"):
        out_spec["initContainers"] = containers(spec["initContainers"], True)
    for k in ("nodeName", "overhead", "resources"):
        if spec.get(k):
            out_spec[k] = spec[k]
    out: dict[str, Any] = {"metadata": out_meta, "spec": out_spec}
    phase = (pod.get("status") or {}).get("phase")
    if phase:
        out["status"] = {"phase": phase}
    return out


def _event_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """What an "event" record keeps of a watched pod (the live streams and the replay alike)."""
    return {"key": inv.object_key(obj), "uid": (obj.get("metadata") or {}).get("uid"), "value": _value(obj),
            "node": inv.node_name(obj), "object": trim_pod(obj)}


def _value(obj: dict[str, Any]) -> Any:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(VALUE_ANNOTATION)
    try:
        return int(str(raw)) if raw is not None else None
    except ValueError:
        return raw


class _Jsonl(JsonLinesFile):
    """The watch records, kept in memory as well."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path)
        self.records: list[dict[str, Any]] = []

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"time": time.monotonic_ns(), "kind": kind, **fields}
        self.records.append(rec)
        self.write_line(json.dumps(rec, separators=(",", ":")))
        return rec


class WatchRecorder:
    """Watches every pod through `endpoints` ({master id: base URL}), failing over in sorted order.

    `start_rv`: resume from this resourceVersion instead of listing first (a list follows only on
    410 Expired) — for tests of the expiry path. Bounded: each request has a timeout, a silent stream
    is dropped after `idle_timeout_s`, the pause between attempts is `resume_pause_s`.
    """

    def __init__(self, endpoints: dict[str, str], token: str, path: Path | None, *,
                 start_rv: int | None = None, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, resume_pause_s: float = RESUME_PAUSE_S) -> None:
        self.endpoints = dict(endpoints)
        self.masters = sorted(endpoints)
        self.token = token
        self.out = _Jsonl(path)
        self.rv = start_rv
        self.first_list_rv: int | None = None
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.resume_pause_s = resume_pause_s
        self.streams = 0
        self.events = 0
        self._turn = 0
        self._list_reason = "start"

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.out.records

    def _next_master(self) -> None:
        self._turn += 1

    @property
    def _master(self) -> str:
        return self.masters[self._turn % len(self.masters)]

    async def run(self, stop: asyncio.Event) -> None:
        """Record until `stop` is set; every stream is ended (and recorded as ended) before returning.
        Never raises: an unexpected error is recorded (kind "error", op "recorder") and ends the recording,
        so a broken recorder cannot break the chaos run around it."""
        try:
            await self._run(stop)
        except Exception as exc:  # a bug here must not lose the run's other records
            self.out.write("error", master=self._master, op="recorder", error=_describe(exc))
            self.out.flush()

    async def _run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            stopper = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    if self.rv is None:
                        await self._list(session)
                    else:
                        work = asyncio.ensure_future(self._stream(session))
                        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        if not work.done():
                            work.cancel()
                            await asyncio.gather(work, return_exceptions=True)
                            break
                    if not stop.is_set():
                        await asyncio.wait({stopper}, timeout=self.resume_pause_s)
            finally:
                stopper.cancel()
        self.out.flush()

    async def _list(self, session: aiohttp.ClientSession) -> None:
        master = self._master
        try:
            async with session.get(self.endpoints[master] + PODS_PATH,
                                   timeout=aiohttp.ClientTimeout(total=self.request_timeout_s)) as r:
                body = await r.read()
                if r.status != 200:
                    raise _Failed(_status_text(r.status, body))
                data = json.loads(body)
        except (TimeoutError, aiohttp.ClientError, ValueError, _Failed) as exc:
            self.out.write("error", master=master, op="list", error=_describe(exc))
            self._next_master()
            return
        rv = int(data["metadata"]["resourceVersion"])
        self.out.write("list", master=master, rv=rv, reason=self._list_reason,
                       objects=[trim_pod(p) for p in data.get("items") or []])
        if self.first_list_rv is None:
            self.first_list_rv = rv
        self.rv = rv

    async def _stream(self, session: aiohttp.ClientSession) -> None:
        """One watch stream from `self.rv` on the current master, until it ends."""
        assert self.rv is not None
        master = self._master
        sid = 0
        reason = "closed by server"
        params = {"watch": "1", "resourceVersion": str(self.rv), "allowWatchBookmarks": "true"}
        try:
            async with session.get(self.endpoints[master] + PODS_PATH, params=params,
                                   timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout_s,
                                                                 sock_read=self.idle_timeout_s)) as r:
                if r.status != 200:
                    # Refused (e.g. 503: that master has no quorum): no stream began.
                    self.out.write("error", master=master, op="watch", from_rv=self.rv,
                                   error=_status_text(r.status, await r.read()))
                    self._next_master()
                    return
                self.streams += 1
                sid = self.streams
                self.out.write("start", stream=sid, master=master, from_rv=self.rv)
                reason = await self._read_events(r, sid, master)
        except asyncio.CancelledError:
            if sid:
                self.out.write("end", stream=sid, master=master, last_rv=self.rv, reason="stopped")
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            reason = _describe(exc)
            self._next_master()
            if not sid:
                self.out.write("error", master=master, op="watch", from_rv=self.rv, error=reason)
                return
        self.out.write("end", stream=sid, master=master, last_rv=self.rv, reason=reason)

    async def _read_events(self, r: aiohttp.ClientResponse, sid: int, master: str) -> str:
        async for line in r.content:
            if not line.strip():
                continue
            msg = json.loads(line)
            etype = msg.get("type")
            obj = msg.get("object") or {}
            if etype == "ERROR":
                code = obj.get("code")
                if code == 410:
                    self._list_reason = "expired"
                    self.rv = None  # list again
                    return f"410 Expired: {obj.get('message', '')}"
                self._next_master()
                return f"ERROR {code}: {obj.get('message', '')}"
            rv = int((obj.get("metadata") or {}).get("resourceVersion", 0))
            if etype == "BOOKMARK":
                self.out.write("bookmark", stream=sid, master=master, rv=rv)
                self.rv = rv
                continue
            self.events += 1
            self.out.write("event", stream=sid, master=master, type=etype, rv=rv, **_event_fields(obj))
            self.rv = rv
        # The server ended the stream (its quorum went, or its timeout): resume elsewhere.
        self._next_master()
        return "closed by server"

    def close(self) -> None:
        self.out.close()


class _Failed(Exception):
    pass


def _status_text(status: int, body: bytes) -> str:
    """"HTTP 503 ServiceUnavailable: <message>" from a Kubernetes Status body (or its first bytes)."""
    try:
        data = json.loads(body)
        return f"HTTP {status} {data.get('reason', '')}: {data.get('message', '')}"
    except (ValueError, AttributeError):
        return f"HTTP {status} {body[:200].decode(errors='replace')}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -------------------------------------------------------------------------------- after the heal
async def _get_json(session: aiohttp.ClientSession, url: str, timeout_s: float) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        body = await r.read()
        if r.status != 200:
            raise _Failed(f"{r.status} {body[:200].decode(errors='replace')}")
        return json.loads(body)


async def replay(apis: dict[str, str], token: str, from_rv: int, path: Path) -> dict[str, Any]:
    """Write `watch-replay.jsonl`: every pod change after `from_rv`, from the first master that serves
    it whole. Returns the end record ({"complete": bool, "upto": rv, ...})."""
    out = _Jsonl(path)
    end: dict[str, Any] = {"complete": False, "reason": "no master answered"}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            for master in sorted(apis):
                try:
                    upto = int((await _get_json(session, apis[master] + "/debug/raft", REQUEST_TIMEOUT_S))["revision"])
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, _Failed):
                    continue
                out.write("start", stream="replay", master=master, from_rv=from_rv)
                params = {"watch": "1", "resourceVersion": str(from_rv),
                          "timeoutSeconds": str(REPLAY_SERVER_TIMEOUT_S)}
                last = from_rv
                reason = "closed by server"
                complete = True
                try:
                    async with session.get(apis[master] + PODS_PATH, params=params,
                                           timeout=aiohttp.ClientTimeout(total=REPLAY_SERVER_TIMEOUT_S + 20)) as r:
                        if r.status != 200:
                            reason, complete = f"HTTP {r.status}", False
                        else:
                            while True:
                                # The master writes the whole backlog at once and then waits for new
                                # changes: a pause of REPLAY_IDLE_S on loopback means the replay is whole
                                # (the server's timeoutSeconds still bounds it).
                                try:
                                    line = await asyncio.wait_for(r.content.readline(), REPLAY_IDLE_S)
                                except TimeoutError:
                                    reason = "replay idle: backlog received"
                                    break
                                if not line:
                                    break
                                if not line.strip():
                                    continue
                                msg = json.loads(line)
                                obj = msg.get("object") or {}
                                if msg.get("type") == "ERROR":
                                    reason, complete = f"ERROR {obj.get('code')}: {obj.get('message', '')}", False
                                    break
                                if msg.get("type") == "BOOKMARK":
                                    continue
                                last = int(obj["metadata"]["resourceVersion"])
                                out.write("event", stream="replay", master=master, type=msg["type"], rv=last,
                                          **_event_fields(obj))
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
                    reason, complete = _describe(exc), False
                end = out.write("end", stream="replay", master=master, last_rv=last, upto=upto,
                                complete=complete, reason=reason)
                if complete:
                    break
    finally:
        out.close()
    return end


async def final_state(apis: dict[str, str], token: str, path: Path) -> dict[str, Any]:
    """Write `final-state.json`: quiescent Raft samples of every master and their pods and nodes."""
    samples: list[dict[str, Any]] = []
    objects: dict[str, dict[str, Any]] = {}
    previous: dict[str, tuple[Any, ...]] = {}
    leader = None
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        for _ in range(FINAL_SAMPLE_ROUNDS_MAX):
            for master in sorted(apis):
                try:
                    d = await _get_json(session, apis[master] + "/debug/raft", REQUEST_TIMEOUT_S)
                except (TimeoutError, aiohttp.ClientError, ValueError, _Failed):
                    continue
                now = (d.get("applied_index"), d.get("commit_index"), d.get("revision"), d.get("fingerprint"))
                if d.get("role") == "leader":
                    leader = master
                # Quiescent: the same as the previous look at this master, and everything committed applied
                # (the view and the state are read a moment apart; unchanged twice, they belong together).
                if previous.get(master) == now and now[0] == now[1]:
                    samples.append({"master": master, "applied_index": now[0], "commit_index": now[1],
                                    "revision": now[2], "fingerprint": now[3], "term": d.get("term"),
                                    "role": d.get("role")})
                previous[master] = now
            # Done when every master has been seen quiescent at one applied index (a master quiescent for
            # several rounds must not count as several masters).
            masters_at: dict[Any, set[str]] = defaultdict(set)
            for s in samples:
                masters_at[s["applied_index"]].add(s["master"])
            if any(len(seen) >= len(apis) for seen in masters_at.values()):
                break
            await asyncio.sleep(FINAL_SAMPLE_PAUSE_S)
        for master in sorted(apis):
            entry: dict[str, Any] = {}
            try:
                pods = await _get_json(session, apis[master] + PODS_PATH, REQUEST_TIMEOUT_S)
                entry["rv"] = int(pods["metadata"]["resourceVersion"])
                entry["pods"] = [trim_pod(p) for p in pods.get("items") or []]
                nodes = await _get_json(session, apis[master] + NODES_PATH, REQUEST_TIMEOUT_S)
                entry["nodes"] = [{"metadata": {"name": (n.get("metadata") or {}).get("name")},
                                   "status": {"allocatable": (n.get("status") or {}).get("allocatable") or {}}}
                                  for n in nodes.get("items") or []]
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, _Failed) as exc:
                entry["error"] = _describe(exc)
            objects[master] = entry
    data = {"masters": sorted(apis), "samples": samples, "objects": objects, "reference_master": leader}
    path.write_text(json.dumps(data, indent=1))
    return data


async def record_final(recorder: WatchRecorder, apis: dict[str, str], token: str, out_dir: Path) -> dict[str, Any]:
    """After the heal: the replay from the recorder's first list and the final state. Returns a short
    summary for `summary.json`."""
    recorder.close()
    summary: dict[str, Any] = {"streams": recorder.streams, "events": recorder.events,
                               "relists_after_expired": sum(1 for r in recorder.records
                                                            if r["kind"] == "list" and r["reason"] == "expired")}
    try:
        if recorder.first_list_rv is not None:
            end = await replay(apis, token, recorder.first_list_rv, out_dir / "watch-replay.jsonl")
            summary["replay_complete"] = bool(end.get("complete"))
        await final_state(apis, token, out_dir / "final-state.json")
    except Exception as exc:  # the checkers then report what is missing as "not checked"
        summary["error"] = _describe(exc)
    return summary
