"""The etcd engine on real processes: 3 masters, each with its etcd member (`hacluster up --store etcd`).

Kubernetes' layout and semantics on etcd (one key per object, resourceVersion = mod revision, 409 on a stale
resourceVersion, list pages at one revision, watch, 410 after compaction), failover (the etcd leader
SIGKILLed, an API server killed) and the leader loops' fencing (a lease holder paused past its TTL, and a
write with a stale term refused by etcd's compare).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
import urllib.request

import pytest

from hacluster.client import ApiClient, ClientError, Indeterminate
from hacluster.cluster import etcd_members, launcher
from hacluster.config import default_config, with_engine
from hacluster.model.commands import Create
from tests.cluster.conftest import Cluster, pod
from tests.support import wait_for

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"  # objects no controller writes to


def lease(name: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": "test"}}


@pytest.fixture(scope="module")
def ec(tmp_path_factory):
    sd = tmp_path_factory.mktemp("etcd-cluster")
    handle = launcher.up(with_engine(default_config(3), "etcd"), sd)
    try:
        yield Cluster(handle)
    finally:
        launcher.down(sd)
        assert not launcher.processes_of(sd), "down left processes behind"


def gateway(c: Cluster, mid: str, path: str, body: dict) -> dict:
    """etcd's JSON gateway on member `mid` (bytes fields are base64)."""
    url = etcd_members.client_url(c.h.cfg, mid) + path
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def etcd_get(c: Cluster, key: str) -> dict | None:
    live = [m["id"] for m in etcd_members.member_rows(c.h) if m["role"] != "down"]
    kvs = gateway(c, live[0], "/v3/kv/range", {"key": b64(key)}).get("kvs") or []
    return kvs[0] if kvs else None


