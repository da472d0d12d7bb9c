"""Readiness and liveness probes: Kubernetes' defaults and validation, the success/failure thresholds, the
sim runtime's data-driven schedule, and real probes on the process runtime (exec, HTTP, TCP) through a
kubelet against an in-process API server: a container is Ready only once its readiness probe passes, and a
failing liveness probe restarts it (Unhealthy and Killing events, restart count, back-off)."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hacluster.kubelet.behaviour import Behaviour
from hacluster.kubelet.probes import ProbeTracker, container_port, first_tick_at_or_after, run_probe
from hacluster.kubelet.process import ProcessRuntime
from hacluster.kubelet.sim import EXITED, RUNNING, probe_schedule, timeline
from hacluster.model import validation
from tests.unit.test_kubelet_agent import Rig, make_rig

PY = sys.executable
SCALE = 0.1


def test_probe_defaults_and_validation():
    c = {"name": "c", "image": "x", "livenessProbe": {"httpGet": {"port": 8080}}}
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [c]}}
    validation.default_object("pods", pod)
    assert pod["spec"]["containers"][0]["livenessProbe"] == {
        "httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
        "successThreshold": 1, "failureThreshold": 3}
    assert validation.VALIDATORS["pods"](pod) == []
    pod["spec"]["containers"][0]["livenessProbe"]["successThreshold"] = 2
    pod["spec"]["containers"][0]["readinessProbe"] = {"periodSeconds": 0}
    got = [c.render() for c in validation.VALIDATORS["pods"](pod)]
    assert got == ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                   "spec.containers[0].readinessProbe: Required value: must specify a handler type",
                   "spec.containers[0].readinessProbe.periodSeconds: Invalid value: 0: must be greater than or "
                   "equal to 1"]


def test_thresholds():
    readiness = ProbeTracker.for_probe({"successThreshold": 2, "failureThreshold": 2}, readiness=True)
    assert readiness.result is False
    assert not readiness.observe(True) and readiness.observe(True) and readiness.result
    assert not readiness.observe(False) and readiness.observe(False) and not readiness.result
    liveness = ProbeTracker.for_probe({"failureThreshold": 3}, readiness=False)
    assert liveness.result is True
    assert not liveness.observe(False) and not liveness.observe(False) and liveness.observe(False)
    assert container_port({"ports": [{"name": "http", "containerPort": 80}]}, "http") == 80
    assert first_tick_at_or_after(12.5, 10.0, 2.0) == 14.0 and first_tick_at_or_after(3.0, 10.0, 2.0) == 10.0


def behaviour(**kw: Any) -> Behaviour:
    base = dict(exists=True, pull_s=0.0, size_bytes=0, start_s=0.0, run_s=None, exit_code=0, ready_after_s=0.0,
                memory=((0.0, 0),), terminate_s=0.5, terminate_exit_code=0, log_lines=())
    base.update(kw)
    return Behaviour(**base)


def test_sim_probes_follow_the_probe_schedule_on_the_image_data():
    pod = {"spec": {"terminationGracePeriodSeconds": 30}}
    c = {"readinessProbe": {"initialDelaySeconds": 5, "periodSeconds": 10, "successThreshold": 2},
         "livenessProbe": {"initialDelaySeconds": 0, "periodSeconds": 10, "failureThreshold": 3}}
    b, stop_at, grace = probe_schedule(behaviour(ready_after_s=7.0, liveness_fails_after_s=21.0), pod, c, 100.0, 1.0)
    assert b.ready_after_s == 25.0  # ticks at 105, 115 (first success at 115, ready after the second: 125)
    assert stop_at == 150.0 and grace == 30.0  # failing from the tick at 130, third failure at 150
    assert timeline(b, None, 100.0, 124.0, liveness_stop_at=stop_at).ready is False
    assert timeline(b, None, 100.0, 125.0, liveness_stop_at=stop_at).ready is True
    running = timeline(b, None, 100.0, 150.2, liveness_stop_at=stop_at)
    assert running.state == RUNNING and not running.ready  # stopping: SIGTERM handled in 0.5 s
    done = timeline(b, None, 100.0, 150.6, liveness_stop_at=stop_at)
    assert done.state == EXITED and done.finished_at == 150.5
    # without a liveness probe, the image's failing liveness changes nothing
    _, none_at, _ = probe_schedule(behaviour(liveness_fails_after_s=1.0), pod, {}, 100.0, 1.0)
    assert none_at is None


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sim_liveness_failure_restarts_the_container(rig: Rig) -> None:
    await rig.start_kubelet("node-1")
    await rig.create("hung", behaviour={"liveness_fails_after_s": 1},
                     containers=[{"name": "c", "image": "nginx:1.27",
                                  "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1,
                                                    "failureThreshold": 2}}])

    def restarts() -> int:
        p = rig.pod("hung")
        return int(((p or {}).get("status", {}).get("containerStatuses") or [{}])[0].get("restartCount", 0))
    await rig.wait(lambda: restarts() >= 1, 10.0, "a restart after the liveness failure")
    # events are posted by the kubelet's recorder on its own schedule, not with the status update
    await rig.wait(lambda: {"Unhealthy", "Killing"} <= {r for r, _, _ in rig.events_of("hung")}, 10.0,
                   "Unhealthy and Killing events for the restart")


async def test_process_readiness_exec_http_and_tcp(rig: Rig, tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "kubelet", node="node-1", time_scale=SCALE)
    await rig.start_kubelet("node-1", runtime=rt, time_scale=SCALE)
    flag = tmp_path / "ready-flag"
    await rig.create("gated", containers=[{"name": "c", "image": "python:3.11", "command": [PY, "-c",
                                           "import time\nwhile True: time.sleep(1)"],
                                           "readinessProbe": {"exec": {"command": ["test", "-e", str(flag)]},
                                                              "periodSeconds": 1}}])
    await rig.wait_status("gated", "Running")

    def ready(name: str) -> bool:
        p = rig.pod(name) or {}
        return bool(((p.get("status") or {}).get("containerStatuses") or [{}])[0].get("ready"))
    await rig.wait(lambda: any(r == "Unhealthy" for r, _, _ in rig.events_of("gated")), 5.0, "a failed probe")
    assert not ready("gated")
    flag.write_text("")
    await rig.wait(lambda: ready("gated"), 5.0, "ready once the probe passes")

    port = free_port()
    server = [PY, "-c", f"import http.server as h\nh.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler)"
                        ".serve_forever()"]
    await rig.create("web", containers=[{"name": "c", "image": "python:3.11", "command": server,
                                         "ports": [{"name": "http", "containerPort": port}],
                                         "readinessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 1},
                                         "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1,
                                                           "initialDelaySeconds": 30}}])
    await rig.wait(lambda: ready("web"), 10.0, "ready once the HTTP server answers")
    ok, _ = await run_probe({"tcpSocket": {"port": port}, "timeoutSeconds": 1}, {}, env={}, cwd=tmp_path)
    assert ok
    ok, why = await run_probe({"httpGet": {"port": port, "path": "/nothing-here"}}, {}, env={}, cwd=tmp_path)
    assert not ok and why == "HTTP probe failed with statuscode: 404"
    ok, why = await run_probe({"tcpSocket": {"port": free_port()}}, {}, env={}, cwd=tmp_path)
    assert not ok and why.startswith("dial tcp 127.0.0.1:")


async def test_process_liveness_failure_kills_and_restarts(rig: Rig, tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "kubelet", node="node-1", time_scale=SCALE)
    await rig.start_kubelet("node-1", runtime=rt, time_scale=SCALE)
    await rig.create("sick", containers=[{"name": "c", "image": "python:3.11", "command": [PY, "-c",
                                          "import time\nwhile True: time.sleep(1)"],
                                          "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                                                            "failureThreshold": 2}}],
                     terminationGracePeriodSeconds=1)

    def restarts() -> int:
        p = rig.pod("sick") or {}
        return int(((p.get("status") or {}).get("containerStatuses") or [{}])[0].get("restartCount", 0))
    await rig.wait(lambda: restarts() >= 1, 10.0, "a restart after the liveness failure")
    events = rig.events_of("sick")
    assert any(r == "Killing" and m == "Container c failed liveness probe, will be restarted" for r, m, _ in events)
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed") for r, m, _ in events)
