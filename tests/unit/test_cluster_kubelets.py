"""What `hacluster up` does for kubelets, without starting anything: node definitions, node users, argv;
the shipped example config; and the CLI's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hacluster.cluster.kubelets import fleet_names, kubelet_argv, with_node_users, with_nodes
from hacluster.config import NodeConfig, default_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_nodes_and_their_users() -> None:
    cfg = default_config(3).model_copy(update={"nodes": (NodeConfig(name="node-2", profile="small"),)})
    cfg = with_nodes(cfg, 3)
    assert [n.name for n in cfg.nodes] == ["node-2", "node-1", "node-3"]
    assert cfg.nodes[0].profile == "small"  # a defined node keeps its definition
    cfg = with_node_users(cfg.model_copy(update={"kubelet": cfg.kubelet.model_copy(update={"fleet_nodes": 2})}))
    nodes = {u.name: u for u in cfg.users if u.name.startswith("system:node:")}
    assert set(nodes) == {"system:node:node-1", "system:node:node-2", "system:node:node-3",
                          "system:node:fleet-1", "system:node:fleet-2"}
    assert all(u.groups == ("system:nodes",) and len(u.token) >= 16 for u in nodes.values())
    assert len({u.token for u in nodes.values()}) == 5
    assert with_node_users(cfg) == cfg  # idempotent: tokens are not regenerated
    assert fleet_names(cfg) == ["fleet-1", "fleet-2"]


def test_kubelet_argv_names_the_state_dir_so_down_finds_it(tmp_path: Path) -> None:
    argv = kubelet_argv(tmp_path / "cluster.yaml", "node-1", "process")
    assert argv[:3] == [sys.executable, "-m", "hacluster.cli.main"] and str(tmp_path.resolve()) in " ".join(argv)
    assert argv[argv.index("--runtime") + 1] == "process"


def test_shipped_example_loads() -> None:
    cfg = load_config(ROOT / "configs" / "kubelet" / "cluster-with-nodes.yaml")
    assert [n.name for n in cfg.nodes] == ["node-1", "node-2", "small-1", "gpu-1"]
    assert cfg.nodes[3].taints[0].effect == "PreferNoSchedule"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hacluster.cli.main", *args], capture_output=True, text=True,
                              timeout=60)

    r = run("kubelet", "--node", "node-1")
    assert r.returncode == 1 and r.stderr.startswith("error: give --config") and "Traceback" not in r.stderr
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("masters: [{id: m1}]\n")
    r = run("kubelet", "--node", "node-9", "--config", str(cfg))
    assert r.returncode == 1 and "no user system:node:node-9" in r.stderr
    r = run("kubelet", "--node", "n", "--api", "http://127.0.0.1:1", "--token", "t", "--profile", "nope")
    assert r.returncode == 1 and "no profile 'nope'" in r.stderr
    r = run("kubelet-fleet", "--nodes", "3", "--config", str(cfg))
    assert r.returncode == 1 and "kubelet.fleet_nodes" in r.stderr
