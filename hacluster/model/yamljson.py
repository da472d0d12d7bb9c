"""YAML read as Kubernetes reads it: converted to JSON (sigs.k8s.io/yaml), so only JSON values come out.

PyYAML alone would hand back dates for unquoted `2024-01-01`, integer or boolean mapping keys, bytes for
`!!binary`, sets and infinities — values that JSON (the API's wire format) and the Raft log encoding cannot
carry. Here timestamps stay the text they were written as, keys become strings, and anything JSON cannot
hold is a `YAMLJSONError` with the path where it was found.
"""

from __future__ import annotations

import base64
import datetime
import math
from collections.abc import Hashable, Iterator
from typing import Any

import yaml


class YAMLJSONError(ValueError):
    """The YAML is well formed but holds a value that has no JSON form."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp type (`2024-01-01` stays a string, as in Go's YAML→JSON) and
    with every mapping key made a string while it is read (else `1` and `true` would be one Python key)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)  # `<<` merge keys, as SafeConstructor does
        mapping: dict[Hashable, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            mapping[_key(key, "")] = self.construct_object(value_node, deep=deep)
        return mapping


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(text: str | bytes) -> Any:
    """One YAML document as JSON values. Raises yaml.YAMLError (malformed) or YAMLJSONError (no JSON form)."""
    return to_json_value(yaml.load(text, Loader=_Loader))  # noqa: S506 - a SafeLoader subclass


def load_all(text: str | bytes) -> Iterator[Any]:
    for doc in yaml.load_all(text, Loader=_Loader):  # noqa: S506 - a SafeLoader subclass
        yield to_json_value(doc)


def to_json_value(value: Any, path: str = "") -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise YAMLJSONError(f"{path or 'the document'}: {value} has no JSON form")
        return value
    if isinstance(value, dict):
        return {_key(k, path): to_json_value(v, f"{path}.{_key(k, path)}" if path else _key(k, path))
                for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.datetime)):  # an explicit !!timestamp
        return value.isoformat()
    if isinstance(value, bytes):  # !!binary: JSON carries bytes as base64, as Go's []byte does
        return base64.b64encode(value).decode()
    raise YAMLJSONError(f"{path or 'the document'}: a YAML {type(value).__name__} has no JSON form")


def _key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, (int, float)) and not (isinstance(key, float) and (math.isnan(key) or math.isinf(key))):
        return str(key)
    raise YAMLJSONError(f"{path or 'the document'}: a mapping key of type {type(key).__name__} has no JSON form")
