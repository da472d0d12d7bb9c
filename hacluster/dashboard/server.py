"""The dashboard's HTTP server (aiohttp, 127.0.0.1 only) and its one-time token.

Created by `hacluster dashboard` (hacluster/cli/dashboard_cmd.py). Every route needs the token, given as
`?token=` (the URL the command prints, as Jupyter does), as `Authorization: Bearer`, or as the cookie the
page sets on first load; without it the answer is 401 with a Kubernetes `Status`. Controls (POST) take
the token only from the header, so another site cannot fire them through the cookie.

Routes: `/` the page (with the first snapshot inlined), `/static/…` its script and style, `/events` the
snapshots over a WebSocket (one on connect, then one per change), `/api/state` one snapshot,
`/api/pods` a page of the pod list, `/api/flow` one pod's journey, `POST /api/fault` a fault,
`POST /api/pods` a pod from a template. Bad requests get 422 `Invalid` with a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from hacluster.client import ClientError, Indeterminate, Unreachable
from hacluster.dashboard.collect import Collector, fetch_pod_flow
from hacluster.dashboard.controls import (
    POD_TEMPLATES,
    Action,
    ControlError,
    FaultControls,
    parse_action,
    pod_from_template,
    template,
)

log = logging.getLogger(__name__)

COOKIE = "hacluster-dashboard"
PAGES_MAX = 32
HEARTBEAT_S = 15.0
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_response(code: int, reason: str, message: str) -> web.Response:
    """A Kubernetes `Status` answer."""
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def _static(name: str) -> bytes:
    return resources.files("hacluster.dashboard").joinpath("static", name).read_bytes()


class DashboardServer:
    """The aiohttp application of one dashboard."""

    def __init__(self, collector: Collector, *, token: str | None = None,
                 controls: FaultControls | None = None) -> None:
        self.collector = collector
        self.token = token or secrets.token_urlsafe(24)
        self.controls = controls
        self.stop = asyncio.Event()
        self._pages = 0
        self._fault_ends: dict[int, asyncio.Task[None]] = {}
        self._collect_task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------------------- application
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/static/{name}", self._static)
        r.add_get("/events", self._events)
        r.add_get("/api/state", self._state)
        r.add_get("/api/pods", self._pods)
        r.add_get("/api/flow", self._flow)
        r.add_post("/api/fault", self._fault)
        r.add_post("/api/pods", self._create_pod)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start(self, app: web.Application) -> None:
        self._collect_task = asyncio.create_task(self.collector.run(self.stop))

    async def _cleanup(self, app: web.Application) -> None:
        """Undo the faults the page started that are still timed, then stop collecting."""
        for index, task in list(self._fault_ends.items()):
            task.cancel()
            if self.controls is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.controls.end, index)
        self.stop.set()
        if self._collect_task is not None:
            await self._collect_task

    def _token_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())  # type: ignore[union-attr]

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        bearer = header[len("Bearer "):].strip() if header.startswith("Bearer ") else None
        if request.method == "GET":
            ok = any(self._token_ok(t) for t in (request.query.get("token"), bearer, request.cookies.get(COOKIE)))
        else:
            ok = self._token_ok(bearer)
        if not ok:
            return status_response(401, "Unauthorized", "Unauthorized: open the URL `hacluster dashboard` printed "
                                   "(it carries the token)")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return status_response(404, "NotFound", "the dashboard has no such page")
        except web.HTTPMethodNotAllowed:
            return status_response(405, "MethodNotAllowed", "the dashboard does not allow this method here")

    # ----------------------------------------------------------------------------------- pages
    async def _index(self, request: web.Request) -> web.Response:
        page = _static("index.html").decode()
        boot = json.dumps({"snapshot": self.collector.snapshot(), "controls": self.controls is not None,
                           "templates": [{"name": t.name, "title": t.title, "reaches": t.reaches}
                                         for t in POD_TEMPLATES]}).replace("</", "<\\/")
        resp = web.Response(text=page.replace("__BOOT__", boot), content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                                     "style-src 'self'; img-src 'self' data:"})
        resp.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return resp

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-store"})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.collector.snapshot())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The snapshots over a WebSocket: one at once, then one per change. (Not server-sent events: an
        endless HTTP response counts as a pending load, which stops headless Chromium's virtual clock.)"""
        if self._pages >= PAGES_MAX:
            return status_response(429, "TooManyRequests", f"at most {PAGES_MAX} pages at once")
        self._pages += 1
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
        try:
            await ws.prepare(request)
            reader = asyncio.create_task(self._drain(ws))
            seen = -1
            try:
                while not self.stop.is_set() and not ws.closed and not reader.done():
                    version = self.collector.version
                    if version != seen:
                        seen = version
                        await ws.send_str(json.dumps(self.collector.snapshot()))
                    else:
                        await self.collector.wait_change(seen, 1.0)
            finally:
                reader.cancel()
                await ws.close()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._pages -= 1
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        """Read (and ignore) what the page sends, so a close from its side is noticed."""
        async for _ in ws:
            pass

    async def _pods(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            offset, limit = int(q.get("offset", "0")), int(q.get("limit", "50"))
        except ValueError:
            return status_response(422, "Invalid", "offset and limit must be whole numbers")
        return web.json_response(self.collector.pods.page(status=q.get("status", ""), query=q.get("q", ""),
                                                          offset=offset, limit=limit))

    async def _flow(self, request: web.Request) -> web.Response:
        ns, name = request.query.get("namespace", "default"), request.query.get("name", "")
        if not _DNS_NAME.fullmatch(name) or not _DNS_NAME.fullmatch(ns):
            return status_response(422, "Invalid", "namespace and name must be lowercase DNS names")
        try:
            return web.json_response(await fetch_pod_flow(self.collector.api, ns, name))
        except ClientError as exc:
            return web.json_response(exc.status, status=exc.code)
        except (Unreachable, Indeterminate) as exc:
            return status_response(503, "ServiceUnavailable", f"no master answered: {exc}")

    # -------------------------------------------------------------------------------- controls
    async def _json_body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError as exc:
            raise ControlError(f"the body is not JSON: {exc}") from exc

    async def _fault(self, request: web.Request) -> web.Response:
        if self.controls is None:
            return status_response(403, "Forbidden", "this dashboard was started without controls")
        try:
            action = parse_action(await self._json_body(request), self.collector.ids)
        except ControlError as exc:
            return status_response(422, "Invalid", str(exc))
        try:
            if action.kind == "heal":
                for task in self._fault_ends.values():
                    task.cancel()
                self._fault_ends.clear()
                await asyncio.to_thread(self.controls.heal_all)
                return web.json_response({"message": "healed: every link restored, every master running"})
            started = await asyncio.to_thread(self.controls.start, action)
        except ControlError as exc:
            return status_response(409, "Conflict", str(exc))
        if started.index is not None and action.for_s > 0:
            self._fault_ends[started.index] = asyncio.create_task(self._end_later(started.index, action))
        return web.json_response({"message": started.message, "index": started.index})

    async def _end_later(self, index: int, action: Action) -> None:
        await asyncio.sleep(action.for_s)  # the fault's bounded duration, not a synchronisation
        self._fault_ends.pop(index, None)
        if self.controls is not None:
            try:
                await asyncio.to_thread(self.controls.end, index)
            except Exception:
                log.exception("ending fault %s", index)

    async def _create_pod(self, request: web.Request) -> web.Response:
        try:
            body = await self._json_body(request)
            if not isinstance(body, dict):
                raise ControlError("the body must be a JSON object")
            t = template(str(body.get("template", "")))
            pod = pod_from_template(t, secrets.token_hex(3))
        except ControlError as exc:
            return status_response(422, "Invalid", str(exc))
        try:
            created = await self.collector.api.post("/api/v1/namespaces/default/pods", pod)
        except ClientError as exc:
            return web.json_response(exc.status, status=exc.code)
        except Indeterminate as exc:
            return status_response(504, "Timeout", f"outcome unknown: {exc}")
        except Unreachable as exc:
            return status_response(503, "ServiceUnavailable", f"no master answered: {exc}")
        name = created["metadata"]["name"]
        self.collector.note("pod", f"created pod {name} ({t.title}, should reach {t.reaches})")
        return web.json_response({"message": f"pod {name} created", "name": name}, status=201)
