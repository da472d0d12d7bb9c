"""The chaos workload: clients that create, read, write, compare-and-set and delete pods against every
master at a bounded rate, recording each operation as a history (`history.jsonl`).

Each key is a pod (`chaos-<i>` in `default`); its register value is the integer in the annotation
`hacluster.io/value`. Operations map onto the API as:
- create → POST the pod with the value (409 AlreadyExists: fail);
- read   → GET (linearizable; or resourceVersion=0 for a possibly stale local read) — value or null on 404;
- write  → PATCH (merge) the annotation (404: fail);
- cas    → JSON patch `test` of the old value then `replace` (422 test failed / 404: fail);
- delete → DELETE with gracePeriodSeconds=0 (404: fail);
- list   → GET the collection (load only; not part of the history's register model).
Outcomes: a 2xx is `ok`; a definite refusal (4xx — 429 TooManyRequests included —, 503, connection refused,
a body that could not be written) is `fail`; after a 429 the worker waits as long as its `Retry-After` asks
(at most 10 s); a 504, a 5xx, or a timeout / dropped connection after the request was sent is `info` — and
the process that got it is never reused (a new process id takes its place), as the history format
requires. Every read that did not succeed is `fail` (a read changes nothing). The table is
`hacluster.model.outcomes`', shared with the API clients.
Pods carry a scheduler name no scheduler serves, so they stay unbound and a delete removes them at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chaos.jsonlines import JsonLinesFile
from chaos.scenario import WorkloadSpec
from hacluster.asyncwait import wait_event
from hacluster.client import retry_after_of, transport_failure
from hacluster.consistency.history import Event, event_to_json
from hacluster.model.outcomes import Transport, history_kind, of_status, of_transport

VALUE_ANNOTATION = "hacluster.io/value"
NAMESPACE = "default"
WORKLOAD_SCHEDULER = "hacluster-chaos-workload"
REGISTER_OPS = ("create", "read", "write", "cas", "delete")


def key_name(i: int) -> str:
    return f"chaos-{i}"


class HistoryRecorder:
    """Appends events to `history.jsonl` (and keeps them in memory for the summary)."""

    def __init__(self, path: Path | None) -> None:
        self.events: list[Event] = []
        self._out = JsonLinesFile(path)

    def record(self, process: int, etype: str, f: str, key: str, value: Any, **extra: Any) -> Event:
        ev = Event(process=process, type=etype, f=f, key=key, value=tuple(value) if isinstance(value, list) else value,  # type: ignore[arg-type]
                   time_ns=time.monotonic_ns(), extra={k: v for k, v in extra.items() if v is not None})
        self.events.append(ev)
        self._out.write_line(event_to_json(ev))
        return ev

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()


@dataclass
class WorkloadStats:
    started: int = 0
    completed: Counter[str] = field(default_factory=Counter)
    lists: Counter[str] = field(default_factory=Counter)


def _pod(name: str, value: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "chaos"},
                         "annotations": {VALUE_ANNOTATION: str(value)}},
            "spec": {"schedulerName": WORKLOAD_SCHEDULER, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "registry.local/chaos:1"}]}}


def _value_of(body: Any) -> int | None:
    try:
        raw = body["metadata"]["annotations"][VALUE_ANNOTATION]
        return int(raw)
    except (KeyError, TypeError, ValueError):
        return None


class Outcome(Exception):
    """How an operation ended when it was not a plain success."""

    def __init__(self, kind: str, error: str, retry_after_s: float = 0.0) -> None:
        super().__init__(error)
        self.kind = kind  # "fail" | "info"
        self.error = error
        self.retry_after_s = retry_after_s  # what a 429 asked the client to wait before its next request


class Workload:
    """Runs the client processes until `stop` is set (or the deadline), then completes every operation."""

    def __init__(self, spec: WorkloadSpec, endpoints: dict[str, str], token: str, recorder: HistoryRecorder,
                 *, seed: int) -> None:
        self.spec = spec
        self.endpoints = endpoints  # master id -> base URL (through Toxiproxy in chaos runs)
        self.masters = sorted(endpoints)
        self.token = token
        self.rec = recorder
        self.rng = random.Random(seed)
        self.stats = WorkloadStats()
        self._next_process = 0
        self._next_value = 0
        weights = [(f, w) for f, w in spec.mix.items() if w > 0]
        self._ops = [f for f, _ in weights]
        self._weights = [w for _, w in weights]

    def _new_process(self) -> int:
        p = self._next_process
        self._next_process += 1
        return p

    def _value(self) -> int:
        self._next_value += 1
        return self._next_value

    async def run(self, stop: asyncio.Event, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        interval = 1.0 / self.spec.rate_per_s
        timeout = aiohttp.ClientTimeout(total=self.spec.request_timeout_s, sock_connect=1.0)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers, timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=0, force_close=False)) as session:
            next_slot = [time.monotonic()]

            async def slot() -> bool:
                """Wait for this worker's next start time under the global rate; False when the run is over."""
                t = next_slot[0] = max(next_slot[0] + interval, time.monotonic())
                delay = t - time.monotonic()
                if delay > 0:
                    await wait_event(stop, delay)
                return not stop.is_set() and time.monotonic() < deadline

            async def worker(w: int) -> None:
                process = self._new_process()
                master = self.masters[w % len(self.masters)]
                while await slot():
                    f = self.rng.choices(self._ops, self._weights)[0]
                    key = key_name(self.rng.randrange(self.spec.keys))
                    if f == "list":
                        await self._list(session, master)
                        continue
                    kind, master = await self._one(session, process, master, f, key)
                    if kind == "info":
                        process = self._new_process()

            await asyncio.gather(*(worker(w) for w in range(self.spec.concurrency)))
        self.rec.flush()

    async def _list(self, session: aiohttp.ClientSession, master: str) -> None:
        try:
            async with session.get(f"{self.endpoints[master]}/api/v1/namespaces/{NAMESPACE}/pods",
                                   params={"labelSelector": "app=chaos"}) as r:
                await r.read()
                self.stats.lists[str(r.status)] += 1
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.stats.lists[type(exc).__name__] += 1

    async def _one(self, session: aiohttp.ClientSession, process: int, master: str, f: str,
                   key: str) -> tuple[str, str]:
        """One operation, invoke to completion; returns (ok|fail|info, master to use next)."""
        local = f == "read" and self.rng.random() < self.spec.local_read_fraction
        if f in ("create", "write"):
            value: Any = self._value()
        elif f == "cas":
            value = [self.rng.randrange(1, max(2, self._next_value + 1)), self._value()]
            # expected: a recent value, so some cas succeed
            if self._next_value > 2:
                value[0] = self.rng.randrange(max(1, self._next_value - 20), self._next_value)
        else:
            value = None
        full_key = f"{NAMESPACE}/{key}"
        self.stats.started += 1
        self.rec.record(process, "invoke", f, full_key, value, node=master, local=True if local else None)
        try:
            result = await self._call(session, master, f, key, value, local)
        except Outcome as o:
            self.rec.record(process, o.kind, f, full_key, None if f == "read" else value, node=master,
                            error=o.error)
            self.stats.completed[o.kind] += 1
            nxt = master
            if not self.spec.stay_on_master and (o.kind == "info" or "503" in o.error
                                                 or "connect" in o.error.lower()):
                nxt = self.masters[(self.masters.index(master) + 1) % len(self.masters)]
            if o.retry_after_s > 0:
                await asyncio.sleep(o.retry_after_s)  # the master asked this client to slow down
            return o.kind, nxt
        except asyncio.CancelledError:
            self.rec.record(process, "info", f, full_key, None if f == "read" else value, node=master,
                            error="cancelled at the end of the run")
            self.stats.completed["info"] += 1
            raise
        self.rec.record(process, "ok", f, full_key, result if f == "read" else value, node=master)
        self.stats.completed["ok"] += 1
        return "ok", master

    async def _call(self, session: aiohttp.ClientSession, master: str, f: str, key: str, value: Any,
                    local: bool) -> Any:
        base = f"{self.endpoints[master]}/api/v1/namespaces/{NAMESPACE}/pods"
        try:
            if f == "create":
                req = session.post(base, json=_pod(key, value))
            elif f == "read":
                req = session.get(f"{base}/{key}", params={"resourceVersion": "0"} if local else None)
            elif f == "write":
                req = session.patch(f"{base}/{key}", data=json.dumps(
                    {"metadata": {"annotations": {VALUE_ANNOTATION: str(value)}}}),
                    headers={"Content-Type": "application/merge-patch+json"})
            elif f == "cas":
                path = "/metadata/annotations/" + VALUE_ANNOTATION.replace("~", "~0").replace("/", "~1")
                req = session.patch(f"{base}/{key}", data=json.dumps(
                    [{"op": "test", "path": path, "value": str(value[0])},
                     {"op": "replace", "path": path, "value": str(value[1])}]),
                    headers={"Content-Type": "application/json-patch+json"})
            else:
                req = session.delete(f"{base}/{key}", params={"gracePeriodSeconds": "0"})
            async with req as r:
                body = await r.read()
                status = r.status
                retry_after = r.headers.get("Retry-After") if status == 429 else None
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Never reached the server, or its body was never sent: never processed. A read changes nothing.
            failure = transport_failure(exc, body_check=True)
            kind = history_kind(of_transport(failure), read_only=f == "read")
            if failure is Transport.CONNECT_REFUSED:
                raise Outcome(kind, f"connect: {exc}") from exc
            raise Outcome(kind, f"{type(exc).__name__}: {exc}") from exc
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if status in (200, 201):
            return _value_of(parsed) if f == "read" else None
        if f == "read" and status == 404:
            return None
        reason = parsed.get("reason", "") if isinstance(parsed, dict) else ""
        err = f"{status} {reason}".strip()
        outcome = of_status(status)
        if outcome.definite:  # REFUSED or REJECTED (or a success status the operation does not expect)
            raise Outcome("fail", err, retry_after_of(retry_after) or 0.0)
        raise Outcome(history_kind(outcome, read_only=f == "read"), err)


