"""The three patch formats: JSON merge patch, strategic merge patch (kubectl apply), JSON patch."""

import pytest

from hacluster.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch

POD = {"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
       "spec": {"containers": [{"name": "c1", "image": "i1", "env": [{"name": "E", "value": "1"}]},
                               {"name": "c2", "image": "i2"}]}}


def test_merge_patch_replaces_lists_and_deletes_with_null():
    out = merge_patch(POD, {"metadata": {"labels": {"a": None, "c": "3"}},
                            "spec": {"containers": [{"name": "c9", "image": "z"}]}})
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["containers"] == [{"name": "c9", "image": "z"}]
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}, "input untouched"


def test_strategic_merge_merges_containers_by_name():
    out = strategic_merge_patch(POD, {"spec": {"containers": [{"name": "c2", "image": "new"},
                                                              {"name": "c3", "image": "i3"}]}})
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [("c1", "i1"), ("c2", "new"), ("c3", "i3")]
    assert out["spec"]["containers"][0]["env"] == [{"name": "E", "value": "1"}]


def test_strategic_merge_directives():
    out = strategic_merge_patch(POD, {
        "spec": {"containers": [{"name": "c1", "$patch": "delete"}],
                 "$setElementOrder/containers": [{"name": "c2"}]},
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["y"]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2"]
    assert out["metadata"]["finalizers"] == ["y"]
    out = strategic_merge_patch(POD, {"spec": {"containers": [{"name": "only", "image": "o"}, {"$patch": "replace"}]}})
    assert out["spec"]["containers"] == [{"name": "only", "image": "o"}]


def test_strategic_merge_requires_merge_key():
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        strategic_merge_patch(POD, {"spec": {"containers": [{"image": "x"}]}})


def test_json_patch_operations():
    out = json_patch(POD, [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "i9"},
        {"op": "add", "path": "/metadata/labels/c", "value": "3"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "c3", "image": "i3"}},
        {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/d"},
        {"op": "move", "from": "/metadata/labels/d", "path": "/metadata/labels/e"},
        {"op": "test", "path": "/metadata/name", "value": "p"},
        {"op": "add", "path": "/metadata/labels/x~1y", "value": "slash"},
    ])
    assert out["spec"]["containers"][0]["image"] == "i9"
    assert out["metadata"]["labels"] == {"b": "2", "c": "3", "e": "2", "x/y": "slash"}
    assert out["spec"]["containers"][2]["name"] == "c3"


def test_json_patch_failures():
    with pytest.raises(PatchError) as e:
        json_patch(POD, [{"op": "test", "path": "/metadata/name", "value": "q"}])
    assert e.value.code == 422
    with pytest.raises(PatchError):
        json_patch(POD, [{"op": "remove", "path": "/nope"}])
    with pytest.raises(PatchError):
        json_patch(POD, {"op": "add"})
    with pytest.raises(PatchError):
        json_patch(POD, [{"op": "frobnicate", "path": "/a"}])


@pytest.mark.parametrize("op", [
    {"op": "remove", "path": "/spec/containers/-1"},       # RFC 6901 has no negative index (Python would pop the last)
    {"op": "remove", "path": "/spec/containers/+0"},
    {"op": "replace", "path": "/spec/containers/ 1", "value": {}},
    {"op": "add", "path": "/spec/containers/01", "value": {}},
    {"op": "add", "path": None, "value": 1},                 # a pointer must be a string
    {"op": "copy", "from": {"a": 1}, "path": "/metadata/labels/c"},
])
def test_json_patch_refuses_malformed_pointers(op):
    with pytest.raises(PatchError):
        json_patch(POD, [op])


def test_json_patch_array_indexes():
    out = json_patch(POD, [{"op": "add", "path": "/spec/containers/2", "value": {"name": "c3"}},
                           {"op": "remove", "path": "/spec/containers/0"}])
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2", "c3"]
