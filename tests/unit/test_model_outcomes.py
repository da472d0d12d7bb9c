"""The definite/unknown outcome table (hacluster/model/outcomes.py) every API client reads."""

from __future__ import annotations

import pytest

from hacluster.model.outcomes import Outcome, Transport, history_kind, of_status, of_transport, retry_elsewhere

O = Outcome

# status → outcome, retried when idempotent, retried when not, history kind (write), history kind (read)
STATUS_TABLE = [
    (200, O.OK, False, False, "ok", "ok"),
    (201, O.OK, False, False, "ok", "ok"),
    (204, O.OK, False, False, "ok", "ok"),
    (400, O.REJECTED, False, False, "fail", "fail"),
    (404, O.REJECTED, False, False, "fail", "fail"),
    (409, O.REJECTED, False, False, "fail", "fail"),
    (422, O.REJECTED, False, False, "fail", "fail"),
    (429, O.REFUSED, True, True, "fail", "fail"),
    (503, O.REFUSED, True, True, "fail", "fail"),
    (504, O.UNKNOWN, True, False, "info", "fail"),
    (500, O.SERVER_ERROR, False, False, "info", "fail"),
    (502, O.SERVER_ERROR, False, False, "info", "fail"),
]


@pytest.mark.parametrize(("code", "outcome", "retry_idem", "retry_other", "write_kind", "read_kind"), STATUS_TABLE)
def test_statuses(code: int, outcome: Outcome, retry_idem: bool, retry_other: bool, write_kind: str,
                  read_kind: str) -> None:
    assert of_status(code) is outcome
    assert retry_elsewhere(outcome, idempotent=True) is retry_idem
    assert retry_elsewhere(outcome, idempotent=False) is retry_other
    assert history_kind(outcome, read_only=False) == write_kind
    assert history_kind(outcome, read_only=True) == read_kind


TRANSPORT_TABLE = [
    (Transport.CONNECT_REFUSED, O.REFUSED, True, True, "fail"),
    (Transport.BODY_NOT_SENT, O.REFUSED, True, True, "fail"),
    (Transport.NO_ANSWER, O.UNKNOWN, True, False, "info"),
]


@pytest.mark.parametrize(("failure", "outcome", "retry_idem", "retry_other", "write_kind"), TRANSPORT_TABLE)
def test_transport_failures(failure: Transport, outcome: Outcome, retry_idem: bool, retry_other: bool,
                            write_kind: str) -> None:
    assert of_transport(failure) is outcome
    assert retry_elsewhere(outcome, idempotent=True) is retry_idem
    assert retry_elsewhere(outcome, idempotent=False) is retry_other
    assert history_kind(outcome, read_only=False) == write_kind
    assert history_kind(outcome, read_only=True) == ("fail" if outcome is not O.OK else "ok")


def test_definite_outcomes() -> None:
    assert {o for o in Outcome if o.definite} == {O.OK, O.REFUSED, O.REJECTED}
