"""Hostile request bodies (`hacluster.apiserver.bodies`): each is a 400 naming its problem, valid ones pass."""

import json

import pytest

from hacluster.apiserver import bodies
from hacluster.model.errors import BadRequest

HOSTILE_JSON = {
    b"[" * 100_000 + b"]" * 100_000: "nesting",
    b'{"a":' * 150 + b"1" + b"}" * 150: "nesting deeper than 100",
    b'{"a": 1e400}': "out of range",
    b'{"a": -1e400}': "out of range",
    b'{"a": 123456789012345678901234567890}': "out of range",
    b'{"a": NaN}': "malformed",
    b'{"a": Infinity}': "malformed",
    b'{"a": 1, "a": 2}': 'duplicate field "a"',
    b'{"metadata": {"name": "x", "name": "y"}}': 'duplicate field "name"',
    b'{"a": "\xff\xfe"}': "",
    b'{"a": "\\ud800"}': "",
    b'{"\\udfff": 1}': "",
    b'{"a": 1} trailing': "",
    b'{"a": 1': "",
    b"\x00\x01\x02": "",
}


@pytest.mark.parametrize("raw", list(HOSTILE_JSON), ids=range(len(HOSTILE_JSON)))
def test_hostile_json_is_a_bad_request(raw):
    with pytest.raises(BadRequest) as err:
        bodies.decode_json(raw)
    assert err.value.code == 400 and HOSTILE_JSON[raw] in err.value.message


def test_valid_json_passes_unchanged():
    doc = {"a": [1, -2**63, 2**64 - 1, 1.5e308, "é ✓", None, True], "b": {"c": {"d": [{}]}}}
    assert bodies.decode_json(json.dumps(doc).encode()) == doc
    deep = {"a": 1}
    for _ in range(bodies.MAX_DEPTH - 1):
        deep = {"a": deep}
    assert bodies.decode_json(json.dumps(deep).encode()) == deep


BOMB = b"""a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.mark.parametrize("raw, why", [
    (BOMB, "excessive aliasing"),
    (b"a: " + b"[" * 5000 + b"]" * 5000, "nesting"),
    (b"a: " + b"{b: " * 150 + b"1" + b"}" * 150, "nesting deeper than 100"),
    (b"a: .nan", "no JSON form"),
    (b"a: 1.0e+400", "no JSON form"),
    (b"a: \"\xff\"", ""),
    (b"a: [1, 2", ""),
    (b"a: 123456789012345678901234567890", "out of range"),
])
def test_hostile_yaml_is_a_bad_request(raw, why):
    with pytest.raises(BadRequest) as err:
        bodies.decode_yaml(raw)
    assert why in err.value.message


def test_valid_yaml_passes():
    assert bodies.decode_yaml(b"a: &x [1, 2]\nb: *x\nc: 2024-01-01\n") == {"a": [1, 2], "b": [1, 2], "c": "2024-01-01"}
