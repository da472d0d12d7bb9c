"""The three patch formats of the Kubernetes API: JSON merge patch, strategic merge patch, JSON patch.

Called by the PATCH handler: it reads the stored object, applies the patch here (pure functions on
plain JSON data, never touching their inputs) and proposes the result as a compare-and-set update.
A patch that cannot be applied raises `PatchError`, which the handler answers with 400 or 422.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

JSON = Any

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")

# patchMergeKey of the lists Kubernetes merges element-wise (from the API types' struct tags).
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "conditions": "type",
    "imagePullSecrets": "name", "ownerReferences": "uid", "taints": "key", "addresses": "type",
    "hostAliases": "ip", "ports": "containerPort", "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name", "readinessGates": "conditionType", "schedulingGates": "name",
}
# Lists of scalars merged as sets (patchStrategy "merge").
MERGED_PRIMITIVE_LISTS = {"finalizers"}


class PatchError(ValueError):
    """A patch that does not apply; `code` 400 for a malformed patch, 422 for a failed `test`/path."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- JSON merge patch
def merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# ----------------------------------------------------------------------- strategic merge patch
def strategic_merge_patch(target: JSON, patch: JSON) -> JSON:
    """Kubernetes' strategic merge patch for the fields hacluster serves (containers merged by name …)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, JSON], patch: dict[str, JSON]) -> dict[str, JSON]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    orders: dict[str, list[JSON]] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in (v or [])]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            cur = result.get(k)
            merged = _smp_map(cur if isinstance(cur, dict) else {}, v)
            if v.get("$patch") == "delete":
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _smp_list(k, result.get(k), v)
        else:
            result[k] = v
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(field, result[field], order)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(field: str, current: JSON, patch: list[JSON]) -> list[JSON]:
    key = MERGE_KEYS.get(field)
    if key is None or not isinstance(current, list):
        if field in MERGED_PRIMITIVE_LISTS and isinstance(current, list):
            out = list(current)
            for x in patch:
                if x not in out:
                    out.append(x)
            return out
        if any(isinstance(x, dict) and x.get("$patch") for x in patch):
            return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        return copy.deepcopy(patch)
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    out = [copy.deepcopy(x) for x in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {key}")
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map({}, item))
        else:
            out[idx] = _smp_map(out[idx], item)
    return out


def _apply_order(field: str, items: list[JSON], order: list[JSON]) -> list[JSON]:
    key = MERGE_KEYS.get(field)

    def ident(x: JSON) -> JSON:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) for o in order]
    ranked = {w: i for i, w in enumerate(wanted) if isinstance(w, (str, int, float))}
    in_order = sorted((x for x in items if ident(x) in ranked), key=lambda x: ranked[ident(x)])
    rest = [x for x in items if ident(x) not in ranked]
    return in_order + rest


# ----------------------------------------------------------------------------------- JSON patch
def json_patch(target: JSON, operations: JSON) -> JSON:
    """RFC 6902 (add, remove, replace, move, copy, test) with RFC 6901 pointers."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"json patch operation {i}: needs \"op\" and \"path\"")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(_need(op, "value", i)))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(_need(op, "value", i)))
        elif kind == "move":
            doc, value = _remove(doc, _need(op, "from", i))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, _need(op, "from", i))))
        elif kind == "test":
            if _get(doc, path) != _need(op, "value", i):
                raise PatchError(f"testing value {path} failed", code=422)
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


def _need(op: dict[str, JSON], field: str, i: int) -> JSON:
    if field not in op:
        raise PatchError(f"json patch operation {i} ({op.get('op')}): missing \"{field}\"")
    return op[field]


def _tokens(path: JSON) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(f"invalid JSON pointer {json.dumps(path)}: must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _parent(doc: JSON, path: str) -> tuple[JSON, str]:
    toks = _tokens(path)
    if not toks:
        raise PatchError("the whole document cannot be the target here")
    cur = doc
    for t in toks[:-1]:
        cur = _step(cur, t, path)
    return cur, toks[-1]


def _step(cur: JSON, tok: str, path: str) -> JSON:
    if isinstance(cur, dict):
        if tok not in cur:
            raise PatchError(f"doc is missing path: {path}", code=422)
        return cur[tok]
    if isinstance(cur, list):
        idx = _index(tok)
        if idx is None or idx >= len(cur):
            raise PatchError(f"doc is missing path: {path}", code=422)
        return cur[idx]
    raise PatchError(f"doc is missing path: {path}", code=422)


def _index(tok: str) -> int | None:
    """An array index as RFC 6901 writes one ("0", "12"; no sign, no spaces), else None."""
    return int(tok) if _ARRAY_INDEX.fullmatch(tok) else None


def _get(doc: JSON, path: str) -> JSON:
    cur = doc
    for t in _tokens(path):
        cur = _step(cur, t, path)
    return cur


def _add(doc: JSON, path: str, value: JSON) -> JSON:
    if path == "":
        return value
    parent, last = _parent(doc, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            idx = _index(last)
            if idx is None:
                raise PatchError(f"invalid array index {last!r} in {path}")
            if idx > len(parent):
                raise PatchError(f"add operation does not apply: index {idx} out of bounds in {path}", code=422)
            parent.insert(idx, value)
    else:
        raise PatchError(f"doc is missing path: {path}", code=422)
    return doc


def _remove(doc: JSON, path: str) -> tuple[JSON, JSON]:
    parent, last = _parent(doc, path)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing path: {path}", code=422)
        return doc, parent.pop(last)
    if isinstance(parent, list):
        idx = _index(last)
        if idx is None or idx >= len(parent):
            raise PatchError(f"doc is missing path: {path}", code=422)
        return doc, parent.pop(idx)
    raise PatchError(f"doc is missing path: {path}", code=422)


def apply_patch(content_type: str, target: JSON, patch: JSON) -> JSON:
    """Dispatch on the PATCH request's content type."""
    if content_type == MERGE_PATCH:
        return merge_patch(target, patch)
    if content_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    raise PatchError(f"unsupported patch type {content_type!r}", code=415)
