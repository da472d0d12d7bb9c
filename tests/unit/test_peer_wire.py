"""Raft peer framing (`hacluster.raft.peer_wire`): a frame is delivered only with the right MAC, in order; an
unsigned or wrongly signed pickle is refused without being unpickled, and the connection is closed."""

from __future__ import annotations

import pickle
import socket
import struct
import time
import zlib
from typing import Any

import pytest
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE

from hacluster.raft import peer_wire
from hacluster.raft.peer_wire import COMPRESS_MIN_BYTES, ForgedFrame, PeerAuthenticator, PeerConnection

UNPICKLED: list[str] = []


class _Exploit:
    """Unpickling this runs code: it appends to UNPICKLED."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (UNPICKLED.append, ("code ran",))


@pytest.fixture(autouse=True)
def _clear() -> None:
    UNPICKLED.clear()


AUTH = PeerAuthenticator("cluster-secret")


def test_a_sealed_message_opens_with_the_same_secret_and_frame_number() -> None:
    msg = {"type": "append_entries", "entries": [(b"\x01" * 1000, 7, 2)], "term": 2}
    frame = AUTH.seal(msg, 5)
    assert frame[:1] == b"\x00"  # small: not compressed
    assert PeerAuthenticator("cluster-secret").open(frame, 5) == msg


def test_only_large_bodies_are_compressed() -> None:
    big = {"data": b"a" * COMPRESS_MIN_BYTES}
    frame = AUTH.seal(big, 0)
    assert frame[:1] == b"\x01" and len(frame) < COMPRESS_MIN_BYTES // 10
    assert AUTH.open(frame, 0) == big


@pytest.mark.parametrize("case", ["wrong secret", "tampered", "replayed", "unsigned pickle", "short"])
def test_a_frame_without_a_valid_mac_is_refused_before_unpickling(case: str) -> None:
    evil = pickle.dumps(_Exploit())
    good = AUTH.seal(_Exploit(), 3)
    frame = {
        "wrong secret": PeerAuthenticator("another-secret").seal(_Exploit(), 3),
        "tampered": good[:-1] + bytes([good[-1] ^ 1]),
        "replayed": good,
        "unsigned pickle": b"\x00" + b"\x00" * 16 + evil,
        "short": b"\x00abc",
    }[case]
    seq = 4 if case == "replayed" else 3  # a frame seen before, at the next position
    with pytest.raises(ForgedFrame):
        AUTH.open(frame, seq)
    assert UNPICKLED == []


class _Peer:
    """A PeerConnection accepting one raw TCP client, polled by hand."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.client = socket.create_connection(self.server.getsockname())
        sock, _ = self.server.accept()
        sock.setblocking(False)
        self.poller = createPoller("auto")
        self.received: list[Any] = []
        self.conn = PeerConnection(self.poller, socket=sock, onMessageReceived=self.received.append)
        self.conn.encryptor = AUTH

    def pump(self, seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.conn.state != CONNECTION_STATE.DISCONNECTED:
            self.poller.poll(0.02)

    def close(self) -> None:
        self.conn.disconnect()
        self.client.close()
        self.server.close()


def _framed(frame: bytes) -> bytes:
    return struct.pack("i", len(frame)) + frame


def test_a_connection_delivers_signed_frames_in_order() -> None:
    peer = _Peer()
    try:
        peer.client.sendall(_framed(AUTH.seal("first", 0)) + _framed(AUTH.seal({"n": 2}, 1)))
        peer.pump()
        assert peer.received == ["first", {"n": 2}]
        assert peer.conn.state == CONNECTION_STATE.CONNECTED
    finally:
        peer.close()


@pytest.mark.parametrize("frame", [
    pytest.param(zlib.compress(pickle.dumps(_Exploit(), 2), 3), id="pysyncobj's unencrypted framing"),
    pytest.param(PeerAuthenticator("another-secret").seal(_Exploit(), 0), id="signed with another secret"),
])
def test_a_connection_refuses_an_unauthenticated_pickle_and_closes(frame: bytes) -> None:
    peer = _Peer()
    try:
        peer.client.sendall(_framed(frame))
        peer.pump()
        assert UNPICKLED == [] and peer.received == []
        assert peer.conn.state == CONNECTION_STATE.DISCONNECTED
    finally:
        peer.close()


def test_without_our_authenticator_a_connection_is_pysyncobjs_own() -> None:
    """The hook replaces pysyncobj's connection class everywhere; with no (or another) encryptor it keeps
    pysyncobj's framing (pickle + zlib)."""
    peer = _Peer()
    try:
        peer.conn.encryptor = None
        peer.client.sendall(_framed(zlib.compress(pickle.dumps({"plain": 1}, 2), 3)))
        peer.pump()
        assert peer.received == [{"plain": 1}]
    finally:
        peer.close()


def test_the_hook_is_installed_when_the_store_is_imported() -> None:
    import pysyncobj.tcp_server
    import pysyncobj.transport

    import hacluster.raft.replicated_store  # noqa: F401 (installs the hook)

    assert pysyncobj.transport.TcpConnection is peer_wire.PeerConnection
    assert pysyncobj.tcp_server.TcpConnection is peer_wire.PeerConnection


def test_a_message_larger_than_the_socket_buffer_goes_out_without_another_send() -> None:
    """A partial send subscribes the socket for "writable": the rest leaves as the receiver drains, with no
    later message or heartbeat to push it (pysyncobj waits for the next send)."""
    import os

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    for s in (client, accepted):
        s.setblocking(False)
    poller = createPoller("auto")
    received: list[Any] = []
    sender = PeerConnection(poller, socket=client, sendBufferSize=2**16)
    receiver = PeerConnection(poller, socket=accepted, onMessageReceived=received.append)
    sender.encryptor = receiver.encryptor = AUTH
    try:
        for _ in range(3):  # settle: an idle connection is subscribed for reading only
            poller.poll(0.01)
        big = {"serialized": os.urandom(4 * 2**20)}  # incompressible, far above the socket buffers
        sender.send(big)
        assert sender.getSendBufferSize() > 0, "the test needs a partial send"
        end = time.monotonic() + 10
        while not received and time.monotonic() < end:
            poller.poll(0.05)
        assert received == [big]
    finally:
        sender.disconnect()
        receiver.disconnect()
        server.close()
