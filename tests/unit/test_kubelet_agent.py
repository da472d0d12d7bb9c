"""The kubelet agent against a real API server in this process (over an unreplicated store), with the
simulated runtime at time scale 0.01: every pod state from its cause, heartbeats, events, logs, failover
between API servers, relist after 410, status reconciliation and deletion confirmation.

`Rig` is shared with test_kubelet_process.py. The store's watch history gives the full sequence of
statuses each pod went through (`Rig.history`), so transient states are checked without racing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hacluster.apiserver.server import ApiServer
from hacluster.client import ApiClient
from hacluster.config import ClusterConfig, KubeletConfig, MasterConfig, UserConfig
from hacluster.format import pods
from hacluster.kubelet.agent import Kubelet
from hacluster.kubelet.behaviour import ANNOTATION_PREFIX, ImageCatalogue, NodeProfile, load_profiles
from hacluster.kubelet.logs import LogServer
from hacluster.kubelet.runtime import Runtime
from hacluster.kubelet.sim import SimRuntime
from hacluster.model import commands as C
from hacluster.store.local import LocalStore
from hacluster.store.state import StoreLimits

ADMIN = "admin-token-0001"
SCALE = 0.01
Obj = dict[str, Any]


def node_token(node: str) -> str:
    return f"token-of-{node}"


def rig_config(nodes: tuple[str, ...] = ("node-1", "node-2")) -> ClusterConfig:
    users = [UserConfig(name="admin", token=ADMIN, groups=("system:masters",))]
    users += [UserConfig(name=f"system:node:{n}", token=node_token(n), groups=("system:nodes",)) for n in nodes]
    return ClusterConfig(masters=(MasterConfig(id="m1", api_port=1, raft_port=2),), users=tuple(users))


class Rig:
    """API servers over one LocalStore, kubelets against them, and helpers to drive and observe pods."""

    def __init__(self, store: LocalStore, servers: list[TestServer], apis: list[ApiServer]) -> None:
        self.store = store
        self.servers = servers
        self.apiservers = apis
        self.urls = [str(s.make_url("")).rstrip("/") for s in servers]
        self.admin = ApiClient(self.urls, ADMIN, request_timeout_s=2.0, deadline_s=5.0)
        self.kubelets: dict[str, Kubelet] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._logs: dict[str, LogServer] = {}
        self._apis: list[ApiClient] = []

    async def start_kubelet(self, node: str = "node-1", *, runtime: Runtime | None = None,
                            profile: NodeProfile | None = None, **settings: Any) -> Kubelet:
        cfg = KubeletConfig.model_validate({"time_scale": SCALE, "node_lease_renew_s": 0.2,
                                            "node_status_update_s": 0.2, **settings})
        api = ApiClient(self.urls, node_token(node), request_timeout_s=1.0, deadline_s=3.0)
        self._apis.append(api)
        rt = runtime or SimRuntime(ImageCatalogue.load(seed=cfg.seed, time_scale=cfg.time_scale), node=node)
        holder: dict[str, Kubelet] = {}
        logs = LogServer(find=lambda ns, name: holder["k"].find(ns, name) if "k" in holder else None, poll_s=0.02)
        port = await logs.start()
        k = Kubelet(node=node, api=api, runtime=rt, cfg=cfg, profile=profile or load_profiles()["default"],
                    log_port=port)
        holder["k"] = k
        stop = asyncio.Event()
        self.kubelets[node], self._stops[node], self._logs[node] = k, stop, logs
        self._tasks[node] = asyncio.ensure_future(k.run(stop))
        await asyncio.wait_for(k.registered.wait(), 5.0)
        return k

    async def stop_kubelet(self, node: str) -> None:
        self._stops[node].set()
        await asyncio.wait_for(self._tasks[node], 10.0)
        await self._logs[node].stop()

    async def close(self) -> None:
        for node in list(self._tasks):
            if not self._tasks[node].done():
                await self.stop_kubelet(node)
        for api in self._apis + [self.admin]:
            await api.close()

    # ------------------------------------------------------------------------------------ pods
    async def create(self, name: str, image: str = "nginx:1.27", *, node: str = "node-1",
                     behaviour: Obj | None = None, containers: list[Obj] | None = None, **spec: Any) -> Obj:
        import json

        pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"nodeName": node, "containers": containers or [{"name": "c", "image": image}]}}
        if behaviour is not None:
            pod["metadata"]["annotations"] = {ANNOTATION_PREFIX + "c": json.dumps(behaviour)}
        pod["spec"].update(spec)
        return await self.admin.post("/api/v1/namespaces/default/pods", pod)  # type: ignore[no-any-return]

    def pod(self, name: str) -> Obj | None:
        return self.store.read(lambda s: s.get("pods", "default", name))

    def status_word(self, name: str) -> str:
        p = self.pod(name)
        return pods.pod_status_reason(p) if p else "<gone>"

    async def wait(self, pred: Callable[[], Any], timeout_s: float = 5.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            await asyncio.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what or pred}")

    async def wait_status(self, name: str, word: str, timeout_s: float = 5.0) -> Obj:
        await self.wait(lambda: self.status_word(name) == word, timeout_s,
                        f"pod {name} to show {word} (shows {self.status_word(name)}; saw {self.history(name)})")
        return self.pod(name)  # type: ignore[return-value]

    def history(self, name: str) -> list[str]:
        """Every STATUS word pod `name` showed, in order, without repeats (from the store's change history)."""
        events = self.store.read(lambda s: list(s.history))
        out: list[str] = []
        for ev in events:
            if ev.resource == "pods" and ev.key == f"default/{name}" and ev.type != "DELETED":
                word = pods.pod_status_reason(ev.obj)
                if not out or out[-1] != word:
                    out.append(word)
        return out

    def events_of(self, name: str) -> list[tuple[str, str, int]]:
        evs = self.store.read(lambda s: list(s.objects["events"].values()))
        return [(e["reason"], e["message"], e["count"]) for e in evs if e["involvedObject"].get("name") == name]


@contextlib.asynccontextmanager
async def make_rig() -> AsyncIterator[Rig]:
    """Two API servers (m1, m2) over one LocalStore, on 127.0.0.1; kubelets are started by the test."""
    store = LocalStore(StoreLimits(watch_history_max=100_000))
    await store.propose(C.LeaderElected(leader_id="m1", term=1, time="2026-01-01T00:00:00Z", fence_term=1))
    cfg = rig_config()
    servers, apis = [], []
    for mid in ("m1", "m2"):
        srv = ApiServer(cfg, mid, store)
        ts = TestServer(srv.app(), host="127.0.0.1")
        await ts.start_server()
        servers.append(ts)
        apis.append(srv)
    r = Rig(store, servers, apis)
    try:
        yield r
    finally:
        await r.close()
        for srv, ts in zip(apis, servers, strict=True):
            srv.stop_watches()
            await ts.close()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


# ------------------------------------------------------------------------------------- node
async def test_registers_node_with_every_field_and_renews_its_lease(rig: Rig) -> None:
    k = await rig.start_kubelet("node-1")
    node = rig.store.read(lambda s: s.get("nodes", "", "node-1"))
    st = node["status"]
    assert st["capacity"]["cpu"] == "4" and st["capacity"]["memory"] == "8Gi" and st["capacity"]["pods"] == "110"
    assert st["allocatable"] == {"cpu": "3900m", "memory": "7836Mi", "pods": "110", "ephemeral-storage": "100Gi",
                                 "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    assert [c["type"] for c in st["conditions"]] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert all(c["lastHeartbeatTime"] and c["lastTransitionTime"] for c in st["conditions"])
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert {"type": "Hostname", "address": "node-1"} in st["addresses"]
    assert set(st["nodeInfo"]) == {"machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                                   "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                                   "operatingSystem", "architecture"}
    assert all(st["nodeInfo"].values()) and st["nodeInfo"]["containerRuntimeVersion"] == "sim://0.1.0"
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == k.log_port
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-1"
    lease = lambda: rig.store.read(lambda s: s.get("leases", "kube-node-lease", "node-1"))  # noqa: E731
    first = (await rig.wait(lease, what="lease"))["spec"]["renewTime"]
    await rig.wait(lambda: lease()["spec"]["renewTime"] != first, 3.0, "a lease renewal")
    spec = lease()["spec"]
    assert spec["holderIdentity"] == "node-1" and spec["leaseDurationSeconds"] == 40
    assert lease()["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]


async def test_node_deleted_by_an_admin_is_registered_again(rig: Rig) -> None:
    await rig.start_kubelet("node-1", node_status_update_s=0.05)
    await rig.admin.delete("/api/v1/nodes/node-1")
    await rig.wait(lambda: rig.store.read(lambda s: s.get("nodes", "", "node-1")), 3.0, "re-registration")


# ------------------------------------------------------------------------------------- states
async def test_running_then_terminating_then_gone_with_events(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("web", behaviour={"pull_s": 20, "ready_after_s": 5})
    pod = await rig.wait_status("web", "Running")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["started"] is True and pod["status"]["podIP"].startswith("10.") and pod["status"]["hostIP"] == "127.0.0.1"
    await rig.wait(lambda: rig.pod("web")["status"]["containerStatuses"][0]["ready"], what="ready")
    assert rig.history("web")[:3] == ["Pending", "ContainerCreating", "Running"]
    await rig.admin.delete("/api/v1/namespaces/default/pods/web")
    await rig.wait(lambda: rig.pod("web") is None, 5.0, "the kubelet to confirm the deletion")
    assert "Terminating" in rig.history("web")
    wanted = {"Pulling", "Pulled", "Created", "Started", "Killing"}
    await rig.wait(lambda: wanted <= {r for r, _, _ in rig.events_of("web")}, 2.0, f"events {wanted}")


async def test_completed_and_error_and_their_exit_codes(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("ok", "hacluster/job:1", restartPolicy="Never")
    await rig.create("bad", "hacluster/fail:1", restartPolicy="Never")
    await rig.create("onfail-ok", "hacluster/job:1", restartPolicy="OnFailure")
    ok = await rig.wait_status("ok", "Completed")
    bad = await rig.wait_status("bad", "Error")
    await rig.wait_status("onfail-ok", "Completed")
    assert ok["status"]["phase"] == "Succeeded" and bad["status"]["phase"] == "Failed"
    assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert rig.history("ok") == ["Pending", "ContainerCreating", "Running", "Completed"]


async def test_crash_loop_back_off(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("crash", "hacluster/crash:1")
    await rig.wait(lambda: rig.status_word("crash") == "CrashLoopBackOff"
                   and rig.pod("crash")["status"]["containerStatuses"][0]["restartCount"] >= 2, 8.0, "a crash loop")
    pod = rig.pod("crash")
    assert pod["status"]["phase"] == "Running"
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and cs["lastState"]["terminated"]["reason"] == "Error"
    msg = cs["state"]["waiting"]["message"]
    assert msg.startswith("back-off ") and "s restarting failed container=c pod=crash_default(" in msg
    await rig.wait(lambda: any(r == "BackOff" and m.startswith("Back-off restarting failed container c in pod "
                                                             "crash_default(") for r, m, _ in rig.events_of("crash")),
                   2.0, "the BackOff event")


async def test_crash_loop_restart_intervals(rig: Rig) -> None:
    """The intervals between exits and restarts follow 0, 10, 20, 40 s × time scale."""
    k = await rig.start_kubelet(crashloop_backoff_initial_s=10, crashloop_backoff_max_s=300)
    created = await rig.create("crash2", behaviour={"run_s": 0.5, "exit_code": 3})
    uid = created["metadata"]["uid"]
    seen: dict[int, tuple[float, float | None]] = {}

    def snapshot() -> bool:
        for r in k.runtime.containers(uid):
            start = r.started_at or 0.0
            prev = seen.get(r.attempt)
            if prev is None or (prev[1] is None and r.finished_at is not None):
                seen[r.attempt] = (start, r.finished_at)
        return len(seen) >= 5

    await rig.wait(snapshot, 10.0, "five attempts")
    waits = [seen[a][0] - (seen[a - 1][1] or 0.0) for a in range(1, 5)]
    expected = [0.0, 0.1, 0.2, 0.4]
    for got, want in zip(waits, expected, strict=True):
        assert want - 0.005 <= got <= want + 0.25, (waits, expected)  # never early; late only under load


async def test_err_image_pull_then_image_pull_back_off(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("noimg", "example.com/does-not-exist:1")
    await rig.wait(lambda: "ImagePullBackOff" in rig.history("noimg"), 6.0, "ImagePullBackOff")
    hist = rig.history("noimg")
    assert hist[:3] == ["Pending", "ContainerCreating", "ErrImagePull"], hist
    pod = rig.pod("noimg")
    assert pod["status"]["phase"] == "Pending"
    await rig.wait(lambda: ("Failed", "Error: ImagePullBackOff") in {(r, m) for r, m, _ in rig.events_of("noimg")},
                   2.0, "the ImagePullBackOff event")
    reasons = {(r, m) for r, m, _ in rig.events_of("noimg")}
    assert ("Failed", "Error: ErrImagePull") in reasons
    assert any(r == "Failed" and m.startswith('Failed to pull image "example.com/does-not-exist:1": rpc error: '
                                              "code = NotFound") for r, m in reasons)
    assert ("BackOff", 'Back-off pulling image "example.com/does-not-exist:1"') in reasons


async def test_oom_killed_by_memory_over_the_limit(rig: Rig) -> None:
    await rig.start_kubelet()
    hog = {"memory": [[0, "16Mi"], [10, "1Gi"]]}
    lim = [{"name": "c", "image": "hacluster/memhog", "resources": {"limits": {"memory": "128Mi"}}}]
    await rig.create("oom-never", containers=lim, behaviour=hog, restartPolicy="Never")
    await rig.create("oom-always", containers=lim, behaviour=hog)
    pod = await rig.wait_status("oom-never", "OOMKilled")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "OOMKilled" and pod["status"]["phase"] == "Failed"
    await rig.wait(lambda: rig.pod("oom-always")["status"]["containerStatuses"][0]["restartCount"] >= 2, 5.0)
    last = rig.pod("oom-always")["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["reason"] == "OOMKilled" and last["exitCode"] == 137


async def test_grace_period_sigterm_ignored_killed_after_grace(rig: Rig) -> None:
    k = await rig.start_kubelet()
    await rig.create("stubborn", "hacluster/ignore-sigterm", terminationGracePeriodSeconds=30)
    await rig.wait_status("stubborn", "Running")
    t0 = time.monotonic()
    await rig.admin.delete("/api/v1/namespaces/default/pods/stubborn")
    await rig.wait(lambda: rig.status_word("stubborn") == "Terminating", 2.0)
    await rig.wait(lambda: rig.pod("stubborn") is None, 5.0, "deletion")
    elapsed = time.monotonic() - t0
    assert elapsed >= 30 * SCALE, elapsed  # waited for the whole (scaled) grace period, then SIGKILL
    await rig.wait(lambda: not k.pods, 2.0, "the kubelet to forget the pod")


async def test_eviction_under_memory_pressure(rig: Rig) -> None:
    small = load_profiles()["small"]  # 2Gi, 256Mi used by the node, evicts below 100Mi available
    k = await rig.start_kubelet(profile=small, eviction_interval_s=5, eviction_pressure_transition_s=30)
    await rig.create("calm", behaviour={"memory": [[0, "64Mi"]]},
                     containers=[{"name": "c", "image": "nginx", "resources": {"requests": {"memory": "128Mi"}}}])
    await rig.create("hog", behaviour={"memory": [[0, "32Mi"], [10, "3Gi"]]})
    pod = await rig.wait_status("hog", "Evicted", 8.0)
    st = pod["status"]
    assert st["phase"] == "Failed" and st["reason"] == "Evicted"
    assert st["message"].startswith("The node was low on resource: memory. Threshold quantity: 100Mi, available: ")
    assert "Container c was using " in st["message"]
    assert ", request is 0, has larger consumption of memory. " in st["message"]
    assert any(c["type"] == "DisruptionTarget" and c["reason"] == "TerminationByKubelet" for c in st["conditions"])
    assert rig.status_word("calm") == "Running"
    def memory_pressure() -> Obj:
        node = rig.store.read(lambda s: s.get("nodes", "", "node-1"))
        return next(c for c in node["status"]["conditions"] if c["type"] == "MemoryPressure")

    await rig.wait(lambda: memory_pressure()["status"] == "True", 3.0, "MemoryPressure")
    assert memory_pressure()["reason"] == "KubeletHasInsufficientMemory"
    await rig.wait(lambda: any(r == "Evicted" for r, _, _ in rig.events_of("hog")), 2.0, "the Evicted event")
    assert k.evictions == 1
    # memory recovered: MemoryPressure goes back to False after the (scaled) transition period
    await rig.wait(lambda: memory_pressure()["status"] == "False", 5.0, "pressure to end")


async def test_admission_rejects_what_does_not_fit(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("huge", containers=[{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "64"}}}])
    pod = await rig.wait_status("huge", "OutOfcpu")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["message"].startswith(
        "Pod was rejected: Node didn't have enough resource: cpu, requested: 64000")


async def test_init_containers_run_first(rig: Rig) -> None:
    import json

    await rig.start_kubelet()
    pod: Obj = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "with-init", "annotations": {
                    ANNOTATION_PREFIX + "setup": json.dumps({"run_s": 2, "exit_code": 0})}},
                "spec": {"nodeName": "node-1", "initContainers": [{"name": "setup", "image": "busybox"}],
                         "containers": [{"name": "c", "image": "nginx"}]}}
    await rig.admin.post("/api/v1/namespaces/default/pods", pod)
    await rig.wait_status("with-init", "Running")
    hist = rig.history("with-init")
    assert "Init:0/1" in hist and hist[-1] == "Running", hist


async def test_logs_through_the_api(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("talker", behaviour={"log_lines": ["one", "two", "three"]})
    await rig.wait_status("talker", "Running")
    path = "/api/v1/namespaces/default/pods/talker/log"
    assert (await rig.admin.request("GET", path)).body == "one\ntwo\nthree\n"
    assert (await rig.admin.request("GET", path, params={"tailLines": "1"})).body == "three\n"
    stamped = (await rig.admin.request("GET", path, params={"timestamps": "true"})).body
    assert stamped.splitlines()[0].endswith("Z one")
    await rig.create("waiting", "hacluster/slow-pull", behaviour={"pull_s": 500})
    await rig.wait_status("waiting", "ContainerCreating")
    from hacluster.client import ClientError

    with pytest.raises(ClientError) as exc:
        await rig.admin.request("GET", "/api/v1/namespaces/default/pods/waiting/log")
    assert 'container "c" in pod "waiting" is waiting to start: ContainerCreating' in str(exc.value)


# --------------------------------------------------------------------------------- resilience
async def test_fails_over_to_another_api_server_and_keeps_pods_current(rig: Rig) -> None:
    k = await rig.start_kubelet()
    await rig.create("before")
    await rig.wait_status("before", "Running")
    rig.apiservers[0].stop_watches()
    await rig.servers[0].close()  # the first master goes away: its watches end, connections are refused
    # In-process, the test's own client learns of the closed keep-alive connections on a later turn of the
    # event loop; a create sent over one of them now would be outcome-unknown, not refused.
    await asyncio.sleep(0.05)
    renewals = k.lease_renewals
    await rig.create("after", "hacluster/job:1", restartPolicy="Never")
    await rig.wait_status("after", "Completed", 5.0)
    await rig.wait(lambda: k.lease_renewals > renewals + 2, 3.0, "lease renewals through the second master")
    await rig.admin.delete("/api/v1/namespaces/default/pods/before")
    await rig.wait(lambda: rig.pod("before") is None, 5.0, "deletion confirmed through the second master")


async def test_status_overwritten_by_another_writer_is_restored(rig: Rig) -> None:
    await rig.start_kubelet()
    await rig.create("steady")
    pod = await rig.wait_status("steady", "Running")
    await rig.wait(lambda: rig.pod("steady")["status"]["containerStatuses"][0]["ready"])
    pod = rig.pod("steady")
    broken = dict(pod["status"])
    broken["conditions"] = [dict(c, status="False") if c["type"] == "Ready" else c for c in broken["conditions"]]
    await rig.admin.put("/api/v1/namespaces/default/pods/steady/status",
                        {"metadata": {"name": "steady", "namespace": "default"}, "status": broken})
    await rig.wait(lambda: next(c for c in rig.pod("steady")["status"]["conditions"] if c["type"] == "Ready")["status"]
                   == "True", 3.0, "the kubelet to restore its status")


async def test_relists_after_410_and_forgets_pods_deleted_meanwhile(rig: Rig) -> None:
    k = await rig.start_kubelet()
    await rig.create("a")
    await rig.create("b")
    await rig.wait_status("a", "Running")
    await rig.wait_status("b", "Running")
    relists = k.relists
    # The history the kubelet's watch would resume from is gone (compaction): its next read gets 410 Expired.
    state = rig.store.state
    state.history.clear()
    state.history_floor = state.revision + 1
    await rig.store.propose(C.Delete(resource="pods", namespace="default", name="b", time="2026-01-01T00:00:00Z",
                                     grace_period_s=0))
    await rig.wait(lambda: k.relists > relists, 5.0, "a relist after 410")
    await rig.wait(lambda: not any(e.name == "b" for e in k.pods.values()), 3.0, "pod b forgotten")
    await rig.create("c")
    await rig.wait_status("c", "Running")
    assert rig.status_word("a") == "Running"


async def test_deleted_while_the_image_is_pulled(rig: Rig) -> None:
    k = await rig.start_kubelet()
    await rig.create("pulling", "hacluster/slow-pull", behaviour={"pull_s": 1000})
    await rig.wait_status("pulling", "ContainerCreating")
    await rig.wait(lambda: any(e.pulling for e in k.pods.values()), 2.0, "the pull to start")
    await rig.admin.delete("/api/v1/namespaces/default/pods/pulling")
    await rig.wait(lambda: rig.pod("pulling") is None, 3.0, "the pull cancelled and the deletion confirmed")
