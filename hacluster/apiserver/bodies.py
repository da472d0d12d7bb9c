"""Request bodies decoded defensively: what a JSON or YAML parser can be made to do by a hostile body is
answered with a 400 `Status` naming the problem, never a 500 or a stalled master.

Called by the API server's `BodyDecoder.read_body` (`hacluster.apiserver.decode`) for every write path.
Beyond well-formedness (msgspec is strict: no NaN or Infinity literals, no trailing garbage) it refuses:
- invalid UTF-8 and unpaired surrogate escapes (the Raft log and every client need valid UTF-8);
- nesting deeper than `MAX_DEPTH` (the validators and encoders recurse; Python's stack does not grow);
- numbers outside what Kubernetes' Go types hold: floats overflowing to infinity (`1e400`), integers
  outside int64/uint64;
- duplicate keys in one object (which of the values a parser keeps differs between parsers: the object
  stored could differ from the one the client's tools show);
- YAML whose aliases expand past `MAX_YAML_NODES` nodes (a "billion laughs" bomb).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import yaml

from hacluster.model import errors as E
from hacluster.model import yamljson

MAX_DEPTH = 100
MAX_YAML_NODES = 200_000
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def decode_json(raw: bytes) -> Any:
    """The JSON value of a body; raises `E.BadRequest` with the reason when it is not acceptable."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.ValidationError as exc:  # e.g. "Number out of range"
        raise E.BadRequest(f"couldn't get version/kind; json parse error: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise E.BadRequest(f"couldn't get version/kind; json parse error: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise E.BadRequest(f"couldn't get version/kind; json parse error: invalid UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise E.BadRequest(f"couldn't get version/kind; json parse error: nesting deeper than {MAX_DEPTH} "
                           "levels") from exc
    check_value(value)
    _refuse_duplicate_keys(raw)
    return value


def decode_yaml(raw: bytes) -> Any:
    """The JSON value of a YAML body (as Kubernetes converts it); raises `E.BadRequest` when not acceptable."""
    try:
        _check_yaml_size(yaml.compose(raw, Loader=yaml.SafeLoader))
        value = yamljson.load(raw)
    except (yaml.YAMLError, yamljson.YAMLJSONError) as exc:
        raise E.BadRequest(f"error converting YAML to JSON: {exc}") from exc
    except RecursionError as exc:
        raise E.BadRequest(f"error converting YAML to JSON: nesting deeper than {MAX_DEPTH} levels") from exc
    except UnicodeDecodeError as exc:
        raise E.BadRequest(f"error converting YAML to JSON: invalid UTF-8: {exc.reason}") from exc
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Depth, number range and string validity of a decoded value (an explicit stack: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            if depth > MAX_DEPTH:
                raise _too_deep()
            for k, item in v.items():
                _check_string(k)
                stack.append((item, depth + 1))
        elif isinstance(v, list):
            if depth > MAX_DEPTH:
                raise _too_deep()
            stack.extend((item, depth + 1) for item in v)
        elif isinstance(v, str):
            _check_string(v)
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int):
            if not _INT_MIN <= v <= _INT_MAX:
                raise E.BadRequest(f"couldn't get version/kind; json parse error: number {_abbreviated(v)} is "
                                   "out of range (64-bit integers only)")
        elif isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            raise E.BadRequest("couldn't get version/kind; json parse error: number out of range")


def _check_string(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise E.BadRequest("couldn't get version/kind; json parse error: string holds an unpaired surrogate "
                           f"(\\u{ord(s[exc.start]):04x})") from exc


def _too_deep() -> E.BadRequest:
    return E.BadRequest(f"couldn't get version/kind; json parse error: nesting deeper than {MAX_DEPTH} levels")


def _abbreviated(n: int) -> str:
    text = str(n)
    return text if len(text) <= 30 else f"{text[:12]}…({len(text)} digits)"


def _refuse_duplicate_keys(raw: bytes) -> None:
    """msgspec keeps the last of duplicate keys silently; the standard parser's pairs hook sees them all.
    Runs only on a body msgspec accepted and `check_value` bounded in depth."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _ in items:
            if k in seen:
                raise E.BadRequest(f'couldn\'t get version/kind; json parse error: duplicate field "{k}"')
            seen.add(k)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)


def _check_yaml_size(root: yaml.Node | None) -> None:
    """Count nodes as the aliases will expand them, and the depth, before anything is built."""
    if root is None:
        return
    count = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise E.BadRequest(f"error converting YAML to JSON: the document expands to more than {MAX_YAML_NODES} "
                               "nodes (excessive aliasing)")
        if isinstance(node, yaml.SequenceNode):
            if depth > MAX_DEPTH:
                raise _too_deep()
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            if depth > MAX_DEPTH:
                raise _too_deep()
            for k, v in node.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
