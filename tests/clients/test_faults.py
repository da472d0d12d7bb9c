"""Real kubectl (and the hacluster CLI) while a fault is on, through the chaos network (`hacluster up --chaos`):
pointed at a surviving master it keeps working; pointed at an isolated master it gets a clear 503 at once,
never a hang and never a stale answer to a default read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from chaos.nemesis import isolate_pairs
from chaos.network import load_network, start_network
from hacluster.cluster import launcher
from hacluster.config import default_config
from tests.clients.conftest import SLEEP, KCluster, need_kubectl, pod, wait_for

pytestmark = [pytest.mark.slow, need_kubectl]


@pytest.fixture(scope="module")
def chaos_kc(tmp_path_factory: pytest.TempPathFactory):
    sd = tmp_path_factory.mktemp("chaoskc")
    home = tmp_path_factory.mktemp("home")
    handle = launcher.up(default_config(3), sd, network=start_network)
    try:
        yield KCluster(handle, home)
    finally:
        launcher.down(sd)
        assert not launcher.processes_of(sd), "down left processes behind (masters or Toxiproxy)"


def unplaced(name: str) -> str:
    return yaml.safe_dump(pod(name, command=SLEEP, nodeSelector={"disk": "none"}))


def test_isolated_leader(chaos_kc: KCluster):
    kc = chaos_kc
    net = load_network(kc.h)
    kc.ok("apply", "-f", "-", input=unplaced("before"))
    old = kc.leader()
    survivors = [m.id for m in kc.h.cfg.masters if m.id != old]
    watcher = subprocess.Popen([kc.kubectl_path, "get", "pods", "-w", "--context", f"{kc.name}-{old}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kc.env())
    # `hacluster get -w` with failover: if its master is the one cut off, it resumes on another one.
    cli = subprocess.Popen([sys.executable, "-m", "hacluster.cli.main", "get", "pods", "-w", "-l", "test=during"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kc.env())
    cli_lines: list[str] = []
    threading.Thread(target=lambda: cli_lines.extend(iter(cli.stdout.readline, "")), daemon=True).start()
    time.sleep(1.0)
    undo = net.cut_pairs(isolate_pairs([m.id for m in kc.h.cfg.masters], old))
    try:
        # The majority elects a new leader; kubectl pointed at a survivor keeps working (writes and reads).
        wait_for(lambda: kc.kubectl("apply", "-f", "-", input=unplaced("during"), master=survivors[0]).returncode == 0,
                 15, "an apply through a surviving master")
        for m in survivors:
            got = kc.kubectl("get", "pods", "-o", "name", master=m)
            assert got.returncode == 0 and {"pod/before", "pod/during"} <= set(got.stdout.split()), got.stderr

        # The isolated master answers a default (consistent) read with 503 at once — it has no Retry-After, so
        # kubectl does not retry it ten times — and never with its stale list (which lacks "during").
        def refused() -> subprocess.CompletedProcess[str] | None:
            r = kc.kubectl("get", "pods", master=old, timeout=30)
            return r if r.returncode != 0 else None

        wait_for(refused, 10, "the isolated master refusing reads")
        for _ in range(3):
            t0 = time.monotonic()
            r = kc.kubectl("get", "pods", master=old, timeout=30)
            took = time.monotonic() - t0
            assert r.returncode == 1 and "during" not in r.stdout
            assert r.stderr.startswith("Error from server (ServiceUnavailable): hacluster master "), r.stderr
            assert "cannot serve a consistent read" in r.stderr and "use another master" in r.stderr
            assert took < 3, f"kubectl took {took:.1f}s against the isolated master"
        w = kc.kubectl("apply", "-f", "-", input=unplaced("to-isolated"), master=old, timeout=30)
        assert w.returncode == 1 and "ServiceUnavailable" in w.stderr
        # A watch on the isolated master ends (the master closes it when it loses its quorum): no hang.
        assert watcher.wait(10) is not None
        # The hacluster CLI (default context = m1, with failover) answers from the majority whoever m1 is,
        # and its watch saw the pod created during the fault.
        r = kc.hacluster("get", "pods", "-o", "name")
        assert r.returncode == 0 and "pod/during" in r.stdout, r.stderr
        wait_for(lambda: any(line.startswith("during ") for line in cli_lines), 15, "the CLI watch showing 'during'")
    finally:
        for proc in (watcher, cli):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        net.undo(undo)
    wait_for(lambda: kc.kubectl("get", "pods", master=old).returncode == 0, 15, "the healed master serving again")
    names = kc.ok("get", "pods", "-o", "name", master=old).split()
    assert "pod/during" in names and "pod/to-isolated" not in names


def test_killed_leader(chaos_kc: KCluster):
    kc = chaos_kc
    old = kc.leader()
    survivor = next(m.id for m in kc.h.cfg.masters if m.id != old)
    pid = launcher.read_pid(kc.sd, old)
    assert pid is not None
    stop = threading.Event()
    failures: list[str] = []

    def reads() -> None:
        # kubectl against a survivor, all through the failover: every call must succeed (client-go retries the
        # 503 of the election window, which carries Retry-After while the survivor reaches a majority).
        while not stop.is_set():
            r = kc.kubectl("get", "pods", "-o", "name", master=survivor, timeout=30)
            if r.returncode != 0:
                failures.append(r.stderr.strip())

    t = threading.Thread(target=reads, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: kc.kubectl("apply", "-f", "-", input=unplaced("after-kill"), master=survivor).returncode == 0,
                 15, "an apply through the survivor after the leader died")
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(30)
    assert not failures, failures
    dead = kc.kubectl("get", "pods", master=old, timeout=30)
    assert dead.returncode == 1 and "refused" in dead.stderr
    launcher.start_master(kc.h, old)
    launcher.wait_ready(kc.h, 30)
    assert "pod/after-kill" in kc.ok("get", "pods", "-o", "name", master=old).split()
