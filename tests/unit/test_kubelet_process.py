"""The process runtime: containers are real local processes, run by a kubelet against an in-process API
server (see test_kubelet_agent.Rig). Real exit codes, OOM kills by the memory limit (cgroup where this
machine allows one, and the resident-memory watchdog), SIGTERM handled within the grace period, SIGKILL
after it, logs through `GET …/pods/{name}/log`, env/args/workingDir, and no process left behind."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hacluster.kubelet.crilog import LogWriter, read_cri_log
from hacluster.kubelet.process import ProcessRuntime, expand
from tests.unit.test_kubelet_agent import Rig, make_rig

PY = sys.executable
SCALE = 0.1


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


def container(cmd: list[str], **extra: Any) -> list[dict[str, Any]]:
    return [dict({"name": "c", "image": "python:3.11", "command": cmd}, **extra)]


async def start(rig: Rig, tmp_path: Path, enforcement: str = "auto") -> ProcessRuntime:
    rt = ProcessRuntime(tmp_path / "kubelet", node="node-1", memory_enforcement=enforcement,
                        watchdog_interval_s=0.02, time_scale=SCALE)
    await rig.start_kubelet("node-1", runtime=rt, time_scale=SCALE)
    return rt


def pids_of(rt: ProcessRuntime) -> list[int]:
    return [c.pid for attempts in rt._pods.values() for c in attempts if c.pid]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


async def test_real_exit_codes(rig: Rig, tmp_path: Path) -> None:
    await start(rig, tmp_path)
    await rig.create("zero", containers=container([PY, "-c", "print('ok')"]), restartPolicy="Never")
    await rig.create("three", containers=container([PY, "-c", "import sys; sys.exit(3)"]), restartPolicy="Never")
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    await rig.create("killed", containers=container([PY, "-c", suicide]), restartPolicy="Never")
    ok = await rig.wait_status("zero", "Completed")
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    three = await rig.wait_status("three", "Error")
    assert three["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    killed = await rig.wait_status("killed", "Error")
    assert killed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137


HOG = ("import time\nblocks = []\nfor _ in range(60):\n    blocks.append(bytearray(16 * 1024 * 1024))\n"
       "    time.sleep(0.01)\nprint('survived', flush=True)\ntime.sleep(30)\n")


@pytest.mark.parametrize("enforcement", ["auto", "watchdog"])
async def test_memory_hungry_child_is_oom_killed(rig: Rig, tmp_path: Path, enforcement: str) -> None:
    rt = await start(rig, tmp_path, enforcement)
    assert enforcement == "auto" or rt.cgroups is None
    await rig.create("hog", containers=container([PY, "-c", HOG], resources={"limits": {"memory": "96Mi"}}),
                     restartPolicy="Never")
    pod = await rig.wait_status("hog", "OOMKilled", 15.0)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "OOMKilled"
    assert "survived" not in ((await rig.admin.request("GET", "/api/v1/namespaces/default/pods/hog/log")).body or "")


async def test_sigterm_handled_within_the_grace_period(rig: Rig, tmp_path: Path) -> None:
    await start(rig, tmp_path)
    script = ("import signal, sys, time\n"
              "def bye(*_):\n    print('got SIGTERM', flush=True)\n    time.sleep(0.2)\n    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\nprint('serving', flush=True)\nwhile True:\n    time.sleep(1)\n")
    await rig.create("polite", containers=container([PY, "-c", script]), terminationGracePeriodSeconds=30)
    await rig.wait_status("polite", "Running")
    await rig.wait(lambda: "serving" in _log(rig, "polite"), 5.0, "the process to start serving")
    t0 = time.monotonic()
    await rig.admin.delete("/api/v1/namespaces/default/pods/polite")
    await rig.wait(lambda: rig.pod("polite") is None, 5.0, "deletion")
    assert time.monotonic() - t0 < 30 * SCALE  # well within the (scaled) 3 s grace period
    assert rig.history("polite")[-2:] == ["Terminating", "Completed"]


async def test_sigterm_ignored_is_killed_after_the_grace_period(rig: Rig, tmp_path: Path) -> None:
    rt = await start(rig, tmp_path)
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n"
    await rig.create("rude", containers=container([PY, "-c", script]), terminationGracePeriodSeconds=10)
    await rig.wait_status("rude", "Running")
    await asyncio.sleep(0.3)  # let it install its handler
    pids = pids_of(rt)
    t0 = time.monotonic()
    await rig.admin.delete("/api/v1/namespaces/default/pods/rude")
    await rig.wait(lambda: rig.pod("rude") is None, 6.0, "deletion")
    assert time.monotonic() - t0 >= 10 * SCALE
    assert rig.history("rude")[-2:] == ["Terminating", "Error"]  # 137 after SIGKILL
    assert not any(alive(p) for p in pids)


async def test_logs_tail_follow_previous_and_env(rig: Rig, tmp_path: Path) -> None:
    await start(rig, tmp_path)
    workdir = tmp_path / "wd"
    script = ("import os, sys, time\nprint('cwd', os.getcwd())\nprint('greeting', os.environ['GREETING'])\n"
              "print('args', sys.argv[1:])\nprint('oops', file=sys.stderr)\nsys.stdout.flush()\n"
              "for i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.2)\nsys.exit(1)\n")
    await rig.create("talker", containers=container([PY, "-c", script], args=["$(GREETING)", "$$HOME"],
                                                    env=[{"name": "GREETING", "value": "hello"}],
                                                    workingDir=str(workdir)), restartPolicy="OnFailure")
    await rig.wait_status("talker", "Running")
    path = "/api/v1/namespaces/default/pods/talker/log"
    followed = (await rig.admin.request("GET", path, params={"follow": "true"}, deadline_s=10)).body
    assert followed.splitlines()[-1] == "tick 2"
    lines = followed.splitlines()
    assert f"cwd {workdir}" in lines and "greeting hello" in lines and "args ['hello', '$HOME']" in lines
    assert "oops" in lines
    await rig.wait(lambda: rig.pod("talker")["status"]["containerStatuses"][0]["restartCount"] >= 1, 8.0, "a restart")
    prev = (await rig.admin.request("GET", path, params={"previous": "true", "tailLines": "2"})).body
    assert prev == "tick 1\ntick 2\n"


async def test_command_not_found_is_a_start_error(rig: Rig, tmp_path: Path) -> None:
    await start(rig, tmp_path)
    await rig.create("nope", containers=container(["no-such-command-here"]))
    await rig.wait(lambda: rig.status_word("nope") in ("RunContainerError", "CrashLoopBackOff"), 5.0)
    cs = rig.pod("nope")["status"]["containerStatuses"][0]
    last = cs["lastState"].get("terminated") or cs["state"].get("terminated")
    assert last["exitCode"] == 128 and last["reason"] == "StartError"
    assert 'exec: "no-such-command-here": executable file not found in $PATH' in last["message"]


async def test_no_process_outlives_the_kubelet(rig: Rig, tmp_path: Path) -> None:
    rt = await start(rig, tmp_path)
    await rig.create("sleeper", containers=container(["/bin/sh", "-c", "sleep 60 & sleep 60"]))
    await rig.wait_status("sleeper", "Running")
    await asyncio.sleep(0.2)
    from hacluster.kubelet.process import tree_pids

    pids = [p for pid in pids_of(rt) for p in tree_pids(pid)]
    assert len(pids) >= 2
    await rig.stop_kubelet("node-1")
    await rig.wait(lambda: not any(alive(p) for p in pids), 5.0, "the container's processes to be gone")


def test_var_expansion_and_cri_log_format(tmp_path: Path) -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"
    w = LogWriter(tmp_path / "0.log", max_bytes=200)
    for i in range(10):
        w.write("stdout", f"line {i}".encode(), False)
    w.write("stderr", b"part", True)
    w.write("stderr", b"ial", False)
    w.close()
    lines = read_cri_log(tmp_path / "0.log")
    assert [ln.text for ln in lines][-2:] == ["line 9", "partial"] and lines[-1].stream == "stderr"
    assert (tmp_path / "0.log.1").exists()  # rotated at 200 bytes, one old file kept


def _log(rig: Rig, name: str) -> str:
    k = rig.kubelets["node-1"]
    e = k.find("default", name)
    if e is None:
        return ""
    got = e.runtime.logs(e.uid, "c", False)
    return "\n".join(ln.text for ln in got[0]) if got else ""
