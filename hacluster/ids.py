"""Identifiers that proposers put into commands: object UIDs and request ids.

Called by the API server, the Raft layer and the controllers — never by the state machine, which only
receives them. `uuid.uuid4()` reads 16 bytes from the OS per call, a measurable share of a busy master's CPU;
these come from a per-process generator seeded from the OS once. They need to be unique, not secret.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid

_rng = random.Random(os.urandom(32))
_counter = itertools.count()
_prefix = os.urandom(6).hex()


def new_uid() -> str:
    """An RFC 4122 version-4 UUID string, as Kubernetes gives every object."""
    return str(uuid.UUID(int=_rng.getrandbits(128), version=4))


def new_request_id() -> str:
    """A request id unique across processes and restarts: a random per-process prefix and a counter."""
    return f"{_prefix}-{next(_counter):x}"
