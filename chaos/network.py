"""The chaos network: every Raft link and every API link of a local cluster through its own Toxiproxy proxy.

`start_network(handle)` is the network `hacluster up --chaos` (and chaos runs) hand to
`hacluster.cluster.launcher.up`, which calls it before the masters start:
it plans one proxy per unordered pair of masters — on the side pysyncobj dials from (the greater address
string dials) — writes `raft-links.yaml` so each master dials its peers through the proxies while their
identities stay their real addresses, and starts a Toxiproxy server on 127.0.0.1 with those proxies.
API links (client→master, kubelet→master) get their own proxies on demand with `api_endpoints(client)`.

On the etcd engine (`store.engine: etcd`, members run by `hacluster up`) the Raft links are etcd's peer
links. etcd dials every peer at the one peer URL that peer advertises, so proxies are per member, not per
pair: member X advertises the proxy `etcd-peer-X` (`etcd-peers.yaml`), through which every other member
reaches it, and each master's API server reaches each member through its own proxy `etcd-api-M-X` (the
masters' dial table). Cutting X from the others holds everything that travels on connections to X (a
blackhole of `etcd-peer-X`, both directions): all X sends over the streams its peers opened to it is held,
so X can neither lead nor commit, while it still hears the others (its own dials go through their proxies).
A `reject` partition is held the same way on etcd: refused connections would only make etcd send X's
messages over connections X opens itself, around the proxy. Cuts that do not isolate whole members
(one pair of a 3-member cluster, say) cannot be expressed per member and are refused.

`ChaosNetwork` then cuts, heals, slows and shapes links:
- `blackhole`: a `timeout` toxic with timeout 0 — data is silently held, the way a real partition looks;
- `reject`: the proxy is disabled — connections are refused or reset, noticed at once;
- one direction only for asymmetric faults (the proxy's `upstream` stream is dialer→acceptor).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from chaos.toxiproxy import Link, Toxiproxy, ToxiproxyError, ToxiproxyServer, find_server_binary
from hacluster.cluster import etcd_members
from hacluster.cluster.processes import ClusterHandle, free_port, spawn

NETWORK_FILE = "network.json"
PARTITION_KINDS = ("blackhole", "reject")
DIRECTIONS = ("both", "to", "from")


@dataclass(frozen=True)
class Undo:
    """One change a fault made to a proxy: a toxic to remove, or (toxic None) a proxy to re-enable."""

    proxy: str
    toxic: str | None


@dataclass(frozen=True)
class RaftLink:
    """The proxy of one unordered pair of masters; `dialer` connects to `acceptor` through it."""

    proxy: str
    dialer: str
    acceptor: str
    listen: str
    upstream: str


def _addr(handle: ClusterHandle, mid: str) -> str:
    return handle.cfg.master(mid).raft_address


def plan_raft_links(handle: ClusterHandle, taken: set[int]) -> list[RaftLink]:
    links = []
    for a, b in itertools.combinations([m.id for m in handle.cfg.masters], 2):
        # pysyncobj: a node dials a peer only if its own address string is greater (transport.py).
        dialer, acceptor = (a, b) if _addr(handle, a) > _addr(handle, b) else (b, a)
        port = free_port(taken)
        links.append(RaftLink(f"raft-{dialer}-{acceptor}", dialer, acceptor, f"127.0.0.1:{port}",
                              _addr(handle, acceptor)))
    return links


def plan_etcd_links(handle: ClusterHandle, taken: set[int]) -> tuple[dict[str, Link], list[tuple[str, Link]]]:
    """The etcd engine's proxies: one in front of each member's peer port (by member id), and one per
    (master, member) client link (with the master that dials it)."""
    cfg = handle.cfg
    peers = {}
    for m in cfg.masters:
        peers[m.id] = Link(f"etcd-peer-{m.id}", f"127.0.0.1:{free_port(taken)}", f"{m.host}:{m.etcd_peer_port}")
    clients = [(a.id, Link(f"etcd-api-{a.id}-{b.id}", f"127.0.0.1:{free_port(taken)}",
                           f"{b.host}:{b.etcd_client_port}"))
               for a in cfg.masters for b in cfg.masters]
    return peers, clients


def start_network(handle: ClusterHandle) -> ChaosNetwork:
    """Plan the Raft proxies, write the masters' dial table, start Toxiproxy (before the masters start)."""
    find_server_binary()  # fail early, with the fix, if Toxiproxy is not installed
    sd = handle.state_dir
    (sd / "chaos").mkdir(parents=True, exist_ok=True)
    taken = {p for m in handle.cfg.masters
             for p in (m.api_port, m.raft_port, m.api_tls_port, m.etcd_client_port, m.etcd_peer_port) if p}
    tp_port = free_port(taken)
    dial: dict[str, dict[str, str]] = {}
    etcd = etcd_members.runs_members(handle.cfg)
    links: list[RaftLink] = []
    proxies: list[Link] = []
    etcd_peers: dict[str, str] = {}
    if etcd:
        peers, clients = plan_etcd_links(handle, taken)
        (sd / etcd_members.PEERS_FILE).write_text(yaml.safe_dump({mid: f"http://{p.listen}"
                                                                  for mid, p in peers.items()}))
        for master, c in clients:
            dial.setdefault(master, {})[c.upstream] = c.listen
        proxies = [*peers.values(), *(c for _, c in clients)]
        etcd_peers = {mid: p.name for mid, p in peers.items()}
    else:
        links = plan_raft_links(handle, taken)
        for link in links:
            dial.setdefault(link.dialer, {})[link.upstream] = link.listen
        proxies = [Link(rl.proxy, rl.listen, rl.upstream) for rl in links]
    (sd / "raft-links.yaml").write_text(yaml.safe_dump(dial))
    server = ToxiproxyServer(tp_port, sd / "chaos" / "toxiproxy.json", sd / "logs" / "toxiproxy.log")
    server.write_config(proxies)
    spawn(sd, "toxiproxy", server.argv())
    client = server.wait_ready(len(proxies))
    state = {"toxiproxy_port": tp_port, "raft": [rl.__dict__ for rl in links], "api": {},
             "etcd_peers": etcd_peers}
    (sd / "chaos" / NETWORK_FILE).write_text(json.dumps(state, indent=1))
    return ChaosNetwork(handle, client, state)