async def final_reads(endpoints: dict[str, str], token: str, keys: int, recorder: HistoryRecorder,
                      first_process: int, timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """After the heal: read every key from every master (linearizable), recording ok reads in the history.
    Returns {master: {key: value}} for the convergence and lost-write checks."""
    out: dict[str, dict[str, Any]] = {}
    process = first_process
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        for mid in sorted(endpoints):
            values: dict[str, Any] = {}
            for i in range(keys):
                key = key_name(i)
                full = f"{NAMESPACE}/{key}"
                recorder.record(process, "invoke", "read", full, None, node=mid, final=True)
                try:
                    async with session.get(f"{endpoints[mid]}/api/v1/namespaces/{NAMESPACE}/pods/{key}") as r:
                        body = await r.read()
                        if r.status == 200:
                            v = _value_of(json.loads(body))
                        elif r.status == 404:
                            v = None
                        else:
                            raise Outcome("fail", f"{r.status}")
                    recorder.record(process, "ok", "read", full, v, node=mid, final=True)
                    values[full] = v
                except (TimeoutError, Outcome, aiohttp.ClientError) as exc:
                    recorder.record(process, "fail", "read", full, None, node=mid, final=True, error=str(exc))
                process += 1
            out[mid] = values
    recorder.flush()
    return out
