"""Just enough of Kubernetes' protobuf encoding to read the review requests newer kubectl sends as protobuf.

Used by `hacluster.apiserver.reviews`: kubectl 1.32's `auth can-i` and `auth whoami` post their
SelfSubjectAccessReview / SelfSubjectRulesReview / SelfSubjectReview as `application/vnd.kubernetes.protobuf`
and do not retry as JSON. A body is the 4-byte magic `k8s\\0` and a `runtime.Unknown` (typeMeta = 1, raw = 2)
whose `raw` is the object; only the handful of string fields these reviews carry are read (field numbers
from k8s.io/api/authorization/v1/generated.proto). Every other object is still JSON or YAML only: the API
server answers protobuf elsewhere with 415.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"
RESOURCE_ATTRIBUTES = ("namespace", "verb", "group", "version", "resource", "subresource", "name")
NON_RESOURCE_ATTRIBUTES = ("path", "verb")


class ProtobufError(ValueError):
    """Bytes that are not the protobuf this module reads."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(data: bytes) -> dict[int, list[bytes | int]]:
    """The fields of one message: number -> values (bytes for length-delimited, int for varints)."""
    out: dict[int, list[bytes | int]] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            out.setdefault(number, []).append(value)
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ProtobufError("truncated field")
            out.setdefault(number, []).append(data[i:i + n])
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if i > len(data):
            raise ProtobufError("truncated field")
    return out


def _message(f: dict[int, list[bytes | int]], number: int) -> bytes | None:
    values = [v for v in f.get(number, ()) if isinstance(v, bytes)]
    return values[-1] if values else None


def _strings(data: bytes, names: tuple[str, ...]) -> dict[str, str]:
    f = fields(data)
    out = {}
    for number, name in enumerate(names, start=1):
        raw = _message(f, number)
        if raw is not None:
            out[name] = raw.decode("utf-8", errors="replace")
    return out


def decode_envelope(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, object bytes) of a Kubernetes protobuf body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body (no k8s magic)")
    unknown = fields(body[len(MAGIC):])
    type_meta = _message(unknown, 1) or b""
    meta = _strings(type_meta, ("apiVersion", "kind"))
    return meta.get("apiVersion", ""), meta.get("kind", ""), _message(unknown, 2) or b""


def decode_review(body: bytes) -> dict[str, Any]:
    """A SelfSubjectAccessReview, SelfSubjectRulesReview or SelfSubjectReview as its JSON form."""
    api_version, kind, raw = decode_envelope(body)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    spec_bytes = _message(fields(raw), 2) if kind != "SelfSubjectReview" else None
    if spec_bytes is None:
        return obj
    spec = fields(spec_bytes)
    if kind == "SelfSubjectAccessReview":
        out: dict[str, Any] = {}
        resource = _message(spec, 1)
        if resource is not None:
            out["resourceAttributes"] = _strings(resource, RESOURCE_ATTRIBUTES)
        non_resource = _message(spec, 2)
        if non_resource is not None:
            out["nonResourceAttributes"] = _strings(non_resource, NON_RESOURCE_ATTRIBUTES)
        obj["spec"] = out
    elif kind == "SelfSubjectRulesReview":
        obj["spec"] = _strings(spec_bytes, ("namespace",))
    return obj
