"""Helpers shared by the tests on real processes."""

import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.02) -> Any:
    """Poll `cond` until it returns something truthy (returned) or `timeout_s` passes (AssertionError).
    A bounded wait for a condition of a live system, not a sleep standing in for synchronisation."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
