"""The pure parts of the kubectl-like CLI: Go's tabwriter, kubectl's YAML/JSON, error lines and client-side
apply's last-applied annotation and three-way patch (no cluster needed)."""

import json

from hacluster.apiserver.patch import strategic_merge_patch
from hacluster.cli.apply import last_applied_json, original_of, three_way_patch, with_last_applied
from hacluster.cli.kube import TabWriter, error_line, tabbed, to_json, to_yaml


def test_tabwriter_blocks_like_go():
    # A line without a tab ends a column block; the text after a line's last tab is never padded.
    text = ("Name:\tweb\nNamespace:\tdefault\nIPs:\n  IP:\t10.0.0.1\nContainers:\n  c:\n    Requests:\n"
            "      cpu:\t500m\n      memory:\t64Mi\n    Environment:\t<none>\nConditions:\n  Type\tStatus\n"
            "  Ready \tTrue \nVolumes:\t<none>\n")
    assert tabbed(text) == (
        "Name:       web\nNamespace:  default\nIPs:\n  IP:  10.0.0.1\nContainers:\n  c:\n    Requests:\n"
        "      cpu:        500m\n      memory:     64Mi\n    Environment:  <none>\nConditions:\n"
        "  Type    Status\n  Ready   True \nVolumes:  <none>\n")


def test_table_writer_remembers_widths_across_watch_events():
    tw = TabWriter(minwidth=6, padding=3, remember=True)
    tw.write("NAME\tREADY\tSTATUS\tAGE\nweb\t1/1\tRunning\t5s\n")
    assert tw.flush() == "NAME   READY   STATUS    AGE\nweb    1/1     Running   5s\n"
    tw.write("w1\t0/1\tContainerCreating\t0s\n")
    assert tw.flush() == "w1     0/1     ContainerCreating   0s\n"
    tw.write("w1\t1/1\tRunning\t1s\n")
    assert tw.flush() == "w1     1/1     Running             1s\n"
    tw2 = TabWriter(minwidth=6, padding=3)
    tw2.write("A\tB\n1\t2\n")
    assert tw2.flush() == "A     B\n1     2\n", "minwidth 6 as in kubectl's printers"


def test_yaml_quotes_like_go_yaml():
    doc = {"resourceVersion": "22", "status": "True", "ts": "2026-01-01T00:00:00Z", "empty": "", "label": "y",
           "cpu": "1e3", "plain": "nginx:1.25", "json": '{"a":1}', "multi": "a\nb\n", "n": 3, "none": None,
           "list": [{"name": "c"}], "m": {}}
    assert to_yaml(doc) == (
        'cpu: "1e3"\nempty: ""\njson: \'{"a":1}\'\nlabel: "y"\nlist:\n- name: c\nm: {}\nmulti: |\n  a\n  b\n'
        '"n": 3\nnone: null\nplain: nginx:1.25\nresourceVersion: "22"\nstatus: "True"\nts: "2026-01-01T00:00:00Z"\n')


def test_json_like_kubectl():
    assert to_json({"b": "<x & y>", "a": [1, {}]}) == (
        '{\n    "a": [\n        1,\n        {}\n    ],\n    "b": "\\u003cx \\u0026 y\\u003e"\n}\n')


def test_error_lines():
    nf = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
          "message": 'pods "x" not found', "details": {"name": "x", "kind": "pods"}}
    assert error_line(nf, 404) == 'Error from server (NotFound): pods "x" not found'
    assert error_line(nf, 404, 'error when creating "p.yaml"') == (
        'Error from server (NotFound): error when creating "p.yaml": pods "x" not found')
    invalid = {"reason": "Invalid", "code": 422, "message": 'Pod "bad" is invalid: spec.containers: Required value',
               "details": {"name": "bad", "kind": "Pod", "causes": [
                   {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}]}}
    assert error_line(invalid, 422) == 'The Pod "bad" is invalid: spec.containers: Required value'
    assert error_line({"message": "boom"}, 500) == "Error from server: boom"


