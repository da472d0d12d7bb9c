"""Label and field selectors parse and match as Kubernetes' do."""

import pytest

from hacluster.format.selectors import label_selector_string
from hacluster.model.selectors import (
    SelectorError,
    label_selector_matches,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize("sel,expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app!=db", True),
    ("app in (web,db)", True),
    ("app notin (web,db)", False),
    ("app notin (db)", True),
    ("tier", True),
    ("!tier", False),
    ("!missing", True),
    ("missing", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("missing!=x", True),
    ("app in (web), env in (prod,dev)", True),
])
def test_label_selector(sel, expected):
    assert parse_label_selector(sel).matches(LABELS) is expected


@pytest.mark.parametrize("bad", ["app in web", "app in (", "=x", "app in ()", "a b"])
def test_label_selector_errors(bad):
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_field_selectors_per_resource():
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Running"}}
    assert parse_field_selector("spec.nodeName=n1", "pods").matches(pod)
    assert not parse_field_selector("spec.nodeName=n2", "pods").matches(pod)
    assert parse_field_selector("status.phase!=Pending,metadata.name=p", "pods").matches(pod)
    assert parse_field_selector("spec.nodeName=", "pods").matches({"metadata": {"name": "q"}, "spec": {}})
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default",
                                                        "uid": "u1"}}
    sel = parse_field_selector("involvedObject.name=p,involvedObject.namespace=default,involvedObject.uid=u1",
                               "events")
    assert sel.matches(ev)
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=x", "events")


def test_label_selector_objects():
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In",
                                                                "values": ["prod", "dev"]}]}
    assert label_selector_matches(sel, LABELS)
    assert not label_selector_matches(sel, {"app": "web", "env": "qa"})
    # The query-string form sorts each requirement's values, as apimachinery's Requirement.String() does.
    assert label_selector_string(sel) == "app=web,env in (dev,prod)"
