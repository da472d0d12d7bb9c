"""The front door on real processes: 3 masters and 2 kubelets started by `hacluster up` from a config file with
low in-flight limits, flooded by the admin on every master for longer than the node grace period. No 5xx,
every 201 stored and no 429 stored, the viewer's reads served during the flood, the nodes Ready throughout;
then `hacluster audit` shows the writes merged across masters with their Raft index and term."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import yaml

from hacluster.cluster import launcher
from hacluster.config import load_config
from tests.clients.conftest import stop_cluster
from tests.support import wait_for

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
FLOOD_S = 8.0  # longer than controllers.node_monitor_grace_period_s (5 s): a starved kubelet would go NotReady
FLOODERS_PER_MASTER = 24


@pytest.fixture
def cluster(tmp_path: Path):
    cfg_file = tmp_path / "overload.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "masters": [{"id": "m1"}, {"id": "m2"}, {"id": "m3"}],
        "api": {"max_requests_inflight": 6, "max_mutating_requests_inflight": 4, "system_reserved_share": 0.25,
                "queue_length_per_user": 4, "queue_wait_s": 0.5},
    }))
    handle = launcher.up(load_config(cfg_file), tmp_path / "state", nodes=2)
    try:
        yield handle
    finally:
        stop_cluster(handle)


def viewer_token(handle: launcher.ClusterHandle) -> str:
    return next(u.token for u in handle.cfg.users if u.name == "viewer")


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "flood"}},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "nginx"}]}}


async def flood_and_watch(handle: launcher.ClusterHandle) -> tuple[list[tuple[str, int]], Counter, list[bool]]:
    apis = list(handle.apis().values())
    admin = {"Authorization": f"Bearer {handle.admin_token}"}
    viewer = {"Authorization": f"Bearer {viewer_token(handle)}"}
    results: list[tuple[str, int]] = []
    viewer_codes: Counter = Counter()
    ready: list[bool] = []
    deadline = time.monotonic() + FLOOD_S
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=admin, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as flood, \
            aiohttp.ClientSession(headers=viewer, timeout=timeout) as view:
        async def flooder(api: str, w: int) -> None:
            i = 0
            while time.monotonic() < deadline:  # bounded in time and (by the deadline) in count
                name = f"flood-{api[-5:]}-{w}-{i}"
                i += 1
                if i % 3 == 0:
                    async with flood.get(f"{api}{PODS}", params={"limit": "50"}) as r:
                        await r.read()
                        results.append(("", r.status))
                    continue
                async with flood.post(f"{api}{PODS}", json=pod(name)) as r:
                    await r.read()
                    results.append((name, r.status))

        async def observer() -> None:
            while time.monotonic() < deadline:
                for api in apis:
                    async with view.get(f"{api}/api/v1/nodes") as r:
                        viewer_codes[r.status] += 1
                        if r.status == 200:
                            for node in (await r.json())["items"]:
                                conds = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
                                ready.append(conds.get("Ready") == "True")
                await asyncio.sleep(0.2)  # a paced reader, as a dashboard polls

        await asyncio.gather(observer(), *(flooder(api, w) for api in apis for w in range(FLOODERS_PER_MASTER)))
    return results, viewer_codes, ready


async def test_flood_on_every_master(cluster: launcher.ClusterHandle):
    results, viewer_codes, ready = await flood_and_watch(cluster)
    codes = Counter(code for _, code in results)
    assert codes[429] > 0, codes
    assert not any(code >= 500 for code in codes), codes
    assert viewer_codes[200] > 0 and not any(c >= 500 for c in viewer_codes), viewer_codes
    assert ready and all(ready), f"a node was not Ready during the flood: {ready.count(False)} of {len(ready)}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        async with s.get(f"{cluster.api('m1')}{PODS}", params={"labelSelector": "app=flood"}) as r:
            names = {p["metadata"]["name"] for p in (await r.json())["items"]}
    created = {n for n, c in results if n and c == 201}
    refused = {n for n, c in results if n and c == 429}
    assert created and created <= names
    assert not refused & names

    # the audit trail of the three masters, merged
    def admin_events() -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "hacluster.cli.main", "audit", "--state-dir",
                              str(cluster.state_dir), "--user", "admin", "--since", "5m", "-o", "json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["items"])

    # masters flush their audit files within audit.FLUSH_PERIOD_S of a write: a bounded wait for the last lines
    events = wait_for(lambda: (ev := admin_events()) and sum(e["responseStatus"]["code"] == 429 for e in ev)
                      == codes[429] and ev, 10, "every 429 in the audit trail")
    creates = [e for e in events if e["verb"] == "create" and e["responseStatus"]["code"] == 201]
    assert len(creates) == len(created)
    assert {e["annotations"]["hacluster.io/master"] for e in creates} == {"m1", "m2", "m3"}
    indexes = [int(e["annotations"]["hacluster.io/raft-index"]) for e in creates
               if "hacluster.io/raft-index" in e["annotations"]]
    assert len(indexes) == len(creates) and len(set(indexes)) == len(indexes), "one Raft entry per create"
    assert all(e["user"]["username"] == "admin" for e in events)
    assert sum(1 for e in events if e["responseStatus"]["code"] == 429) == codes[429]
    table = subprocess.run([sys.executable, "-m", "hacluster.cli.main", "audit", "--state-dir",
                            str(cluster.state_dir), "--since", "1h"], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and table.stdout.startswith("TIME"), table.stderr
    assert "system:node:node-1" in table.stdout  # the kubelets' requests are audited too
