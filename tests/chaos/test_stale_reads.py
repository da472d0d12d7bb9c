"""The stale-read demonstration, on real masters behind Toxiproxy, decided by the linearizability checker.

Deterministic: write k=1 and let every master apply it; blackhole the leader's Raft links; wait for the
majority to elect a new leader and acknowledge k=2 through it; wait until the old leader knows it has no
quorum. Then a local read (`resourceVersion=0`) of k from the old leader answers 1 — the checker calls
that history not linearizable and its explanation names the stale read — while a default (linearizable)
read from the old leader is refused with 503 and that history is linearizable; after the heal the old
leader's default read answers 2. `hacluster check` gives the same verdicts as exit codes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.workload import HistoryRecorder
from hacluster.consistency.linearizability import check_file
from tests.support import wait_for

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
KEY = "default/k"
VALUE = "hacluster.io/value"


def merge_patch(c, mid: str, path: str, body: dict) -> tuple[int, dict]:
    r = urllib.request.Request(c.h.api(mid) + path, data=json.dumps(body).encode(), method="PATCH")
    r.add_header("Authorization", f"Bearer {c.token}")
    r.add_header("Content-Type", "application/merge-patch+json")
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def value_of(body) -> int | None:
    return int(body["metadata"]["annotations"][VALUE])


def test_local_reads_from_a_cut_off_leader_are_stale_and_caught_default_reads_are_refused(chaos_factory, tmp_path):
    c = chaos_factory(3)
    old = c.leader()["id"]
    others = sorted(m for m in c.status() if m != old)
    local_h = HistoryRecorder(tmp_path / "local-read.jsonl")
    default_h = HistoryRecorder(tmp_path / "default-read.jsonl")
    both = (local_h, default_h)

    def record(process, etype, f, value, node, **extra):
        for h in both:
            h.record(process, etype, f, KEY, value, node=node, **extra)

    # k = 1, applied everywhere.
    record(1, "invoke", "create", 1, old)
    code, body, _ = c.req("POST", old, PODS, {"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"name": "k", "annotations": {VALUE: "1"}},
                                              "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert code == 201, body
    record(1, "ok", "create", 1, old)
    c.wait_converged([old, *others])

    # The leader's Raft links go silent; the majority elects a new leader and acknowledges k = 2.
    c.net.cut_pairs([(old, o) for o in others], kind="blackhole")
    new = wait_for(lambda: next((r["id"] for r in c.status().values()
                                 if r["id"] in others and r["role"] == "leader" and r["quorum"]), None),
                   10, "a new leader in the majority")
    record(2, "invoke", "write", 2, new)
    code, body = merge_patch(c, new, f"{PODS}/k", {"metadata": {"annotations": {VALUE: "2"}}})
    assert code == 200, body
    record(2, "ok", "write", 2, new)
    wait_for(lambda: not c.status()[old]["quorum"], 5, "the old leader notices it has no quorum")

    # A local read from the old leader: its copy is stale.
    local_h.record(3, "invoke", "read", KEY, None, node=old, local=True)
    code, body, _ = c.req("GET", old, f"{PODS}/k?resourceVersion=0")
    assert code == 200 and value_of(body) == 1, (code, body)
    local_h.record(3, "ok", "read", KEY, 1, node=old, local=True)

    # A default read from the old leader: refused at once, nothing stale is served.
    default_h.record(3, "invoke", "read", KEY, None, node=old)
    code, body, elapsed = c.req("GET", old, f"{PODS}/k")
    assert code == 503 and body["reason"] == "ServiceUnavailable", (code, body)
    assert elapsed < c.h.cfg.api.proposal_timeout_s
    default_h.record(3, "fail", "read", KEY, None, node=old, error="503 ServiceUnavailable")

    # After the heal the old master answers linearizable reads again, with the majority's value.
    c.net.heal()
    c.wait_converged([old, *others])
    default_h.record(4, "invoke", "read", KEY, None, node=old)
    code, body, _ = c.req("GET", old, f"{PODS}/k")
    assert code == 200 and value_of(body) == 2, (code, body)
    default_h.record(4, "ok", "read", KEY, 2, node=old)
    for h in both:
        h.close()

    stale = check_file(tmp_path / "local-read.jsonl")
    assert stale.verdict == "invalid"
    (violation,) = stale.violations
    assert violation.key == KEY
    (blocked,) = violation.first_unlinearizable
    assert (blocked.f, blocked.result, blocked.process) == ("read", 1, 3), "the explanation names the stale read"
    assert "read" in violation.reason and "1" in violation.reason, violation.reason
    assert check_file(tmp_path / "default-read.jsonl").verdict == "valid"

    from hacluster.cli.main import main

    runner = CliRunner()
    caught = runner.invoke(main, ["check", str(tmp_path / "local-read.jsonl"), "--out", str(tmp_path / "why")])
    assert caught.exit_code == 1 and "NOT LINEARIZABLE" in caught.output and "read → 1" in caught.output
    assert "p3 read → 1" in (tmp_path / "why" / "explanation.txt").read_text()
    assert runner.invoke(main, ["check", str(tmp_path / "default-read.jsonl")]).exit_code == 0
    lines = [json.loads(line) for line in Path(tmp_path / "local-read.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines] == ["invoke", "ok", "invoke", "ok", "invoke", "ok"]
