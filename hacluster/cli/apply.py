"""Client-side apply, as `kubectl apply` does it: read manifests, remember what was applied in the
`kubectl.kubernetes.io/last-applied-configuration` annotation, and update objects with a three-way strategic
merge patch (last applied → manifest for deletions, live object → manifest for changes).

Pure functions, called by `hacluster apply` and `hacluster delete -f` (`hacluster.cli.kubectl_cmd`). The
patch they compute is the one kubectl sends for the fields hacluster serves, so an object applied with
either tool can be applied again with the other; an empty patch means "unchanged". As with kubectl, a
manifest whose quantities are not in canonical form ("0.5" for "500m") differs from the stored object on
every apply and is reported "configured" each time (kubernetes/kubernetes#66450).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hacluster.apiserver.patch import MERGE_KEYS
from hacluster.cli.kube import LAST_APPLIED, KubeError, go_json_escapes
from hacluster.model import yamljson

Obj = dict[str, Any]
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Manifest:
    """One object of a manifest file, with where it came from (for messages)."""

    obj: Obj
    source: str


def load_manifests(paths: tuple[str, ...], *, recursive: bool = False) -> list[Manifest]:
    """Every object of the given files, directories (their .yaml/.yml/.json files, sorted by name) or "-"
    (stdin); multi-document YAML and `kind: List` are unpacked. Raises KubeError on unreadable input."""
    out: list[Manifest] = []
    for p in paths:
        if p == "-":
            out += _parse(sys.stdin.read(), "STDIN")
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in (path.rglob("*") if recursive else path.iterdir())
                           if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
            if not files:
                raise KubeError(f'error: no objects passed to apply: no .yaml, .yml or .json file in "{p}"')
            for f in files:
                out += _parse(f.read_text(), str(f))
        elif path.exists():
            out += _parse(path.read_text(), p)
        else:
            raise KubeError(f'error: the path "{p}" does not exist')
    return out


def _parse(text: str, source: str) -> list[Manifest]:
    try:
        docs = list(yamljson.load_all(text))
    except (yaml.YAMLError, yamljson.YAMLJSONError) as exc:
        raise KubeError(f'error: error parsing {source}: {exc}') from exc
    out: list[Manifest] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise KubeError(f"error: error parsing {source}: an object must be a mapping, not {type(doc).__name__}")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            out += [Manifest(item, source) for item in doc.get("items") or [] if isinstance(item, dict)]
        else:
            out.append(Manifest(doc, source))
    for m in out:
        if not m.obj.get("kind") or not m.obj.get("apiVersion"):
            raise KubeError(f"error: error validating \"{source}\": error validating data: "
                            f"[apiVersion not set, kind not set]; an object needs both")
        if not (m.obj.get("metadata") or {}).get("name"):
            raise KubeError(f"error: error when retrieving current configuration of a {m.obj['kind']} from "
                            f'"{source}": resource name may not be empty')
    return out


# ------------------------------------------------------------------------------------ last applied
def last_applied_json(obj: Mapping[str, Any]) -> str:
    """The annotation's value exactly as kubectl writes it: the object without the annotation (its
    `annotations` map left in place, empty or not), compact JSON with sorted keys and Go's HTML-safe escapes,
    then a newline. kubectl and `hacluster apply` thus recognise each other's last apply."""
    clean = copy.deepcopy(dict(obj))
    meta = clean.setdefault("metadata", {})
    ann = meta.get("annotations")
    meta["annotations"] = {k: v for k, v in (ann.items() if isinstance(ann, dict) else ()) if k != LAST_APPLIED}
    return go_json_escapes(json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)) + "\n"


def with_last_applied(obj: Mapping[str, Any], namespace: str = "") -> Obj:
    """The manifest as apply sends it: its namespace filled in (as kubectl's builder does) and the
    last-applied annotation set to itself."""
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    if namespace:
        meta.setdefault("namespace", namespace)
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    annotations = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    meta["annotations"] = annotations
    applied = last_applied_json(out)
    annotations[LAST_APPLIED] = applied
    return out


