"""Request bodies decoded as Go decodes them into Kubernetes' types: what is stored is what Kubernetes would
store, and nothing reaches the Raft log that its encoding cannot carry."""

import pytest

from hacluster.model import commands as cmds
from hacluster.model import schema
from hacluster.model.resources import ALL


def pod_shape():
    return next(r for r in ALL if r.plural == "pods").shape


def test_nulls_as_go_leaves_them():
    body = {"metadata": {"name": "p", "labels": {"a": None}},
            "spec": {"containers": [None, {"name": "c", "ports": [None], "resources": None}],
                     "affinity": None, "nodeName": None},
            "status": {"conditions": [{"type": "Ready", "lastProbeTime": None}]}}
    assert schema.check_shape(body, pod_shape()) == ([], [])
    assert schema.decoded(body, pod_shape()) == {
        "metadata": {"name": "p", "labels": {"a": ""}},
        "spec": {"containers": [{}, {"name": "c", "ports": [{}]}], "nodeName": None},
        "status": {"conditions": [{"type": "Ready", "lastProbeTime": None}]}}


def test_unknown_fields_are_dropped_wherever_they_are():
    body = {"metadata": {"name": "p", "x.y[0]": 1}, "spec": {"containers": [{"name": "c", "a\nb": 2}]}, "z": 3}
    mismatches, unknown = schema.check_shape(body, pod_shape())
    assert not mismatches and len(unknown) == 3
    assert schema.decoded(body, pod_shape()) == {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}


@pytest.mark.parametrize("field, value", [
    ("terminationGracePeriodSeconds", 2**63), ("terminationGracePeriodSeconds", -(2**63) - 1),
    ("priority", 2**31), ("terminationGracePeriodSeconds", 1.5), ("priority", True),
])
def test_integers_out_of_their_go_range_are_type_errors(field, value):
    mismatches, _ = schema.check_shape({"spec": {field: value}}, pod_shape())
    assert len(mismatches) == 1 and mismatches[0].path == f"spec.{field}"


def test_large_numbers_in_untyped_parts_become_floats_and_replicate():
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}],
                                                "volumes": [{"name": "v", "x": 10**30, "y": 2**63 - 1}]}}
    out = schema.decoded(body, pod_shape())
    assert out["spec"]["volumes"] == [{"name": "v", "x": 1e30, "y": 2**63 - 1}]
    cmds.encode_checked(cmds.Create(resource="pods", namespace="default", obj=out))
    with pytest.raises(cmds.CommandEncodingError):
        cmds.encode_checked(cmds.Create(resource="pods", namespace="default", obj=body))
    with pytest.raises(cmds.CommandEncodingError):
        cmds.encode_checked(cmds.Delete(resource="pods", namespace="default", name="p", time="t",
                                        grace_period_s="30"))  # type: ignore[arg-type]
