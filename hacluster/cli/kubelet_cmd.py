"""`hacluster kubelet` (one node agent) and `hacluster kubelet-fleet` (many simulated nodes in one process).

Registered into the main command group by `hacluster.cli.main` (`register(main_group)`). Thin shells over
`hacluster.kubelet.daemon` and `hacluster.kubelet.fleet`; problems a user can fix are one `error:` line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from hacluster.config import ConfigError, KubeletConfig, env_state_dir, load_config


class _Fail(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _cluster_file(config_path: str | None, state_dir: str | None) -> Path | None:
    if config_path:
        return Path(config_path)
    if state_dir is not None:
        p = Path(state_dir) / "cluster.yaml"
        if not p.exists():
            raise _Fail(f"no cluster in {state_dir}: {p} does not exist (run `hacluster up` first)")
        return p
    return None


def _overrides(time_scale: float | None, seed: int | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if time_scale is not None:
        out["time_scale"] = time_scale
    if seed is not None:
        out["seed"] = seed
    out.update({k: v for k, v in (extra or {}).items() if v is not None})
    return out


def _kubelet_config(base: KubeletConfig, overrides: dict[str, Any]) -> KubeletConfig:
    try:
        return KubeletConfig.model_validate({**base.model_dump(), **overrides})
    except ValueError as exc:
        raise _Fail(str(exc).splitlines()[0]) from exc


def register(main: click.Group) -> None:
    @main.command("kubelet")
    @click.option("--node", "node", required=True, help="Node name (the kubelet authenticates as system:node:NAME).")
    @click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                  help="Resolved cluster file (the state directory's cluster.yaml): API addresses, token, settings.")
    @click.option("--state-dir", default=None, metavar="DIR", help="Use DIR/cluster.yaml as --config.")
    @click.option("--api", "api", default=None, metavar="URL,URL,…", help="API servers (instead of --config).")
    @click.option("--token", default=None, help="Bearer token of system:node:NAME (with --api).")
    @click.option("--runtime", type=click.Choice(["sim", "process"]), default=None,
                  help="Container runtime (default: the config's kubelet.runtime, sim).")
    @click.option("--root-dir", default=None, metavar="DIR", help="Where container logs and work dirs go (with --api).")
    @click.option("--profile", default="default", help="Node profile from the node-profiles file (with --api).")
    @click.option("--time-scale", type=float, default=None, help="Override kubelet.time_scale.")
    @click.option("--seed", type=int, default=None, help="Override kubelet.seed.")
    def kubelet(node: str, config_path: str | None, state_dir: str | None, api: str | None, token: str | None,
                runtime: str | None, root_dir: str | None, profile: str, time_scale: float | None,
                seed: int | None) -> None:
        """Run one node agent: register the Node, heartbeat, run the pods bound to it."""
        from hacluster.kubelet import daemon

        cluster_file = _cluster_file(config_path, state_dir)
        overrides = _overrides(time_scale, seed)
        try:
            if cluster_file is not None:
                if api or token:
                    raise _Fail("give --config (or --state-dir) or --api/--token, not both")
                cluster = load_config(cluster_file)
                setup = daemon.setup_from_cluster(cluster, cluster_file, node, runtime=runtime, overrides={})
                setup.cfg = _kubelet_config(setup.cfg, overrides)
            else:
                if not api or not token:
                    raise _Fail("give --config FILE, --state-dir DIR, or --api URL,… with --token T")
                cfg = _kubelet_config(KubeletConfig(), overrides)
                endpoints = [u.strip().rstrip("/") for u in api.split(",") if u.strip()]
                root = Path(root_dir or f".hacluster-kubelet/{node}").resolve()
                setup = daemon.NodeSetup(node=node, endpoints=endpoints, token=token, cfg=cfg,
                                         runtime=runtime or cfg.runtime, root_dir=root,
                                         profile_name=profile)
            daemon.profile_of(setup)
        except (ConfigError, daemon.KubeletSetupError) as exc:
            raise _Fail(str(exc)) from exc
        except Exception as exc:
            from hacluster.kubelet.behaviour import BehaviourError

            if isinstance(exc, BehaviourError):
                raise _Fail(str(exc)) from exc
            raise
        daemon.run(setup)

    @main.command("kubelet-fleet")
    @click.option("--nodes", type=click.IntRange(1, 20_000), required=True, help="Number of simulated nodes.")
    @click.option("--prefix", default="fleet-", show_default=True, help="Node names: PREFIX1 … PREFIXN.")
    @click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                  help="Resolved cluster file with the fleet's node users (kubelet.fleet_nodes >= N).")
    @click.option("--state-dir", default=None, metavar="DIR", help="Use DIR/cluster.yaml as --config.")
    @click.option("--api", "api", default=None, metavar="URL,URL,…", help="API servers (instead of --config).")
    @click.option("--token", default=None, help="One token for every node (e.g. the admin's), with --api.")
    @click.option("--profile", default="fleet", show_default=True, help="Node profile of every node.")
    @click.option("--time-scale", type=float, default=None, help="Override kubelet.time_scale.")
    @click.option("--seed", type=int, default=None, help="Override kubelet.seed.")
    @click.option("--lease-renew-s", type=float, default=None, help="Override kubelet.node_lease_renew_s.")
    @click.option("--report-every-s", type=float, default=10.0, show_default=True, help="Print figures this often.")
    @click.option("--watch", "watch_mode", type=click.Choice(["per-node", "shared"]), default="per-node",
                  show_default=True, help="One pod watch per node (as kubelets do), or one for the whole fleet.")
    @click.option("--status-writes-in-flight", type=click.IntRange(1, 4096), default=64, show_default=True,
                  help="Pod status writes the whole fleet keeps in flight at once.")
    @click.option("--event-writes-per-s", type=float, default=100.0, show_default=True,
                  help="Event writes per second for the whole fleet (beyond: dropped).")
    def kubelet_fleet(nodes: int, prefix: str, config_path: str | None, state_dir: str | None, api: str | None,
                      token: str | None, profile: str, time_scale: float | None, seed: int | None,
                      lease_renew_s: float | None, report_every_s: float, watch_mode: str,
                      status_writes_in_flight: int, event_writes_per_s: float) -> None:
        """Run many simulated nodes in one process (each its own identity, Lease and pod watch)."""
        from hacluster.kubelet import fleet as fleet_mod
        from hacluster.kubelet.behaviour import BehaviourError, load_profiles

        cluster_file = _cluster_file(config_path, state_dir if state_dir is not None else
                                     (None if api else env_state_dir()))
        overrides = _overrides(time_scale, seed, {"node_lease_renew_s": lease_renew_s})
        names = [f"{prefix}{i}" for i in range(1, nodes + 1)]
        try:
            if cluster_file is not None and not api:
                cluster = load_config(cluster_file)
                endpoints = [m.api_url() for m in cluster.masters]
                members = []
                for n in names:
                    user = cluster.user_by_name(f"system:node:{n}")
                    if user is None and token is None:
                        raise _Fail(f"the cluster file has no user system:node:{n}: set kubelet.fleet_nodes >= "
                                    f"{nodes} in the cluster config before `hacluster up`, or give --token")
                    members.append(fleet_mod.FleetNode(n, user.token if user else str(token)))
                cfg = _kubelet_config(cluster.kubelet, overrides)
            else:
                if not api or not token:
                    raise _Fail("give --config FILE, --state-dir DIR, or --api URL,… with --token T")
                endpoints = [u.strip().rstrip("/") for u in api.split(",") if u.strip()]
                members = [fleet_mod.FleetNode(n, token) for n in names]
                cfg = _kubelet_config(KubeletConfig(), overrides)
            profiles = load_profiles(cfg.profiles_file or None)
            if profile not in profiles:
                raise _Fail(f"no node profile {profile!r} (have {', '.join(sorted(profiles))})")
        except (ConfigError, BehaviourError) as exc:
            raise _Fail(str(exc)) from exc
        sys.exit(_run_fleet(members, endpoints, cfg, profiles[profile], report_every_s, watch_mode == "shared",
                            status_writes_in_flight, event_writes_per_s))


def _run_fleet(members: Any, endpoints: list[str], cfg: KubeletConfig, profile: Any, report_every_s: float,
               shared_watch: bool, status_writes_in_flight: int, event_writes_per_s: float) -> int:
    import logging
    import signal

    from hacluster.config import env_log_level
    from hacluster.kubelet import fleet as fleet_mod

    logging.basicConfig(level=env_log_level(), stream=sys.stderr,
                        format="%(asctime)s kubelet-fleet %(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        fleet = fleet_mod.Fleet(members, endpoints, cfg, profile, shared_watch=shared_watch,
                                status_writes_in_flight_max=status_writes_in_flight,
                                event_writes_per_s_max=event_writes_per_s)
        await fleet.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"kubelet-fleet: {len(members)} nodes, {'one shared pod watch' if shared_watch else 'a pod watch each'},"
              f" logs on 127.0.0.1:{fleet.logs.port}", flush=True)
        reporter = asyncio.ensure_future(fleet_mod.report_loop(fleet, report_every_s, stop))
        await fleet.run(stop)
        await reporter
        return 0

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
