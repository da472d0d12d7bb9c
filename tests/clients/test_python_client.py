"""The official Python client (`kubernetes`, pydantic-strict models in recent releases) against a real
3-master cluster, configured from the kubeconfig `hacluster up` writes: every call deserialises into its model
without error, watches end on `timeout_seconds`, resume from a resourceVersion and report a too-old one."""

from __future__ import annotations

import threading
import time

import pytest

from tests.clients.conftest import SLEEP, KCluster, wait_for

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config, watch  # noqa: E402

pytestmark = pytest.mark.slow
STORE_SETTINGS = {"watch_history_max": 200}  # so that a test can outrun the watch history (410 Expired)


@pytest.fixture(scope="module")
def api(kcluster: KCluster) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(str(kcluster.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        yield api_client


def v1_pod(name: str, **spec) -> client.V1Pod:
    # Built from model classes: no apiVersion/kind, and (on delete) a body without Content-Type — the
    # server must accept both.
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels={"suite": "py"}),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="busybox",
                                                                             command=SLEEP)], **spec))


def test_pods_crud(api):
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_pod("default", v1_pod("py-a"))
    assert isinstance(created, client.V1Pod) and created.metadata.uid and created.status.phase == "Pending"
    assert isinstance(created.metadata.resource_version, str)
    running = wait_for(lambda: (p := v1.read_namespaced_pod("py-a", "default")).status.phase == "Running" and p,
                       30, "py-a running")
    cs = running.status.container_statuses[0]
    assert cs.name == "main" and cs.ready is True and cs.restart_count == 0 and cs.state.running.started_at
    pod_ips = getattr(running.status, "pod_ips", None) or getattr(running.status, "pod_i_ps", None)
    assert running.status.pod_ip and pod_ips[0].ip == running.status.pod_ip
    assert {c.type for c in running.status.conditions} >= {"PodScheduled", "Initialized", "Ready"}
    status = v1.read_namespaced_pod_status("py-a", "default")
    assert status.status.phase == "Running"

    running.metadata.labels["edited"] = "replace"
    replaced = v1.replace_namespaced_pod("py-a", "default", running)
    assert replaced.metadata.labels["edited"] == "replace"
    stale = running  # still carries the old resourceVersion
    with pytest.raises(client.ApiException) as conflict:
        v1.replace_namespaced_pod("py-a", "default", stale)
    assert conflict.value.status == 409 and '"reason":"Conflict"' in conflict.value.body.replace(" ", "")

    patched = v1.patch_namespaced_pod("py-a", "default", {"metadata": {"labels": {"edited": "patch"}}})
    assert patched.metadata.labels["edited"] == "patch"
    lst = v1.list_namespaced_pod("default", label_selector="suite=py")
    assert [p.metadata.name for p in lst.items] == ["py-a"] and isinstance(lst.metadata.resource_version, str)
    everywhere = v1.list_pod_for_all_namespaces(field_selector="metadata.name=py-a")
    assert len(everywhere.items) == 1

    with pytest.raises(client.ApiException) as missing:
        v1.read_namespaced_pod("nope", "default")
    assert missing.value.status == 404

    bad = client.V1Pod(metadata=client.V1ObjectMeta(name="py-bad"), spec=client.V1PodSpec(containers=[]))
    with pytest.raises(client.ApiException) as invalid:
        v1.create_namespaced_pod("default", bad)
    assert invalid.value.status == 422 and "spec.containers: Required value" in invalid.value.body

    deleted = v1.delete_namespaced_pod("py-a", "default")
    assert isinstance(deleted, client.V1Pod) and deleted.metadata.deletion_timestamp is not None
    wait_for(lambda: not v1.list_namespaced_pod("default", field_selector="metadata.name=py-a").items, 30,
             "py-a gone")


