"""Who am I and what may I do: SelfSubjectAccessReview, SelfSubjectRulesReview and SelfSubjectReview.

Served by the API server (`add_routes`) under `authorization.k8s.io/v1` and `authentication.k8s.io/v1`
for `kubectl auth can-i [--list]` and `kubectl auth whoami`. Nothing is stored: each answer comes from the
same `hacluster.apiserver.auth.authorize` every other request goes through, so "yes" means the request
would be allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hacluster.apiserver import protowire
from hacluster.apiserver.auth import READ_VERBS, User, authorize
from hacluster.model import errors as E
from hacluster.model import resources, schema
from hacluster.model.resources import Resource

Obj = dict[str, Any]
Authenticate = Callable[[web.Request, str, str], User]
"""The API server's authentication of a request (request, verb, resource name for its metrics)."""
ReadBody = Callable[[web.Request], Awaitable[Any]]
"""The API server's reading of a JSON or YAML body (bounded, errors as Kubernetes Status)."""


def resource_for(group: str, plural: str) -> Resource:
    """The served resource `plural` of `group`, or a stand-in for one hacluster does not serve (the
    rules are the same: the admin may do anything, others may read)."""
    for r in resources.ALL:
        if r.group == group and r.plural == plural:
            return r
    return Resource(plural, plural, plural, group, "v1", True, schema.Struct(plural, {}))


def access_allowed(user: User, attributes: Obj) -> tuple[bool, str]:
    """(allowed, reason) for the request described by a SubjectAccessReview's `resourceAttributes`."""
    verb = str(attributes.get("verb") or "")
    plural = str(attributes.get("resource") or "")
    if verb == "*" or plural == "*":
        return user.is_admin, "system:masters may do anything" if user.is_admin else ""
    res = resource_for(str(attributes.get("group") or ""), plural)
    try:
        authorize(user, verb, res, str(attributes.get("namespace") or ""), str(attributes.get("name") or ""),
                  str(attributes.get("subresource") or ""))
    except E.Forbidden:
        return False, ""  # as RBAC denies: no reason (kubectl prints a bare "no")
    if user.is_admin:
        return True, "system:masters may do anything"
    return True, "read access is granted to every authenticated user" if verb in READ_VERBS else "allowed"


def non_resource_allowed(user: User, attributes: Obj) -> bool:
    """Non-resource URLs (/healthz, /metrics …): the admin may do anything, everybody may get."""
    return user.is_admin or str(attributes.get("verb") or "") == "get"


def rules_for(user: User) -> tuple[list[Obj], list[Obj]]:
    """(resourceRules, nonResourceRules) of a SelfSubjectRulesReview."""
    if user.is_admin:
        return ([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                [{"verbs": ["*"], "nonResourceURLs": ["*"]}])
    rules = [{"verbs": sorted(READ_VERBS), "apiGroups": ["*"], "resources": ["*"]}]
    if user.node_name is not None:
        rules += [
            {"verbs": ["create", "patch", "update"], "apiGroups": [""], "resources": ["events"]},
            {"verbs": ["create", "get", "patch", "update"], "apiGroups": [""], "resources": ["nodes"],
             "resourceNames": [user.node_name]},
            {"verbs": ["patch", "update"], "apiGroups": [""], "resources": ["pods/status"]},
            {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["create", "patch", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [user.node_name]},
        ]
    return rules, [{"verbs": ["get"], "nonResourceURLs": ["*"]}]


def add_routes(router: web.UrlDispatcher, *, authenticate: Authenticate, read_body: ReadBody) -> None:
    """Register the review endpoints (before the API server's generic group routes)."""

    async def review_body(request: web.Request, kind: str) -> tuple[User, Obj]:
        user = authenticate(request, "create", kind.lower() + "s")
        if "protobuf" in (request.content_type or "").lower():
            try:
                body: Any = protowire.decode_review(await request.read())  # bounded by the app's client_max_size
            except protowire.ProtobufError as exc:
                raise E.BadRequest(f"{kind} in version \"v1\" cannot be handled as a {kind}: {exc}") from exc
        else:
            body = await read_body(request)
        if not isinstance(body, dict):
            raise E.BadRequest(f"{kind} in version \"v1\" cannot be handled as a {kind}: expected an object")
        if body.get("kind") not in (None, "", kind):
            raise E.BadRequest(f"the object provided is unrecognized (must be of type {kind}): object kind "
                               f"{body.get('kind')} does not match {kind}")
        return user, body

    async def access_review(request: web.Request) -> web.Response:
        user, body = await review_body(request, "SelfSubjectAccessReview")
        spec: Obj = body["spec"] if isinstance(body.get("spec"), dict) else {}
        resource_attrs, non_resource_attrs = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if isinstance(resource_attrs, dict) == isinstance(non_resource_attrs, dict):
            raise E.invalid("SelfSubjectAccessReview", "", [E.invalid_value(
                "spec.resourceAttributes", None,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified")],
                "authorization.k8s.io")
        if isinstance(resource_attrs, dict):
            allowed, reason = access_allowed(user, resource_attrs)
        else:
            allowed, reason = non_resource_allowed(user, non_resource_attrs or {}), ""
        status: Obj = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return _answer(body, "SelfSubjectAccessReview", "authorization.k8s.io/v1", spec, status)

    async def rules_review(request: web.Request) -> web.Response:
        user, body = await review_body(request, "SelfSubjectRulesReview")
        resource_rules, non_resource_rules = rules_for(user)
        spec = body["spec"] if isinstance(body.get("spec"), dict) else {}
        return _answer(body, "SelfSubjectRulesReview", "authorization.k8s.io/v1", spec,
                       {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                        "incomplete": False})

    async def self_review(request: web.Request) -> web.Response:
        user, body = await review_body(request, "SelfSubjectReview")
        return _answer(body, "SelfSubjectReview", "authentication.k8s.io/v1", None,
                       {"userInfo": {"username": user.name, "groups": [*user.groups, "system:authenticated"]}})

    router.add_post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", access_review)
    router.add_post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", rules_review)
    router.add_post("/apis/authentication.k8s.io/v1/selfsubjectreviews", self_review)


def _answer(body: Obj, kind: str, api_version: str, spec: Obj | None, status: Obj) -> web.Response:
    out: Obj = {"kind": kind, "apiVersion": api_version,
                "metadata": {"creationTimestamp": None}}
    if spec is not None:
        out["spec"] = spec
    out["status"] = status
    return web.json_response(out, status=201)