def load_network(handle: ClusterHandle) -> ChaosNetwork:
    path = handle.state_dir / "chaos" / NETWORK_FILE
    if not path.exists():
        raise ToxiproxyError(f"the cluster in {handle.state_dir} was not started with --chaos (no {path})")
    state = json.loads(path.read_text())
    return ChaosNetwork(handle, Toxiproxy("127.0.0.1", state["toxiproxy_port"]), state)


class ChaosNetwork:
    """Faults on the links of one cluster."""

    def __init__(self, handle: ClusterHandle, client: Toxiproxy, state: dict[str, Any]) -> None:
        self.handle = handle
        self.client = client
        self.state = state
        self.raft = [RaftLink(**rl) for rl in state["raft"]]
        self.etcd_peers: dict[str, str] = dict(state.get("etcd_peers") or {})
        """etcd engine: member id -> the proxy in front of its peer port (empty on pysyncobj)."""

    def _save(self) -> None:
        (self.handle.state_dir / "chaos" / NETWORK_FILE).write_text(json.dumps(self.state, indent=1))

    # ---------------------------------------------------------------------------------- API links
    def api_endpoints(self, client: str, *, tls: bool = False) -> dict[str, str]:
        """Base URLs through which `client` (e.g. "workload", "node-3", "user") reaches each master; the
        proxies are created on first use."""
        key = f"{client}{'-tls' if tls else ''}"
        known = self.state["api"].get(key)
        if known:
            return dict(known)
        taken = {int(rl.listen.rsplit(":", 1)[1]) for rl in self.raft}
        taken |= {p for m in self.handle.cfg.masters for p in (m.etcd_client_port, m.etcd_peer_port) if p}
        urls = {}
        for m in self.handle.cfg.masters:
            port = free_port(taken)
            upstream = m.api_tls_port if tls else m.api_port
            name = f"api-{key}-{m.id}"
            self.client.create(Link(name, f"127.0.0.1:{port}", f"{m.host}:{upstream}"))
            urls[m.id] = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.state["api"][key] = urls
        self._save()
        return dict(urls)

    def api_proxies_of(self, master_id: str) -> list[str]:
        return [f"api-{key}-{master_id}" for key in self.state["api"]]

    # --------------------------------------------------------------------------------- Raft links
    def link(self, a: str, b: str) -> RaftLink:
        for rl in self.raft:
            if {rl.dialer, rl.acceptor} == {a, b}:
                return rl
        raise ToxiproxyError(f"no Raft link between {a} and {b}")

    def _stream(self, link: RaftLink, sender: str) -> str:
        """The proxy stream that carries bytes sent by `sender`."""
        return "upstream" if sender == link.dialer else "downstream"

    def cut(self, a: str, b: str, *, kind: str = "blackhole", direction: str = "both",
            tag: str = "cut") -> list[Undo]:
        """Cut the Raft link a–b. direction "to": a's messages to b are lost; "from": b's to a.
        Returns what undoes it (see `undo`)."""
        if kind not in PARTITION_KINDS:
            raise ValueError(f"partition kind must be one of {PARTITION_KINDS}")
        link = self.link(a, b)
        if kind == "reject":
            self.client.set_enabled(link.proxy, False)
            return [Undo(link.proxy, None)]
        senders = {"both": (a, b), "to": (a,), "from": (b,)}[direction]
        undo = []
        for sender in senders:
            stream = self._stream(link, sender)
            name = f"{tag}-{stream}"
            self.client.add_toxic(link.proxy, name, "timeout", stream, {"timeout": 0})
            undo.append(Undo(link.proxy, name))
        return undo

    def cut_pairs(self, pairs: Iterable[tuple[str, str]], *, kind: str = "blackhole", direction: str = "both",
                  tag: str = "cut") -> list[Undo]:
        if self.etcd_peers:
            return self._cut_etcd_members(list(pairs), tag=tag)
        undo: list[Undo] = []
        for a, b in pairs:
            undo += self.cut(a, b, kind=kind, direction=direction, tag=tag)
        return undo

    def _cut_etcd_members(self, pairs: list[tuple[str, str]], *, tag: str) -> list[Undo]:
        """etcd: hold everything on the peer connections to the members that these cuts isolate (see the
        module docstring). The members are a cover of the pairs, most-cut first (for a minority cut off from
        a majority: the minority); a member is cut only if every pair it is in is to be cut."""
        wanted = {frozenset(p) for p in pairs}
        left = set(wanted)
        chosen: list[str] = []
        while left:
            degree: dict[str, int] = {}
            for p in left:
                for m in p:
                    degree[m] = degree.get(m, 0) + 1
            best = max(sorted(degree), key=lambda m: degree[m])
            chosen.append(best)
            left = {p for p in left if best not in p}
        ids = [m.id for m in self.handle.cfg.masters]
        for m in chosen:
            if any(frozenset((m, o)) not in wanted for o in ids if o != m):
                raise ToxiproxyError(f"etcd peer links are proxied per member: cutting {sorted(map(sorted, wanted))} "
                                     f"would also cut links of {m} that are to stay (only whole members can be cut)")
        undo: list[Undo] = []
        for m in chosen:
            proxy = self.etcd_peers[m]
            for stream in ("upstream", "downstream"):
                name = f"{tag}-{stream}"
                self.client.add_toxic(proxy, name, "timeout", stream, {"timeout": 0})
                undo.append(Undo(proxy, name))
        return undo

    def cut_api(self, master: str, *, tag: str = "cut") -> list[Undo]:
        """Refuse every client's API connections to `master` (its API proxies disabled)."""
        undo = []
        for proxy in self.api_proxies_of(master):
            self.client.set_enabled(proxy, False)
            undo.append(Undo(proxy, None))
        return undo

    def shape(self, a: str, b: str, toxic: str, attributes: dict[str, Any], *, direction: str = "both",
              toxicity: float = 1.0, tag: str = "shape") -> list[Undo]:
        """Add a latency / bandwidth / slicer / … toxic to the Raft link a–b."""
        link = self.link(a, b)
        senders = {"both": (a, b), "to": (a,), "from": (b,)}[direction]
        undo = []
        for sender in senders:
            stream = self._stream(link, sender)
            name = f"{tag}-{toxic}-{stream}"
            self.client.add_toxic(link.proxy, name, toxic, stream, attributes, toxicity)
            undo.append(Undo(link.proxy, name))
        return undo

    def undo(self, records: Iterable[Undo]) -> None:
        """Remove the toxics / re-enable the proxies a fault added, leaving other faults in place."""
        for r in records:
            try:
                if r.toxic is None:
                    self.client.set_enabled(r.proxy, True)
                else:
                    self.client.remove_toxic(r.proxy, r.toxic)
            except ToxiproxyError:
                pass  # already gone (a global heal came first)

    def heal(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.client.reset()