def original_of(live: Mapping[str, Any]) -> Obj | None:
    """The last applied configuration recorded on a live object, or None (never applied)."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


# ----------------------------------------------------------------------------- three-way patch
def three_way_patch(original: Mapping[str, Any] | None, modified: Mapping[str, Any],
                    current: Mapping[str, Any]) -> Obj:
    """The strategic merge patch that turns `current` into `modified`: fields the last apply set and the
    manifest dropped are deleted (null, or `$patch: delete` list items); fields of the manifest that differ
    from the live object are set. `{}` when nothing would change."""
    deletions = _deletions(original or {}, modified)
    delta = _delta(current, modified)
    return _merge(deletions, delta)


def _merge_key(field: str, items: Any) -> str | None:
    key = MERGE_KEYS.get(field)
    if key is None or not isinstance(items, list) or not all(isinstance(i, dict) and key in i for i in items):
        return None
    return key


def _delta(current: Mapping[str, Any], modified: Mapping[str, Any]) -> Obj:
    out: Obj = {}
    for k, want in modified.items():
        have = current.get(k) if isinstance(current, Mapping) else None
        if k not in current:
            out[k] = copy.deepcopy(want)
        elif isinstance(want, dict) and isinstance(have, dict):
            sub = _delta(have, want)
            if sub:
                out[k] = sub
        elif isinstance(want, list) and isinstance(have, list) and _merge_key(k, want) and _merge_key(k, have):
            key = _merge_key(k, want)
            assert key is not None
            items = _delta_list(have, want, key)
            order_have = [i[key] for i in have if any(i[key] == w[key] for w in want)]
            order_want = [w[key] for w in want]
            if items or order_have != [w for w in order_want if w in order_have]:
                out[f"$setElementOrder/{k}"] = [{key: w[key]} for w in want]
                if items:
                    out[k] = items
        elif want != have:
            out[k] = copy.deepcopy(want)
    return out


def _delta_list(have: list[Any], want: list[Any], key: str) -> list[Any]:
    out = []
    for item in want:
        match = next((h for h in have if h.get(key) == item[key]), None)
        if match is None:
            out.append(copy.deepcopy(item))
            continue
        sub = _delta(match, item)
        if sub:
            out.append({key: item[key], **sub})
    return out


def _deletions(original: Mapping[str, Any], modified: Mapping[str, Any]) -> Obj:
    out: Obj = {}
    for k, was in original.items():
        if k not in modified:
            out[k] = None
            continue
        now = modified[k]
        if isinstance(was, dict) and isinstance(now, dict):
            sub = _deletions(was, now)
            if sub:
                out[k] = sub
        elif isinstance(was, list) and isinstance(now, list) and _merge_key(k, was) and _merge_key(k, now):
            key = _merge_key(k, was)
            assert key is not None
            kept = {n[key] for n in now}
            gone = [{key: w[key], "$patch": "delete"} for w in was if w[key] not in kept]
            inner = []
            for w in was:
                match = next((n for n in now if n[key] == w[key]), None)
                if match is not None:
                    sub = _deletions(w, match)
                    if sub:
                        inner.append({key: w[key], **sub})
            if gone or inner:
                out[k] = gone + inner
                out[f"$setElementOrder/{k}"] = [{key: n[key]} for n in now]
    return out


def _merge(a: Obj, b: Obj) -> Obj:
    """Join the deletions patch and the changes patch (lists with a merge key join item by item)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        if k in out and isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v)
        elif k in out and isinstance(out[k], list) and isinstance(v, list) and k in MERGE_KEYS \
                and not k.startswith("$"):
            key = MERGE_KEYS[k]
            merged = copy.deepcopy(out[k])
            for item in v:
                i = next((i for i, m in enumerate(merged) if isinstance(m, dict) and isinstance(item, dict)
                          and m.get(key) == item.get(key)), None)
                if i is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[i] = _merge(merged[i], item)
            out[k] = merged
        else:
            out[k] = copy.deepcopy(v)
    return out
