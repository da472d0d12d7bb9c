"""Label and field selectors: the `labelSelector` / `fieldSelector` query strings and `LabelSelector` objects.

Used by the API server for list and watch filtering, by controllers (a ReplicaSet's selector) and by the
CLI (`-l`). Parsing errors raise `SelectorError` with Kubernetes' wording; the API server answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


class SelectorError(ValueError):
    """A selector string that does not parse, worded as Kubernetes words it."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op == "=":
            return has and labels[self.key] == self.values[0]
        if self.op == "!=":
            return not has or labels[self.key] != self.values[0]
        if self.op == "in":
            return has and labels[self.key] in self.values
        if self.op == "notin":
            return not has or labels[self.key] not in self.values
        return False


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_TOKEN_RE = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s=!(),]+)")
_KEY_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_./]*)?[A-Za-z0-9]$")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SelectorError(f"unable to parse requirement: found '{text[pos:]}'")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k` as Kubernetes' labels.Parse does."""
    if not text or not text.strip():
        return LabelSelector(())
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_key(tok: str) -> str:
        if not _KEY_RE.match(tok):
            raise SelectorError(f"unable to parse requirement: invalid label key \"{tok}\"")
        return tok

    while i < len(toks):
        tok = toks[i]
        if tok == "!":
            if i + 1 >= len(toks):
                raise SelectorError("unable to parse requirement: found '', expected: identifier")
            reqs.append(Requirement(expect_key(toks[i + 1]), "!"))
            i += 2
        else:
            key = expect_key(tok)
            i += 1
            nxt = toks[i] if i < len(toks) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                if i + 1 >= len(toks) or toks[i + 1] in (",", "(", ")"):
                    value = ""
                    i += 1
                else:
                    value = toks[i + 1]
                    i += 2
                reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
            elif nxt in ("in", "notin"):
                if i + 1 >= len(toks) or toks[i + 1] != "(":
                    found = toks[i + 1] if i + 1 < len(toks) else ""
                    raise SelectorError(f"unable to parse requirement: found '{found}', expected: '('")
                i += 2
                values: list[str] = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        values.append(toks[i])
                    i += 1
                if i >= len(toks):
                    raise SelectorError("unable to parse requirement: found '', expected: ')'")
                i += 1
                if not values:
                    raise SelectorError(f"for '{nxt}', 'notin' operators, values set can't be empty")
                reqs.append(Requirement(key, nxt, tuple(values)))
            else:
                raise SelectorError(f"unable to parse requirement: found '{nxt}', expected: "
                                    "'=', '!=', '==', 'in', notin'")
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    return LabelSelector(tuple(reqs))


def label_selector_from_object(sel: Obj | None) -> LabelSelector:
    """A `metav1.LabelSelector` object (matchLabels + matchExpressions) as requirements."""
    if not sel:
        return LabelSelector(())
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in sel.get("matchExpressions") or []:
        reqs.append(Requirement(e.get("key", ""), ops.get(e.get("operator", ""), "in"), tuple(e.get("values") or ())))
    return LabelSelector(tuple(reqs))


def label_selector_matches(sel: Obj | None, labels: dict[str, str] | None) -> bool:
    return label_selector_from_object(sel).matches(labels)


# ------------------------------------------------------------------------------------ fields
def _path(*keys: str) -> Callable[[Obj], str]:
    def get(obj: Obj) -> str:
        cur: Any = obj
        for k in keys:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(k)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)
    return get


COMMON_FIELDS = {"metadata.name": _path("metadata", "name"), "metadata.namespace": _path("metadata", "namespace")}
FIELDS_BY_RESOURCE: dict[str, dict[str, Callable[[Obj], str]]] = {
    "pods": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "nodes": {"spec.unschedulable": _path("spec", "unschedulable")},
    "events": {
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "namespaces": {"status.phase": _path("status", "phase")},
    "replicasets": {"status.replicas": _path("status", "replicas")},
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str
    getter: Callable[[Obj], str]

    def matches(self, obj: Obj) -> bool:
        v = self.getter(obj)
        return v == self.value if self.op == "=" else v != self.value


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...]

    def matches(self, obj: Obj) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def value_of(self, field: str) -> str | None:
        """The value a `field=value` requirement asks for (used to index spec.nodeName watches)."""
        for r in self.requirements:
            if r.field == field and r.op == "=":
                return r.value
        return None


def parse_field_selector(text: str | None, plural: str) -> FieldSelector:
    """Parse `metadata.name=x,spec.nodeName!=y`; an unsupported field is Kubernetes' 400 error."""
    if not text or not text.strip():
        return FieldSelector(())
    supported = dict(COMMON_FIELDS)
    supported.update(FIELDS_BY_RESOURCE.get(plural, {}))
    reqs = []
    for part in _split_unescaped(text):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        getter = supported.get(field)
        if getter is None:
            raise SelectorError(f'field label not supported: {field}')
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", value.replace("\\,", ","), getter))
    return FieldSelector(tuple(reqs))


def _split_unescaped(text: str) -> list[str]:
    parts, cur, esc = [], "", False
    for ch in text:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts
