"""What every API handler shares: the request keys it records, the query parameters it parses, who the caller
is, and how an answer (JSON or a Kubernetes `Status`) is written.

Used by the parts of the API server (`hacluster.apiserver.routing`, `frontdoor`, `decode`, `reads`,
`watchstream`, `writes`, `logproxy`, `nonresource`); imports none of them.
"""

from __future__ import annotations

import contextvars
import unicodedata
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from hacluster.apiserver.auth import Authenticator, User
from hacluster.model import errors as E
from hacluster.model.resources import Resource
from hacluster.model.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from hacluster.store.state import Result

Obj = dict[str, Any]

_json_encoder = msgspec.json.Encoder()


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
WRITER: contextvars.ContextVar[str] = contextvars.ContextVar("writer", default="")
"""Who the request's own task writes for: what its writes record in their trace."""


@dataclass(frozen=True)
class Target:
    """What a request path names."""

    res: Resource
    namespace: str
    name: str
    subresource: str


TARGET = web.RequestKey("target", Target)


def authenticate(authn: Authenticator, request: web.Request) -> User:
    user: User | None = request.get(USER)  # authenticated already by the admission middleware?
    if user is None:
        user = authn.authenticate(request.headers.get("Authorization"))
        request[USER] = user
    WRITER.set(user.name)  # the request's own task: what its writes record in their trace
    return user


def authenticate_as(authn: Authenticator, request: web.Request, verb: str, resource: str) -> User:
    """Authenticate a request to a handler of its own (reviews, metrics), naming it for the metrics."""
    request[VERB], request[RESOURCE] = verb, resource
    return authenticate(authn, request)


def with_warnings(resp: web.Response, warnings: list[str]) -> web.Response:
    for w in warnings:
        resp.headers.add("Warning", "299 - " + quoted_warning(w))
    return resp


def truthy(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def int_param(q: Any, name: str, default: int) -> int:
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


def quoted_warning(text: str) -> str:
    """A warn-text as Kubernetes writes it (quotes and backslashes escaped, UTF-8 kept), with control
    characters made spaces as Go's HTTP server does: a field name from a client may hold a newline, which
    must not start a header of its own."""
    clean = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def selectors(q: Any, plural: str) -> tuple[LabelSelector, FieldSelector]:
    try:
        return parse_label_selector(q.get("labelSelector")), parse_field_selector(q.get("fieldSelector"), plural)
    except SelectorError as exc:
        raise E.BadRequest(str(exc)) from exc


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        if "as=Table" in part and "g=meta.k8s.io" in part:
            return True
        if part.strip().startswith("application/json") and "as=" not in part:
            return False
    return False
