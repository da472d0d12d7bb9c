"""The API's front door under abuse, on one in-process API server with real sockets: in-flight limits and
per-user fairness (429 + Retry-After, nothing proposed), slowloris and idle connections cut off, a body
trickled too slowly refused, the per-user watch cap, a stalled watcher dropped without stalling the others,
and the audit trail."""

import asyncio
import json
import socket
import time

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from hacluster.apiserver import audit, limits
from hacluster.apiserver.server import ApiServer
from hacluster.model import commands as C
from hacluster.store.local import LocalStore
from tests.api.conftest import ADMIN, NODE1, VIEWER, make_config, pod

PODS = "/api/v1/namespaces/default/pods"


class GatedStore(LocalStore):
    """Proposals wait while `gate` is clear: requests stay in flight for as long as a test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def propose(self, command, *, timeout_s=None):
        await self.gate.wait()  # a replaced gate holds back only the proposals that come after
        return await super().propose(command, timeout_s=timeout_s)


async def until(cond, timeout_s: float, what: str):
    """A bounded wait for a condition of the live server (polled), never a bare sleep."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Served:
    def __init__(self, server: ApiServer, client: TestClient, store: LocalStore):
        self.server, self.client, self.store = server, client, store

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    @property
    def port(self) -> int:
        return self.client.server.port

    async def call(self, method, path, body=None, token=ADMIN, **kw):
        resp = await self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"},
                                         **kw)
        text = await resp.text()
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        return resp.status, data, resp


async def serve(store: LocalStore | None = None, audit_log=None, **api) -> Served:
    store = store or LocalStore()
    await store.propose(C.LeaderElected(leader_id="m1", term=1, time="2026-01-01T00:00:00Z", fence_term=1))
    cfg = make_config(**api)
    server = ApiServer(cfg, "m1", store, audit_log=audit_log)
    test_server = TestServer(server.app())
    await test_server.start_server(**limits.server_options(cfg.api))  # TestServer(...) would drop them
    client = TestClient(test_server)
    await client.start_server()
    return Served(server, client, store)


async def stop(s: Served) -> None:
    s.server.stop_watches()
    await s.client.close()


def stored(store: LocalStore, name: str) -> bool:
    return store.state.get("pods", "default", name) is not None


# ------------------------------------------------------------------------------------------- overload
async def test_flood_gets_429_status_nothing_proposed_and_another_user_is_served():
    store = GatedStore()
    s = await serve(store, max_mutating_requests_inflight=3, max_requests_inflight=3, queue_length_per_user=2,
                    queue_wait_s=30, system_reserved_share=0.34)
    try:
        store.gate.clear()  # every write now stays in flight until the gate opens
        flood = [asyncio.ensure_future(s.call("POST", PODS, pod(f"flood-{i}"))) for i in range(20)]
        await until(lambda: s.server.flow.writes.rejected >= 16, 10, "the flood refused past seats and queue")
        assert s.server.flow.writes.in_use == 2  # the third seat is the system users'
        # a kubelet still gets the reserved seat while the admin floods
        kubelet = asyncio.ensure_future(s.call("GET", "/api/v1/nodes", token=NODE1))
        node_write = asyncio.ensure_future(s.call("POST", "/api/v1/namespaces/default/events", {
            "metadata": {"name": "e1"}, "involvedObject": {"kind": "Node", "name": "node-1"}, "reason": "R",
            "message": "m", "type": "Normal"}, token=NODE1))
        await until(lambda: s.server.flow.writes.in_use == 3, 10, "the kubelet's write seated")
        # the viewer's read, in the read pool, is answered during the flood
        code, _, _ = await s.call("GET", PODS, token=VIEWER)
        assert code == 200
        store.gate.set()
        results = await asyncio.gather(*flood)
        assert (await kubelet)[0] == 200 and (await node_write)[0] == 201
        codes = sorted(r[0] for r in results)
        assert codes.count(429) == 16 and codes.count(201) == 4, codes
        for i, (code, body, resp) in enumerate(results):
            if code == 429:
                assert resp.headers["Retry-After"] == "1"
                assert body["kind"] == "Status" and body["reason"] == "TooManyRequests" and body["code"] == 429
                assert not stored(store, f"flood-{i}")
            else:
                assert stored(store, f"flood-{i}")
        assert not any(getattr(c, "obj", {}).get("metadata", {}).get("name") == f"flood-{i}"
                       for c in store.proposals for i, r in enumerate(results) if r[0] == 429)
        assert s.server.flow.writes.in_use == 0 and s.server.flow.reads.in_use == 0
        code, metrics, _ = await s.call("GET", "/metrics")
        assert 'apiserver_flowcontrol_rejected_requests_total{request_kind="mutating"} 16.0' in metrics
        assert 'apiserver_current_inflight_requests{request_kind="mutating"} 0.0' in metrics
    finally:
        store.gate.set()
        await stop(s)