def test_nodes_and_events(api):
    v1 = client.CoreV1Api(api)
    nodes = v1.list_node()
    assert [n.metadata.name for n in nodes.items] == ["node-1", "node-2"]
    n1 = v1.read_node("node-1")
    info = n1.status.node_info
    assert info.kubelet_version == "v1.30.0-hacluster" and info.container_runtime_version == "process://0.1.0"
    assert info.machine_id and info.boot_id and info.system_uuid and info.operating_system == "linux"
    assert {a.type for a in n1.status.addresses} >= {"InternalIP", "Hostname"}
    assert isinstance(n1.status.capacity["cpu"], str)
    assert any(c.type == "Ready" and c.status == "True" for c in v1.read_node_status("node-1").status.conditions)

    made = v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="py-static", labels={"k": "v"})))
    assert made.metadata.name == "py-static"
    made.metadata.labels["k"] = "w"
    assert v1.replace_node("py-static", made).metadata.labels["k"] == "w"
    assert v1.patch_node("py-static", {"spec": {"unschedulable": True}}).spec.unschedulable is True
    st = v1.patch_node_status("py-static", {"status": {"capacity": {"cpu": "2", "pods": "10"}}})
    assert st.status.capacity == {"cpu": "2", "pods": "10"}
    gone = v1.delete_node("py-static")
    assert (gone["status"] if isinstance(gone, dict) else gone.status) == "Success"

    events = v1.list_namespaced_event("default")
    assert events.items and all(isinstance(e, client.CoreV1Event) for e in events.items)
    assert all(e.involved_object.name for e in events.items)
    assert v1.list_event_for_all_namespaces().items


def test_watch_with_and_without_timeout(api):
    v1 = client.CoreV1Api(api)
    lst = v1.list_namespaced_pod("default", label_selector="suite=watch")
    rv = lst.metadata.resource_version

    t0 = time.monotonic()
    seen = list(watch.Watch().stream(v1.list_namespaced_pod, "default", label_selector="suite=watch",
                                     timeout_seconds=1))
    assert seen == [] and time.monotonic() - t0 < 10, "the stream closes on timeoutSeconds"

    def create_later() -> None:
        time.sleep(0.5)
        v1.create_namespaced_pod("default", client.V1Pod(
            metadata=client.V1ObjectMeta(name="py-w", labels={"suite": "watch"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="busybox", command=SLEEP)])))

    threading.Thread(target=create_later, daemon=True).start()
    w = watch.Watch()
    events = []
    for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="suite=watch", resource_version=rv):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].status.phase))
        assert isinstance(ev["object"], client.V1Pod)
        if ev["object"].status.phase == "Running":
            w.stop()
    assert events[0][:2] == ("ADDED", "py-w") and events[-1] == ("MODIFIED", "py-w", "Running")
    resume_from = w.resource_version

    v1.patch_namespaced_pod("py-w", "default", {"metadata": {"labels": {"after": "stop"}}})
    again = next(iter(watch.Watch().stream(v1.list_namespaced_pod, "default", label_selector="suite=watch",
                                           resource_version=resume_from, timeout_seconds=5)))
    assert again["type"] == "MODIFIED" and again["object"].metadata.labels["after"] == "stop"

    # Outrun the (short) watch history: a watch from revision 1 must then end with 410 Expired, which the client
    # raises when it was given timeout_seconds (without, it retries once from the last version it saw).
    for _ in range(10):
        for i in range(60):
            v1.patch_namespaced_pod("py-w", "default", {"metadata": {"labels": {"n": str(i)}}})
        try:
            for _ in watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version="1", timeout_seconds=1):
                pass
        except client.ApiException as exc:
            assert exc.status == 410 and "Expired" in str(exc.reason)
            break
    else:
        raise AssertionError("a watch from revision 1 never expired")
    v1.delete_namespaced_pod("py-w", "default")


def test_apps_and_discovery(api):
    apps = client.AppsV1Api(api)
    rs = client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name="py-rs"),
        spec=client.V1ReplicaSetSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": "py-rs"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-rs"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="busybox",
                                                                     command=SLEEP)]))))
    made = apps.create_namespaced_replica_set("default", rs)
    assert made.spec.replicas == 1 and made.status.replicas == 0
    scale = apps.patch_namespaced_replica_set_scale("py-rs", "default", {"spec": {"replicas": 2}})
    assert isinstance(scale, client.V1Scale) and scale.spec.replicas == 2
    wait_for(lambda: apps.read_namespaced_replica_set("py-rs", "default").status.ready_replicas == 2, 30,
             "2 ready replicas")
    assert client.VersionApi(api).get_code().git_version == "v1.30.0-hacluster"
    names = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"pods", "pods/log", "nodes", "events", "namespaces"} <= names
    apps.delete_namespaced_replica_set("py-rs", "default")
