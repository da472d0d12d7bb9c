"""Where and how objects live in etcd: kube-apiserver's layout.

One key per object, `<prefix><resource>/<namespace>/<name>` (`<prefix><resource>/<name>` for cluster-scoped
objects), the object as JSON. The stored JSON carries no `resourceVersion`: an object's resourceVersion is
the etcd mod revision of its key, set when it is read back (`decode`), as kube-apiserver's etcd3 storage
does. Used by the watch cache and the transaction planner of `hacluster.etcd`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hacluster.model import resources

Obj = dict[str, Any]

def leader_key(prefix: str) -> bytes:
    """The leadership key of the leader-only loops (value: the master id), attached to its holder's lease:
    `/hacluster/leader-loops` for the default prefix; clusters sharing one etcd under different prefixes
    elect apart."""
    tail = prefix.strip("/").replace("/", "-")
    return b"/hacluster/leader-loops" + (b"" if tail == "registry" else f"-{tail}".encode())


BARRIER_KEY = b"/hacluster/barrier"
"""Never written: a linearizable read of it gives etcd's current revision (the read barrier)."""

_encoder = msgspec.json.Encoder()


def object_key(prefix: str, plural: str, store_key: str) -> bytes:
    """The etcd key of the object `store_key` (`resources.object_key`: "ns/name" or "name") of `plural`."""
    return f"{prefix}{plural}/{store_key}".encode()


def split_key(prefix: str, key: bytes) -> tuple[str, str] | None:
    """(plural, store key) of an object key, or None for a key outside the objects' layout."""
    text = key.decode(errors="replace")
    if not text.startswith(prefix):
        return None
    plural, sep, rest = text[len(prefix):].partition("/")
    if not sep or not rest or plural not in resources.BY_PLURAL:
        return None
    return plural, rest


def encode(obj: Obj) -> bytes:
    """The stored JSON of `obj`: everything but `metadata.resourceVersion` (the key's mod revision is)."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return _encoder.encode(obj)


def decode(value: bytes, mod_revision: int) -> Obj:
    """The object stored as `value` at `mod_revision` (a plain, mutable dict; ValueError if not an object)."""
    obj = msgspec.json.decode(value)
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise ValueError("stored value is not a Kubernetes object")
    obj["metadata"]["resourceVersion"] = str(mod_revision)
    return obj