async def test_a_second_user_is_served_before_the_flooders_queue():
    store = GatedStore()
    s = await serve(store, max_mutating_requests_inflight=2, queue_length_per_user=50, queue_wait_s=30,
                    system_reserved_share=0)
    try:
        store.gate.clear()
        flood = [asyncio.ensure_future(s.call("POST", PODS, pod(f"flood-{i}"))) for i in range(30)]
        await until(lambda: s.server.flow.writes.waiting() == 28, 10, "the flood seated and queued")
        other = asyncio.ensure_future(s.call("DELETE", f"{PODS}/flood-0", token=NODE1))
        await until(lambda: "system:node:node-1" in s.server.flow.writes.queues, 10, "the second user waiting")
        # one flood request finishes: its seat goes to node-1 (no seat held), not to the flooder's queue
        store.gate.set()
        store.gate = asyncio.Event()
        code, answer, _ = await asyncio.wait_for(other, 10)
        assert code == 403, answer  # answered (NodeRestriction), with 28 flood requests still queued or waiting
        assert sum(f.done() for f in flood) < 30
        store.gate.set()
        codes = [r[0] for r in await asyncio.gather(*flood)]
        assert codes == [201] * 30
    finally:
        store.gate.set()
        await stop(s)


# -------------------------------------------------------------------------------- slow and hostile clients
async def test_slowloris_is_cut_off_while_others_are_served():
    s = await serve(idle_connection_timeout_s=0.5)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        head = f"GET {PODS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nX-Slow: ".encode()
        t0 = time.monotonic()
        closed = False
        for i in range(200):  # ≤ 20 s of trickling, one byte every 0.1 s
            code, _, _ = await s.call("GET", PODS)  # others are served meanwhile
            assert code == 200
            try:
                writer.write(head[i:i + 1] if i < len(head) else b"a")
                await writer.drain()
                data = await asyncio.wait_for(reader.read(100), 0.1)
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
            assert data == b"", data  # nothing is answered to an incomplete head
            closed = True
            break
        assert closed, "a client trickling its headers for 20 s was never cut off"
        assert time.monotonic() - t0 < 20
        writer.close()
    finally:
        await stop(s)


