"""An asyncio client of the hacluster API that knows every master and moves between them.

Used by kubelets, the demo, benchmarks and chaos workloads. A request goes to the current master; on a
connection error, a 503 (no leader/quorum there), a 429 (that master's flow control refused it) or — for
requests that are safe to repeat — a 504, it moves to the next master and tries again until its deadline,
waiting first as long as the answer's `Retry-After` asks (as client-go does). Non-idempotent requests (create) are not
repeated after an outcome-unknown answer: the caller gets `Indeterminate` and decides. Which answer means
what is `hacluster.model.outcomes`' table, shared with the CLI and the chaos workload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from hacluster.model.outcomes import Outcome, Transport, of_status, of_transport, retry_elsewhere

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
RETRY_AFTER_MAX_S = 10.0  # a Retry-After longer than this (or than the deadline) is cut short


class ClientError(Exception):
    """An answer from the server that is not a success (a Kubernetes Status): a definite refusal (4xx), or a
    server error (5xx other than 503 and 504: `Outcome.SERVER_ERROR`, which is not repeated)."""

    def __init__(self, code: int, status: dict[str, Any], endpoint: str) -> None:
        self.code = code
        self.status = status
        self.endpoint = endpoint
        self.reason = str(status.get("reason", "")) if isinstance(status, dict) else ""
        msg = status.get("message", "") if isinstance(status, dict) else str(status)
        super().__init__(f"{code} {self.reason}: {msg}")


def retry_after_s(err: ClientError) -> float:
    """The pause a refusal asks for (a Status' `details.retryAfterSeconds`, as a 429 carries it), capped; 0
    when it asks for none."""
    details = err.status.get("details") if isinstance(err.status, dict) else None
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
        return 0.0
    return min(float(seconds), RETRY_AFTER_MAX_S)


class Indeterminate(Exception):
    """The request may or may not have taken effect (timeout, 504, connection lost after sending)."""

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class Unreachable(Exception):
    """No master gave a definite answer before the deadline, and nothing was sent that could have applied."""


def transport_failure(exc: BaseException, *, body_check: bool = False) -> Transport:
    """How an aiohttp exchange broke: no connection made (nothing sent), or no answer after sending. With
    `body_check`, a body that aiohttp could not write counts as not sent (`body_not_sent`); the ApiClient
    does not check it and takes such a failure as an unknown outcome."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Transport.CONNECT_REFUSED
    if body_check and body_not_sent(exc):
        return Transport.BODY_NOT_SENT
    return Transport.NO_ANSWER


# aiohttp's words for a request whose body never went out: the connection was already closing when the body
# was to be written (`StreamWriter` refuses to write to a closing transport, so not one byte of it was queued).
_BODY_NOT_SENT = ("Can not write request body", "Failed to send bytes into the underlying connection")


def body_not_sent(exc: BaseException) -> bool:
    """Did the request provably not reach the server whole? Its body could not be written: the API server
    reads the whole body (Content-Length) before it acts, so such a request was never processed. Only for
    bodies smaller than aiohttp's write buffer limit (64 KiB), which it writes in one piece without waiting."""
    return isinstance(exc, aiohttp.ClientError) and any(words in str(exc) for words in _BODY_NOT_SENT)


@dataclass
class Response:
    code: int
    body: Any
    endpoint: str
    retry_after_s: float | None = None


def retry_after_of(value: str | None) -> float | None:
    """Seconds of a `Retry-After` header (the delay form; Kubernetes never sends a date), capped."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    if seconds is None or seconds != seconds or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX_S)


class ApiClient:
    """One aiohttp session, several masters. Close it with `await client.close()`."""

    def __init__(self, endpoints: list[str], token: str, *, request_timeout_s: float = 5.0,
                 deadline_s: float = 15.0, connection_limit: int = 100) -> None:
        if not endpoints:
            raise ValueError("no API endpoints")
        self.endpoints = list(endpoints)
        self.current = 0
        self.token = token
        self.request_timeout_s = request_timeout_s
        self.deadline_s = deadline_s
        self._session: aiohttp.ClientSession | None = None
        self._limit = connection_limit

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"},
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _rotate(self, failed: str) -> None:
        if self.endpoints[self.current] == failed:
            self.current = (self.current + 1) % len(self.endpoints)

    async def request_once(self, method: str, endpoint: str, path: str, body: Any = None, *,
                           content_type: str = "application/json",
                           params: dict[str, str] | None = None, timeout_s: float | None = None) -> Response:
        """One HTTP exchange with one master; raises aiohttp/asyncio errors as they come."""
        data = None if body is None else (body if isinstance(body, bytes) else _encoder.encode(body))
        headers = {"Content-Type": content_type} if data is not None else {}
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.request_timeout_s)
        async with self.session.request(method, endpoint + path, data=data, headers=headers, params=params,
                                        timeout=timeout) as resp:
            raw = await resp.read()
            try:
                parsed = _decoder.decode(raw) if raw else None
            except msgspec.DecodeError:
                parsed = raw.decode(errors="replace")
            return Response(resp.status, parsed, endpoint, retry_after_of(resp.headers.get("Retry-After")))

    async def request(self, method: str, path: str, body: Any = None, *, idempotent: bool | None = None,
                      content_type: str = "application/json", params: dict[str, str] | None = None,
                      deadline_s: float | None = None) -> Response:
        """Send to the current master, failing over; raise ClientError, Indeterminate or Unreachable."""
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE")
        deadline = time.monotonic() + (deadline_s or self.deadline_s)
        attempt = 0
        last = "no attempt"
        while time.monotonic() < deadline:
            endpoint = self.endpoints[self.current]
            attempt += 1
            try:
                remaining = max(0.05, min(self.request_timeout_s, deadline - time.monotonic()))
                resp = await self.request_once(method, endpoint, path, body, content_type=content_type,
                                               params=params, timeout_s=remaining)
            except (TimeoutError, aiohttp.ClientError) as exc:
                failure = transport_failure(exc)
                last = f"{endpoint}: {exc}" if failure is Transport.CONNECT_REFUSED else \
                    f"{endpoint}: {type(exc).__name__} {exc}"
                self._rotate(endpoint)
                if not retry_elsewhere(of_transport(failure), idempotent=idempotent):
                    raise Indeterminate(f"no answer from {endpoint}: {last}", endpoint) from exc
                if failure is Transport.CONNECT_REFUSED:
                    await asyncio.sleep(min(0.05 * attempt, 0.5))  # back-off between masters, bounded
                continue
            outcome = of_status(resp.code)
            if outcome is Outcome.OK:
                return resp
            if retry_elsewhere(outcome, idempotent=idempotent):
                last = f"{endpoint}: {resp.code}"
                self._rotate(endpoint)
                pause = min(0.05 * attempt, 0.5)
                if resp.code == 429 and resp.retry_after_s is not None:
                    pause = resp.retry_after_s  # the master asked for it: a flood must not be fed faster
                await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                continue
            if outcome is Outcome.UNKNOWN:
                raise Indeterminate(f"{endpoint}: {resp.code} outcome unknown", endpoint)
            # REJECTED (a definite refusal) or SERVER_ERROR: the answer, as the server gave it.
            raise ClientError(resp.code, resp.body if isinstance(resp.body, dict) else {"message": resp.body},
                              endpoint)
        raise Unreachable(f"no master answered before the deadline ({last})")

    async def get(self, path: str, **kw: Any) -> Any:
        return (await self.request("GET", path, **kw)).body

    async def post(self, path: str, body: Any, **kw: Any) -> Any:
        return (await self.request("POST", path, body, **kw)).body

    async def put(self, path: str, body: Any, **kw: Any) -> Any:
        return (await self.request("PUT", path, body, **kw)).body

    async def patch(self, path: str, body: Any, *, patch_type: str = "application/merge-patch+json",
                    **kw: Any) -> Any:
        return (await self.request("PATCH", path, body, content_type=patch_type, idempotent=True, **kw)).body

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Any:
        return (await self.request("DELETE", path, body, **kw)).body

    async def watch(self, path: str, *, resource_version: str = "", timeout_s: int = 60,
                    params: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events from the current master until it closes the stream (one attempt)."""
        q = {"watch": "true", "timeoutSeconds": str(timeout_s), "allowWatchBookmarks": "true"}
        if resource_version:
            q["resourceVersion"] = resource_version
        q.update(params or {})
        endpoint = self.endpoints[self.current]
        timeout = aiohttp.ClientTimeout(total=timeout_s + 10, sock_connect=self.request_timeout_s)
        try:
            async with self.session.get(endpoint + path, params=q, timeout=timeout) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    try:
                        status = _decoder.decode(raw)
                    except msgspec.DecodeError:
                        status = {"message": raw.decode(errors="replace")}
                    if retry_elsewhere(of_status(resp.status), idempotent=True):  # 429, 503, 504
                        self._rotate(endpoint)
                    raise ClientError(resp.status, status, endpoint)
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            yield _decoder.decode(line)
        except (TimeoutError, aiohttp.ClientError):
            self._rotate(endpoint)
            raise
