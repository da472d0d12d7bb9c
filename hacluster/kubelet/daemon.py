"""One kubelet process: `hacluster kubelet --node NAME …` builds its runtime, log server and API client here.

Called by the CLI (`hacluster.cli.kubelet_cmd`). Settings come from the cluster file (`--config`: the
masters' API addresses, the node's token, the `kubelet:` section and the node's definition) or from
`--api URL,URL --token T` with defaults. Runs until SIGTERM or SIGINT; then it kills its containers and
exits without touching the API (a stopped node is noticed through its Lease, as in Kubernetes).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacluster.client import ApiClient
from hacluster.config import ClusterConfig, KubeletConfig, NodeConfig
from hacluster.kubelet.agent import Kubelet
from hacluster.kubelet.behaviour import ImageCatalogue, NodeProfile, load_profiles
from hacluster.kubelet.logs import LogServer
from hacluster.kubelet.runtime import Runtime

log = logging.getLogger(__name__)


class KubeletSetupError(Exception):
    """The kubelet cannot start as asked; the message is one line for the CLI."""


@dataclass
class NodeSetup:
    """Everything a kubelet needs, resolved from the cluster file or the command line."""

    node: str
    endpoints: list[str]
    token: str
    cfg: KubeletConfig
    runtime: str
    root_dir: Path
    profile_name: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)


def node_token(cluster: ClusterConfig, node: str) -> str:
    user = cluster.user_by_name(f"system:node:{node}")
    if user is None or "system:nodes" not in user.groups:
        raise KubeletSetupError(f"the cluster file has no user system:node:{node} in group system:nodes "
                                "(start the node with `hacluster up --nodes K`, list it under `nodes:`, or give "
                                "--api and --token)")
    return user.token


def setup_from_cluster(cluster: ClusterConfig, config_path: Path, node: str, *, runtime: str | None,
                       overrides: dict[str, Any]) -> NodeSetup:
    definition = next((n for n in cluster.nodes if n.name == node), NodeConfig(name=node))
    cfg = cluster.kubelet.model_copy(update=overrides) if overrides else cluster.kubelet
    return NodeSetup(node=node, endpoints=[m.api_url() for m in cluster.masters],
                     token=node_token(cluster, node), cfg=cfg, runtime=runtime or cfg.runtime,
                     root_dir=config_path.resolve().parent / "kubelet" / node, profile_name=definition.profile,
                     labels=dict(definition.labels), taints=[t.model_dump() for t in definition.taints])


def build_runtime(setup: NodeSetup) -> Runtime:
    cfg = setup.cfg
    catalogue = ImageCatalogue.load(cfg.images_file or None, seed=cfg.seed, time_scale=cfg.time_scale)
    if setup.runtime == "sim":
        from hacluster.kubelet.sim import SimRuntime

        return SimRuntime(catalogue, node=setup.node)
    if setup.runtime == "process":
        from hacluster.kubelet.process import ProcessRuntime

        return ProcessRuntime(setup.root_dir, node=setup.node, catalogue=catalogue,
                              memory_enforcement=cfg.memory_enforcement,
                              watchdog_interval_s=cfg.watchdog_interval_ms / 1000.0, log_max_bytes=cfg.log_max_bytes,
                              time_scale=cfg.time_scale)
    raise KubeletSetupError(f"unknown runtime {setup.runtime!r} (sim or process)")


def profile_of(setup: NodeSetup) -> NodeProfile:
    profiles = load_profiles(setup.cfg.profiles_file or None)
    if setup.profile_name not in profiles:
        raise KubeletSetupError(f"node {setup.node}: no profile {setup.profile_name!r} "
                                f"(have {', '.join(sorted(profiles))})")
    return profiles[setup.profile_name]


async def serve(setup: NodeSetup) -> None:
    """Run one kubelet until SIGTERM/SIGINT."""
    setup.root_dir.mkdir(parents=True, exist_ok=True)
    profile = profile_of(setup)
    runtime = build_runtime(setup)
    api = ApiClient(setup.endpoints, setup.token, request_timeout_s=5.0, deadline_s=15.0)
    kubelet: Kubelet | None = None
    logs = LogServer(find=lambda namespace, name: kubelet.find(namespace, name) if kubelet else None,
                     stats=lambda node: kubelet.stats_summary() if kubelet and node in ("", kubelet.node) else None)
    port = await logs.start()
    kubelet = Kubelet(node=setup.node, api=api, runtime=runtime, cfg=setup.cfg, profile=profile,
                      labels=setup.labels, taints=setup.taints, log_port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    enforcement = getattr(runtime, "enforcement", "")
    print(f"kubelet {setup.node}: runtime {runtime.name}{f' ({enforcement})' if enforcement else ''}, logs on "
          f"127.0.0.1:{port}, API {','.join(setup.endpoints)}", flush=True)
    try:
        await kubelet.run(stop)
    finally:
        await logs.stop()
        await api.close()


def run(setup: NodeSetup) -> None:
    """Entry point of `hacluster kubelet`."""
    from hacluster.config import env_log_level

    logging.basicConfig(level=env_log_level(), stream=sys.stderr,
                        format=f"%(asctime)s kubelet/{setup.node} %(levelname)s %(name)s: %(message)s")
    if setup.runtime == "sim":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(serve(setup))
            return
    asyncio.run(serve(setup))
