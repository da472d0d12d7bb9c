"""Real masters behind a real Toxiproxy server (started by the launcher, as `hacluster up --chaos` does)."""

import pytest

from chaos.nemesis import FaultLog, Nemesis
from chaos.network import load_network, start_network
from hacluster.cluster import launcher
from hacluster.config import default_config
from tests.cluster.conftest import Cluster


class ChaosCluster(Cluster):
    def __init__(self, handle):
        super().__init__(handle)
        self.net = load_network(handle)
        self.nemesis = Nemesis(handle, self.net, seed=1, log=FaultLog(None))


@pytest.fixture
def chaos_factory(tmp_path):
    started = []

    def start(masters=3):
        sd = tmp_path / f"chaos{len(started)}"
        started.append(sd)
        return ChaosCluster(launcher.up(default_config(masters), sd, network=start_network))

    yield start
    for sd in started:
        launcher.down(sd)
        assert not launcher.processes_of(sd), "down left processes behind (masters or Toxiproxy)"
