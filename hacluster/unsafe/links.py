"""Peer links of the unsafe primary-backup engine: one plain TCP connection per pair of masters.

Used by `hacluster.unsafe.async_primary`. Wired like the Raft engine's links so that the chaos network
(`chaos/network.py`, which plans one Toxiproxy proxy per pair on the side that dials) cuts them the same
way: of two masters, the one whose `host:port` address string is greater dials the other, through the
proxy address the dial table (`raft-links.yaml`) names, and both directions share that connection. The
dialer introduces itself with a hello frame carrying its id and the cluster password, because through a
proxy the acceptor cannot tell who connected.

Frames are a magic word, a length and a CRC32 around a msgpack body. A link that delivered nothing for
`silence_timeout_s` (a blackholed proxy holds the connection open) is closed and dialled again, and a
frame that fails its check (a proxy dropped bytes mid-stream) closes it too; a peer that does not read is
cut off once `send_buffer_max_bytes` are queued for it. The engine's protocol tolerates every message lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

log = logging.getLogger(__name__)

MAGIC = 0x48415531  # "HAU1"
_HEADER = struct.Struct(">III")  # magic, body length, crc32 of the body
FRAME_MAX_BYTES = 256 * 1024 * 1024  # a whole copy of the store travels as one frame
HELLO_TIMEOUT_S = 2.0


class FrameError(Exception):
    """The byte stream of a link is not a sequence of our frames (corrupted or foreign)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = msgspec.msgpack.encode(message)
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def decode_header(header: bytes) -> tuple[int, int]:
    """(body length, crc) of a frame header; FrameError when it is not one of ours."""
    magic, length, crc = _HEADER.unpack(header)
    if magic != MAGIC or length > FRAME_MAX_BYTES:
        raise FrameError(f"bad frame header (magic {magic:#x}, length {length})")
    return length, crc


def decode_body(body: bytes, crc: int) -> dict[str, Any]:
    if zlib.crc32(body) != crc:
        raise FrameError("frame checksum mismatch")
    message = msgspec.msgpack.decode(body)
    if not isinstance(message, dict):
        raise FrameError("frame body is not a mapping")
    return message


def dials(my_address: str, peer_address: str) -> bool:
    """Does this master dial the peer? The greater address string dials (pysyncobj's rule, which the chaos
    network's proxy plan follows)."""
    return my_address > peer_address


@dataclass(frozen=True)
class LinkSettings:
    password: str
    retry_s: float
    silence_timeout_s: float
    send_buffer_max_bytes: int


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_received = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class PeerLinks:
    """The links of master `me` to every peer; messages are dicts, delivered to `on_message(peer, msg)`."""

    def __init__(self, me: str, addresses: dict[str, str], dial_addresses: dict[str, str],
                 settings: LinkSettings, on_message: Callable[[str, dict[str, Any]], None]) -> None:
        self.me = me
        self.addresses = addresses  # master id -> its real "host:port" (its identity)
        self.dial_addresses = dial_addresses  # peer real address -> address to dial (a proxy), if any
        self.settings = settings
        self.on_message = on_message
        self._conns: dict[str, _Conn] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def my_address(self) -> str:
        return self.addresses[self.me]

    async def start(self) -> None:
        host, port = self.my_address.rsplit(":", 1)
        self._server = await asyncio.start_server(self._accepted, host, int(port), reuse_address=True)
        for peer, address in sorted(self.addresses.items()):
            if peer != self.me and dials(self.my_address, address):
                self._spawn(self._dial_loop(peer))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def connected(self, peer: str) -> bool:
        return peer in self._conns

    def send(self, peer: str, message: dict[str, Any]) -> bool:
        """Queue `message` for `peer`; False when there is no link (the message is lost, as the protocol
        allows). A peer that has not taken `send_buffer_max_bytes` is disconnected instead of buffered."""
        conn = self._conns.get(peer)
        if conn is None:
            return False
        transport = conn.writer.transport
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.settings.send_buffer_max_bytes:
            log.warning("link to %s: %d bytes unsent, dropping the connection", peer,
                        transport.get_write_buffer_size())
            self._drop(peer, conn)
            return False
        conn.writer.write(encode_frame(message))
        return True

    def _drop(self, peer: str, conn: _Conn) -> None:
        if self._conns.get(peer) is conn:
            del self._conns[peer]
        conn.close()

    # ------------------------------------------------------------------------------- connections
    async def _dial_loop(self, peer: str) -> None:
        """Keep one connection to `peer` open; redial `retry_s` after it is lost (until stopped)."""
        address = self.addresses[peer]
        host, port = self.dial_addresses.get(address, address).rsplit(":", 1)
        while not self._stopping:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)),
                                                        timeout=self.settings.silence_timeout_s)
            except (OSError, TimeoutError):
                await asyncio.sleep(self.settings.retry_s)  # back-off between dial attempts (bounded)
                continue
            conn = _Conn(reader, writer)
            writer.write(encode_frame({"t": "hello", "from": self.me, "password": self.settings.password}))
            await self._serve(peer, conn)
            if not self._stopping:
                await asyncio.sleep(self.settings.retry_s)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(reader, writer)
        try:
            hello = await asyncio.wait_for(self._read(conn), timeout=HELLO_TIMEOUT_S)
        except (OSError, TimeoutError, FrameError, asyncio.IncompleteReadError, msgspec.DecodeError):
            conn.close()
            return
        peer = hello.get("from")
        if (hello.get("t") != "hello" or peer not in self.addresses or peer == self.me
                or not hmac.compare_digest(str(hello.get("password", "")), self.settings.password)):
            log.warning("refusing a peer connection with a bad hello")
            conn.close()
            return
        await self._serve(peer, conn)

    async def _serve(self, peer: str, conn: _Conn) -> None:
        """Read frames from `peer` until the link fails or falls silent; the newest connection wins."""
        old = self._conns.get(peer)
        if old is not None:
            old.close()
        self._conns[peer] = conn
        watchdog = asyncio.ensure_future(self._watch_silence(peer, conn))
        try:
            while not self._stopping:
                message = await self._read(conn)
                conn.last_received = time.monotonic()
                try:
                    self.on_message(peer, message)
                except Exception:
                    log.exception("handling a message from %s failed", peer)
        except (OSError, FrameError, asyncio.IncompleteReadError, msgspec.DecodeError) as exc:
            if not self._stopping:
                log.info("link to %s lost: %s", peer, exc)
        finally:
            watchdog.cancel()
            self._drop(peer, conn)

    async def _watch_silence(self, peer: str, conn: _Conn) -> None:
        """Close a connection that delivered nothing for `silence_timeout_s` (peers send heartbeats far more
        often), so that a link held open by a blackholed proxy is dialled afresh once the proxy heals."""
        while self._conns.get(peer) is conn:
            idle = time.monotonic() - conn.last_received
            if idle > self.settings.silence_timeout_s:
                log.info("link to %s silent for %.1f s: reconnecting", peer, idle)
                self._drop(peer, conn)
                return
            await asyncio.sleep(self.settings.silence_timeout_s - idle + 0.01)  # until it could be too long

    @staticmethod
    async def _read(conn: _Conn) -> dict[str, Any]:
        length, crc = decode_header(await conn.reader.readexactly(_HEADER.size))
        return decode_body(await conn.reader.readexactly(length), crc)
