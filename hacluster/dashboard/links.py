"""What each Raft link between two masters looks like right now: healthy, slowed, cut one way or cut.

Pure functions used by the dashboard's collector. With the chaos network (`hacluster up --chaos`) the truth
is Toxiproxy's own state — its `/proxies` answer, read by the collector, which lists every proxy with its
`enabled` flag and its toxics: a disabled proxy refuses connections (cut), a `timeout` toxic with timeout 0
holds the data of one direction (a blackhole: cut, or cut one way when only one stream has it), and
latency / bandwidth / slicer toxics slow it. Without the chaos network, the masters' own view of their
peers (`/debug/raft` `peers[].connected`) is all there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HEALTHY, SLOW, ONE_WAY, CUT, DOWN = "healthy", "slow", "one-way", "cut", "down"
SLOWING_TOXICS = frozenset({"latency", "bandwidth", "slicer", "slow_close", "limit_data"})


def link_key(a: str, b: str) -> str:
    """The name of the unordered pair a–b on the page: the two ids sorted, joined by a dash."""
    x, y = sorted((a, b))
    return f"{x}-{y}"


def proxy_link_state(proxy: Mapping[str, Any]) -> dict[str, Any]:
    """State of one Raft link from its Toxiproxy proxy (one entry of Toxiproxy's `GET /proxies`)."""
    toxics = [t for t in proxy.get("toxics") or [] if isinstance(t, Mapping)]
    names = sorted(str(t.get("name", "")) for t in toxics)
    if not proxy.get("enabled", True):
        return {"state": CUT, "why": "proxy disabled: connections refused", "toxics": names}
    held = {str(t.get("stream")) for t in toxics
            if t.get("type") == "timeout" and int((t.get("attributes") or {}).get("timeout", -1)) == 0
            and float(t.get("toxicity", 1.0)) >= 1.0}
    if {"upstream", "downstream"} <= held:
        return {"state": CUT, "why": "blackhole both ways", "toxics": names}
    if held:
        return {"state": ONE_WAY, "why": f"blackhole on the {held.pop()} stream", "toxics": names}
    slow = [t for t in toxics if t.get("type") in SLOWING_TOXICS]
    if slow:
        lat = [int((t.get("attributes") or {}).get("latency", 0)) for t in slow if t.get("type") == "latency"]
        why = f"+{max(lat)} ms" if lat else ", ".join(sorted({str(t.get('type')) for t in slow}))
        return {"state": SLOW, "why": why, "toxics": names}
    return {"state": HEALTHY, "why": "", "toxics": names}


def links_from_toxiproxy(raft_links: Iterable[Mapping[str, Any]],
                         proxies: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every Raft link of the chaos network (`network.json`'s `raft` entries: proxy, dialer, acceptor)
    with its state from Toxiproxy's proxies; a proxy Toxiproxy does not know is reported cut."""
    out = {}
    for rl in raft_links:
        proxy = proxies.get(str(rl["proxy"]))
        state = proxy_link_state(proxy) if proxy is not None else {
            "state": CUT, "why": "proxy missing in Toxiproxy", "toxics": []}
        out[link_key(str(rl["dialer"]), str(rl["acceptor"]))] = {
            "a": str(rl["dialer"]), "b": str(rl["acceptor"]), "source": "toxiproxy", **state}
    return out


def links_from_peers(ids: list[str], masters: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pair of masters, from what the masters report about their peers (no chaos network): down when
    either end is not running, healthy when an end that answers sees the other connected, cut otherwise."""
    out = {}
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ra, rb = masters.get(a) or {}, masters.get(b) or {}
            if ra.get("role") in ("down", "paused") or rb.get("role") in ("down", "paused"):
                state, why = DOWN, "a master is not running"
            else:
                seen = [_peer_connected(ra, b), _peer_connected(rb, a)]
                known = [s for s in seen if s is not None]
                if not known:
                    state, why = DOWN, "no answer from either master"
                elif all(known):
                    state, why = HEALTHY, ""
                elif any(known):
                    state, why = ONE_WAY, "only one side reports the link up"
                else:
                    state, why = CUT, "neither side reports the link up"
            out[link_key(a, b)] = {"a": a, "b": b, "source": "raft", "state": state, "why": why, "toxics": []}
    return out


def _peer_connected(row: Mapping[str, Any], peer: str) -> bool | None:
    for p in row.get("peers") or []:
        if p.get("id") == peer:
            return bool(p.get("connected"))
    return None
