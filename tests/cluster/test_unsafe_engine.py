"""The unsafe primary-backup engine on real processes behind Toxiproxy: a cut makes two primaries that both
acknowledge writes, and the heal discards the acknowledged writes of the loser (the old primary)."""

import time

import pytest

from chaos.network import load_network, start_network
from hacluster.cluster import launcher
from hacluster.config import default_config, parse_config
from tests.cluster.conftest import Cluster, pod

pytestmark = pytest.mark.slow


def unsafe_config(masters):
    base = default_config(masters).model_dump(mode="json")
    base["store"] = {"engine": "unsafe-async-primary", "unsafe_async_primary": {"loses_acknowledged_writes": True}}
    return parse_config(base)


def wait_for(what, fn, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last: {last})")


def test_a_partition_makes_two_primaries_and_the_heal_loses_the_old_ones_writes(tmp_path):
    sd = tmp_path / "unsafe"
    c = Cluster(launcher.up(unsafe_config(2), sd, network=start_network))
    try:
        net = load_network(c.h)
        status = launcher.status_json(c.h)
        assert status["store"] == {"engine": "unsafe-async-primary", "unsafe": True}
        old = c.leader()["id"]
        new = next(m.id for m in c.h.cfg.masters if m.id != old)
        assert c.req("GET", old, "/debug/raft")[1]["store"] == {"engine": "unsafe-async-primary", "unsafe": True}
        code, _, _ = c.req("POST", new, "/api/v1/namespaces/default/pods", pod("before"))  # forwarded
        assert code == 201
        c.wait_converged([old, new])

        net.cut(old, new)  # blackhole both ways
        wait_for("a second primary", lambda: all(r["role"] == "leader" for r in c.status().values()))
        # Both sides acknowledge writes: the old primary because it asks nobody, the new one likewise.
        assert c.req("POST", old, "/api/v1/namespaces/default/pods", pod("on-old-primary"))[0] == 201
        assert c.req("POST", new, "/api/v1/namespaces/default/pods", pod("on-new-primary"))[0] == 201
        rows = c.status()
        assert rows[new]["term"] > rows[old]["term"]  # the promotion raised the epoch

        net.heal()
        wait_for("one primary again", lambda: [r["id"] for r in c.status().values() if r["role"] == "leader"]
                 == [new])
        c.wait_converged([old, new])
        for m in (old, new):
            assert c.req("GET", m, "/api/v1/namespaces/default/pods/before")[0] == 200
            assert c.req("GET", m, "/api/v1/namespaces/default/pods/on-new-primary")[0] == 200
            # acknowledged with 201, and gone: the loser's copy was replaced by the winner's
            assert c.req("GET", m, "/api/v1/namespaces/default/pods/on-old-primary")[0] == 404
        elections = c.req("GET", old, "/debug/raft")[1]["elections"]
        assert elections["step_downs"] == 1 and elections["resyncs"] >= 1
    finally:
        launcher.down(sd)
    assert not launcher.processes_of(sd)


def test_the_unsafe_engine_is_refused_without_the_flag():
    from hacluster.config import ConfigError

    base = default_config(2).model_dump(mode="json")
    with pytest.raises(ConfigError, match="loses_acknowledged_writes"):
        parse_config({**base, "store": {"engine": "unsafe-async-primary"}})
