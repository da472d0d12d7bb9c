"""Reads of stored objects: get and list (with selectors, paging and tables), each behind a linearizable
barrier unless the client asked for `resourceVersion=0` (a possibly stale local read, as Kubernetes' watch
cache serves it).

Used by the API server's routing (`hacluster.apiserver.routing`); the watch stream, the writes and the log
proxy use its barrier (`Reads.consistent`) and table printing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hacluster.apiserver.auth import User, authorize
from hacluster.apiserver.request import Target, int_param, json_response, selectors, wants_table
from hacluster.apiserver.scale import scale_of
from hacluster.config import ClusterConfig
from hacluster.format.tables import TABLE_BUILDERS, default_table
from hacluster.model import errors as E
from hacluster.model import resources
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import StoreState

Obj = dict[str, Any]


class Reads:
    """GET of one object or a list, and the consistent-read barrier every read takes."""

    def __init__(self, cfg: ClusterConfig, store: ReplicatedStore, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock

    async def consistent(self, request: web.Request) -> None:
        """Linearizable unless the client asked for resourceVersion=0 (any, possibly stale, state). The
        barrier is a write under the hood: its refusal is reworded for the read it guards."""
        if request.query.get("resourceVersion", "") == "0":
            return
        try:
            await self.store.linearizable_barrier()
        except (E.Unavailable, E.Timeout) as err:
            message = err.message.removesuffix("; the write was not made")
            message = message.replace("; the write may or may not have been committed", "")
            raise type(err)(f"{message}; cannot serve a consistent read",
                            retry_after_s=err.retry_after_s) from err

    async def get_object(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "get", t.res, t.namespace, t.name, t.subresource)
        await self.consistent(request)
        obj = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
        if obj is None:
            raise E.not_found(t.res.plural, t.name, t.res.group)
        if t.subresource == "scale":
            return json_response(scale_of(obj))
        table = wants_table(request)
        if table:
            return json_response(self.table(t.res.plural, [obj], str(obj["metadata"]["resourceVersion"]),
                                             request))
        return json_response(obj)

    async def list_objects(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "list", t.res, t.namespace, "")
        q = request.query
        labels, fields = selectors(q, t.res.plural)
        await self.consistent(request)
        limit = int_param(q, "limit", 0)
        page_max = self.cfg.api.list_limit_max
        limit = min(limit, page_max) if limit > 0 else page_max
        start_key, list_rv = "", None
        if q.get("continue"):
            start_key, list_rv = decode_continue(q["continue"])

        # Under the store lock (which the Raft thread takes to apply) only the bucket's entries are taken, a
        # C-speed shallow copy; sorting and selecting run after it (stored objects are read-only).
        revision, entries = self.store.read(lambda s: (s.revision, object_entries(s, t.res.plural)))
        prefix = t.namespace + "/" if t.namespace else ""
        items: list[Obj] = []
        more = False
        remaining = 0
        for k, obj in sorted(entries, key=entry_key):
            if not (k.startswith(prefix) and k > start_key):
                continue
            if not (labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)):
                continue
            if len(items) >= limit:
                more = True
                remaining += 1
                continue
            items.append(obj)
        rv = str(list_rv if list_rv is not None else revision)
        meta: Obj = {"resourceVersion": rv}
        if more:
            last_key = resources.object_key(items[-1]["metadata"].get("namespace", "") if t.res.namespaced else "",
                                            items[-1]["metadata"]["name"])
            meta["continue"] = encode_continue(last_key, int(rv))
            meta["remainingItemCount"] = remaining
        if wants_table(request):
            table = self.table(t.res.plural, items, rv, request)
            if more:
                table["metadata"].update({k: v for k, v in meta.items() if k != "resourceVersion"})
            return json_response(table)
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version, "metadata": meta,
                              "items": items})

    def table(self, plural: str, objs: list[Obj], rv: str, request: web.Request) -> Obj:
        include = request.query.get("includeObject", "Metadata")
        builder = TABLE_BUILDERS.get(plural, default_table)
        table: Obj = builder(objs, now_dt(self.clock), include_object=include, resource_version=rv)
        return table


def object_entries(s: StoreState, plural: str) -> list[tuple[str, Obj]]:
    """(key, object) of one resource, unsorted: what a reader copies while it holds the store lock."""
    return list((s.objects.get(plural) or {}).items())


def entry_key(entry: tuple[str, Obj]) -> str:
    return entry[0]


def encode_continue(last_key: str, rv: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"start": last_key, "rv": rv}).encode()).decode()


def decode_continue(token: str) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        return str(data["start"]), int(data["rv"])
    except (ValueError, KeyError, TypeError) as exc:
        raise E.BadRequest(f"continue key is not valid: {exc}") from exc


def now_dt(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)
