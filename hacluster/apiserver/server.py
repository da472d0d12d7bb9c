"""The Kubernetes-compatible REST API of one master (aiohttp).

Built by the master process (`hacluster.cluster.master`) around a `ReplicatedStore`. Each handler
authenticates, authorizes, decodes and validates the request, builds a command and proposes it — nothing
reaches the store from a rejected request. Every error leaves through one middleware as a Kubernetes
`Status`. Reads are linearizable by default (a Raft barrier before reading local state);
`resourceVersion=0` asks for a possibly stale local read, as Kubernetes' watch cache serves it.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import logging
import random
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import msgspec
from aiohttp import web

from hacluster.apiserver import audit, bodies, discovery, limits, metrics_api, reviews
from hacluster.apiserver import patch as patching
from hacluster.apiserver.auth import Authenticator, User, authorize
from hacluster.apiserver.flowcontrol import FlowControl, Seat, is_long_running
from hacluster.apiserver.metrics import MasterMetrics
from hacluster.apiserver.objtrace import ObjectTraces, object_key
from hacluster.apiserver.watchhub import WatchHub
from hacluster.config import ClusterConfig
from hacluster.ids import new_uid
from hacluster.model import commands as cmds
from hacluster.model import errors as E
from hacluster.model import resources, schema, validation
from hacluster.model.resources import Resource
from hacluster.model.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from hacluster.model.timestamps import rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import ADDED, DELETED, MODIFIED, Result, StoreState, WatchEvent, deep_copy

log = logging.getLogger(__name__)
Obj = dict[str, Any]

_json_encoder = msgspec.json.Encoder()
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet
_SERVER_SET_META = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "generation", "selfLink", "managedFields")
_UPDATE_RETRIES = 5
_BOOKMARK_PERIOD_S = 10.0
FUTURE_REVISION_WAIT_S = 3.0
"""How long a watch from a resourceVersion this master has not reached yet waits for it (kube-apiserver's
watch cache blocks 3 s) before answering "Too large resource version"."""


def encode_json(data: Any) -> bytes:
    return _json_encoder.encode(data)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=encode_json(data), status=status, content_type="application/json",
                        headers=headers)


def status_response(err: E.ApiError) -> web.Response:
    headers = {}
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(err.retry_after_s)
    return json_response(err.to_status(), status=err.code, headers=headers)


def result_error(result: Result) -> E.ApiError:
    assert result.error is not None
    e = result.error
    return E.error_from_reason(e.reason, e.message, kind=e.kind, name=e.name, causes=e.causes)


VERB = web.RequestKey("verb", str)
RESOURCE = web.RequestKey("resource", str)
USER = web.RequestKey("user", User)
COMMITTED: contextvars.ContextVar[int] = contextvars.ContextVar("committed_revision", default=0)
"""Store revision of the write a request committed (for the audit event's Raft index and term)."""
_UNAUDITED_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
_METHOD_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
"""The verb of a request refused before its path was parsed (a list is then recorded as get)."""
_WRITER: contextvars.ContextVar[str] = contextvars.ContextVar("writer", default="")


@dataclass(frozen=True)
class Target:
    """What a request path names."""

    res: Resource
    namespace: str
    name: str
    subresource: str


TARGET = web.RequestKey("target", Target)


class ApiServer:
    """Handlers of one master's API; `app()` gives the aiohttp application."""

    def __init__(self, cfg: ClusterConfig, master_id: str, store: ReplicatedStore, *,
                 clock: Callable[[], float] = time.time, metrics: MasterMetrics | None = None,
                 audit_log: audit.AuditLog | None = None) -> None:
        self.cfg = cfg
        self.master_id = master_id
        self.store = store
        self.clock = clock
        self.metrics = metrics or MasterMetrics()
        self.authn = Authenticator(cfg)
        self.hub = WatchHub(store, cfg.api.watch_queue_max)
        self.flow = FlowControl(max_inflight=cfg.api.max_requests_inflight,
                                max_mutating_inflight=cfg.api.max_mutating_requests_inflight,
                                system_reserved_share=cfg.api.system_reserved_share,
                                queue_length_per_user=cfg.api.queue_length_per_user,
                                queue_wait_s=cfg.api.queue_wait_s)
        self.watch_caps = limits.WatchCaps(cfg.api.max_watches_per_user)
        self.audit_log = audit_log
        self.traces = ObjectTraces()

    # ------------------------------------------------------------------------------ application
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._audit, self._middleware, self._admission],
                              client_max_size=self.cfg.api.max_body_bytes)
        r = app.router
        r.add_get("/version", self._version)
        r.add_get("/version/", self._version)
        r.add_get("/healthz", self._healthz)
        r.add_get("/livez", self._healthz)
        r.add_get("/readyz", self._readyz)
        r.add_get("/metrics", self._metrics)
        r.add_get("/debug/raft", self._debug_raft)
        r.add_post("/debug/storage/fault", self._storage_fault)
        r.add_get("/debug/trace/{resource}/{namespace}/{name}", self._debug_trace)
        r.add_get("/openapi/v2", self._openapi)
        r.add_get("/api", self._api)
        r.add_get("/api/", self._api)
        r.add_get("/apis", self._apis)
        r.add_get("/apis/", self._apis)
        # APIs with handlers of their own (not stored), before the generic group routes that would take them:
        reviews.add_routes(r, authenticate=self._authenticate_as, read_body=self._read_body)
        metrics_api.add_routes(r, authenticate=self._authenticate_as, store=self.store)
        r.add_route("*", "/api/v1", self._dispatch_core)
        r.add_route("*", "/api/v1/{tail:.*}", self._dispatch_core)
        r.add_get("/apis/{group}", self._api_group)
        r.add_route("*", "/apis/{group}/{version}", self._dispatch_group)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._dispatch_group)
        return app

    def stop_watches(self, spread_s: float = 0.0) -> None:
        """End every open watch (this master lost its quorum): clients resume on another master. With
        `spread_s`, the ends are spread over that many seconds so thousands of clients don't relist at once."""
        self.hub.end_all(spread_s)

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        start = time.monotonic()
        verb = request.get(VERB, request.method.lower())
        try:
            resp = await handler(request)
        except E.Unavailable as err:
            resp = status_response(self._unavailable(err))
        except E.ApiError as err:
            resp = status_response(err)
        except web.HTTPRequestEntityTooLarge:
            resp = status_response(E.TooLarge(
                f"Request entity too large: limit is {self.cfg.api.max_body_bytes}"))
        except web.HTTPException as exc:
            if exc.status == 404:
                resp = status_response(E.NotFound("the server could not find the requested resource"))
            elif exc.status == 405:
                resp = status_response(E.MethodNotAllowed(
                    "the server does not allow this method on the requested resource"))
            else:
                raise
        except asyncio.CancelledError:
            raise
        except (ConnectionResetError, BrokenPipeError):
            raise
        except Exception as exc:  # a bug: answer like Kubernetes, keep the traceback in the master's log
            log.exception("internal error on %s %s", request.method, request.path)
            resp = status_response(E.InternalError(f"Internal error occurred: {type(exc).__name__}: {exc}"))
        verb = request.get(VERB, verb)
        resource = request.get(RESOURCE, "")
        self.metrics.requests.labels(verb, resource, str(resp.status)).inc()
        if verb != "watch":
            self.metrics.latency.labels(verb, resource).observe(time.monotonic() - start)
        return resp

    # ------------------------------------------------------------------- front door (issue 19)
    @web.middleware
    async def _admission(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Inside the Status middleware: a seat from flow control (429 without one), the request timeout,
        and for watches the per-user cap and the stalled-watcher drop. Health probes and metrics pass."""
        if request.path in _UNAUDITED_PATHS:
            return await handler(request)
        try:
            user = self.authn.authenticate(request.headers.get("Authorization"))
            name, groups = user.name, user.groups
            request[USER] = user  # for the audit event of a request refused here
        except E.Unauthorized:
            name, groups = "system:anonymous", ()  # the handler answers 401; its request still takes a seat
        if is_long_running(request.method, request.path, dict(request.query)):
            return await self._long_running(request, handler, name)
        try:
            seat: Seat = await self.flow.admit(request.method, name, groups)
        except E.TooManyRequests:
            self.metrics.rejected.labels(self.flow.pool_for(request.method).name).inc()
            raise
        try:
            timeout_s = self.cfg.api.request_timeout_s
            try:
                async with asyncio.timeout(timeout_s) as deadline:
                    return await handler(request)
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise E.Timeout(f"the request did not complete within {timeout_s:g} s; a write may or may not "
                                "have been committed") from None
        finally:
            seat.release()

    async def _long_running(self, request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                            user: str) -> web.StreamResponse:
        """Watches and followed logs take no seat; a watch counts towards its user's cap, and a watcher
        that stops reading is dropped (see `limits.drop_if_stalled`)."""
        watch = not request.path.endswith("/log")
        if watch:
            try:
                self.watch_caps.acquire(user)
            except E.TooManyRequests:
                self.metrics.rejected.labels("watch").inc()
                raise
        monitor = limits.monitor_stalled(request.transport, self.cfg.api.watch_write_timeout_s) if watch else None
        try:
            return await handler(request)
        finally:
            if monitor is not None:
                monitor.cancel()
            if watch:
                self.watch_caps.release(user)

    @web.middleware
    async def _audit(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Outermost: one audit event per API request once it is answered, with an `Audit-Id` header."""
        if self.audit_log is None or request.path in _UNAUDITED_PATHS:
            return await handler(request)
        received = self.clock()
        audit_id = request.headers.get("Audit-ID") or new_uid()
        COMMITTED.set(0)
        code, status = 500, None
        try:
            resp = await handler(request)
            code = resp.status
            if code >= 400 and isinstance(resp, web.Response) and isinstance(resp.body, (bytes, bytearray)):
                try:
                    status = json.loads(resp.body)
                except ValueError:
                    status = None
            if not resp.prepared:
                resp.headers["Audit-Id"] = audit_id
            return resp
        finally:
            self._write_audit(request, audit_id, code, status if isinstance(status, dict) else None, received)

    def _write_audit(self, request: web.Request, audit_id: str, code: int, status: Obj | None,
                     received: float) -> None:
        assert self.audit_log is not None
        user = request.get(USER)
        t = request.get(TARGET)
        ref = None
        if t is not None:
            ref = audit.ObjectRef(resource=t.res.plural, namespace=t.namespace, name=t.name,
                                  subresource=t.subresource, api_group=t.res.group, api_version=t.res.version)
        revision = COMMITTED.get()
        raft = None
        if revision and 200 <= code < 300:
            position = getattr(self.store, "raft_position", None)
            raft = position(revision) if position is not None else None
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self.audit_log.write(audit.event(
            audit_id=audit_id, master_id=self.master_id,
            verb=request.get(VERB, _METHOD_VERBS.get(request.method, request.method.lower())),
            uri=request.path_qs, username=user.name if user else "system:anonymous",
            groups=user.groups if user else ("system:unauthenticated",), source_ip=peer[0] if peer else "",
            user_agent=request.headers.get("User-Agent", ""), ref=ref, code=code, status=status,
            received=received, completed=self.clock(), raft=raft))

    def _unavailable(self, err: E.Unavailable) -> E.Unavailable:
        """Keep `Retry-After` only while this master reaches a majority of the masters (an election can end
        here, and client-go's 10 retries one second apart will succeed on it). A master cut off from the
        majority answers without it, so kubectl pointed at it fails at once with the 503 instead of retrying
        the same master for ten seconds."""
        view = self.store.view()
        total = len(self.cfg.masters)
        reachable = 1 + sum(1 for p in view.peers if p.connected)
        if reachable * 2 > total:
            return err
        return E.Unavailable(f"{err.message}; this master reaches {reachable} of {total} masters: use another "
                             "master", kind=err.kind, name=err.name, group=err.group, causes=err.causes)

    # -------------------------------------------------------------------------------- discovery
    async def _version(self, request: web.Request) -> web.Response:
        return json_response(discovery.KUBERNETES_VERSION)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        view = self.store.view()
        has_default = self.store.read(lambda s: "default" in s.objects["namespaces"])
        if view.quorum and has_default:
            return web.Response(text="ok")
        why = "no quorum" if not view.quorum else "bootstrap namespaces not yet created"
        return web.Response(status=500, text=f"[-]raft failed: {why}\nreadyz check failed")

    async def _metrics(self, request: web.Request) -> web.Response:
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

    async def _debug_raft(self, request: web.Request) -> web.Response:
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
            "journal": self._journal_stats(),
            "peers": [{"id": p.id, "address": p.address, "connected": p.connected, "match_index": p.match_index,
                       "last_response_age_s": p.last_response_age_s} for p in view.peers],
            "elections": view.elections,
        })

    def _journal_stats(self) -> dict[str, Any] | None:
        stats = getattr(self.store, "journal_stats", None)
        return stats() if stats is not None else None

    async def _storage_fault(self, request: web.Request) -> web.Response:
        """Test storage only: make every later journal write or fsync fail (see `hacluster.raft.storage`)."""
        from hacluster.raft.storage import FAULT_ERRNOS, FAULT_OPERATIONS, Fault

        user = self._authenticate(request)
        if not user.is_admin:
            raise E.Forbidden(f'User "{user.name}" cannot inject storage faults: only system:masters may')
        storage = getattr(self.store, "storage", None)
        if storage is None or storage.mode != "write-back":
            raise E.NotFound("storage faults need a master started with write-back test storage")
        body = await self._read_body(request)
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

    async def _debug_trace(self, request: web.Request) -> web.Response:
        """The writes of one object this master proposed (see hacluster/apiserver/objtrace.py)."""
        self._authenticate(request)
        m = request.match_info
        return json_response({"master": self.master_id,
                              "writes": self.traces.get((m["resource"], m["namespace"], m["name"]))})

    async def _openapi(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept:
            return web.Response(body=discovery.openapi_v2_protobuf(), content_type="application/octet-stream")
        return json_response(discovery.openapi_v2_json())

    async def _api(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_versions())

    async def _apis(self, request: web.Request) -> web.Response:
        return json_response(discovery.api_group_list())

    async def _api_group(self, request: web.Request) -> web.Response:
        doc = discovery.api_group(request.match_info["group"])
        if doc is None:
            raise E.NotFound("the server could not find the requested resource")
        return json_response(doc)

    # --------------------------------------------------------------------------------- dispatch
    async def _dispatch_core(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "v1", request.match_info.get("tail", ""))

    async def _dispatch_group(self, request: web.Request) -> web.StreamResponse:
        gv = f"{request.match_info['group']}/{request.match_info['version']}"
        return await self._dispatch(request, gv, request.match_info.get("tail", ""))

    async def _dispatch(self, request: web.Request, group_version: str, tail: str) -> web.StreamResponse:
        segs = [s for s in tail.split("/") if s]
        watch_path = False
        if segs and segs[0] == "watch":
            segs, watch_path = segs[1:], True
        if not segs:
            if request.method != "GET":
                raise E.MethodNotAllowed("the server does not allow this method on the requested resource")
            doc = discovery.api_resource_list(group_version)
            if doc is None:
                raise E.NotFound("the server could not find the requested resource")
            return json_response(doc)
        target = self._parse_target(group_version, segs)
        request[TARGET] = target
        request[RESOURCE] = target.res.plural + (f"/{target.subresource}" if target.subresource else "")
        user = self._authenticate(request)
        q = request.query
        method = request.method
        if method == "GET":
            if target.name and target.subresource == "log":
                request[VERB] = "get"
                return await self._pod_log(request, user, target)
            if target.name and target.subresource not in ("", "status", "scale"):
                raise E.NotFound("the server could not find the requested resource")
            if target.name and not watch_path:
                request[VERB] = "get"
                return await self._get(request, user, target)
            if watch_path or _truthy(q.get("watch")):
                request[VERB] = "watch"
                return await self._watch(request, user, target)
            request[VERB] = "list"
            return await self._list(request, user, target)
        if method == "POST":
            request[VERB] = "create"
            if target.subresource == "binding" and target.res.plural == "pods":
                return await self._bind(request, user, target)
            if target.subresource == "eviction" and target.res.plural == "pods":
                return await self._evict(request, user, target)
            if target.name:
                raise E.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self._create(request, user, target)
        if method == "PUT":
            request[VERB] = "update"
            self._need_name(target)
            return await self._update(request, user, target)
        if method == "PATCH":
            request[VERB] = "patch"
            self._need_name(target)
            return await self._patch(request, user, target)
        if method == "DELETE":
            request[VERB] = "delete"
            if not target.name:
                return await self._delete_collection(request, user, target)
            return await self._delete(request, user, target)
        raise E.MethodNotAllowed("the server does not allow this method on the requested resource")

    def _parse_target(self, group_version: str, segs: list[str]) -> Target:
        ns = ""
        if len(segs) >= 3 and segs[0] == "namespaces":
            res = resources.lookup(group_version, segs[2])
            if res is not None and res.namespaced:
                ns, segs = segs[1], segs[2:]
        res = resources.lookup(group_version, segs[0])
        if res is None or len(segs) > 3:
            raise E.NotFound("the server could not find the requested resource")
        name = segs[1] if len(segs) > 1 else ""
        sub = segs[2] if len(segs) > 2 else ""
        if sub and sub not in res.subresources:
            raise E.NotFound("the server could not find the requested resource")
        if res.namespaced and name and not ns:
            raise E.NotFound("the server could not find the requested resource")
        return Target(res, ns, name, sub)

    @staticmethod
    def _need_name(target: Target) -> None:
        if not target.name:
            raise E.MethodNotAllowed("the server does not allow this method on the requested resource")

    def _authenticate_as(self, request: web.Request, verb: str, resource: str) -> User:
        """Authenticate a request to a handler of its own (reviews, metrics), naming it for the metrics."""
        request[VERB], request[RESOURCE] = verb, resource
        return self._authenticate(request)

    def _authenticate(self, request: web.Request) -> User:
        user: User | None = request.get(USER)  # authenticated already by the admission middleware?
        if user is None:
            user = self.authn.authenticate(request.headers.get("Authorization"))
            request[USER] = user
        _WRITER.set(user.name)  # the request's own task: what its writes record in their trace
        return user

    # ------------------------------------------------------------------------------- body input
    async def _read_body(self, request: web.Request, *, allow_empty: bool = False) -> Any:
        limit = self.cfg.api.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise E.TooLarge(f"Request entity too large: limit is {limit}")
        # StreamReader.read(n) returns what has arrived so far, not n bytes: a body that comes in several TCP
        # segments or TLS records (kubectl's PUT of a whole pod) must be read until EOF.
        chunks: list[bytes] = []
        size = 0
        body_timeout_s = self.cfg.api.body_timeout_s
        try:
            async with asyncio.timeout(body_timeout_s):
                while True:
                    chunk = await request.content.read(limit + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise E.TooLarge(f"Request entity too large: limit is {limit}")
        except TimeoutError:
            raise E.RequestTimeout(f"the request body did not arrive within {body_timeout_s:g} s") from None
        raw = b"".join(chunks)
        if not raw.strip():
            if allow_empty:
                return None
            raise E.BadRequest("the body of the request was in an unknown format - accepted media types include: "
                               "application/json, application/yaml")
        ctype = (request.content_type or "").lower()
        if "protobuf" in ctype or "cbor" in ctype:
            # A media type hacluster does not decode: 415, as Kubernetes answers one it does not serve (kubectl
            # 1.32 does not fall back to JSON; the reviews read its protobuf themselves, see reviews.py).
            raise E.UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media types '
                                         f'include: application/json, application/yaml (got "{ctype}")')
        if "yaml" in ctype:
            return bodies.decode_yaml(raw)
        return bodies.decode_json(raw)

    def _decode_object(self, request: web.Request, res: Resource, body: Any) -> tuple[Obj, list[str]]:
        """Check kind/apiVersion and field types; return the object and the unknown-field warnings."""
        if not isinstance(body, dict):
            raise E.BadRequest(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: json: "
                               f"cannot unmarshal {_json_type(body)} into Go value of type {res.group or 'core'}."
                               f"{res.kind}")
        kind = body.get("kind")
        if kind not in (None, "", res.kind):
            if not isinstance(kind, str) or kind not in {r.kind for r in resources.ALL} | {"Binding"}:
                raise E.BadRequest(f'no kind "{kind}" is registered for version "{res.api_version}" in scheme '
                                   '"pkg/api/legacyscheme/scheme.go:30"')
            raise E.BadRequest(f"the object provided is unrecognized (must be of type {res.kind}): couldn't get "
                               f"version/kind; object kind {kind} does not match {res.kind}")
        av = body.get("apiVersion")
        if av not in (None, "", res.api_version):
            raise E.BadRequest(f"the API version in the data ({av}) does not match the expected API version "
                               f"({res.api_version})")
        mismatches, unknown = schema.check_shape(body, res.shape)
        if mismatches:
            raise E.BadRequest(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                               f"{mismatches[0].message()}")
        strict = request.query.get("fieldValidation", "") == "Strict"
        if unknown and strict:
            detail = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise E.BadRequest(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                               f"strict decoding error: {detail}")
        # Decoding into Go structs always drops unknown fields; `Ignore` only silences the warnings.
        ignore = request.query.get("fieldValidation", "") == "Ignore"
        warnings = [] if ignore else [f'unknown field "{u}"' for u in unknown]
        return schema.decoded(body, res.shape), warnings

    @staticmethod
    def _with_warnings(resp: web.Response, warnings: list[str]) -> web.Response:
        for w in warnings:
            resp.headers.add("Warning", "299 - " + _quoted_warning(w))
        return resp

    # ------------------------------------------------------------------------------------ reads
    async def _consistent(self, request: web.Request) -> None:
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

    async def _get(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "get", t.res, t.namespace, t.name, t.subresource)
        await self._consistent(request)
        obj = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
        if obj is None:
            raise E.not_found(t.res.plural, t.name, t.res.group)
        if t.subresource == "scale":
            return json_response(_scale_of(obj))
        table = _wants_table(request)
        if table:
            return json_response(self._table(t.res.plural, [obj], str(obj["metadata"]["resourceVersion"]),
                                             request))
        return json_response(obj)

    async def _list(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "list", t.res, t.namespace, "")
        q = request.query
        labels, fields = _selectors(q, t.res.plural)
        await self._consistent(request)
        limit = _int_param(q, "limit", 0)
        page_max = self.cfg.api.list_limit_max
        limit = min(limit, page_max) if limit > 0 else page_max
        start_key, list_rv = "", None
        if q.get("continue"):
            start_key, list_rv = _decode_continue(q["continue"])

        # Under the store lock (which the Raft thread takes to apply) only the bucket's entries are taken, a
        # C-speed shallow copy; sorting and selecting run after it (stored objects are read-only).
        revision, entries = self.store.read(lambda s: (s.revision, _entries(s, t.res.plural)))
        prefix = t.namespace + "/" if t.namespace else ""
        items: list[Obj] = []
        more = False
        remaining = 0
        for k, obj in sorted(entries, key=_entry_key):
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
            meta["continue"] = _encode_continue(last_key, int(rv))
            meta["remainingItemCount"] = remaining
        if _wants_table(request):
            table = self._table(t.res.plural, items, rv, request)
            if more:
                table["metadata"].update({k: v for k, v in meta.items() if k != "resourceVersion"})
            return json_response(table)
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version, "metadata": meta,
                              "items": items})

    def _table(self, plural: str, objs: list[Obj], rv: str, request: web.Request) -> Obj:
        from hacluster.apiserver import printers

        include = request.query.get("includeObject", "Metadata")
        builder = printers.TABLE_BUILDERS.get(plural, printers.default_table)
        table: Obj = builder(objs, _now_dt(self.clock), include_object=include, resource_version=rv)
        return table

    # ------------------------------------------------------------------------------------ watch
    async def _watch(self, request: web.Request, user: User, t: Target) -> web.StreamResponse:
        authorize(user, "watch", t.res, t.namespace, t.name)
        q = request.query
        labels, fields = _selectors(q, t.res.plural)
        if t.name:
            fields = FieldSelector(fields.requirements + parse_field_selector(
                f"metadata.name={t.name}", t.res.plural).requirements)
        if not self.store.view().quorum:
            raise E.Unavailable(f"hacluster master {self.master_id} has no quorum: watch from another master",
                                retry_after_s=1)
        rv_param = q.get("resourceVersion", "")
        timeout_s = min(_int_param(q, "timeoutSeconds", 0) or random.randint(1800, 3600),
                        self.cfg.api.watch_timeout_s_max)
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        table = _wants_table(request)
        prefix = t.namespace + "/" if t.namespace else ""
        plural = t.res.plural

        def matches(obj: Obj | None) -> bool:
            return obj is not None and labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)

        initial: list[Obj] = []
        if rv_param in ("", "0"):
            if rv_param == "":
                await self._consistent(request)

            last_rev, entries = self.store.read(lambda s: (s.revision, _entries(s, plural)))
            initial = [obj for k, obj in sorted(entries, key=_entry_key) if k.startswith(prefix) and matches(obj)]
        else:
            try:
                last_rev = int(rv_param)
            except ValueError:
                raise E.BadRequest(f"invalid resource version: {rv_param!r}") from None
            # A client resuming where it left off on a master that has not applied that far yet: starting from
            # the local revision would replay changes it has seen. Wait for the revision, as Kubernetes does.
            current = await self.store.wait_for_change(last_rev - 1, FUTURE_REVISION_WAIT_S)
            if current < last_rev:
                too_large = E.Timeout(f"Timeout: Too large resource version: {last_rev}, current: {current}",
                                      causes=(E.Cause("ResourceVersionTooLarge", "Too large resource version", ""),),
                                      retry_after_s=1)
                return await self._watch_error(request, too_large)

        node = fields.value_of("spec.nodeName") if plural == "pods" else None
        subscribed = self.hub.subscribe(plural, prefix, node, last_rev)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                      "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        def frame(etype: str, obj: Obj) -> bytes:
            if table and etype in (ADDED, MODIFIED, DELETED):
                obj = self._table(plural, [obj], obj["metadata"].get("resourceVersion", ""), request)
            return encode_json({"type": etype, "object": obj}) + b"\n"

        def frames(events: list[WatchEvent]) -> list[bytes]:
            out = []
            for ev in events:
                if ev.resource == plural and ev.key.startswith(prefix):
                    typed = _filtered_event(ev, matches)
                    if typed is not None:
                        out.append(frame(typed[0], typed[1]))
            return out

        if subscribed is None:
            await self._write_watch_error(resp, E.Expired(f"too old resource version: {last_rev} ({self._floor()})"))
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
                    async with asyncio.timeout(min(remaining, _BOOKMARK_PERIOD_S)):
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
                if bookmarks and time.monotonic() - last_bookmark >= _BOOKMARK_PERIOD_S:
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

    async def _watch_error(self, request: web.Request, err: E.ApiError) -> web.StreamResponse:
        """A watch that ends before it starts: as Kubernetes, 200 with one ERROR event carrying the Status."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                      "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await self._write_watch_error(resp, err)
        return resp

    @staticmethod
    async def _write_watch_error(resp: web.StreamResponse, err: E.ApiError) -> None:
        try:
            await resp.write(encode_json({"type": "ERROR", "object": err.to_status()}) + b"\n")
            await resp.write_eof()
        except (ConnectionResetError, BrokenPipeError):
            pass

    def _floor(self) -> int:
        return self.store.read(lambda s: s.history_floor)

    # ----------------------------------------------------------------------------------- writes
    async def _store_propose(self, command: cmds.AnyCommand) -> Result:
        """Propose, and record the write in the object's trace: who, when, how long to commit, and the
        term and commit index this master saw when the answer came (an upper bound of the entry's index)."""
        key = object_key(command)
        if key is None:
            return await self.store.propose(command)
        entry: dict[str, Any] = {"write": type(command).__name__, "user": _WRITER.get(),
                                 "master": self.master_id, "role": self.store.view().role,
                                 "proposed_at": round(self.clock(), 6), "outcome": "no answer (request cancelled)"}
        start = time.monotonic()
        try:
            result = await self.store.propose(command)
            entry["outcome"] = "committed" if result.ok else f"refused: {result.error.reason if result.error else ''}"
            if key[0] == "pods" and result.ok and isinstance(result.obj, dict):
                conditions = (result.obj.get("status") or {}).get("conditions") or []
                entry["ready"] = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
                                     if isinstance(c, dict))
            return result
        except E.ApiError as err:
            entry["outcome"] = f"{err.code} {err.reason}"
            raise
        finally:
            view = self.store.view()
            entry.update({"answered_s": round(time.monotonic() - start, 6), "term": view.term,
                          "commit_index": view.commit_index})
            self.traces.record(key, entry)

    async def _propose(self, command: cmds.AnyCommand) -> Result:
        result = await self._store_propose(command)
        if not result.ok:
            raise result_error(result)
        COMMITTED.set(result.revision)
        return result

    def _new_name(self, generate_name: str) -> str:
        return generate_name + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))

    async def _create(self, request: web.Request, user: User, t: Target) -> web.Response:
        body = await self._read_body(request)
        obj, warnings = self._decode_object(request, t.res, body)
        meta = obj.get("metadata")
        if meta is None or not isinstance(meta, dict):
            meta = {}
        obj = dict(obj)
        obj["metadata"] = meta = dict(meta)
        if t.res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != t.namespace:
                raise E.BadRequest("the namespace of the provided object does not match the namespace sent on the "
                                   "request")
            if not t.namespace:
                raise E.NotFound("the server could not find the requested resource")
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise E.BadRequest("resourceVersion should not be set on objects to be created")
        for k in _SERVER_SET_META:
            meta.pop(k, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._new_name(str(meta["generateName"]))
        authorize(user, "create", t.res, t.namespace, meta.get("name", ""))
        obj["apiVersion"], obj["kind"] = t.res.api_version, t.res.kind
        if t.res.plural in ("pods", "replicasets", "namespaces", "deployments", "jobs"):
            obj.pop("status", None)  # PrepareForCreate: their status is the system's (`kubectl create ns` sends {})
        meta["uid"] = new_uid()  # before defaulting: a Job's generated selector names its uid
        validation.default_object(t.res.plural, obj)
        causes = validation.VALIDATORS[t.res.plural](obj)
        if causes:
            raise E.invalid(t.res.kind, meta.get("name", ""), causes, t.res.group)
        now = self.clock()
        meta["creationTimestamp"] = rfc3339(now)
        if _dry_run(request):
            return self._with_warnings(json_response(obj, status=201), warnings)
        result = await self._propose(cmds.Create(resource=t.res.plural, namespace=t.namespace, obj=obj))
        return self._with_warnings(json_response(result.obj, status=201), warnings)

    async def _update(self, request: web.Request, user: User, t: Target) -> web.Response:
        body = await self._read_body(request)
        if t.subresource == "scale":
            return await self._update_scale(request, user, t, body)
        obj, warnings = self._decode_object(request, t.res, body)
        meta = dict(obj.get("metadata") or {})
        if meta.get("name") and meta["name"] != t.name:
            raise E.BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL "
                               f"({t.name})")
        if t.res.namespaced and meta.get("namespace") and meta["namespace"] != t.namespace:
            raise E.BadRequest("the namespace of the provided object does not match the namespace sent on the "
                               "request")
        meta["name"] = t.name
        if t.res.namespaced:
            meta["namespace"] = t.namespace
        obj = dict(obj)
        obj["metadata"] = meta
        obj["apiVersion"], obj["kind"] = t.res.api_version, t.res.kind
        expected = str(meta.get("resourceVersion") or "")
        resp = await self._guaranteed_update(request, user, t, lambda current: obj, expected)
        return self._with_warnings(resp, warnings)

    async def _patch(self, request: web.Request, user: User, t: Target) -> web.Response:
        ctype = (request.content_type or "").lower()
        if ctype == patching.APPLY_PATCH:
            raise E.UnsupportedMediaType("server-side apply is not supported by hacluster: use client-side "
                                         "`kubectl apply` (the default)")
        if ctype not in patching.PATCH_TYPES:
            raise E.UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media "
                                         f"types include: {', '.join(patching.PATCH_TYPES)}")
        body = await self._read_body(request)
        if t.subresource == "scale":
            return await self._patch_scale(request, user, t, ctype, body)
        warnings: list[str] = []

        def mutate(current: Obj) -> Obj:
            try:
                patched = patching.apply_patch(ctype, current, body)
            except patching.PatchError as exc:
                if exc.code == 422:
                    raise E.Invalid(str(exc)) from exc
                if exc.code == 415:
                    raise E.UnsupportedMediaType(str(exc)) from exc
                raise E.BadRequest(str(exc)) from exc
            decoded, warns = self._decode_object(request, t.res, patched)
            warnings[:] = warns
            return decoded

        patch_rv = ""
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            patch_rv = str(body["metadata"].get("resourceVersion") or "")
        resp = await self._guaranteed_update(request, user, t, mutate, patch_rv)
        return self._with_warnings(resp, warnings)

    async def _guaranteed_update(self, request: web.Request, user: User, t: Target,
                                 mutate: Callable[[Obj], Obj], client_rv: str) -> web.Response:
        """Read, mutate, validate and compare-and-set, retrying on conflicts the client did not cause."""
        for attempt in range(_UPDATE_RETRIES):
            if attempt or request.query.get("resourceVersion") != "0":
                await self.store.linearizable_barrier()
            current = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
            if current is None:
                raise E.not_found(t.res.plural, t.name, t.res.group)
            authorize(user, "update" if request.method == "PUT" else "patch", t.res, t.namespace, t.name,
                      t.subresource, current)
            # Stored objects are read-only and shared with every reader: mutation and defaulting below work
            # on a private copy (a shallow copy would let them change the stored nested dicts).
            new = mutate(deep_copy(current))
            meta = dict(new.get("metadata") or {})
            meta["name"], new = t.name, dict(new)
            if t.res.namespaced:
                meta["namespace"] = t.namespace
            new["metadata"] = meta
            cur_rv = current["metadata"]["resourceVersion"]
            if client_rv and client_rv != cur_rv:
                raise E.conflict(t.res.plural, t.name, t.res.group)
            if t.subresource != "status":
                if t.res.has_status:
                    new["status"] = current.get("status")
                if t.res.plural == "pods":
                    new_spec = new.get("spec") or {}
                    if new_spec.get("nodeName") != (current.get("spec") or {}).get("nodeName") \
                            and not new_spec.get("nodeName"):
                        new.setdefault("spec", {})["nodeName"] = current["spec"].get("nodeName")
                    validation.default_pod_spec(new.setdefault("spec", {}))
                    for c in new["spec"].get("containers") or []:
                        validation.canonical_quantities(c.get("resources"))
                    causes = validation.validate_pod_update(new, current)
                elif t.res.plural in ("replicasets", "deployments", "jobs"):
                    validation.default_object(t.res.plural, new)
                    causes = validation.VALIDATORS[t.res.plural](new)
                else:
                    causes = validation.VALIDATORS[t.res.plural](new)
                if causes:
                    raise E.invalid(t.res.kind, t.name, causes, t.res.group)
            if _dry_run(request):
                return json_response(new)
            result = await self._store_propose(cmds.Replace(
                resource=t.res.plural, namespace=t.namespace, name=t.name, obj=new, expected_rv=cur_rv,
                subresource="status" if t.subresource == "status" else ""))
            if result.ok:
                COMMITTED.set(result.revision)
                return json_response(result.obj)
            err = result_error(result)
            if isinstance(err, E.Conflict) and not client_rv and "Precondition" not in err.message:
                continue  # somebody else wrote in between: re-read and re-apply, as GuaranteedUpdate does
            raise err
        raise E.conflict(t.res.plural, t.name, t.res.group)

    async def _delete(self, request: web.Request, user: User, t: Target) -> web.Response:
        body = await self._read_body(request, allow_empty=True)
        opts: Obj = {}
        if body is not None:
            opts = self._decode_small(body, schema.DELETE_OPTIONS)
        grace = opts.get("gracePeriodSeconds")
        if "gracePeriodSeconds" in request.query:
            grace = _int_param(request.query, "gracePeriodSeconds", 0)
        if grace is not None and grace < 0:
            grace = 0
        pre = opts.get("preconditions") or {}
        current = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
        authorize(user, "delete", t.res, t.namespace, t.name, "", current)
        if _dry_run(request):
            await self._consistent(request)
            if current is None:
                raise E.not_found(t.res.plural, t.name, t.res.group)
            return json_response(current)
        result = await self._propose(cmds.Delete(
            resource=t.res.plural, namespace=t.namespace, name=t.name, time=rfc3339(self.clock()),
            grace_period_s=grace, expected_uid=pre.get("uid") or "", expected_rv=pre.get("resourceVersion") or ""))
        return json_response(_delete_answer(t.res, result.obj))

    async def _delete_collection(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "deletecollection", t.res, t.namespace, "")
        labels, fields = _selectors(request.query, t.res.plural)
        await self.store.linearizable_barrier()
        names = self.store.read(lambda s: [o["metadata"]["name"] for o in s.list_objects(t.res.plural, t.namespace)
                                           if labels.matches(o["metadata"].get("labels")) and fields.matches(o)])
        now = rfc3339(self.clock())
        items = []
        for name in names:
            result = await self._store_propose(cmds.Delete(resource=t.res.plural, namespace=t.namespace,
                                                                    name=name, time=now))
            if result.ok and result.obj is not None:
                items.append(result.obj)
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version,
                              "metadata": {"resourceVersion": str(self.store.read(lambda s: s.revision))},
                              "items": items})

    async def _bind(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "create", t.res, t.namespace, t.name, "binding")
        body = self._decode_small(await self._read_body(request), schema.BINDING)
        target = body.get("target") or {}
        node = target.get("name") or ""
        name = (body.get("metadata") or {}).get("name") or t.name
        if name != t.name:
            raise E.BadRequest(f"the name of the object ({name}) does not match the name on the URL ({t.name})")
        if not node:
            raise E.invalid("Binding", name, [E.required("target.name")])
        if target.get("kind") not in (None, "", "Node"):
            raise E.invalid("Binding", name, [E.not_supported("target.kind", target.get("kind"), ["Node"])])
        bmeta = body.get("metadata") or {}
        await self._propose(cmds.Bind(namespace=t.namespace, name=t.name, node_name=node,
                                      time=rfc3339(self.clock()), expected_uid=bmeta.get("uid") or "",
                                      annotations=dict(bmeta.get("annotations") or {})))
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, status=201)

    async def _evict(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "create", t.res, t.namespace, t.name, "eviction")
        body = self._decode_small(await self._read_body(request, allow_empty=True) or {}, schema.EVICTION)
        grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
        if grace is not None and grace < 0:
            grace = 0
        await self._propose(cmds.Delete(resource="pods", namespace=t.namespace, name=t.name,
                                        time=rfc3339(self.clock()), grace_period_s=grace))
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, status=201)

    # ------------------------------------------------------------------------------- scale (RS)
    async def _update_scale(self, request: web.Request, user: User, t: Target, body: Any) -> web.Response:
        body = self._decode_small(body, schema.SCALE)
        replicas = (body.get("spec") or {}).get("replicas")
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return await self._set_replicas(request, user, t, replicas, rv)

    async def _patch_scale(self, request: web.Request, user: User, t: Target, ctype: str,
                           body: Any) -> web.Response:
        await self.store.linearizable_barrier()
        current = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
        if current is None:
            raise E.not_found(t.res.plural, t.name, t.res.group)
        try:
            scale = patching.apply_patch(ctype, _scale_of(current), body)
        except patching.PatchError as exc:
            raise E.BadRequest(str(exc)) from exc
        scale = self._decode_small(scale, schema.SCALE)
        return await self._set_replicas(request, user, t, (scale.get("spec") or {}).get("replicas"), "")

    @staticmethod
    def _decode_small(body: Any, shape: schema.Struct) -> Obj:
        """A request object that is not stored (Scale, Eviction, DeleteOptions), typed as Go decodes it."""
        if not isinstance(body, dict):
            raise E.BadRequest(f"{shape.go_name} in version \"v1\" cannot be handled as a {shape.go_name}: json: "
                               f"cannot unmarshal {_json_type(body)} into Go value of type {shape.go_name}")
        mismatches, _ = schema.check_shape(body, shape)
        if mismatches:
            raise E.BadRequest(f"{shape.go_name} in version \"v1\" cannot be handled as a {shape.go_name}: "
                               f"{mismatches[0].message()}")
        decoded: Obj = schema.decoded(body, shape)
        return decoded

    async def _set_replicas(self, request: web.Request, user: User, t: Target, replicas: Any,
                            rv: str) -> web.Response:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise E.invalid("Scale", t.name, [E.invalid_value("spec.replicas", replicas,
                                                              "must be greater than or equal to 0")],
                            "autoscaling")

        def mutate(current: Obj) -> Obj:
            new = dict(current)
            new["spec"] = dict(current.get("spec") or {})
            new["spec"]["replicas"] = replicas
            return new

        resp = await self._guaranteed_update(request, user, Target(t.res, t.namespace, t.name, ""), mutate, rv)
        obj = json.loads(resp.body) if isinstance(resp.body, (bytes, bytearray)) else None
        return json_response(_scale_of(obj) if obj else {})

    # --------------------------------------------------------------------------------------- logs
    async def _pod_log(self, request: web.Request, user: User, t: Target) -> web.StreamResponse:
        """Proxy `pods/{name}/log` to the kubelet of the pod's node, as the Kubernetes API server does: the
        node advertises its port in `status.daemonEndpoints.kubeletEndpoint.Port`, the kubelet serves
        `/containerLogs/{namespace}/{pod}/{container}` on 127.0.0.1."""
        authorize(user, "get", t.res, t.namespace, t.name, "log")
        await self._consistent(request)
        pod = self.store.read(lambda s: s.get("pods", t.namespace, t.name))
        if pod is None:
            raise E.not_found("pods", t.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise E.BadRequest(f'pod {t.name} does not have a host assigned')
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container", "")
        if not container:
            if len(containers) != 1:
                raise E.BadRequest(f"a container name must be specified for pod {t.name}, choose one of: "
                                   f"[{' '.join(containers)}]")
            container = containers[0]
        node = self.store.read(lambda s: s.get("nodes", "", node_name))
        port = (((node or {}).get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port")
        if not port:
            raise E.BadRequest(f'the node "{node_name}" of pod {t.name} does not serve container logs '
                               "(no kubelet endpoint)")
        params = {k: v for k, v in request.query.items()
                  if k in ("tailLines", "follow", "previous", "timestamps", "sinceSeconds", "limitBytes")}
        url = f"http://127.0.0.1:{int(port)}/containerLogs/{t.namespace}/{t.name}/{container}"
        import aiohttp

        follow = _truthy(request.query.get("follow"))
        timeout = aiohttp.ClientTimeout(total=None if follow else 30, sock_connect=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, params=params) as upstream:
                    if upstream.status != 200:
                        raw = await upstream.read()
                        return web.Response(body=raw, status=upstream.status,
                                            content_type=upstream.content_type or "application/json")
                    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
                    await resp.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await resp.write(chunk)
                    await resp.write_eof()
                    return resp
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise E.InternalError(f'Get "{url}": {exc}') from exc


# ------------------------------------------------------------------------------------- helpers
def _truthy(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def _int_param(q: Any, name: str, default: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise E.BadRequest(f"invalid value for {name}: {raw!r}: must be an integer") from None
    if not -(2**63) <= value < 2**63:
        raise E.BadRequest(f"invalid value for {name}: {raw!r}: value out of range")
    return value


def _quoted_warning(text: str) -> str:
    """A warn-text as Kubernetes writes it (quotes and backslashes escaped, UTF-8 kept), with control
    characters made spaces as Go's HTTP server does: a field name from a client may hold a newline, which
    must not start a header of its own."""
    clean = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _entries(s: StoreState, plural: str) -> list[tuple[str, Obj]]:
    """(key, object) of one resource, unsorted: what a reader copies while it holds the store lock."""
    return list((s.objects.get(plural) or {}).items())


def _entry_key(entry: tuple[str, Obj]) -> str:
    return entry[0]


def _dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def _json_type(v: Any) -> str:
    return {str: "string", int: "number", float: "number", bool: "bool", list: "array",
            type(None): "null"}.get(type(v), "value")


def _selectors(q: Any, plural: str) -> tuple[LabelSelector, FieldSelector]:
    try:
        return parse_label_selector(q.get("labelSelector")), parse_field_selector(q.get("fieldSelector"), plural)
    except SelectorError as exc:
        raise E.BadRequest(str(exc)) from exc


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        if "as=Table" in part and "g=meta.k8s.io" in part:
            return True
        if part.strip().startswith("application/json") and "as=" not in part:
            return False
    return False


def _encode_continue(last_key: str, rv: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"start": last_key, "rv": rv}).encode()).decode()


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        return str(data["start"]), int(data["rv"])
    except (ValueError, KeyError, TypeError) as exc:
        raise E.BadRequest(f"continue key is not valid: {exc}") from exc


def _filtered_event(ev: WatchEvent, matches: Callable[[Obj | None], bool]) -> tuple[str, Obj] | None:
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


def _delete_answer(res: Resource, obj: Obj | None) -> Obj | None:
    """What DELETE answers, as Kubernetes' registry does: pods and namespaces (`ReturnDeletedObject`, or
    still finalizing) give the object; any other object that is gone gives a success `Status` naming it."""
    if obj is None or res.plural in ("pods", "namespaces") or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return obj
    meta = obj.get("metadata") or {}
    details: Obj = {"name": meta.get("name", "")}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.plural
    details["uid"] = meta.get("uid", "")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _scale_of(rs: Obj) -> Obj:
    from hacluster.model.selectors import selector_to_string

    meta = rs["metadata"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", ""), "uid": meta.get("uid"),
                         "resourceVersion": meta.get("resourceVersion"),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": (rs.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (rs.get("status") or {}).get("replicas", 0),
                       "selector": selector_to_string((rs.get("spec") or {}).get("selector"))}}


def _now_dt(clock: Callable[[], float]) -> Any:
    from datetime import datetime
    return datetime.fromtimestamp(clock(), tz=UTC)
