"""Commands of the replicated state machine: small, frozen, typed plain data.

Built by whoever proposes a change (API server handlers, the scheduler, controllers), encoded to bytes
with `encode()`, replicated through Raft as those bytes, decoded on every master with `decode()` and
applied by `hacluster.store.state.StoreState.apply`. Everything that varies between masters — the wall
time, new UIDs, the proposer's Raft term — is put into the command by its proposer, so the same log
gives the same state everywhere. Nothing callable ever crosses the wire: the payload is msgpack.

`request_id` makes a command idempotent: the state machine remembers recent request ids and answers a
repeated one with the first outcome, so a proposal can be retried safely after a leader change.
`fence_term` (0 = not fenced) is the Raft term a leader-only loop was elected in: the state machine
refuses the command if it has already seen a newer term, so a deposed leader cannot act.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec


class _Command(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    request_id: str = ""
    fence_term: int = 0


class Create(_Command, frozen=True, tag="create", kw_only=True):
    """Store a new object. `obj` is complete (name, uid, creationTimestamp set by the proposer)."""

    resource: str
    namespace: str
    obj: dict[str, Any]


class Replace(_Command, frozen=True, tag="replace", kw_only=True):
    """Replace an object (or only its status when `subresource == "status"`).

    `expected_rv` (a resourceVersion string, "" for none) makes it a compare-and-set: Conflict when the
    stored object has moved on. Identity fields (uid, creationTimestamp, deletionTimestamp) are kept from
    the stored object; the main resource keeps the stored status, the status subresource keeps the rest.
    """

    resource: str
    namespace: str
    name: str
    obj: dict[str, Any]
    expected_rv: str = ""
    subresource: str = ""


class Delete(_Command, frozen=True, tag="delete", kw_only=True):
    """Delete an object; pods bound to a node get a graceful deletion (deletionTimestamp) first.

    `grace_period_s` None means the pod's own terminationGracePeriodSeconds; 0 removes at once (the
    kubelet's confirmation, or a force delete). `time` is the proposer's wall clock (RFC 3339).
    """

    resource: str
    namespace: str
    name: str
    time: str
    grace_period_s: int | None = None
    expected_uid: str = ""
    expected_rv: str = ""


class Bind(_Command, frozen=True, tag="bind", kw_only=True):
    """Assign a pod to a node (the pods/binding subresource): refused if the pod is already bound.
    `annotations` are merged into the pod's, as Kubernetes merges a Binding's annotations."""

    namespace: str
    name: str
    node_name: str
    time: str
    expected_uid: str = ""
    annotations: dict[str, str] = {}


class LeaderElected(_Command, frozen=True, tag="leader", kw_only=True):
    """Proposed first by a new leader: records its term (fencing older terms) and ensures the system
    namespaces exist. `time` stamps those namespaces."""

    leader_id: str
    term: int
    time: str


class Barrier(_Command, frozen=True, tag="barrier", kw_only=True):
    """A no-op through the log: once applied, the local state holds every write committed before it.
    Linearizable reads wait for one."""


class Batch(_Command, frozen=True, tag="batch", kw_only=True):
    """Several commands applied in order in one log entry (each with its own result)."""

    commands: list[AnyCommand]


AnyCommand = Union[Create, Replace, Delete, Bind, LeaderElected, Barrier, Batch]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyCommand)


def encode(command: AnyCommand) -> bytes:
    """The bytes that travel through Raft for `command`."""
    return _encoder.encode(command)


def encode_checked(command: AnyCommand) -> bytes:
    """`encode`, proven to decode again: a value of the wrong type or out of range (which the API server's
    decoding should already have refused) fails here, before it takes a place in the log that every
    replica would then have to refuse."""
    return _round_trip(command)[0]


def encode_for_replication(command: AnyCommand) -> tuple[bytes, AnyCommand]:
    """`encode_checked` and `as_replicated` at once (one encode, one decode): the bytes for the log, and the
    command exactly as every replica will decode it from them."""
    return _round_trip(command)


def as_replicated(command: AnyCommand) -> AnyCommand:
    """`command` as a replica decodes it from the log (for an unreplicated store that must behave the same);
    CommandEncodingError as `encode_checked`."""
    return _round_trip(command)[1]


def _round_trip(command: AnyCommand) -> tuple[bytes, AnyCommand]:
    try:
        payload = _encoder.encode(command)
        return payload, _decoder.decode(payload)
    except (OverflowError, TypeError, ValueError, msgspec.DecodeError) as exc:
        raise CommandEncodingError(f"{type(command).__name__} cannot be replicated: {exc}") from exc


class CommandEncodingError(ValueError):
    """A command holds a value the Raft log encoding cannot carry."""


def decode(payload: bytes) -> AnyCommand:
    """Inverse of `encode`; raises msgspec.ValidationError / DecodeError on foreign bytes."""
    command: AnyCommand = _decoder.decode(payload)
    return command