def create_anywhere(c: Cluster, name: str, timeout_s: float) -> float:
    """POST a pod to each master in turn until one acknowledges it; seconds taken (AssertionError if none)."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        for m in c.h.cfg.masters:
            try:
                code, _, _ = c.req("POST", m.id, PODS, pod(name), timeout=2)
            except OSError:
                continue
            if code in (201, 409):
                return time.monotonic() - t0
        time.sleep(0.05)  # between rounds over the masters (bounded by timeout_s)
    raise AssertionError(f"no master acknowledged pod {name} within {timeout_s}s")


def test_status_and_kubernetes_layout(ec: Cluster):
    s = launcher.status_json(ec.h)
    store = s["store"]
    assert store["engine"] == "etcd"
    assert [m["id"] for m in store["members"]] == ["m1", "m2", "m3"]
    assert sum(m["role"] == "leader" for m in store["members"]) == 1
    assert all(isinstance(m["pid"], int) and m["term"] >= 1 and m["raft_index"] >= 1 for m in store["members"])
    code, body, _ = ec.req("POST", "m1", LEASES, lease("layout"))
    assert code == 201, body
    kv = etcd_get(ec, "/registry/leases/default/layout")
    assert kv is not None
    stored = json.loads(base64.b64decode(kv["value"]))
    assert "resourceVersion" not in stored["metadata"]  # the mod revision is the resourceVersion
    assert body["metadata"]["resourceVersion"] == kv["mod_revision"]
    # A linearizable read on another master sees it at once, with the same resourceVersion.
    code, got, _ = ec.req("GET", "m3", f"{LEASES}/layout")
    assert code == 200 and got["metadata"]["resourceVersion"] == kv["mod_revision"]


def test_stale_resource_version_conflicts(ec: Cluster):
    code, first, _ = ec.req("POST", "m2", LEASES, lease("cas"))
    assert code == 201
    code, body, _ = ec.req("POST", "m3", LEASES, lease("cas"))
    assert code == 409 and body["reason"] == "AlreadyExists"
    fresh = dict(first, metadata={**first["metadata"], "labels": {"v": "2"}})
    code, second, _ = ec.req("PUT", "m1", f"{LEASES}/cas", fresh)
    assert code == 200 and int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    stale = dict(first, metadata={**first["metadata"], "labels": {"v": "3"}})  # still the first resourceVersion
    code, body, _ = ec.req("PUT", "m3", f"{LEASES}/cas", stale)
    assert code == 409 and body["reason"] == "Conflict", body
    code, got, _ = ec.req("GET", "m2", f"{LEASES}/cas")
    assert got["metadata"]["labels"] == {"v": "2"}


def test_list_pages_at_one_revision(ec: Cluster):
    for i in range(5):
        assert ec.req("POST", "m1", "/api/v1/namespaces/kube-public/pods",
                      {**pod(f"page-{i}"), "metadata": {"name": f"page-{i}"}})[0] == 201
    code, first, _ = ec.req("GET", "m2", "/api/v1/namespaces/kube-public/pods?limit=2")
    assert code == 200 and len(first["items"]) == 2 and first["metadata"].get("continue")
    names = [p["metadata"]["name"] for p in first["items"]]
    token = first["metadata"]["continue"]
    for _ in range(5):  # bounded: 5 objects, 2 per page
        code, page, _ = ec.req("GET", "m2", f"/api/v1/namespaces/kube-public/pods?limit=2&continue={token}")
        assert code == 200 and page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        names += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert names == [f"page-{i}" for i in range(5)]


def read_watch(url: str, token: str, n: int, timeout_s: float = 10) -> list[dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    out = []
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        for line in r:
            if line.strip():
                out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def test_watch_then_410_after_compaction_and_api_server_failover(ec: Cluster):
    code, p, _ = ec.req("POST", "m1", LEASES, lease("watched"))
    assert code == 201
    rv = p["metadata"]["resourceVersion"]
    patched = dict(p, metadata={**p["metadata"], "labels": {"seen": "yes"}})
    assert ec.req("PUT", "m2", f"{LEASES}/watched", patched)[0] == 200
    evs = read_watch(f"{ec.h.api('m3')}{LEASES}?watch=true&resourceVersion={rv}&timeoutSeconds=5", ec.token, 1)
    assert evs[0]["type"] == "MODIFIED" and evs[0]["object"]["metadata"]["labels"] == {"seen": "yes"}

    # Compact etcd at its current revision, then restart master m3: its watch cache starts from a fresh list,
    # and a watch from before the compaction is 410 Expired. Meanwhile clients fail over to m1 and m2.
    revision = int(gateway(ec, "m1", "/v3/kv/range", {"key": b64("/registry/")})["header"]["revision"])
    gateway(ec, "m1", "/v3/kv/compaction", {"revision": revision, "physical": True})
    pid = ec.h.pid("m3")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not launcher.pid_alive(pid), 5, "m3 to exit")

    async def write_through_failover() -> int:
        client = ApiClient([ec.h.api("m3"), ec.h.api("m1"), ec.h.api("m2")], ec.token, deadline_s=10)
        try:
            for _ in range(3):  # a 504 (slow disk) leaves the outcome unknown: the retry then finds it or makes it
                try:
                    return (await client.request("POST", PODS, pod("after-api-kill"))).code
                except Indeterminate:
                    continue
                except ClientError as exc:
                    if exc.code == 409:
                        return 201
                    raise
            return 504
        finally:
            await client.close()

    assert asyncio.run(write_through_failover()) == 201
    launcher.start_master(ec.h, "m3")
    launcher.wait_ready(ec.h, 30)
    evs = read_watch(f"{ec.h.api('m3')}{LEASES}?watch=true&resourceVersion={rv}&timeoutSeconds=5", ec.token, 1)
    assert evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410, evs
    code, got, _ = ec.req("GET", "m3", f"{PODS}/after-api-kill")
    assert code == 200


def test_fenced_write_is_refused_by_etcd(ec: Cluster):
    """A leader loop's write carries the leadership key's create revision it was elected at; etcd's compare
    refuses it once the key has another create revision (here: a term that never was the key's)."""
    from hacluster.etcd.store import EtcdStore
    from hacluster.leader.proposer import is_fenced

    async def run() -> tuple[object, object, int]:
        store = EtcdStore(ec.h.cfg, "m1")
        store.start(asyncio.get_running_loop())
        try:
            assert await store._wait_synced(10)
            term = store.leadership().term
            assert term > 0  # some master holds the leader loops' lease
            obj = lease("fenced")
            stale = await store.propose(Create(resource="leases", namespace="default", obj=obj,
                                               fence_term=term - 1))
            current = await store.propose(Create(resource="leases", namespace="default",
                                                 obj={**obj, "metadata": {"name": "current"}}, fence_term=term))
            return stale, current, term
        finally:
            await store.aclose()

    stale, current, _ = asyncio.run(run())
    assert is_fenced(stale), stale  # type: ignore[arg-type]
    assert etcd_get(ec, "/registry/leases/default/fenced") is None
    assert current.ok  # type: ignore[attr-defined]


def debug_raft(c: Cluster, mid: str) -> dict:
    return launcher.http_json(f"{c.h.api(mid)}/debug/raft", c.token, 2)


def loops_holder(c: Cluster, mid: str) -> tuple[str | None, int]:
    e = debug_raft(c, mid)["elections"]
    return e["leader_loops"], e["leader_loops_term"]


def test_paused_lease_holder_is_replaced_and_steps_down(ec: Cluster):
    holder, term = wait_for(lambda: (lambda h: h if h[0] else None)(loops_holder(ec, "m1")), 10, "a lease holder")
    other = next(m.id for m in ec.h.cfg.masters if m.id != holder)
    pid = ec.h.pid(holder)
    os.kill(pid, signal.SIGSTOP)
    try:
        ttl = ec.h.cfg.store.etcd.leader_lease_ttl_s
        new_holder, new_term = wait_for(
            lambda: (lambda h: h if h[0] and h[0] != holder else None)(loops_holder(ec, other)),
            ttl + 5, "another master to take the leader loops' lease")
        assert new_term > term
    finally:
        os.kill(pid, signal.SIGCONT)
    # Resumed, the old holder learns it lost the lease (and its writes would be fenced: see the test above).
    wait_for(lambda: loops_holder(ec, holder) == (new_holder, new_term), 10, "the old holder to step down")
    key = etcd_get(ec, "/hacluster/leader-loops")
    assert key is not None and int(key["create_revision"]) == new_term
    assert base64.b64decode(key["value"]).decode() == new_holder
    assert create_anywhere(ec, "after-pause", 10) < 10


def test_write_after_etcd_leader_sigkill(ec: Cluster):
    assert create_anywhere(ec, "before-kill", 10) < 10
    leader = next(m for m in etcd_members.member_rows(ec.h) if m["role"] == "leader")
    os.kill(leader["pid"], signal.SIGKILL)
    took = create_anywhere(ec, "after-kill", 10)
    print(f"write acknowledged {took:.2f} s after the etcd leader's SIGKILL")
    assert took < 5, took
    for name in ("before-kill", "after-kill"):
        assert any(ec.req("GET", m.id, f"{PODS}/{name}")[0] == 200 for m in ec.h.cfg.masters)
    etcd_members.start_member(ec.h, leader["id"])
    etcd_members.wait_members(ec.h, 30)


def test_no_quorum_is_503_or_504_never_an_acknowledgement(ec: Cluster):
    """Two of three etcd members gone: a write is refused (503, nothing done) or left unknown (504), within the
    proposal deadline and etcd's own noticing; a 503 write never appears once the members are back."""
    survivor = "m1"
    killed = [m for m in etcd_members.member_rows(ec.h) if m["id"] != survivor]
    for m in killed:
        os.kill(m["pid"], signal.SIGKILL)
    try:
        answers = []
        for i in range(3):
            t0 = time.monotonic()
            code, body, _ = ec.req("POST", survivor, PODS, pod(f"no-quorum-{i}"), timeout=15)
            answers.append((code, time.monotonic() - t0))
            assert code in (503, 504), (code, body)
        assert all(took < 8 for _, took in answers), answers  # the 1.5 s deadline, plus a loaded machine
    finally:
        for m in killed:
            etcd_members.start_member(ec.h, m["id"])
        etcd_members.wait_members(ec.h, 30)
    launcher.wait_ready(ec.h, 30)
    for i, (code, _) in enumerate(answers):
        if code == 503:
            got = wait_for(lambda: (lambda c: c if c in (200, 404) else None)(
                ec.req("GET", survivor, f"{PODS}/no-quorum-{i}")[0]), 10, "a definite answer")
            assert got == 404, f"no-quorum-{i} was refused with 503 but exists"
    print(f"writes without quorum answered {answers}")
