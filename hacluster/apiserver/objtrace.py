"""What only the API server knows about each write of an object: who asked, on which master, when it was
proposed, how long Raft took to commit it, and the term and commit index the master saw when it answered.

Kept by the API server (`ApiServer._store_propose` records every write it proposes) and served at
`/debug/trace/{resource}/{namespace}/{name}` ("_" for cluster-scoped objects); read by `hacluster trace pod`
and the dashboard's flow view, which merge the traces of every master (each master knows only the writes
it accepted). Bounded: the `objects_max` most recently written objects, `writes_max` writes each.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from hacluster.model import commands as cmds

OBJECTS_MAX = 2000
WRITES_MAX = 8
CLUSTER_SCOPED = "_"


def object_key(command: cmds.AnyCommand) -> tuple[str, str, str] | None:
    """(resource, namespace or "_", name) of the object a command writes; None for commands that write no
    one object (barriers, batches, leader elections)."""
    resource = getattr(command, "resource", "pods" if isinstance(command, cmds.Bind) else None)
    if not isinstance(resource, str):
        return None
    name = getattr(command, "name", None)
    obj = getattr(command, "obj", None)
    if name is None and isinstance(obj, dict):
        name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        return None
    return resource, getattr(command, "namespace", "") or CLUSTER_SCOPED, name


class ObjectTraces:
    """Bounded per-object write records (least recently written objects are forgotten first)."""

    def __init__(self, objects_max: int = OBJECTS_MAX, writes_max: int = WRITES_MAX) -> None:
        self.objects_max = objects_max
        self.writes_max = writes_max
        self._by_key: OrderedDict[tuple[str, str, str], deque[dict[str, Any]]] = OrderedDict()

    def record(self, key: tuple[str, str, str], entry: dict[str, Any]) -> None:
        writes = self._by_key.pop(key, None) or deque(maxlen=self.writes_max)
        writes.append(entry)
        self._by_key[key] = writes
        while len(self._by_key) > self.objects_max:
            self._by_key.popitem(last=False)

    def get(self, key: tuple[str, str, str]) -> list[dict[str, Any]]:
        return list(self._by_key.get(key) or ())
