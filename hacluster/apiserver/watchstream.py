"""Watch streaming: an initial list (when asked), then the store's changes of one resource as chunked JSON
events filtered by the watch's selectors, with bookmarks, a timeout, and an ERROR event for a watch that
cannot start (too old or too new a resourceVersion).

Used by the API server's routing (`hacluster.apiserver.routing`); events come from the master's
`hacluster.apiserver.watchhub.WatchHub`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hacluster.apiserver.auth import User, authorize
from hacluster.apiserver.metrics import MasterMetrics
from hacluster.apiserver.reads import Reads, entry_key, object_entries
from hacluster.apiserver.request import Target, encode_json, int_param, selectors, truthy, wants_table
from hacluster.apiserver.watchhub import WatchHub
from hacluster.config import ClusterConfig
from hacluster.model import errors as E
from hacluster.model.selectors import FieldSelector, parse_field_selector
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import ADDED, DELETED, MODIFIED, WatchEvent

Obj = dict[str, Any]


class WatchStreams:
    """Serves the watches of one master; `reads` gives the consistent-read barrier and table rows."""

    def __init__(self, cfg: ClusterConfig, master_id: str, store: ReplicatedStore, hub: WatchHub,
                 metrics: MasterMetrics, reads: Reads) -> None:
        self.cfg = cfg
        self.master_id = master_id
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.reads = reads

    async def watch(self, request: web.Request, user: User, t: Target) -> web.StreamResponse:
        authorize(user, "watch", t.res, t.namespace, t.name)
        q = request.query
        labels, fields = selectors(q, t.res.plural)
        if t.name:
            fields = FieldSelector(fields.requirements + parse_field_selector(
                f"metadata.name={t.name}", t.res.plural).requirements)
        if not self.store.view().quorum:
            raise E.Unavailable(f"hacluster master {self.master_id} has no quorum: watch from another master",
                                retry_after_s=1)
        rv_param = q.get("resourceVersion", "")
        timeout_s = min(int_param(q, "timeoutSeconds", 0) or random.randint(1800, 3600),
                        self.cfg.api.watch_timeout_s_max)
        bookmarks = truthy(q.get("allowWatchBookmarks"))
        table = wants_table(request)
        prefix = t.namespace + "/" if t.namespace else ""
        plural = t.res.plural

        def matches(obj: Obj | None) -> bool:
            return obj is not None and labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)

        initial: list[Obj] = []
        if rv_param in ("", "0"):
            if rv_param == "":
                await self.reads.consistent(request)

            last_rev, entries = self.store.read(lambda s: (s.revision, object_entries(s, plural)))
            initial = [obj for k, obj in sorted(entries, key=entry_key) if k.startswith(prefix) and matches(obj)]
        else:
            try:
                last_rev = int(rv_param)
            except ValueError:
                raise E.BadRequest(f"invalid resource version: {rv_param!r}") from None
            # A client resuming where it left off on a master that has not applied that far yet: starting from
            # the local revision would replay changes it has seen. Wait for the revision, as Kubernetes does.
            current = await self.store.wait_for_change(last_rev - 1, self.cfg.api.watch_future_revision_wait_s)
            if current < last_rev:
                too_large = E.Timeout(f"Timeout: Too large resource version: {last_rev}, current: {current}",
                                      causes=(E.Cause("ResourceVersionTooLarge", "Too large resource version", ""),),
                                      retry_after_s=1)
                return await self.watch_error(request, too_large)

        node = fields.value_of("spec.nodeName") if plural == "pods" else None
        subscribed = self.hub.subscribe(plural, prefix, node, last_rev)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                      "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        def frame(etype: str, obj: Obj) -> bytes:
            if table and etype in (ADDED, MODIFIED, DELETED):
                obj = self.reads.table(plural, [obj], obj["metadata"].get("resourceVersion", ""), request)
            return encode_json({"type": etype, "object": obj}) + b"\n"

        def frames(events: list[WatchEvent]) -> list[bytes]:
            out = []
            for ev in events:
                if ev.resource == plural and ev.key.startswith(prefix):
                    typed = filtered_event(ev, matches)
                    if typed is not None:
                        out.append(frame(typed[0], typed[1]))
            return out

        if subscribed is None:
            await self.write_watch_error(resp, E.Expired(f"too old resource version: {last_rev} ({self.floor()})"))
            return resp
        sub, backlog = subscribed
        self.metrics.watchers.inc()
        deadline = time.monotonic() + timeout_s
        last_rev = max([last_rev] + [ev.revision for ev in backlog])
        try:
            out = [frame(ADDED, o) for o in initial] + frames(backlog)
            if out:
                await resp.write(b"".join(out))
            last_bookmark = time.monotonic()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                batch: list[WatchEvent] = []
                ended = False
                try:
                    async with asyncio.timeout(min(remaining, self.cfg.api.watch_bookmark_period_s)):
                        first = await sub.queue.get()
                    if first is None:
                        ended = True
                    else:
                        batch.append(first)
                        while not sub.queue.empty():
                            nxt = sub.queue.get_nowait()
                            if nxt is None:
                                ended = True
                                break
                            batch.append(nxt)
                except TimeoutError:
                    pass
                if batch:
                    last_rev = batch[-1].revision
                    out = frames(batch)
                    if out:
                        await resp.write(b"".join(out))
                if ended:
                    break
                if bookmarks and time.monotonic() - last_bookmark >= self.cfg.api.watch_bookmark_period_s:
                    last_bookmark = time.monotonic()
                    await resp.write(encode_json({"type": "BOOKMARK", "object": {
                        "kind": t.res.kind, "apiVersion": t.res.api_version,
                        "metadata": {"resourceVersion": str(last_rev)}}}) + b"\n")
            await resp.write_eof()
        except (ConnectionResetError, BrokenPipeError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(sub)
            self.metrics.watchers.dec()
        return resp

    async def watch_error(self, request: web.Request, err: E.ApiError) -> web.StreamResponse:
        """A watch that ends before it starts: as Kubernetes, 200 with one ERROR event carrying the Status."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                      "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await self.write_watch_error(resp, err)
        return resp

    @staticmethod
    async def write_watch_error(resp: web.StreamResponse, err: E.ApiError) -> None:
        try:
            await resp.write(encode_json({"type": "ERROR", "object": err.to_status()}) + b"\n")
            await resp.write_eof()
        except (ConnectionResetError, BrokenPipeError):
            pass

    def floor(self) -> int:
        return self.store.read(lambda s: s.history_floor)


def filtered_event(ev: WatchEvent, matches: Callable[[Obj | None], bool]) -> tuple[str, Obj] | None:
    """Kubernetes' watch filtering: an object entering the selection is ADDED, leaving it DELETED."""
    now, before = matches(ev.obj), matches(ev.prev) if ev.prev is not None else False
    if ev.type == DELETED:
        return (DELETED, ev.obj) if before or now else None
    if ev.type == ADDED:
        return (ADDED, ev.obj) if now else None
    if now and before:
        return MODIFIED, ev.obj
    if now:
        return ADDED, ev.obj
    if before:
        return DELETED, ev.obj
    return None