async def test_idle_keepalive_connection_is_closed():
    s = await serve(idle_connection_timeout_s=0.5)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(f"GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert b"200" in status
        rest = await asyncio.wait_for(reader.read(), 10)  # EOF once the server closes the idle connection
        assert b"gitVersion" in rest
        writer.close()
    finally:
        await stop(s)


async def test_body_trickled_too_slowly_is_408_and_nothing_done():
    s = await serve(body_timeout_s=0.3)
    try:
        body = json.dumps(pod("slow-body")).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write((f"POST {PODS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: "
                      f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body[:5])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        status = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert status["kind"] == "Status" and status["code"] == 408
        assert not stored(s.store, "slow-body")
        writer.close()
    finally:
        await stop(s)


async def test_watch_cap_per_user_is_429():
    s = await serve(max_watches_per_user=2)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
            w1 = await session.get(f"{s.base}{PODS}?watch=true")
            w2 = await session.get(f"{s.base}/api/v1/watch/nodes")
            assert w1.status == w2.status == 200
            third = await session.get(f"{s.base}{PODS}?watch=1")
            assert third.status == 429 and third.headers["Retry-After"] == "1"
            assert s.server.metrics.rejected.labels("watch")._value.get() == 1
            assert (await third.json())["reason"] == "TooManyRequests"
            code, _, _ = await s.call("GET", f"{PODS}?watch=true&timeoutSeconds=1", token=VIEWER)
            assert code == 200  # another user's watches are counted apart
            w1.close()
            await until(lambda: s.server.watch_caps.open.get("admin") == 1, 10, "the closed watch released")
            w3 = await session.get(f"{s.base}{PODS}?watch=true")
            assert w3.status == 200
            w2.close()
            w3.close()
    finally:
        await stop(s)


async def test_stalled_watcher_is_dropped_without_stalling_others():
    s = await serve(watch_write_timeout_s=0.5, max_body_bytes=1024 * 1024, watch_queue_max=100_000)
    try:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", s.port))
        stalled.sendall(f"GET {PODS}?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
                        .encode())
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
            live = await session.get(f"{s.base}{PODS}?watch=true&resourceVersion=0")
            await until(lambda: s.server.watch_caps.open.get("admin") == 2, 10, "both watches open")
            big = "x" * 200_000
            n = 60  # 12 MB of events: far more than the stalled socket's buffers hold
            seen = 0

            async def read_live():
                nonlocal seen
                async for line in live.content:
                    if line.strip() and json.loads(line)["type"] == "ADDED":
                        seen += 1
                        if seen == n:
                            return

            reader = asyncio.ensure_future(read_live())
            for i in range(n):
                p = pod(f"big-{i}")
                p["metadata"]["annotations"] = {"a": big}
                code, body, _ = await s.call("POST", PODS, p)
                assert code == 201, body
            await asyncio.wait_for(reader, 30)  # the live watcher got every event
            await until(lambda: s.server.watch_caps.open.get("admin") == 1, 30, "the stalled watcher dropped")
            live.close()
        stalled.close()
    finally:
        await stop(s)


# ------------------------------------------------------------------------------------------------ audit
async def test_audit_events_for_requests(tmp_path):
    log = audit.AuditLog(audit.log_path(tmp_path, "m1"), max_bytes=4096, backups=2)
    s = await serve(audit_log=log)
    try:
        code, _, resp = await s.call("POST", PODS, pod("audited"))
        assert code == 201 and resp.headers["Audit-Id"]
        assert (await s.call("GET", f"{PODS}/audited", token=VIEWER))[0] == 200
        assert (await s.call("DELETE", f"{PODS}/audited", token=VIEWER))[0] == 403
        assert (await s.call("GET", PODS, token="wrong-token-000"))[0] == 401
        log.flush()  # the server flushes FLUSH_PERIOD_S after a write; read at once here
        events = audit.merged(audit.read_events(audit.log_files(tmp_path / "audit")))
        assert len(events) == 4
        for _ in range(40):  # past 4 KiB: rotated, two backups kept
            await s.call("GET", "/version")
    finally:
        await stop(s)
        log.close()
    assert [f.name for f in audit.log_files(tmp_path / "audit")] == ["m1.jsonl", "m1.jsonl.1", "m1.jsonl.2"]
    first = events[0]
    assert first["kind"] == "Event" and first["apiVersion"] == "audit.k8s.io/v1" and first["level"] == "Metadata"
    assert first["verb"] == "create" and first["user"] == {"username": "admin", "groups": ["system:masters"]}
    assert first["objectRef"] == {"resource": "pods", "namespace": "default", "apiVersion": "v1"}
    assert first["responseStatus"]["code"] == 201 and first["auditID"] == resp.headers["Audit-Id"]
    assert first["sourceIPs"] == ["127.0.0.1"] and first["annotations"][audit.MASTER] == "m1"
    assert first["requestReceivedTimestamp"] <= first["stageTimestamp"]
    get, denied, unauth = events[1:4]
    assert (get["verb"], get["user"]["username"], get["objectRef"]["name"]) == ("get", "viewer", "audited")
    assert denied["responseStatus"]["code"] == 403 and denied["responseStatus"]["reason"] == "Forbidden"
    assert unauth["user"]["username"] == "system:anonymous" and unauth["responseStatus"]["code"] == 401
    assert audit.merged(events, user="viewer") == [get, denied]
