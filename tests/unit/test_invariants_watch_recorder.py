"""The chaos watch recorder (chaos/watch_recorder.py) against two in-process API servers over one store:
failover when a master closes its watches, relist after 410 Expired, the replay and the final state, and
`check_run`'s watch checks on what it recorded — including a gap cut into the record on purpose."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp.test_utils import TestServer

from chaos.watch_recorder import WatchRecorder, final_state, record_final, replay
from hacluster.apiserver.server import ApiServer
from hacluster.config import ClusterConfig, MasterConfig, StoreConfig, UserConfig
from hacluster.consistency.invariants import check_run
from hacluster.model import commands as C
from hacluster.store.local import LocalStore

TOKEN = "admin-token-0001"
T0 = "2026-01-01T00:00:00Z"


def config(watch_history_max: int = 10_000) -> ClusterConfig:
    return ClusterConfig(masters=(MasterConfig(id="m1", api_port=1, raft_port=2),
                                  MasterConfig(id="m2", api_port=3, raft_port=4)),
                         users=(UserConfig(name="admin", token=TOKEN, groups=("system:masters",)),),
                         store=StoreConfig(watch_history_max=watch_history_max))


def pod(name: str, value: int, node: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}-{value}", "creationTimestamp": T0,
                         "annotations": {"hacluster.io/value": str(value)}},
            "spec": spec}


class TwoMasters:
    """Two API servers over one LocalStore: two masters that always agree."""

    def __init__(self, watch_history_max: int = 10_000) -> None:
        from hacluster.store.state import StoreLimits

        self.store = LocalStore(StoreLimits(watch_history_max=watch_history_max))
        cfg = config(watch_history_max)
        self.servers = {mid: ApiServer(cfg, mid, self.store) for mid in ("m1", "m2")}
        self.http = {mid: TestServer(s.app()) for mid, s in self.servers.items()}

    async def __aenter__(self) -> TwoMasters:
        await self.store.propose(C.LeaderElected(leader_id="m1", term=1, time=T0, fence_term=1))
        for srv in self.http.values():
            await srv.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for s in self.servers.values():
            s.stop_watches()
        for srv in self.http.values():
            await srv.close()

    def urls(self) -> dict[str, str]:
        return {mid: str(srv.make_url("")).rstrip("/") for mid, srv in self.http.items()}

    async def write(self, name: str, value: int, node: str = "") -> None:
        current = self.store.state.get("pods", "default", name)
        if current is None:
            res = await self.store.propose(C.Create(resource="pods", namespace="default", obj=pod(name, value, node)))
        else:
            obj = json.loads(json.dumps(current))
            obj["metadata"]["annotations"]["hacluster.io/value"] = str(value)
            res = await self.store.propose(C.Replace(resource="pods", namespace="default", name=name, obj=obj,
                                                     expected_rv=current["metadata"]["resourceVersion"]))
        assert res.ok, res


async def wait_for(cond, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_recorder_fails_over_and_the_record_passes_the_watch_checks(tmp_path: Path) -> None:
    async with TwoMasters() as c:
        rec = WatchRecorder(c.urls(), TOKEN, tmp_path / "watch.jsonl", resume_pause_s=0.01)
        stop = asyncio.Event()
        task = asyncio.ensure_future(rec.run(stop))
        await wait_for(lambda: rec.streams >= 1)
        await c.write("a", 1)
        await wait_for(lambda: rec.events >= 1)
        await c.write("a", 2)
        await c.write("b", 3, node="n1")
        await wait_for(lambda: rec.events >= 3)
        c.servers["m1"].stop_watches()  # m1 lost its quorum: the stream ends, the recorder resumes on m2
        await wait_for(lambda: rec.streams >= 2)
        await c.write("b", 4)
        res = await c.store.propose(C.Delete(resource="pods", namespace="default", name="a", time=T0,
                                             grace_period_s=0))
        assert res.ok
        await wait_for(lambda: rec.events >= 5)
        stop.set()
        await task
        summary = await record_final(rec, c.urls(), TOKEN, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "watch.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "list" and kinds.count("start") >= 2
    ends = [r for r in records if r["kind"] == "end"]
    assert ends[0]["reason"] == "closed by server" and ends[-1]["reason"] == "stopped"
    starts = [r for r in records if r["kind"] == "start"]
    assert starts[0]["master"] == "m1" and starts[1]["master"] == "m2"
    assert starts[1]["from_rv"] == ends[0]["last_rv"], "resumed where the first stream stopped"
    assert summary == {"streams": rec.streams, "events": 5, "relists_after_expired": 0, "replay_complete": True}
    final = json.loads((tmp_path / "final-state.json").read_text())
    assert {s["master"] for s in final["samples"]} == {"m1", "m2"}
    assert [p["metadata"]["name"] for p in final["objects"]["m1"]["pods"]] == ["b"]

    result = check_run(tmp_path)
    watch = result["checks"]["watch_streams"]
    assert watch["status"] == "ok" and watch["streams_gap_checked"] == watch["checked"] >= 2, watch
    assert watch["events"] == 5 and watch["lists_checked"] == 1
    assert result["checks"]["pod_bound_once"]["status"] == "ok"
    assert result["checks"]["same_state_after_heal"]["status"] == "ok"

    # Cut one event out of the record: the checker finds the gap.
    lines = (tmp_path / "watch.jsonl").read_text().splitlines()
    second_event = [i for i, line in enumerate(lines) if json.loads(line)["kind"] == "event"][1]
    (tmp_path / "watch.jsonl").write_text("\n".join(lines[:second_event] + lines[second_event + 1:]) + "\n")
    gap = check_run(tmp_path)["checks"]["watch_streams"]
    assert gap["status"] == "violated" and gap["violations"][0]["invariant"] == "watch-no-gap"


async def test_recorder_relists_after_410_and_notes_why(tmp_path: Path) -> None:
    async with TwoMasters(watch_history_max=3) as c:
        for i in range(8):
            await c.write(f"p{i}", i)
        rec = WatchRecorder(c.urls(), TOKEN, tmp_path / "watch.jsonl", start_rv=1, resume_pause_s=0.01)
        stop = asyncio.Event()
        task = asyncio.ensure_future(rec.run(stop))
        await wait_for(lambda: any(r["kind"] == "list" for r in rec.records))
        await c.write("p0", 100)
        await wait_for(lambda: rec.events >= 1)
        stop.set()
        await task
        rec.close()
        end = await replay(c.urls(), TOKEN, 1, tmp_path / "expired-replay.jsonl")
        await final_state(c.urls(), TOKEN, tmp_path / "final-state.json")
    records = rec.records
    first_end = next(r for r in records if r["kind"] == "end")
    assert first_end["reason"].startswith("410 Expired")
    relist = next(r for r in records if r["kind"] == "list")
    assert relist["reason"] == "expired" and len(relist["objects"]) == 8
    assert end["complete"] is False and "410" in end["reason"], "a replay from an expired rv is not complete"
    assert check_run(tmp_path)["checks"]["watch_streams"]["relists_after_expired"] == 1
