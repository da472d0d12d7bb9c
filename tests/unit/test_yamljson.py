"""YAML bodies and manifests read as Kubernetes reads them: JSON values only, or a clear error."""

import pytest
import yaml

from hacluster.model import yamljson


def test_timestamps_stay_text_and_keys_become_strings():
    doc = yamljson.load("a: 2024-01-01\nb: 2024-01-01 10:00:00\nkeys: {1: one, true: yes, null: none, 1.5: x}\n")
    assert doc == {"a": "2024-01-01", "b": "2024-01-01 10:00:00",
                   "keys": {"1": "one", "true": True, "null": "none", "1.5": "x"}}


def test_explicit_tags_get_their_json_form():
    assert yamljson.load("d: !!timestamp 2024-01-01\nb: !!binary aGk=\n") == {"d": "2024-01-01", "b": "aGk="}


def test_merge_keys_and_multiple_documents():
    docs = list(yamljson.load_all("base: &b {p: 1}\nm:\n  <<: *b\n  q: 2\n---\nkind: Pod\n"))
    assert docs == [{"base": {"p": 1}, "m": {"p": 1, "q": 2}}, {"kind": "Pod"}]


@pytest.mark.parametrize("text, where", [
    ("a: .inf", "a: inf"), ("a: [1, .nan]", "a[1]: nan"), ("s: !!set {x}", "s: a YAML set"),
    ("? [1, 2]\n: x", "mapping key of type list"),
])
def test_values_without_a_json_form_are_errors(text, where):
    with pytest.raises(yamljson.YAMLJSONError, match=where.replace("[", r"\[").replace("]", r"\]")):
        yamljson.load(text)


def test_malformed_yaml_is_pyyamls_error():
    with pytest.raises(yaml.YAMLError):
        yamljson.load("a: [1, 2")
