"""Definite and unknown outcomes of an API request: the one table every client of the API reads.

Used by `hacluster/client.py` (ApiClient: `ClientError`, `Indeterminate`, `Unreachable`),
`hacluster/cli/kube.py` (the kubectl-like client's failover) and `chaos/workload.py` (a history's
`ok` / `fail` / `info`). As in maelstrom's error table, "refused" and "invalid" mean the request did not
happen, while a timeout after it was sent means it may have; a client repeats a request only when that is
safe (`retry_elsewhere`), and a history records an unknown outcome as `info`.

An outcome comes from an HTTP status (`of_status`) or from how the exchange broke (`of_transport`):

| what                                                   | outcome      | definite                            |
| ------------------------------------------------------ | ------------ | ----------------------------------- |
| 1xx, 2xx, 3xx                                          | OK           | yes                                 |
| 503, 429, connection refused, body not sent            | REFUSED      | yes: nothing done; try another master |
| any other 4xx                                          | REJECTED     | yes: nothing done; the answer       |
| 504, timeout or connection lost after the request left | UNKNOWN      | no                                  |
| any other 5xx                                          | SERVER_ERROR | no: the server failed handling it   |
"""

from __future__ import annotations

from enum import Enum


class Outcome(Enum):
    """How a request ended (see the module's table)."""

    OK = "ok"
    REFUSED = "refused"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    SERVER_ERROR = "server error"

    @property
    def definite(self) -> bool:
        """True when the request is known to have taken effect (OK) or known not to have."""
        return self in (Outcome.OK, Outcome.REFUSED, Outcome.REJECTED)


class Transport(Enum):
    """How an exchange broke before an HTTP status came back."""

    CONNECT_REFUSED = "connect refused"  # no connection was made: nothing was sent
    BODY_NOT_SENT = "body not sent"  # the request's body could not be written: the server never acted on it
    NO_ANSWER = "no answer"  # timeout or connection lost after the request (or part of it) left


def of_status(code: int) -> Outcome:
    """The outcome an HTTP status means."""
    if code < 400:
        return Outcome.OK
    if code in (429, 503):
        return Outcome.REFUSED
    if code < 500:
        return Outcome.REJECTED
    if code == 504:
        return Outcome.UNKNOWN
    return Outcome.SERVER_ERROR


def of_transport(failure: Transport) -> Outcome:
    """The outcome of an exchange that broke before a status came back."""
    return Outcome.UNKNOWN if failure is Transport.NO_ANSWER else Outcome.REFUSED


def retry_elsewhere(outcome: Outcome, *, idempotent: bool) -> bool:
    """Should the client send the request again (to the next master)? Yes when nothing was done (REFUSED),
    and after an UNKNOWN outcome when repeating it is safe (GET, PUT, DELETE, a merge PATCH). Never after an
    answer (OK, REJECTED) or a SERVER_ERROR, which the caller gets as it came."""
    return outcome is Outcome.REFUSED or (outcome is Outcome.UNKNOWN and idempotent)


def history_kind(outcome: Outcome, *, read_only: bool) -> str:
    """A history's completion: `ok`, `fail` (definitely not done) or `info` (maybe done). A read that did
    not succeed is `fail` whatever happened: it changes nothing."""
    if outcome is Outcome.OK:
        return "ok"
    if outcome.definite or read_only:
        return "fail"
    return "info"
