"""The workload's recorder: every invoke gets exactly one completion, and an outcome the client cannot know
is recorded as `info`, never `ok` or `fail`."""

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chaos.runner import run_scenario
from chaos.scenario import Scenario, WorkloadSpec
from chaos.workload import HistoryRecorder, Workload
from hacluster.consistency.history import load_history, pair_operations


def fake_api(behaviour):
    """A server whose answer to each mutation is chosen by `behaviour(method)`."""
    async def handle(request):
        what = behaviour(request.method)
        if what == "hang":
            await asyncio.sleep(5)
        if what == "drop":
            request.transport.close()
            await asyncio.sleep(1)
        code = {"ok": 200, "hang": 200, "drop": 200}.get(what, what)
        if request.method == "POST" and code == 200:
            code = 201
        body = {"kind": "Status", "code": code, "reason": {503: "ServiceUnavailable", 504: "Timeout",
                                                         409: "AlreadyExists", 500: "InternalError"}.get(code, "")}
        if code in (200, 201):
            body = {"metadata": {"annotations": {"hacluster.io/value": "1"}}}
        return web.json_response(body, status=code)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.mark.parametrize("answer,expected", [
    (503, "fail"), (409, "fail"), (504, "info"), (500, "info"), ("hang", "info"), ("drop", "info"), ("ok", "ok"),
])
async def test_outcomes_map_to_history_types(tmp_path, answer, expected):
    server = TestServer(fake_api(lambda method: answer if method != "GET" else "ok"))
    await server.start_server()
    try:
        rec = HistoryRecorder(tmp_path / "h.jsonl")
        spec = WorkloadSpec(rate_per_s=200, concurrency=3, keys=2, mix={"write": 1.0, "read": 1.0},
                            request_timeout_s=0.5)
        wl = Workload(spec, {"m1": str(server.make_url("")).rstrip("/")}, "t", rec, seed=1)
        stop = asyncio.Event()
        await wl.run(stop, 1.5)
        rec.close()
    finally:
        await server.close()
    events = load_history(tmp_path / "h.jsonl")
    ops = pair_operations(events)
    assert ops and all(op.complete_time_ns is not None for op in ops), "every invoke completed"
    writes = [op for op in ops if op.f == "write"]
    assert writes and {op.status for op in writes} == {expected}
    reads = [op for op in ops if op.f == "read"]
    assert all(op.status == "ok" for op in reads)
    seen = set()
    for op in ops:  # a process is retired after an info
        assert op.process not in seen
        if op.status == "info":
            seen.add(op.process)


@pytest.mark.slow
def test_short_scenario_run_records_consistent_files(tmp_path):
    sc = Scenario.model_validate({"name": "t", "masters": 3, "seed": 2, "duration_s": 8,
                                  "workload": {"rate_per_s": 100, "concurrency": 4, "keys": 4},
                                  "faults": [{"at_s": 2, "duration_s": 3, "kind": "isolate-leader"}]})
    result = run_scenario(sc, tmp_path / "out")
    out = result.out_dir
    events = load_history(out / "history.jsonl")
    invokes = sum(1 for e in events if e.type == "invoke")
    assert invokes == sum(1 for e in events if e.type != "invoke")
    pair_operations(events)  # raises on any broken pairing
    faults = [json.loads(l) for l in (out / "faults.jsonl").read_text().splitlines()]
    assert [f["event"] for f in faults] == ["start", "end"]
    s = json.loads((out / "summary.json").read_text())
    assert s["lost_acknowledged_writes"] == 0 and s["terms_with_two_leaders"] == []
    assert s["leader_changes"] >= 1 and s["final_state_identical_on_all_masters"]
    assert s["checker"]["linearizable"] == "valid"
    assert (out / "raft.jsonl").read_text().count("\n") > 10
    assert {p.name for p in (out / "audit").iterdir()} >= {"m1.jsonl", "m2.jsonl", "m3.jsonl"}  # kept with the run


class _Raising:
    """An aiohttp request context that fails the way aiohttp reports a lost connection."""

    def __init__(self, exc):
        self.exc = exc

    async def __aenter__(self):
        raise self.exc

    async def __aexit__(self, *exc):
        return False


class RaisingSession:
    def __init__(self, exc):
        self.exc = exc

    def _request(self, *args, **kwargs):
        return _Raising(self.exc)

    get = post = patch = delete = _request


@pytest.mark.parametrize("exc,expected", [
    # aiohttp could not write the body: the connection was already closing, nothing of it went out, and the
    # API server acts only on a whole body — the request was never processed (issue 13, finding 8).
    (aiohttp.ClientOSError(32, "Can not write request body for http://127.0.0.1:1/api/v1/x"), "fail"),
    (aiohttp.ClientConnectionError("Failed to send bytes into the underlying connection <conn>: "
                                   "ClientConnectionResetError('Cannot write to closing transport')"), "fail"),
    # sent, then the connection died: it may have been processed
    (aiohttp.ClientOSError(104, "Connection reset by peer"), "info"),
    (aiohttp.ServerDisconnectedError(), "info"),
    (TimeoutError(), "info"),
])
@pytest.mark.parametrize("f", ["create", "write", "cas"])
async def test_a_request_that_provably_never_reached_the_server_is_a_definite_failure(tmp_path, exc, expected, f):
    rec = HistoryRecorder(None)
    spec = WorkloadSpec(rate_per_s=10, concurrency=1, keys=1, mix={f: 1.0})
    wl = Workload(spec, {"m1": "http://127.0.0.1:1"}, "t", rec, seed=1)
    kind, _ = await wl._one(RaisingSession(exc), 0, "m1", f, "chaos-0")
    assert kind == expected
    assert [e.type for e in rec.events] == ["invoke", expected]
