"""The `hacluster` command line (click). Each command is a thin shell over a module that does the work.

Errors that a user can act on are printed as one line (`error: …`) with exit code 1; never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from hacluster.config import ConfigError, default_config, env_state_dir, load_config, with_engine


class _Fail(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _state_dir_option(f: Any) -> Any:
    return click.option("--state-dir", default=None, metavar="DIR",
                        help="Where the cluster keeps its config, kubeconfig, logs and data "
                             "(default: $HACLUSTER_STATE_DIR or .hacluster).")(f)


def _sd(state_dir: str | None) -> Path:
    return Path(state_dir or env_state_dir())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """hacluster: a Raft-replicated, Kubernetes-compatible control plane you run on one machine."""


# ------------------------------------------------------------------------------------ processes
@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--id", "master_id", required=True)
@click.option("--unsafe-test-storage", "test_storage", type=click.Choice(["disk", "write-back"]), default="disk",
              hidden=True, help="write-back: keep unsynced journal writes in memory (tests and chaos runs only).")
def master(config_path: str, master_id: str, test_storage: str) -> None:
    """Run one master (normally started by `hacluster up`)."""
    from hacluster.cluster import master as master_mod

    try:
        load_config(config_path).master(master_id)
    except ConfigError as exc:
        raise _Fail(str(exc)) from exc
    master_mod.run(config_path, master_id, test_storage)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Cluster file naming each master's host and ports (see configs/multi-host/).")
@click.option("--out", "out_dir", required=True, metavar="DIR",
              help="Where to write cluster.yaml (secrets filled in), pki/ and kubeconfig, to copy to every host.")
def pki(config_path: str, out_dir: str) -> None:
    """Prepare masters that run on several hosts: secrets, TLS certificates for every host, a kubeconfig."""
    from hacluster.cluster import launcher

    try:
        handle = launcher.prepare_hosts(load_config(config_path), out_dir)
    except (launcher.LauncherError, ConfigError) as exc:
        raise _Fail(str(exc)) from exc
    click.echo(f"wrote {handle.config_path}, {handle.state_dir / 'pki'}/ and {handle.state_dir / 'kubeconfig'}")
    click.echo(f"copy {handle.state_dir}/ to every host, then on each: hacluster master --config "
               f"{handle.config_path} --id <id>  ({', '.join(f'{m.id} on {m.host}' for m in handle.cfg.masters)})")


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Cluster file (see configs/).")
@click.option("--masters", type=click.IntRange(1, 9), default=None, help="Number of masters (default 3).")
@click.option("--nodes", type=click.IntRange(0, 1000), default=0, help="Kubelet agents to start (node-1 …).")
@click.option("--runtime", type=click.Choice(["sim", "process"]), default=None,
              help="Container runtime of the kubelets: simulated, or real local processes "
                   "(default: kubelet.runtime of the config, sim).")
@click.option("--chaos", is_flag=True, help="Route every Raft and API link through a Toxiproxy server.")
@click.option("--detach", is_flag=True, help="Start the cluster and return; stop it with `hacluster down`.")
@click.option("--fresh", is_flag=True,
              help="Start a new cluster even if the state directory holds one's data (deletes that data).")
@click.option("--dashboard", "with_dashboard", is_flag=True,
              help="Also start the live dashboard (`hacluster dashboard`); `down` stops it.")
@click.option("--store", "engine", type=click.Choice(["pysyncobj", "etcd"]), default=None,
              help="Replication engine (store.engine): pysyncobj (Raft in each master, the default) or etcd "
                   "(an etcd member beside each master, or store.etcd.endpoints of the config).")
@_state_dir_option
def up(config_path: str | None, masters: int | None, nodes: int, runtime: str | None, chaos: bool, detach: bool,
       fresh: bool, with_dashboard: bool, engine: str | None, state_dir: str | None) -> None:
    """Start a local cluster of masters on 127.0.0.1 (or resume the one whose data the state dir holds)."""
    from hacluster.cluster import launcher

    if config_path and masters:
        raise _Fail("give --config or --masters, not both")
    try:
        cfg = load_config(config_path) if config_path else default_config(masters or 3)
    except ConfigError as exc:
        raise _Fail(str(exc)) from exc
    if engine is not None:
        cfg = with_engine(cfg, engine)
    sd = _sd(state_dir)
    resume = launcher.has_data(sd) and not fresh
    if resume:
        try:
            stored = launcher.load_handle(sd).cfg
        except (launcher.LauncherError, ConfigError) as exc:
            raise _Fail(f"{sd} holds cluster data but its cluster.yaml cannot be read ({exc}); start a new "
                        f"cluster there with `hacluster up --fresh --state-dir {sd}` (deletes that data)") from exc
        asked = [m.id for m in cfg.masters] if (config_path or masters) else [m.id for m in stored.masters]
        if asked != [m.id for m in stored.masters]:
            raise _Fail(f"{sd} holds the data of cluster {stored.name} (masters "
                        f"{', '.join(m.id for m in stored.masters)}); resume it with `hacluster up --state-dir "
                        f"{sd}`, or start a new cluster with `--fresh` (deletes that data)")
        click.echo(f"resuming cluster {stored.name} from its data in {sd} (--fresh starts a new one instead)")
    try:
        network: launcher.NetworkStarter | None = None
        if chaos:  # the CLI wires the test rig in; the launcher only takes a network starter
            from chaos.network import start_network

            network = start_network
        handle = launcher.up(cfg, sd, nodes=nodes, runtime=runtime, network=network, resume_data=resume)
    except launcher.LauncherError as exc:
        raise _Fail(str(exc)) from exc
    leader = launcher.leader_of(handle)
    click.echo(f"cluster {handle.cfg.name}: {len(handle.cfg.masters)} masters ready, leader "
               f"{leader['id'] if leader else '?'}")
    for m in handle.cfg.masters:
        store = (f"etcd {m.host}:{m.etcd_client_port}" if m.etcd_client_port
                 else "etcd endpoints" if handle.cfg.store.engine == "etcd" else f"raft {m.raft_address}")
        click.echo(f"  {m.id}  {handle.api(m.id)}  ({store}, pid {handle.pid(m.id)})")
    from hacluster.cli.status import unsafe_banner

    banner = unsafe_banner(handle)  # a store engine that loses acknowledged writes says so at once
    if banner is not None:
        click.echo(banner)
    if handle.cfg.nodes:
        click.echo(f"nodes: {', '.join(n.name for n in handle.cfg.nodes)} (kubelets ready)")
    click.echo(f"kubeconfig: {sd / 'kubeconfig'}   e.g. kubectl --kubeconfig {sd / 'kubeconfig'} get pods")
    if with_dashboard:
        from hacluster.cli.dashboard_cmd import start_detached

        try:
            click.echo(f"dashboard: {start_detached(handle)}")
        except launcher.LauncherError as exc:
            launcher.down(sd)
            raise _Fail(str(exc)) from exc
    if detach:
        click.echo(f"stop with: hacluster down --state-dir {sd}")
        return
    click.echo("running; press Ctrl-C to stop")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        launcher.down(sd)
        click.echo("stopped")


@main.command()
@_state_dir_option
def down(state_dir: str | None) -> None:
    """Stop every process of a cluster started by `hacluster up`."""
    from hacluster.cluster import launcher

    sd = _sd(state_dir)
    stopped = launcher.down(sd)
    click.echo(f"stopped {len(stopped)} process(es)" if stopped else "nothing was running")


@main.command()
@_state_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--watch", "-w", is_flag=True, help="Refresh the table until Ctrl-C.")
def status(state_dir: str | None, output: str, watch: bool) -> None:
    """Show each master's Raft role, term, leader and indexes."""
    from hacluster.cli import status as status_mod
    from hacluster.cluster import launcher

    try:
        handle = launcher.load_handle(_sd(state_dir))
    except (launcher.LauncherError, ConfigError) as exc:
        raise _Fail(str(exc)) from exc
    if output == "json":
        click.echo(json.dumps(launcher.status_json(handle), indent=2))
        return
    status_mod.show(handle, watch=watch)


