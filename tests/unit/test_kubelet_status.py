"""The kubelet's pod status computation (hacluster.kubelet.status), as tables of saved input → expected output.

Each case of tests/unit/data/kubelet/pod_status.json (written by make_pod_status.py beside it, by hand) gives
a pod, what the kubelet knows of it (runtime records, waiting reasons, eviction …), optionally the previous
status, and `now`; the expected phase, container states, conditions, and the STATUS / READY / RESTARTS
cells that kubectl prints for the result — computed by the API server's own printer, so the kubelet's
output and kubectl's wording are checked together.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hacluster.format import pods
from hacluster.kubelet.runtime import ContainerRecord
from hacluster.kubelet.status import PodFacts, pod_status, should_restart

DATA = json.loads((Path(__file__).parent / "data" / "kubelet" / "pod_status.json").read_text())


def _t(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _record(r: dict[str, Any]) -> ContainerRecord:
    return ContainerRecord(id=r["id"], pod_uid="uid", name=r["name"], attempt=r["attempt"], image=r["image"],
                           image_id=r["image_id"], state=r["state"], created_at=_t(r["started_at"]) or 0.0,
                           started_at=0.0 if r["reason"] == "StartError" else _t(r["started_at"]),
                           finished_at=_t(r["finished_at"]), exit_code=r["exit_code"], reason=r["reason"],
                           message=r["message"], ready=r["ready"], memory_bytes=0, init=r["init"])


def _facts(f: dict[str, Any]) -> PodFacts:
    return PodFacts(records=tuple(_record(r) for r in f["records"]),
                    waiting={k: tuple(v) for k, v in f["waiting"].items()}, sandbox_ready=f["sandbox_ready"],
                    pod_ip=f["pod_ip"], start_time=f["start_time"],
                    terminal=tuple(f["terminal"]) if f["terminal"] else None, disruption=f["disruption"],
                    pod_is_terminal=f["pod_is_terminal"])


def _states(statuses: list[dict[str, Any]], key: str = "state") -> list[list[str]]:
    out = []
    for cs in statuses:
        state = cs.get(key) or {}
        kind = next(iter(state), "")
        out.append([kind, (state.get(kind) or {}).get("reason", "")])
    return out


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["name"])
def test_pod_status_table(case: dict[str, Any]) -> None:
    now = _t(case["now"])
    assert now is not None
    status = pod_status(case["pod"], _facts(case["facts"]), now, case.get("previous"))
    want = case["expect"]
    assert status["phase"] == want["phase"]
    assert _states(status["containerStatuses"]) == want["states"]
    if "last_states" in want:
        assert _states(status["containerStatuses"], "lastState") == want["last_states"]
    if "init_states" in want:
        assert _states(status["initContainerStatuses"]) == want["init_states"]
    got_conditions = {c["type"]: [c["status"]] + [c[k] for k in ("reason", "message") if c.get(k)]
                      for c in status["conditions"]}
    assert got_conditions == want["conditions"]
    for c in status["conditions"]:
        assert c["lastTransitionTime"] and "lastProbeTime" in c
    for key in ("podIP", "hostIP", "startTime", "qosClass", "reason", "message"):
        if key in want:
            assert status.get(key) == want[key], key
    if "exit_codes" in want:
        assert [cs["state"]["terminated"]["exitCode"] for cs in status["containerStatuses"]] == want["exit_codes"]
    if "transition_times" in want:
        assert {c["type"]: c["lastTransitionTime"] for c in status["conditions"]} == want["transition_times"]
    printed = dict(case["pod"], status=status)
    assert pods.pod_status_reason(printed) == want["kubectl_status"]
    assert pods.pod_ready(printed) == want["kubectl_ready"]
    assert pods.pod_restarts(printed, datetime.fromisoformat(case["now"].replace("Z", "+00:00"))) == \
        want["kubectl_restarts"]


def test_the_status_is_plain_json() -> None:
    for case in DATA["cases"]:
        status = pod_status(case["pod"], _facts(case["facts"]), _t(case["now"]) or 0.0, case.get("previous"))
        assert json.loads(json.dumps(status)) == status


@pytest.mark.parametrize(("policy", "exit_code", "init", "want"), [
    ("Always", 0, False, True), ("Always", 1, False, True), ("OnFailure", 0, False, False),
    ("OnFailure", 137, False, True), ("Never", 1, False, False), ("Always", 0, True, False),
    ("Always", 1, True, True), ("Never", 1, True, False),
])
def test_should_restart(policy: str, exit_code: int, init: bool, want: bool) -> None:
    r = ContainerRecord(id="x", pod_uid="u", name="c", attempt=0, image="i", image_id="", state="exited",
                        created_at=0, started_at=0, finished_at=1, exit_code=exit_code, reason="", message="",
                        ready=False, memory_bytes=0, init=init)
    assert should_restart(policy, r, init=init) is want
    assert should_restart(policy, r, init=init, pod_is_terminal=True) is False
