"""Unit tests of the hacluster.format printers: Kubernetes' server-side printing, case by case.

Three sources of expected values, all table-driven from tests/unit/data/printers/:
- human_duration.json: every case of apimachinery's duration_test.go;
- upstream.json: cases ported from kubernetes' printers_test.go (pods, nodes, events);
- pod_status.json: the pod situations hacluster's kubelet produces (CrashLoopBackOff, OOMKilled, ...).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hacluster.format import columns, durations, events, nodes, pods, selectors, tables, workloads
from hacluster.model.errors import BadRequest

DATA = Path(__file__).parent / "data" / "printers"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


DURATIONS = _load("human_duration.json")
UPSTREAM = _load("upstream.json")
UPSTREAM_NOW = _ts(UPSTREAM["now"])
POD_CASES = _load("pod_status.json")
POD_NOW = _ts(POD_CASES["now"])
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


# --- durations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", DURATIONS["cases"], ids=lambda c: c["go"])
def test_human_duration_matches_apimachinery(case: dict[str, Any]) -> None:
    assert durations.human_duration(case["ns"] / 1e9) == case["want"]


# datetime resolves microseconds, so the "-2s + 1ns" case is left to the test above.
WHOLE_US = [c for c in DURATIONS["cases"] if c["ns"] % 1000 == 0]


@pytest.mark.parametrize("case", WHOLE_US, ids=lambda c: c["go"])
def test_translate_timestamp_since_uses_the_same_buckets(case: dict[str, Any]) -> None:
    then = NOW - timedelta(microseconds=case["ns"] // 1000)
    assert durations.translate_timestamp_since(then.isoformat(), NOW) == case["want"]


@pytest.mark.parametrize(("offset_s", "want"), [
    # TestTranslateTimestampSince in printers_test.go
    (2.1, "<invalid>"), (1.9, "0s"), (0, "0s"), (-30, "30s"), (-300, "5m"), (-6000, "100m"),
    (-2 * 86400, "2d"), (-90 * 86400, "90d"), (-10 * 365 * 86400, "10y"),
    # the AGE examples of the brief
    (-5, "5s"), (-200, "3m20s"), (-600, "10m"), (-(2 * 86400 + 3 * 3600), "2d3h"),
    (-(3 * 365 + 45) * 86400, "3y45d"),
])
def test_translate_timestamp_since(offset_s: float, want: str) -> None:
    then = NOW + timedelta(seconds=offset_s)
    assert durations.translate_timestamp_since(then.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), NOW) == want


@pytest.mark.parametrize("ts", [None, "", "not-a-time"])
def test_translate_timestamp_since_unknown(ts: str | None) -> None:
    assert durations.translate_timestamp_since(ts, NOW) == "<unknown>"


def test_translate_timestamp_since_accepts_naive_now_as_utc() -> None:
    assert durations.translate_timestamp_since("2026-01-01T11:00:00Z", NOW.replace(tzinfo=None)) == "60m"
    assert durations.translate_timestamp_since("2026-01-01T12:00:00+01:00", NOW) == "60m"


# --- pods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", POD_CASES["cases"], ids=lambda c: c["name"])
def test_pod_status_ready_restarts(case: dict[str, Any]) -> None:
    pod = case["pod"]
    assert pods.pod_status_reason(pod) == case["status"]
    assert pods.pod_ready(pod) == case["ready"]
    assert pods.pod_restarts(pod, POD_NOW) == case["restarts"]
    row = pods.pod_row(pod, POD_NOW)
    age = "60m" if pod["metadata"].get("creationTimestamp") else "<unknown>"
    assert row[:5] == [pod["metadata"]["name"], case["ready"], case["status"], case["restarts"], age]
    if "wide" in case:
        assert row[5:] == case["wide"]
    table_row = tables.pod_table([pod], POD_NOW)["rows"][0]
    assert table_row["cells"] == row
    assert table_row.get("conditions") == case.get("rowConditions")


@pytest.mark.parametrize("case", UPSTREAM["pods"], ids=lambda c: c["test"])
def test_pod_rows_match_upstream_printers_test(case: dict[str, Any]) -> None:
    row = pods.pod_row(case["pod"], UPSTREAM_NOW)
    assert len(row) == len(columns.POD_COLUMNS)
    assert row[:len(case["cells"])] == case["cells"]
    table_row = tables.pod_table([case["pod"]], UPSTREAM_NOW)["rows"][0]
    assert table_row.get("conditions") == case.get("conditions")


def test_pod_restarts_is_a_string_like_the_column() -> None:
    column = {c.name: c for c in columns.POD_COLUMNS}["Restarts"]
    assert column.type == "string"
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{}]},
           "status": {"containerStatuses": [{"restartCount": 2}]}}
    assert pods.pod_restarts(pod, NOW) == "2"


def test_pod_printing_does_not_mutate_its_input() -> None:
    pods = [case["pod"] for case in POD_CASES["cases"]]
    before = copy.deepcopy(pods)
    tables.pod_table(pods, POD_NOW, "Object")
    assert pods == before


# --- nodes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", UPSTREAM["nodes"], ids=lambda c: c["test"])
def test_node_rows_match_upstream_printers_test(case: dict[str, Any]) -> None:
    row = nodes.node_row(case["node"], UPSTREAM_NOW)
    assert len(row) == len(columns.NODE_COLUMNS)
    assert row[:len(case["cells"])] == case["cells"]


def _node(conditions: list[dict[str, str]] | None = None, unschedulable: bool | None = None,
          labels: dict[str, str] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"metadata": {"name": "n1", "labels": labels or {}}, "spec": {}, "status": {}}
    if conditions is not None:
        node["status"]["conditions"] = conditions
    if unschedulable is not None:
        node["spec"]["unschedulable"] = unschedulable
    return node


@pytest.mark.parametrize(("conditions", "unschedulable", "want"), [
    ([{"type": "Ready", "status": "True"}], None, "Ready"),
    ([{"type": "Ready", "status": "False"}], None, "NotReady"),
    # a lost node: Ready=Unknown prints NotReady
    ([{"type": "Ready", "status": "Unknown"}], None, "NotReady"),
    ([{"type": "MemoryPressure", "status": "True"}], None, "Unknown"),
    (None, None, "Unknown"),
    ([{"type": "Ready", "status": "True"}], True, "Ready,SchedulingDisabled"),
    ([{"type": "Ready", "status": "Unknown"}], True, "NotReady,SchedulingDisabled"),
    ([{"type": "Ready", "status": "True"}], False, "Ready"),
    ([{"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"}], None, "Ready"),  # last wins
])
def test_node_status(conditions: list[dict[str, str]] | None, unschedulable: bool | None, want: str) -> None:
    assert nodes.node_status(_node(conditions, unschedulable)) == want


@pytest.mark.parametrize(("labels", "want"), [
    ({}, "<none>"),
    ({"node-role.kubernetes.io/control-plane": ""}, "control-plane"),
    ({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "true"},
     "control-plane,worker"),
    ({"kubernetes.io/role": "master"}, "master"),
    ({"kubernetes.io/role": ""}, "<none>"),
    ({"node-role.kubernetes.io/": ""}, "<none>"),
    ({"kubernetes.io/role": "worker", "node-role.kubernetes.io/worker": ""}, "worker"),
    ({"kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "a"}, "<none>"),
])
def test_node_roles(labels: dict[str, str], want: str) -> None:
    assert nodes.node_roles(_node(labels=labels)) == want


def test_node_row_realistic() -> None:
    node = {
        "metadata": {"name": "worker-1", "creationTimestamp": "2025-12-30T09:00:00Z",
                     "labels": {"node-role.kubernetes.io/worker": ""}},
        "spec": {},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"},
                           {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.11"},
                          {"type": "Hostname", "address": "worker-1"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-hacluster", "osImage": "hacluster simulated",
                         "kernelVersion": "6.1.0", "containerRuntimeVersion": "hacluster://0.1.0"},
        },
    }
    assert nodes.node_row(node, NOW) == [
        "worker-1", "Ready", "worker", "2d3h", "v1.32.0-hacluster", "10.0.0.11", "<none>",
        "hacluster simulated", "6.1.0", "hacluster://0.1.0"]


# --- events ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", UPSTREAM["events"], ids=lambda c: c["test"])
def test_event_rows_match_upstream_printers_test(case: dict[str, Any]) -> None:
    row = events.event_row(case["event"], UPSTREAM_NOW)
    assert len(row) == len(columns.EVENT_COLUMNS)
    if len(case["cells"]) == len(row):
        assert row == case["cells"]
    else:  # the non-wide expectation: Last Seen, Type, Reason, Object, Message
        assert [row[0], row[1], row[2], row[3], row[6]] == case["cells"]


def test_event_row_trims_message_and_lowercases_kind() -> None:
    event = {"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Node"}, "type": "Normal",
             "reason": "NodeReady", "message": "  node is ready \n", "count": 0,
             "firstTimestamp": "2026-01-01T11:59:00Z", "lastTimestamp": "2026-01-01T11:59:30Z",
             "source": {"component": "kubelet"}}
    assert events.event_row(event, NOW) == [
        "30s", "Normal", "NodeReady", "node", "", "kubelet", "node is ready", "60s", 1, "web.1"]


# --- replicasets, namespaces, leases, default -------------------------------------------------------------


def test_replicaset_row() -> None:
    rs = {
        "metadata": {"name": "web-5d8f", "creationTimestamp": "2026-01-01T11:57:00Z"},
        "spec": {"replicas": 3,
                 "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}},
                 "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                                      {"name": "log", "image": "busybox"}]}}},
        "status": {"replicas": 3, "readyReplicas": 2},
    }
    assert workloads.replicaset_row(rs, NOW) == [
        "web-5d8f", 3, 3, 2, "3m", "web,log", "nginx:1.27,busybox", "app=web,pod-template-hash=5d8f"]


def test_replicaset_row_defaults() -> None:
    assert workloads.replicaset_row({"metadata": {"name": "rs"}}, NOW) == [
        "rs", 1, 0, 0, "<unknown>", "", "", "<none>"]
    assert workloads.replicaset_row({"metadata": {"name": "rs"}, "spec": {"replicas": 0}}, NOW)[1] == 0


@pytest.mark.parametrize(("selector", "want"), [
    (None, "<none>"),
    ({}, "<none>"),
    ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
     "tier in (api,web)"),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}, "tier notin (db)"),
    ({"matchExpressions": [{"key": "legacy", "operator": "DoesNotExist"}], "matchLabels": {"app": "x"}},
     "app=x,!legacy"),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, "gpu"),
    ({"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]}, "<error>"),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}, "<error>"),
])
def test_format_label_selector(selector: dict[str, Any] | None, want: str) -> None:
    assert selectors.format_label_selector(selector) == want


def test_namespace_lease_and_default_rows() -> None:
    ns = {"metadata": {"name": "default", "creationTimestamp": "2026-01-01T10:00:00Z"},
          "status": {"phase": "Active"}}
    assert tables.namespace_row(ns, NOW) == ["default", "Active", "120m"]
    # upstream's "namespace2": no status, no age
    assert tables.namespace_row({"metadata": {"name": "x"}}, NOW) == ["x", "", "<unknown>"]
    lease = {"metadata": {"name": "kube-scheduler", "creationTimestamp": "2026-01-01T11:59:00Z"},
             "spec": {"holderIdentity": "master-2_0f3c", "leaseDurationSeconds": 15}}
    assert tables.lease_row(lease, NOW) == ["kube-scheduler", "master-2_0f3c", "60s"]
    assert tables.lease_row({"metadata": {"name": "l"}, "spec": {}}, NOW) == ["l", "", "<unknown>"]
    cm = {"metadata": {"name": "cfg", "creationTimestamp": "2026-01-01T10:00:00.123456+02:00"}}
    assert tables.default_row(cm, NOW) == ["cfg", "2026-01-01T08:00:00Z"]
    assert tables.default_row({"metadata": {"name": "x"}}, NOW) == ["x", "0001-01-01T00:00:00Z"]


# --- tables ----------------------------------------------------------------------------------------------

EXPECTED_COLUMNS = {
    "pods": [("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
             ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1),
             ("Node", "string", "", 1), ("Nominated Node", "string", "", 1),
             ("Readiness Gates", "string", "", 1)],
    "nodes": [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Roles", "string", "", 0),
              ("Age", "string", "", 0), ("Version", "string", "", 0), ("Internal-IP", "string", "", 1),
              ("External-IP", "string", "", 1), ("OS-Image", "string", "", 1),
              ("Kernel-Version", "string", "", 1), ("Container-Runtime", "string", "", 1)],
    "events": [("Last Seen", "string", "", 0), ("Type", "string", "", 0), ("Reason", "string", "", 0),
               ("Object", "string", "", 0), ("Subobject", "string", "", 1), ("Source", "string", "", 1),
               ("Message", "string", "", 0), ("First Seen", "string", "", 1), ("Count", "string", "", 1),
               ("Name", "string", "name", 1)],
    "replicasets": [("Name", "string", "name", 0), ("Desired", "integer", "", 0),
                    ("Current", "integer", "", 0), ("Ready", "integer", "", 0), ("Age", "string", "", 0),
                    ("Containers", "string", "", 1), ("Images", "string", "", 1),
                    ("Selector", "string", "", 1)],
    "namespaces": [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Age", "string", "", 0)],
    "leases": [("Name", "string", "name", 0), ("Holder", "string", "", 0), ("Age", "string", "", 0)],
}

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "pods": [case["pod"] for case in POD_CASES["cases"]] + [case["pod"] for case in UPSTREAM["pods"]],
    "nodes": [case["node"] for case in UPSTREAM["nodes"]] + [{}],
    "events": [case["event"] for case in UPSTREAM["events"]] + [{}],
    "replicasets": [{"metadata": {"name": "rs", "namespace": "default"}, "spec": {"replicas": 2}}, {}],
    "namespaces": [{"metadata": {"name": "default"}, "status": {"phase": "Active"}}, {}],
    "leases": [{"metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "n1"}}, {}],
}


def test_table_builders_cover_the_served_resources() -> None:
    assert set(tables.TABLE_BUILDERS) == {"pods", "nodes", "events", "replicasets", "namespaces", "leases",
                                            "deployments", "jobs"}


@pytest.mark.parametrize("resource", sorted(EXPECTED_COLUMNS))
def test_column_definitions_are_kubernetes_own(resource: str) -> None:
    table = tables.TABLE_BUILDERS[resource]([], NOW)
    got = [(c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]]
    assert got == EXPECTED_COLUMNS[resource]
    for column in table["columnDefinitions"]:
        assert list(column) == ["name", "type", "format", "description", "priority"]
        assert column["description"]


@pytest.mark.parametrize("resource", sorted(SAMPLES))
def test_every_row_has_one_cell_per_column(resource: str) -> None:
    table = tables.TABLE_BUILDERS[resource](SAMPLES[resource], NOW, resource_version="42")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42"}
    assert len(table["rows"]) == len(SAMPLES[resource])
    for row in table["rows"]:
        assert len(row["cells"]) == len(table["columnDefinitions"])
    json.dumps(table)  # plain JSON all the way down


def test_default_table() -> None:
    objs = [{"kind": "ConfigMap", "metadata": {"name": "cfg", "creationTimestamp": "2026-01-01T00:00:00Z"}}]
    table = tables.default_table(objs, NOW, resource_version="9")
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", "name", 0), ("Created At", "date", "", 0)]
    assert table["rows"] == [{"cells": ["cfg", "2026-01-01T00:00:00Z"],
                              "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                         "metadata": objs[0]["metadata"]}}]


def test_include_object() -> None:
    pod = POD_CASES["cases"][2]["pod"]
    meta_row = tables.pod_table([pod], NOW)["rows"][0]
    assert meta_row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": pod["metadata"]}
    assert tables.pod_table([pod], NOW, "")["rows"][0]["object"] == meta_row["object"]
    assert tables.pod_table([pod], NOW, "Object")["rows"][0]["object"] == pod
    assert "object" not in tables.pod_table([pod], NOW, "None")["rows"][0]
    with pytest.raises(BadRequest) as raised:
        tables.node_table([], NOW, "metadata")
    assert raised.value.code == 400


def test_table_list_metadata_and_no_headers() -> None:
    table = tables.namespace_table([], NOW, resource_version="", continue_token="abc",
                                     remaining_item_count=3, no_headers=True)
    assert table == {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                     "metadata": {"continue": "abc", "remainingItemCount": 3},
                     "columnDefinitions": [], "rows": []}


def test_row_keys_in_kubernetes_order() -> None:
    succeeded = next(c["pod"] for c in POD_CASES["cases"] if c["status"] == "Completed")
    row = tables.pod_table([succeeded], NOW)["rows"][0]
    assert list(row) == ["cells", "conditions", "object"]
    assert list(tables.pod_table([], NOW)) == [
        "kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