MANIFEST = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ha1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                                     "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}]}}


def test_last_applied_is_what_kubectl_writes():
    applied = with_last_applied(MANIFEST, "default")
    # Byte for byte what kubectl 1.20 stored for the same manifest (namespace filled in, empty annotations kept).
    assert applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == (
        '{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{},"labels":{"app":"web"},"name":"ha1",'
        '"namespace":"default"},"spec":{"containers":[{"image":"nginx:1.25","name":"nginx","resources":'
        '{"requests":{"cpu":"500m","memory":"64Mi"}}}]}}\n')
    assert original_of(applied)["metadata"]["namespace"] == "default"
    assert last_applied_json({"metadata": {"annotations": {"a": "<b>"}}}) == (
        '{"metadata":{"annotations":{"a":"\\u003cb\\u003e"}}}\n')


def _live(applied):
    """The stored object: the applied manifest plus what the server and others added."""
    live = json.loads(json.dumps(applied))
    live["metadata"].update({"uid": "u", "resourceVersion": "9", "creationTimestamp": "2026-01-01T00:00:00Z"})
    live["metadata"]["annotations"]["scheduler.example/note"] = "kept"
    live["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    live["spec"]["nodeName"] = "node-1"
    live["status"] = {"phase": "Running"}
    return live


def test_three_way_patch_unchanged_changed_and_removed():
    first = with_last_applied(MANIFEST, "default")
    live = _live(first)
    assert three_way_patch(original_of(live), with_last_applied(MANIFEST, "default"), live) == {}

    changed = json.loads(json.dumps(MANIFEST))
    changed["metadata"]["labels"]["tier"] = "back"
    changed["spec"]["containers"][0]["image"] = "nginx:1.26"
    patch = three_way_patch(original_of(live), with_last_applied(changed, "default"), live)
    assert patch["metadata"]["labels"] == {"tier": "back"}
    assert patch["spec"] == {"$setElementOrder/containers": [{"name": "nginx"}],
                             "containers": [{"name": "nginx", "image": "nginx:1.26"}]}
    after = strategic_merge_patch(live, patch)
    assert after["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent", "fields others set are kept"
    assert after["metadata"]["annotations"]["scheduler.example/note"] == "kept"

    # Dropped from the manifest → deleted (the label), but only what the last apply had set.
    dropped = json.loads(json.dumps(changed))
    del dropped["metadata"]["labels"]["app"]
    live2 = strategic_merge_patch(live, patch)
    patch2 = three_way_patch(original_of(live2), with_last_applied(dropped, "default"), live2)
    assert patch2["metadata"]["labels"] == {"app": None}
    assert "nodeName" not in json.dumps(patch2)


def test_three_way_patch_removes_a_container_by_merge_key():
    two = json.loads(json.dumps(MANIFEST))
    two["spec"]["containers"].append({"name": "side", "image": "busybox"})
    live = _live(with_last_applied(two, "default"))
    patch = three_way_patch(original_of(live), with_last_applied(MANIFEST, "default"), live)
    assert {"name": "side", "$patch": "delete"} in patch["spec"]["containers"]
    assert [c["name"] for c in strategic_merge_patch(live, patch)["spec"]["containers"]] == ["nginx"]


def test_non_canonical_quantity_is_configured_every_time_as_in_kubernetes():
    """kubernetes/kubernetes#66450: "0.5" is stored as "500m", so every apply sends it again."""
    half = json.loads(json.dumps(MANIFEST))
    half["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "0.5"
    live = _live(with_last_applied(half, "default"))
    live["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"
    patch = three_way_patch(original_of(live), with_last_applied(half, "default"), live)
    assert patch["spec"]["containers"] == [{"name": "nginx", "resources": {"requests": {"cpu": "0.5"}}}]
