"""Errors that cross a boundary of hacluster, each mapped to one Kubernetes `Status` object.

Raised by validation, the store's results, the replication layer and the API server's handlers; the
API server turns any of them into an HTTP answer with `to_status()` in one place. Every error says
whether the operation *certainly did not happen* (`definite = True`: invalid input, not found, no
quorum before proposing) or *may have happened* (`definite = False`: a proposal whose outcome is
unknown). Histories and clients keep that distinction (see maelstrom's error table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Cause:
    """One field-level reason, as in `Status.details.causes`."""

    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueDuplicate, FieldValueNotSupported, ...
    message: str
    field: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def render(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ApiError(Exception):
    """Base of every error that maps to a Kubernetes Status; `code` is the HTTP status."""

    code = 500
    reason = "InternalError"
    definite = True

    def __init__(self, message: str, *, kind: str = "", name: str = "", group: str = "",
                 causes: tuple[Cause, ...] = (), retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = causes
        self.retry_after_s = retry_after_s

    def to_status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_s is not None:
            details["retryAfterSeconds"] = self.retry_after_s
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            status["details"] = details
        return status


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(ApiError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class Expired(ApiError):
    """A watch or list from a resourceVersion older than the kept history (HTTP 410 Gone)."""

    code = 410
    reason = "Expired"


class TooLarge(ApiError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    """Validation failed; `causes` names every field at fault (HTTP 422)."""

    code = 422
    reason = "Invalid"


class TooManyRequests(ApiError):
    """Refused by the master's flow control (in-flight limits, a full queue, a watch cap) before anything was
    done: a definite failure; retry after `retry_after_s` (HTTP 429)."""

    code = 429
    reason = "TooManyRequests"


class RequestTimeout(ApiError):
    """The client did not send its request body in time; nothing was done (HTTP 408)."""

    code = 408
    reason = "Timeout"


class Unavailable(ApiError):
    """No leader or no quorum *before* anything was proposed: the operation certainly did not happen."""

    code = 503
    reason = "ServiceUnavailable"


class Timeout(ApiError):
    """A proposal whose outcome is unknown: it may or may not have been committed (HTTP 504)."""

    code = 504
    reason = "Timeout"
    definite = False


class InternalError(ApiError):
    code = 500
    reason = "InternalError"
    definite = False


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as plain data, the way the state machine returns it (errors never raise there)."""

    reason: str
    message: str
    kind: str = ""
    name: str = ""
    causes: tuple[Cause, ...] = field(default_factory=tuple)


_BY_REASON: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, AlreadyExists, Conflict,
                Expired, TooLarge, Invalid, Unavailable, Timeout, InternalError)
}


def error_from_reason(reason: str, message: str, *, kind: str = "", name: str = "",
                      causes: tuple[Cause, ...] = ()) -> ApiError:
    """Build the ApiError for a reason the state machine reported."""
    cls = _BY_REASON.get(reason, InternalError)
    return cls(message, kind=kind, name=name, causes=causes)


def not_found(resource: str, name: str, group: str = "") -> NotFound:
    what = f"{resource}.{group}" if group else resource
    return NotFound(f'{what} "{name}" not found', kind=resource, name=name, group=group)


def already_exists(resource: str, name: str, group: str = "") -> AlreadyExists:
    what = f"{resource}.{group}" if group else resource
    return AlreadyExists(f'{what} "{name}" already exists', kind=resource, name=name, group=group)


def conflict(resource: str, name: str, group: str = "") -> Conflict:
    what = f"{resource}.{group}" if group else resource
    return Conflict(
        f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=resource, name=name, group=group)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> Invalid:
    """Kubernetes' wording: `Pod "bad" is invalid: spec.containers: Required value` ([a, b] when many)."""
    rendered = [c.render() for c in causes]
    detail = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return Invalid(f'{qualified} "{name}" is invalid: {detail}', kind=kind, name=name, group=group,
                   causes=tuple(causes))


def required(path: str) -> Cause:
    return Cause("FieldValueRequired", "Required value", path)


def invalid_value(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_go_repr(value)}: {detail}", path)


def duplicate(path: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {_go_repr(value)}", path)


def not_supported(path: str, value: Any, supported: list[str]) -> Cause:
    values = ", ".join(f'"{v}"' for v in supported)
    return Cause("FieldValueNotSupported", f"Unsupported value: {_go_repr(value)}: supported values: {values}",
                 path)


def forbidden_field(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", path)


def too_long(path: str, value: Any, limit: int) -> Cause:
    return Cause("FieldValueTooLong", f"Too long: may not be more than {limit} bytes", path)


def type_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueTypeInvalid", f"Invalid value: {_go_repr(value)}: {detail}", path)


def _go_repr(value: Any) -> str:
    """How Kubernetes' field errors quote a value: strings in double quotes, numbers bare."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value) + '"'
