"""The dashboard server without a running cluster: the token guards every route, bad requests get a
Kubernetes Status, faults go to the controls and end when their time is up, snapshots come over the
WebSocket. (The collector sees every master of the prepared, never started cluster as down.)"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hacluster.cluster import launcher
from hacluster.config import default_config
from hacluster.dashboard.collect import Collector
from hacluster.dashboard.controls import Action, ControlError, Started
from hacluster.dashboard.server import DashboardServer


class RecordingControls:
    """Stands in for chaos.nemesis (the server's side of the contract is under test here)."""

    def __init__(self) -> None:
        self.started: list[Action] = []
        self.ended: list[int] = []
        self.healed = 0

    def start(self, action: Action) -> Started:
        if action.kind == "isolate":
            raise ControlError("this fault needs the chaos network (start the cluster with --chaos)")
        self.started.append(action)
        return Started(len(self.started), f"{action.kind} on {action.target}")

    def end(self, index: int) -> None:
        self.ended.append(index)

    def heal_all(self) -> None:
        self.healed += 1


@pytest.fixture
async def dash(tmp_path: Path) -> Any:
    handle = launcher.prepare(default_config(3), tmp_path / "sd")
    controls = RecordingControls()
    server = DashboardServer(Collector(handle, request_timeout_s=0.2), token="t0ken", controls=controls)
    client = TestClient(TestServer(server.app(), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, controls
    finally:
        await client.close()


async def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def test_every_route_needs_the_token(dash: Any) -> None:
    client, controls = dash
    for method, path in [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/api/state"), ("GET", "/api/pods"),
                         ("GET", "/events"), ("POST", "/api/fault"), ("POST", "/api/pods"),
                         ("GET", "/?token=wrong")]:
        resp = await client.request(method, path)
        body = await resp.json()
        assert resp.status == 401, path
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
    assert controls.started == []


async def test_page_with_token_sets_a_cookie_that_serves_reads_but_not_controls(dash: Any) -> None:
    client, controls = dash
    resp = await client.get("/?token=t0ken")
    page = await resp.text()
    assert resp.status == 200 and "hacluster-dashboard" in resp.cookies
    boot = json.loads(page.split('<script id="boot" type="application/json">')[1].split("</script>")[0])
    assert [m["id"] for m in boot["snapshot"]["masters"]] == ["m1", "m2", "m3"] and boot["controls"] is True
    assert (await client.get("/static/app.js")).status == 200  # the cookie
    assert (await client.get("/static/nope.js")).status == 404
    resp = await client.post("/api/fault", json={"action": "heal"})  # cookie only: refused
    assert resp.status == 401 and controls.healed == 0


async def test_faults_go_to_the_controls_and_end_by_themselves(dash: Any) -> None:
    client, controls = dash
    auth = {"Authorization": "Bearer t0ken"}
    resp = await client.post("/api/fault", json={"action": "kill", "target": "leader", "for_s": 0.2}, headers=auth)
    assert resp.status == 200 and (await resp.json())["index"] == 1
    assert controls.started == [Action("kill", "leader", 0.2)]
    await _wait(lambda: controls.ended == [1], 5, "the fault to end after for_s")
    resp = await client.post("/api/fault", json={"action": "kill", "target": "m1", "for_s": 0}, headers=auth)
    assert resp.status == 200
    resp = await client.post("/api/fault", json={"action": "isolate", "target": "m1"}, headers=auth)
    assert resp.status == 409 and "chaos network" in (await resp.json())["message"]
    resp = await client.post("/api/fault", json={"action": "heal"}, headers=auth)
    assert resp.status == 200 and controls.healed == 1


@pytest.mark.parametrize("path, body, status", [
    ("/api/fault", b"{not json", 422),
    ("/api/fault", b'{"action": "kill", "target": "m7"}', 422),
    ("/api/pods", b'{"template": "nope"}', 422),
    ("/api/pods", b"[]", 422),
])
async def test_bad_requests_get_a_status(dash: Any, path: str, body: bytes, status: int) -> None:
    client, _ = dash
    resp = await client.post(path, data=body, headers={"Authorization": "Bearer t0ken"})
    answer = await resp.json()
    assert resp.status == status and answer["kind"] == "Status" and answer["message"]


async def test_bad_flow_and_page_parameters(dash: Any) -> None:
    client, _ = dash
    resp = await client.get("/api/flow?name=../../etc", headers={"Authorization": "Bearer t0ken"})
    assert resp.status == 422 and (await resp.json())["reason"] == "Invalid"
    resp = await client.get("/api/pods?offset=x", headers={"Authorization": "Bearer t0ken"})
    assert resp.status == 422


async def test_snapshots_come_over_the_websocket(dash: Any) -> None:
    client, _ = dash
    async with client.ws_connect("/events?token=t0ken") as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT
        snap = json.loads(msg.data)
        assert [m["role"] for m in snap["masters"]] == ["down", "down", "down"]
        assert {link["state"] for link in snap["links"]} == {"down"}


def test_the_snapshot_names_the_store_engine_and_marks_an_unsafe_one(tmp_path: Path) -> None:
    from hacluster.config import parse_config

    safe = Collector(launcher.prepare(default_config(3), tmp_path / "safe"), request_timeout_s=0.2)
    assert safe.snapshot()["store"] == {"engine": "pysyncobj"}
    base = default_config(3).model_dump(mode="json")
    unsafe_cfg = parse_config({**base, "store": {"engine": "unsafe-async-primary",
                                                 "unsafe_async_primary": {"loses_acknowledged_writes": True}}})
    unsafe = Collector(launcher.prepare(unsafe_cfg, tmp_path / "unsafe"), request_timeout_s=0.2)
    assert unsafe.snapshot()["store"] == {"engine": "unsafe-async-primary", "unsafe": True}  # the page's UNSAFE mark
