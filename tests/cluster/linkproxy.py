"""A controllable network for the Raft links of a real-process cluster: isolate a master, then heal.

Each master dials each peer through a local TCP forwarder (the `raft-links.yaml` dial overrides that the
master process reads at start, the same hook the chaos layer uses), so a test can partition a master at a
precise moment without touching the processes (etcd-io/raft's test `network` does the same in-process).
An isolated link is a black hole: the connections stay open but every byte is dropped, as on a network
that silently loses packets, so the peers notice only by their timeouts. Healing closes those
connections (their streams lost bytes) and lets the masters dial again.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import yaml

from hacluster.cluster import launcher
from hacluster.config import ClusterConfig

BUFFER_B = 64 * 1024


class _Link:
    """Forwards connections from one master to one peer's Raft port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.blackhole = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", launcher.free_port()))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(BUFFER_B)
                if not data:
                    break
                if not self.blackhole:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self.lock:
            self.open.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def sever(self) -> None:
        """Close every open connection of this link."""
        with self.lock:
            sockets = list(self.open)
        for s in sockets:
            self._close(s)

    def close(self) -> None:
        self.closed = True
        self.sever()
        self.listener.close()


class RaftNetwork:
    """One forwarder per (master, peer); `isolate(m)` cuts every link of master m, `heal()` restores all."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.links: dict[tuple[str, str], _Link] = {}
        for m in cfg.masters:
            for p in cfg.masters:
                if m.id != p.id:
                    self.links[(m.id, p.id)] = _Link(("127.0.0.1", p.raft_port))
        self.addr = {m.id: f"127.0.0.1:{m.raft_port}" for m in cfg.masters}

    def write_dial_overrides(self, state_dir: Path) -> None:
        data = {m: {self.addr[p]: f"127.0.0.1:{link.port}" for (mm, p), link in self.links.items() if mm == m}
                for m in self.addr}
        (state_dir / "raft-links.yaml").write_text(yaml.safe_dump(data))

    def isolate(self, master_id: str) -> None:
        """Drop every byte to and from `master_id` from now on (connections stay open)."""
        for (a, b), link in self.links.items():
            if master_id in (a, b):
                link.blackhole = True

    def heal(self) -> None:
        """Close the connections that lost bytes and let every link carry traffic again."""
        for link in self.links.values():
            if link.blackhole:
                link.sever()
                link.blackhole = False

    def close(self) -> None:
        for link in self.links.values():
            link.close()


def up_with_network(cfg: ClusterConfig, state_dir: Path) -> tuple[launcher.ClusterHandle, RaftNetwork]:
    """`launcher.up`, with every Raft link dialled through a RaftNetwork forwarder."""
    handle = launcher.prepare(cfg, state_dir)
    net = RaftNetwork(handle.cfg)
    try:
        net.write_dial_overrides(state_dir)
        for m in handle.cfg.masters:
            launcher.start_master(handle, m.id)
        launcher.wait_ready(handle, launcher.READY_TIMEOUT_S)
    except BaseException:
        launcher.down(state_dir)
        net.close()
        raise
    return handle, net