@main.command()
@click.option("--masters", type=click.IntRange(1, 9), default=3)
@_state_dir_option
@click.option("--quick-experiment/--no-experiment", default=False,
              help="End with the quick quorum experiment (needs Toxiproxy).")
def demo(masters: int, state_dir: str | None, quick_experiment: bool) -> None:
    """Start a cluster, write pods, kill the leader, keep writing on the new leader, stop everything."""
    from hacluster.cli import demo as demo_mod

    sd = Path(state_dir) if state_dir else Path(".hacluster-demo")
    rc = demo_mod.run(masters, sd, quick_experiment=quick_experiment)
    sys.exit(rc)


@main.group()
def bench() -> None:
    """Benchmarks that print figures."""


@bench.command("api")
@click.option("--seconds", type=float, default=8.0, help="Duration of each load level.")
@click.option("--trials", type=int, default=5, help="Leader-failover trials.")
@click.option("--fsync/--no-fsync", default=True, show_default=True,
              help="Run the masters with raft.fsync on (the default) or off, to see what durability costs.")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the figures as JSON to this file.")
@click.option("--store", "engine", type=click.Choice(["pysyncobj", "etcd"]), default="pysyncobj",
              show_default=True, help="Replication engine; on etcd the failover trials SIGKILL the etcd leader.")
@_state_dir_option
def bench_api(seconds: float, trials: int, fsync: bool, out: str | None, engine: str, state_dir: str | None) -> None:
    """Pod creates/s and latency at 1, 16, 64 clients, linearizable gets/s, leader failover time."""
    from hacluster.cli import bench_api as bench_mod

    sd = Path(state_dir) if state_dir else Path(".hacluster-bench")
    sys.exit(bench_mod.run(sd, seconds=seconds, trials=trials, fsync=fsync, out=Path(out) if out else None,
                           engine=engine))


# Commands of other components live beside their component and register here when present.
_COMMAND_MODULES = ("hacluster.cli.kubelet_cmd", "hacluster.cli.chaos_cmd", "hacluster.cli.experiment_cmd",
                    "hacluster.cli.check_cmd", "hacluster.cli.kubectl_cmd", "hacluster.cli.bench_cmd",
                    "hacluster.cli.audit_cmd", "hacluster.cli.dashboard_cmd")


def _register_optional_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(main)


_register_optional_commands()

if __name__ == "__main__":
    main()
