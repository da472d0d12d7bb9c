"""The API server's application: its route table, and the dispatch of a resource path (`/api/v1/...`,
`/apis/{group}/{version}/...`) to the handler of its verb.

Built by `hacluster.apiserver.server.ApiServer`, which hands it the parts it routes to.
"""

from __future__ import annotations

from aiohttp import web

from hacluster.apiserver import discovery, metrics_api, reviews
from hacluster.apiserver.auth import Authenticator, User
from hacluster.apiserver.decode import BodyDecoder
from hacluster.apiserver.frontdoor import FrontDoor
from hacluster.apiserver.logproxy import LogProxy
from hacluster.apiserver.nonresource import NonResource
from hacluster.apiserver.reads import Reads
from hacluster.apiserver.request import (
    RESOURCE,
    TARGET,
    VERB,
    Target,
    authenticate,
    authenticate_as,
    json_response,
    truthy,
)
from hacluster.apiserver.watchstream import WatchStreams
from hacluster.apiserver.writes import Writes
from hacluster.config import ClusterConfig
from hacluster.model import errors as E
from hacluster.model import resources
from hacluster.store.api import ReplicatedStore


class Routes:
    """Maps every URL of the API to its handler."""

    def __init__(self, cfg: ClusterConfig, store: ReplicatedStore, *, authn: Authenticator, front: FrontDoor,
                 info: NonResource, decoder: BodyDecoder, reads: Reads, watches: WatchStreams, writes: Writes,
                 logs: LogProxy) -> None:
        self.cfg = cfg
        self.store = store
        self.authn = authn
        self.front = front
        self.info = info
        self.decoder = decoder
        self.reads = reads
        self.watches = watches
        self.writes = writes
        self.logs = logs

    def app(self) -> web.Application:
        app = web.Application(middlewares=self.front.middlewares(), client_max_size=self.cfg.api.max_body_bytes)
        info = self.info
        r = app.router
        r.add_get("/version", info.version)
        r.add_get("/version/", info.version)
        r.add_get("/healthz", info.healthz)
        r.add_get("/livez", info.healthz)
        r.add_get("/readyz", info.readyz)
        r.add_get("/metrics", info.prometheus_metrics)
        r.add_get("/debug/raft", info.debug_raft)
        r.add_post("/debug/storage/fault", info.storage_fault)
        r.add_get("/debug/trace/{resource}/{namespace}/{name}", info.debug_trace)
        r.add_get("/openapi/v2", info.openapi)
        r.add_get("/api", info.api_versions)
        r.add_get("/api/", info.api_versions)
        r.add_get("/apis", info.api_groups)
        r.add_get("/apis/", info.api_groups)
        # APIs with handlers of their own (not stored), before the generic group routes that would take them:
        reviews.add_routes(r, authenticate=self._authenticate_as, read_body=self.decoder.read_body)
        metrics_api.add_routes(r, authenticate=self._authenticate_as, store=self.store)
        r.add_route("*", "/api/v1", self._dispatch_core)
        r.add_route("*", "/api/v1/{tail:.*}", self._dispatch_core)
        r.add_get("/apis/{group}", info.api_group)
        r.add_route("*", "/apis/{group}/{version}", self._dispatch_group)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._dispatch_group)
        return app

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
                return await self.logs.pod_log(request, user, target)
            if target.name and target.subresource not in ("", "status", "scale"):
                raise E.NotFound("the server could not find the requested resource")
            if target.name and not watch_path:
                request[VERB] = "get"
                return await self.reads.get_object(request, user, target)
            if watch_path or truthy(q.get("watch")):
                request[VERB] = "watch"
                return await self.watches.watch(request, user, target)
            request[VERB] = "list"
            return await self.reads.list_objects(request, user, target)
        if method == "POST":
            request[VERB] = "create"
            if target.subresource == "binding" and target.res.plural == "pods":
                return await self.writes.bind(request, user, target)
            if target.subresource == "eviction" and target.res.plural == "pods":
                return await self.writes.evict(request, user, target)
            if target.name:
                raise E.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self.writes.create(request, user, target)
        if method == "PUT":
            request[VERB] = "update"
            self._need_name(target)
            return await self.writes.update(request, user, target)
        if method == "PATCH":
            request[VERB] = "patch"
            self._need_name(target)
            return await self.writes.patch(request, user, target)
        if method == "DELETE":
            request[VERB] = "delete"
            if not target.name:
                return await self.writes.delete_collection(request, user, target)
            return await self.writes.delete(request, user, target)
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
        return authenticate_as(self.authn, request, verb, resource)

    def _authenticate(self, request: web.Request) -> User:
        return authenticate(self.authn, request)
