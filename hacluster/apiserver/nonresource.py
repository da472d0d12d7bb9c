"""The API server's non-resource URLs: version, health and readiness, Prometheus metrics, the OpenAPI and
discovery documents, and the debug endpoints (Raft view, storage-fault injection, object write traces).

Used by the API server's routing (`hacluster.apiserver.routing`), which puts them in its route table.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from hacluster.apiserver import discovery
from hacluster.apiserver.auth import Authenticator, User
from hacluster.apiserver.decode import BodyDecoder
from hacluster.apiserver.flowcontrol import FlowControl
from hacluster.apiserver.metrics import MasterMetrics
from hacluster.apiserver.objtrace import ObjectTraces
from hacluster.apiserver.request import authenticate, json_response
from hacluster.model import errors as E
from hacluster.raft.storage import FAULT_ERRNOS, FAULT_OPERATIONS, Fault
from hacluster.store.api import ReplicatedStore

log = logging.getLogger(__name__)


class NonResource:
    """Handlers of the URLs that name no stored object."""

    def __init__(self, master_id: str, store: ReplicatedStore, *, metrics: MasterMetrics, authn: Authenticator,
                 flow: FlowControl, traces: ObjectTraces, decoder: BodyDecoder,
                 store_info: dict[str, Any] | None = None) -> None:
        self.master_id = master_id
        self.store_info = store_info or {}  # {"engine": …, "unsafe": true} for an engine that loses writes
        self.store = store
        self.metrics = metrics
        self.authn = authn
        self.flow = flow
        self.traces = traces
        self.decoder = decoder

    async def version(self, request: web.Request) -> web.Response:
        return json_response(discovery.KUBERNETES_VERSION)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        view = self.store.view()
        has_default = self.store.read(lambda s: "default" in s.objects["namespaces"])
        if view.quorum and has_default:
            return web.Response(text="ok")
        why = "no quorum" if not view.quorum else "bootstrap namespaces not yet created"
        return web.Response(status=500, text=f"[-]raft failed: {why}\nreadyz check failed")

    async def prometheus_metrics(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        view = self.store.view()
        self.metrics.term.set(view.term)
        self.metrics.is_leader.set(1 if view.role == "leader" else 0)
        self.metrics.commit_index.set(view.commit_index)
        self.metrics.revision.set(self.store.read(lambda s: s.revision))
        for pool in (self.flow.reads, self.flow.writes):
            self.metrics.inflight.labels(pool.name).set(pool.in_use)
            self.metrics.inqueue.labels(pool.name).set(pool.waiting())
        body, ctype = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def debug_raft(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        view = self.store.view()
        # `?fingerprint=0` skips the digest of every object (the dashboard polls this ten times a second).
        digest = request.query.get("fingerprint") not in ("0", "false")
        revision, fingerprint, term_seen, fenced = self.store.read(
            lambda s: (s.revision, s.fingerprint() if digest else None, s.term_seen, s.fenced_refusals))
        return json_response({
            "id": view.id, "role": view.role, "term": view.term, "leader": view.leader,
            "commit_index": view.commit_index, "applied_index": view.applied_index, "quorum": view.quorum,
            "log_length": view.log_length, "revision": revision, "fingerprint": fingerprint,
            "fenced_term": term_seen, "fenced_refusals": fenced,
            "journal": self.journal_stats(),
            "peers": [{"id": p.id, "address": p.address, "connected": p.connected, "match_index": p.match_index,
                       "last_response_age_s": p.last_response_age_s} for p in view.peers],
            "elections": view.elections,
            "store": self.store_info,
        })

    def journal_stats(self) -> dict[str, Any] | None:
        stats = getattr(self.store, "journal_stats", None)
        return stats() if stats is not None else None

    async def storage_fault(self, request: web.Request) -> web.Response:
        """Test storage only: make every later journal write or fsync fail (see `hacluster.raft.storage`)."""
        user = self._authenticate(request)
        if not user.is_admin:
            raise E.Forbidden(f'User "{user.name}" cannot inject storage faults: only system:masters may')
        storage = getattr(self.store, "storage", None)
        if storage is None or storage.mode != "write-back":
            raise E.NotFound("storage faults need a master started with write-back test storage")
        body = await self.decoder.read_body(request)
        if not isinstance(body, dict):
            raise E.BadRequest("the body must be a JSON object")
        if body.get("clear") is True:
            storage.set_fault(None)
            return json_response({"fault": None})
        operation, errno_name = body.get("operation"), body.get("errno")
        if operation not in FAULT_OPERATIONS or errno_name not in FAULT_ERRNOS:
            raise E.BadRequest(f"operation must be one of {', '.join(FAULT_OPERATIONS)} and errno one of "
                               f"{', '.join(FAULT_ERRNOS)} (or {{\"clear\": true}}); got operation "
                               f"{operation!r}, errno {errno_name!r}")
        storage.set_fault(Fault(operation, FAULT_ERRNOS[errno_name]))
        log.warning("storage fault injected: every journal %s fails with %s", operation, errno_name)
        return json_response({"fault": {"operation": operation, "errno": errno_name}})

    async def debug_trace(self, request: web.Request) -> web.Response:
        """The writes of one object this master proposed (see hacluster/apiserver/objtrace.py)."""
        self._authenticate(request)
        m = request.match_info
        return json_response({"master": self.master_id,
                              "writes": self.traces.get((m["resource"], m["namespace"], m["name"]))})

    async def openapi(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept:
            return web.Response(body=discovery.openapi_v2_protobuf(), content_type="application/octet-stream")
        return json_response(discovery.openapi_v2_json())

    async def api_versions(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_versions())

    async def api_groups(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_group_list())

    async def api_group(self, request: web.Request) -> web.Response:
        doc = discovery.api_group(request.match_info["group"])
        if doc is None:
            raise E.NotFound("the server could not find the requested resource")
        return json_response(doc)

    def _authenticate(self, request: web.Request) -> User:
        return authenticate(self.authn, request)
