"""hacluster's own clients honour 429 TooManyRequests with `Retry-After`: the Python client (and so the
kubelet) waits before trying again, the CLI's client pauses as asked, and the chaos workload records a 429 as
a definite failure (`fail`) and waits before its next operation."""

import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from chaos.scenario import WorkloadSpec
from chaos.workload import HistoryRecorder, Workload
from hacluster.cli.kube import _pause_asked
from hacluster.client import ApiClient, retry_after_of

TOO_MANY = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "TooManyRequests",
            "message": "Too many requests, please try again later.", "code": 429,
            "details": {"retryAfterSeconds": 1}}


async def overloaded_once(times: list[float]):
    """A server that answers the first request 429 (Retry-After: 1) and every later one 201."""
    async def handler(request: web.Request) -> web.Response:
        times.append(time.monotonic())
        if len(times) == 1:
            return web.json_response(TOO_MANY, status=429, headers={"Retry-After": "1"})
        return web.json_response({"kind": "Pod", "metadata": {"name": "x"}}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_python_client_waits_as_retry_after_asks():
    times: list[float] = []
    server = await overloaded_once(times)
    client = ApiClient([str(server.make_url("")).rstrip("/")], "token-000000", deadline_s=10)
    try:
        body = await client.post("/api/v1/namespaces/default/pods", {"metadata": {"name": "x"}})
    finally:
        await client.close()
        await server.close()
    assert body["metadata"]["name"] == "x" and len(times) == 2
    assert times[1] - times[0] >= 0.95, "the retry came before the second the server asked for"


def test_retry_after_parsing_and_cli_pause():
    assert retry_after_of("1") == 1.0 and retry_after_of("0.5") == 0.5 and retry_after_of("3600") == 10.0
    assert retry_after_of(None) is None and retry_after_of("soon") is None and retry_after_of("-1") is None
    assert _pause_asked(429, "1", pinned=False) == 1.0  # overloaded: wait even when another master exists
    assert _pause_asked(429, "99", pinned=True) == 10.0
    assert _pause_asked(503, "1", pinned=False) == 0.0  # unpinned: another master may answer at once
    assert _pause_asked(503, "1", pinned=True) == 1.0
    assert _pause_asked(429, None, pinned=True) == 0.0


async def test_workload_records_429_as_fail_and_waits(tmp_path: Path):
    times: list[float] = []
    server = await overloaded_once(times)
    recorder = HistoryRecorder(tmp_path / "history.jsonl")
    workload = Workload(WorkloadSpec(), {"m1": str(server.make_url("")).rstrip("/")}, "token-000000", recorder,
                        seed=1)
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session:
            kind, _ = await workload._one(session, 0, "m1", "create", "chaos-0")
            waited_until = time.monotonic()
            kind2, _ = await workload._one(session, 0, "m1", "create", "chaos-1")
    finally:
        await server.close()
    assert (kind, kind2) == ("fail", "ok")
    assert waited_until - times[0] >= 0.95, "the workload did not wait the Retry-After before going on"
    fail = [e for e in recorder.events if e.type == "fail"]
    assert len(fail) == 1 and "429 TooManyRequests" in str(fail[0].extra.get("error"))


def test_pause_asked_by_a_status():
    from hacluster.client import ClientError, retry_after_s

    assert retry_after_s(ClientError(429, TOO_MANY, "e")) == 1.0
    assert retry_after_s(ClientError(429, {**TOO_MANY, "details": {"retryAfterSeconds": 600}}, "e")) == 10.0
    assert retry_after_s(ClientError(410, {"reason": "Expired"}, "e")) == 0.0
