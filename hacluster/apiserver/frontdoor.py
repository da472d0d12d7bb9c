"""The API server's middlewares, outermost first: the audit event of every request, the one place every
error becomes a Kubernetes `Status` (and the request metrics are counted), and admission (a flow-control
seat, the request timeout, the per-user watch cap and the stalled-watcher drop).

Built by `hacluster.apiserver.server.ApiServer`, which hands `FrontDoor.middlewares()` to the application
(`hacluster.apiserver.routing`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hacluster.apiserver import audit, limits
from hacluster.apiserver.auth import Authenticator
from hacluster.apiserver.flowcontrol import FlowControl, Seat, is_long_running
from hacluster.apiserver.metrics import MasterMetrics
from hacluster.apiserver.request import COMMITTED, RESOURCE, TARGET, USER, VERB, status_response
from hacluster.config import ClusterConfig
from hacluster.ids import new_uid
from hacluster.model import errors as E
from hacluster.store.api import ReplicatedStore

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UNAUDITED_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
_METHOD_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
"""The verb of a request refused before its path was parsed (a list is then recorded as get)."""


class FrontDoor:
    """What every request passes through before and after its handler."""

    def __init__(self, cfg: ClusterConfig, master_id: str, store: ReplicatedStore, *, clock: Callable[[], float],
                 metrics: MasterMetrics, authn: Authenticator, flow: FlowControl, watch_caps: limits.WatchCaps,
                 audit_log: audit.AuditLog | None) -> None:
        self.cfg = cfg
        self.master_id = master_id
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.authn = authn
        self.flow = flow
        self.watch_caps = watch_caps
        self.audit_log = audit_log

    def middlewares(self) -> list[Any]:
        """The middlewares in the order aiohttp runs them, outermost first."""
        return [self._audit, self._status, self._admission]

    @web.middleware
    async def _status(self, request: web.Request,
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
