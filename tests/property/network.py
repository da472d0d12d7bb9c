"""A network we control for Raft nodes in one process: one TCP forwarder per unordered pair of nodes.

Used by the in-process cluster (`tests.property.harness`), like etcd-io/raft's test `network`: every Raft
link goes through a `PairLink` that can be

- cut (`cut`): open connections are reset and new ones refused (a partition that is noticed at once);
- dropping one direction or both (`drop`): bytes are read and thrown away while the connection stays up
  (a blackhole: the way a real partition looks, noticed only by timeouts);
- healed (`heal`): everything passes again. Connections that lost bytes are closed on heal, since a
  stream with a hole in it would hand the receiver half a message; both sides then reconnect.

pysyncobj dials a peer only if its own address string is greater (see docs/pysyncobj.md), so each pair
has one dialer and one acceptor: the dialer's `DialNode` for the acceptor points at the forwarder's
listening port, and the forwarder connects on to the acceptor's real Raft port.

The forwarders run on an asyncio loop of their own thread, so the Raft traffic keeps moving while the
test's event loop is busy. Control methods are called from any thread and return once the change is in
effect. Everything is bounded: a read is at most CHUNK_BYTES, a blocked write is dropped with its
connection when the peer stops reading for longer than WRITE_DRAIN_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK_BYTES = 64 * 1024
WRITE_DRAIN_TIMEOUT_S = 2.0
CONTROL_TIMEOUT_S = 5.0
DIRECTIONS = ("both", "to", "from")


@dataclass(eq=False)
class _Conn:
    """One proxied connection: dialer side (client) and acceptor side (upstream)."""

    client_w: asyncio.StreamWriter
    upstream_w: asyncio.StreamWriter
    poisoned: bool = False  # lost bytes: must be closed before the link is used again
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for w in (self.client_w, self.upstream_w):
            try:
                w.transport.abort()
            except Exception:  # already closed
                pass
        for t in self.tasks:
            t.cancel()


class PairLink:
    """The forwarder of one unordered pair: `dialer` connects to `acceptor` through `listen_port`."""

    def __init__(self, dialer: str, acceptor: str, upstream_port: int) -> None:
        self.dialer = dialer
        self.acceptor = acceptor
        self.upstream_port = upstream_port
        self.listen_port = 0
        self.cut_now = False
        # Direction "sender id" -> dropping; bytes *sent by* that node on this link are dropped.
        self.dropping: dict[str, bool] = {dialer: False, acceptor: False}
        self.conns: set[_Conn] = set()
        self.bytes_passed = 0
        self.bytes_dropped = 0
        self.stopped = False
        self.handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # A plain callback that starts the handler itself: asyncio 3.11's own handler wrapper logs a
        # cancelled handler task as an unhandled error.
        self._server = await asyncio.start_server(self._spawn, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.stopped = True
        if self._server is not None:
            self._server.close()
        for c in list(self.conns):
            c.close()
        self.conns.clear()

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._on_client(reader, writer))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._connect(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.upstream_port), 1.0)
        except (TimeoutError, OSError):  # refused (the acceptor is down) or slow
            writer.transport.abort()
            return
        if self.cut_now or self.stopped:  # cut (or shut down) while we were connecting
            writer.transport.abort()
            up_w.transport.abort()
            return
        conn = _Conn(writer, up_w)
        self.conns.add(conn)
        conn.tasks = [asyncio.ensure_future(self._pump(conn, reader, up_w, self.dialer)),
                      asyncio.ensure_future(self._pump(conn, up_r, writer, self.acceptor))]

    async def _pump(self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter, sender: str) -> None:
        try:
            while True:
                data = await src.read(CHUNK_BYTES)
                if not data:
                    break
                if self.dropping[sender]:
                    conn.poisoned = True
                    self.bytes_dropped += len(data)
                    continue
                dst.write(data)
                self.bytes_passed += len(data)
                await asyncio.wait_for(dst.drain(), WRITE_DRAIN_TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return
        conn.close()
        self.conns.discard(conn)

    def set_cut(self, cut: bool) -> None:
        self.cut_now = cut
        if cut:
            for c in list(self.conns):
                c.close()
            self.conns.clear()

    def set_drop(self, sender: str, drop: bool) -> None:
        self.dropping[sender] = drop

    def heal(self) -> None:
        self.cut_now = False
        for sender in self.dropping:
            self.dropping[sender] = False
        for c in [c for c in self.conns if c.poisoned]:
            c.close()
            self.conns.discard(c)


class Network:
    """Forwarders for every pair of nodes, on a private event loop thread.

    `addresses` maps node id to its real Raft address ("127.0.0.1:PORT"). After `start()`,
    `dial_addresses(node)` gives that node's {peer address: forwarder address} for `RaftStore`.
    """

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = dict(addresses)
        self.links: dict[frozenset[str], PairLink] = {}
        ids = sorted(addresses)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                dialer, acceptor = (a, b) if addresses[a] > addresses[b] else (b, a)
                port = int(addresses[acceptor].rsplit(":", 1)[1])
                self.links[frozenset((a, b))] = PairLink(dialer, acceptor, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-network", daemon=True)

    # ------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread.start()
        self._call(self._start_all())

    async def _start_all(self) -> None:
        for link in self.links.values():
            await link.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._stop_all())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()

    async def _stop_all(self) -> None:
        for link in self.links.values():
            await link.stop()
        for _ in range(10):  # a connection accepted meanwhile may start one more handler
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not tasks:
                break
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    def _do(self, fn: Any, *args: Any) -> None:
        async def run() -> None:
            fn(*args)
        self._call(run())

    # -------------------------------------------------------------------------------- queries
    def link(self, a: str, b: str) -> PairLink:
        return self.links[frozenset((a, b))]

    def dial_addresses(self, node: str) -> dict[str, str]:
        """For `node`: the forwarder address of every peer it dials (it dials the smaller addresses)."""
        out = {}
        for link in self.links.values():
            if link.dialer == node:
                out[self.addresses[link.acceptor]] = f"127.0.0.1:{link.listen_port}"
        return out

    def others(self, node: str) -> list[str]:
        return [i for i in sorted(self.addresses) if i != node]

    # ------------------------------------------------------------------------------- faults
    def cut(self, a: str, b: str) -> None:
        """Reset the a–b link and refuse it until healed."""
        self._do(self.link(a, b).set_cut, True)

    def drop(self, a: str, b: str, direction: str = "both") -> None:
        """Silently lose bytes on a–b: "to" loses what a sends to b, "from" what b sends to a."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        link = self.link(a, b)
        senders = {"both": (a, b), "to": (a,), "from": (b,)}[direction]
        for s in senders:
            self._do(link.set_drop, s, True)

    def isolate(self, node: str, *, how: str = "drop") -> None:
        """Every link of `node`, cut ("cut") or blackholed both ways ("drop")."""
        for other in self.others(node):
            if how == "cut":
                self.cut(node, other)
            else:
                self.drop(node, other)

    def heal(self, pairs: Iterable[tuple[str, str]] | None = None) -> None:
        """Heal the given pairs (every pair if None)."""
        links = list(self.links.values()) if pairs is None else [self.link(a, b) for a, b in pairs]
        for link in links:
            self._do(link.heal)

    def faulty_pairs(self) -> list[tuple[str, str]]:
        return sorted((link.dialer, link.acceptor) for link in self.links.values()
                      if link.cut_now or any(link.dropping.values()))
