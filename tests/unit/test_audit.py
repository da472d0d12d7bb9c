"""The audit trail's reading side: merging masters' files, filters, the CLI's duration and table, and the
copy a chaos run keeps."""

import json

import pytest
from click.testing import CliRunner

from chaos.runner import copy_audit_logs
from hacluster.apiserver import audit
from hacluster.cli.audit_cmd import audit_command, parse_since


def ev(master: str, user: str, received: float, verb: str = "create", code: int = 201, raft=None) -> dict:
    return audit.event(audit_id=f"{master}-{received}", master_id=master, verb=verb, uri="/api/v1/namespaces/d/pods",
                       username=user, groups=(), source_ip="127.0.0.1", user_agent="t",
                       ref=audit.ObjectRef("pods", "d", "p"), code=code, status=None, received=received,
                       completed=received + 0.01, raft=raft)


def write(path, events) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"torn li')


def test_merged_across_masters_in_received_order_with_filters(tmp_path):
    now = 1_800_000_000.0
    write(tmp_path / "audit" / "m1.jsonl", [ev("m1", "admin", now + 2, raft=(7, 2)), ev("m1", "viewer", now + 4)])
    write(tmp_path / "audit" / "m2.jsonl.1", [ev("m2", "admin", now + 1), ev("m2", "admin", now + 3)])
    events = audit.merged(audit.read_events(audit.log_files(tmp_path / "audit")))
    assert [(e["annotations"][audit.MASTER], e["auditID"]) for e in events] == [
        ("m2", f"m2-{now + 1}"), ("m1", f"m1-{now + 2}"), ("m2", f"m2-{now + 3}"), ("m1", f"m1-{now + 4}")]
    assert events[1]["annotations"][audit.RAFT_INDEX] == "7" and events[1]["annotations"][audit.RAFT_TERM] == "2"
    assert len(audit.merged(events, user="admin")) == 3
    assert len(audit.merged(events, since=now + 2.5)) == 2


def test_cli_table_json_and_errors(tmp_path):
    import time

    now = time.time()
    write(tmp_path / "audit" / "m1.jsonl", [ev("m1", "admin", now - 600, raft=(3, 1)), ev("m1", "viewer", now - 1)])
    runner = CliRunner()
    table = runner.invoke(audit_command, ["--state-dir", str(tmp_path)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["TIME", "MASTER", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE", "RAFT",
                                "INDEX/TERM"]
    assert lines[1].split()[1:] == ["m1", "admin", "create", "pods", "d", "p", "201", "3/1"]
    out = runner.invoke(audit_command, ["--state-dir", str(tmp_path), "--since", "5m", "-o", "json"])
    doc = json.loads(out.output)
    assert doc["kind"] == "EventList" and [e["user"]["username"] for e in doc["items"]] == ["viewer"]
    bad = runner.invoke(audit_command, ["--state-dir", str(tmp_path), "--since", "5 minutes"])
    assert bad.exit_code == 1 and "error: --since '5 minutes' is not a duration" in bad.output
    missing = runner.invoke(audit_command, ["--state-dir", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "no audit log" in missing.output


@pytest.mark.parametrize("text, seconds", [("5m", 300), ("1h30m", 5400), ("90s", 90), ("500ms", 0.5), ("2d", 172800)])
def test_since_durations(text, seconds):
    assert parse_since(text) == seconds


def test_chaos_run_keeps_a_copy(tmp_path):
    write(tmp_path / "cluster" / "audit" / "m1.jsonl", [ev("m1", "admin", 1.0)])
    write(tmp_path / "cluster" / "audit" / "m1.jsonl.1", [ev("m1", "admin", 0.5)])
    copy_audit_logs(tmp_path / "cluster", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "audit").iterdir()) == ["m1.jsonl", "m1.jsonl.1"]
    copy_audit_logs(tmp_path / "empty", tmp_path / "out")  # a run that never started: the stale copy goes
    assert not (tmp_path / "out" / "audit").exists()
