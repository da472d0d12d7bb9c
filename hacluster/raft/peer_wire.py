"""How Raft messages between masters are framed: authenticated with a keyed BLAKE2b MAC, not encrypted.

pysyncobj 0.3.17 protects its peer connections with its `password`: every message is pickled, compressed with
zlib and encrypted with Fernet (AES-CBC, HMAC-SHA256 and base64) — on the leader, once per message and
follower. On one machine the masters' Raft ports are loopback addresses, where reading another process's
traffic takes root on the host — who can read the masters' data directories as well — so confidentiality
buys little there (masters on several hosts need a private network or a VPN between them: README, "Beyond
one machine"). Authentication is what matters: pysyncobj unpickles whatever arrives, so an
unauthenticated byte string on the Raft port, from any local user, would run code. This module keeps the
authentication and drops the rest (a deployment whose Raft links leave the host would want TLS instead):

- a frame is `flag (1 byte) | MAC (16 bytes) | body`; the MAC is keyed BLAKE2b over the connection's frame
  number, the flag and the body, with a key derived from the cluster's shared secret (`raft.password`)
  once per process (PBKDF2, as pysyncobj derived its Fernet key). A frame whose MAC does not match is never
  unpickled: the connection is closed. The frame number (per connection and direction) makes a replayed,
  dropped or reordered frame fail the check; pysyncobj's random per-connection keys (exchanged in the first
  frame each way and carried in every later message) still tie messages to one connection.
- the body is the message pickled with the highest protocol (pysyncobj uses protocol 2, which turns every
  `bytes` entry into a latin-1 string and back), compressed with zlib only from COMPRESS_MIN_BYTES on (a
  snapshot, a lagging follower's catch-up batch): loopback and LAN links gain nothing from compressing a
  few kilobytes, and the leader paid for it once per message and follower.
- after a partial send the connection asks its poller for "writable", so the rest goes out as soon as the
  socket drains, not with the next message or heartbeat.

Hooked into pysyncobj like the journal (`hacluster.raft.replicated_store`): `install_peer_wire_hook` makes
pysyncobj's transport and server build `PeerConnection`s, which behave exactly like pysyncobj's own
`TcpConnection` unless their `encryptor` is a `PeerAuthenticator` (the pysyncobj subclass in
`replicated_store` supplies one instead of building a Fernet). Relies on TcpConnection's private fields and
methods listed in `tests/unit/test_pysyncobj_internals.py`; `tests/unit/test_peer_wire.py` checks that a
forged or unsigned pickle is refused without being unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import pickle
import struct
import zlib
from typing import Any

from pysyncobj import tcp_server as pysyncobj_tcp_server
from pysyncobj import transport as pysyncobj_transport
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

log = logging.getLogger(__name__)

MAC_BYTES = 16
COMPRESS_MIN_BYTES = 256 * 1024
"""Bodies this large or larger are compressed (zlib level 3, as pysyncobj did); smaller ones are sent as is."""
KDF_ITERATIONS = 100_000
_KDF_SALT = b"hacluster raft peer MAC v1"
_PLAIN, _ZLIB = b"\x00", b"\x01"
_HEADER = 1 + MAC_BYTES
_LENGTH = struct.Struct("i")  # pysyncobj's frame length prefix (native int), kept: one framing on the port
_SEQ = struct.Struct(">Q")


@functools.lru_cache(maxsize=8)
def _derive_key(secret: bytes) -> bytes:
    """The MAC key (PBKDF2 makes guessing a weak secret from captured frames slow); cached, as a master
    restarting its store in one process (tests) would derive it again."""
    return hashlib.pbkdf2_hmac("sha256", secret, _KDF_SALT, KDF_ITERATIONS, dklen=32)


class PeerAuthenticator:
    """Seals and opens frames with a key derived from the cluster's shared secret. Stateless and shared by
    every connection of a master; truthy, because pysyncobj's transport asks `if encryptor:` before it
    exchanges the per-connection random keys."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            raise ValueError("the Raft peer secret must not be empty")
        self._mac0 = hashlib.blake2b(key=_derive_key(raw), digest_size=MAC_BYTES)

    def _mac(self, seq: int, flag: bytes, body: bytes) -> bytes:
        h = self._mac0.copy()
        h.update(_SEQ.pack(seq))
        h.update(flag)
        h.update(body)
        return h.digest()

    def seal(self, message: Any, seq: int) -> bytes:
        """The frame (without the length prefix) carrying `message` as the connection's frame `seq`."""
        body = _pickled(message)
        flag = _PLAIN
        if len(body) >= COMPRESS_MIN_BYTES:
            body, flag = zlib.compress(body, 3), _ZLIB
        return flag + self._mac(seq, flag, body) + body

    def open(self, frame: bytes, seq: int) -> Any:
        """The message in `frame` if it is the connection's frame `seq` and its MAC matches; raises
        `ForgedFrame` otherwise — before anything in it is unpickled."""
        if len(frame) < _HEADER:
            raise ForgedFrame("frame shorter than its header")
        flag, mac, body = frame[:1], frame[1:_HEADER], frame[_HEADER:]
        if flag not in (_PLAIN, _ZLIB) or not hmac.compare_digest(mac, self._mac(seq, flag, body)):
            raise ForgedFrame("MAC does not match (wrong secret, tampered, replayed or reordered frame)")
        if flag == _ZLIB:
            body = zlib.decompress(body)
        return _unpickled(body)

    def __bool__(self) -> bool:
        return True


def _pickled(message: Any) -> bytes:  # a function of its own, so that profiles name it
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _unpickled(body: bytes) -> Any:  # only ever called on a body whose MAC was checked
    return pickle.loads(body)


class ForgedFrame(Exception):
    """A frame that does not carry a valid MAC: the peer is not one of ours (or the bytes were altered)."""


class PeerConnection(TcpConnection):  # type: ignore[misc]
    """pysyncobj's TcpConnection with `PeerAuthenticator` framing when its `encryptor` is one (see the
    module docstring); with any other encryptor, or none, it is pysyncobj's TcpConnection unchanged."""

    _send_seq = 0
    _recv_seq = 0

    def send(self, message: Any) -> None:
        auth = self.encryptor
        if not isinstance(auth, PeerAuthenticator):
            TcpConnection.send(self, message)
            return
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        frame = auth.seal(message, self._send_seq)
        self._send_seq += 1
        self._TcpConnection__writeBuffer += _LENGTH.pack(len(frame)) + frame
        self._TcpConnection__trySendBuffer()
        fileno = self._TcpConnection__fileno
        if self._TcpConnection__writeBuffer and fileno is not None and self.state != CONNECTION_STATE.DISCONNECTED:
            # pysyncobj subscribes for "writable" only from its own write handler: without this a partial
            # send waits for the next message or heartbeat. Called on the Raft thread, the poller's owner.
            self._TcpConnection__poller.subscribe(
                fileno, self._TcpConnection__processConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR)

    def _TcpConnection__processParseMessage(self) -> Any:  # noqa: N802 (pysyncobj's name)
        auth = self.encryptor
        if not isinstance(auth, PeerAuthenticator):
            return TcpConnection._TcpConnection__processParseMessage(self)
        buf = self._TcpConnection__readBuffer
        if len(buf) < 4:
            return None
        length = _LENGTH.unpack_from(buf)[0]
        if len(buf) - 4 < length:
            return None
        try:
            message = auth.open(buf[4:4 + length], self._recv_seq)
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ForgedFrame("message for another connection")
        except Exception as exc:  # a forged frame, or a valid MAC over bytes that do not unpickle
            log.warning("Raft peer connection closed: %s", exc)
            self.disconnect()
            return None
        self._recv_seq += 1
        self._TcpConnection__readBuffer = buf[4 + length:]
        return message

    def disconnect(self) -> None:
        self._send_seq = self._recv_seq = 0  # a new connection numbers its frames from 0 again
        TcpConnection.disconnect(self)


def install_peer_wire_hook() -> None:
    """Make pysyncobj's transport (outgoing) and server (incoming) build PeerConnections (idempotent)."""
    pysyncobj_transport.TcpConnection = PeerConnection
    pysyncobj_tcp_server.TcpConnection = PeerConnection

