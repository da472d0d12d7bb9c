"""`hacluster audit [--user U] [--since 5m] [-o json]`: the audit trail of every master of a cluster (or of a
chaos run's record), merged in the order the requests were received.

Reads the files `hacluster.apiserver.audit` writes (`<state dir>/audit/<master>.jsonl` and their rotated
copies); `--dir` reads another directory of them, such as the `audit/` of a chaos run's output.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click

from hacluster.apiserver import audit
from hacluster.cli.kube import table_writer
from hacluster.config import env_state_dir

_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class _Fail(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def parse_since(text: str) -> float:
    """Seconds of a Go-style duration (`5m`, `1h30m`, `90s`, `500ms`, `2d`), as `kubectl logs --since`."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise _Fail(f"--since {text!r} is not a duration like 30s, 5m or 1h30m")
    return sum(float(n) * _UNITS_S[u] for n, u in parts)


def rows(events: list[dict[str, Any]]) -> list[list[str]]:
    out = [["TIME", "MASTER", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE", "RAFT INDEX/TERM"]]
    for ev in events:
        ref = ev.get("objectRef") or {}
        ann = ev.get("annotations") or {}
        resource = str(ref.get("resource", "")) + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        raft = f"{ann[audit.RAFT_INDEX]}/{ann[audit.RAFT_TERM]}" if audit.RAFT_INDEX in ann else ""
        out.append([str(ev.get("requestReceivedTimestamp", "")), str(ann.get(audit.MASTER, "")),
                    str((ev.get("user") or {}).get("username", "")), str(ev.get("verb", "")),
                    resource or str(ev.get("requestURI", "")), str(ref.get("namespace", "")),
                    str(ref.get("name", "")), str((ev.get("responseStatus") or {}).get("code", "")), raft])
    return out


@click.command("audit")
@click.option("--state-dir", default=None, metavar="DIR",
              help="The cluster's state directory (default: $HACLUSTER_STATE_DIR or .hacluster).")
@click.option("--dir", "audit_dir", default=None, metavar="DIR", type=click.Path(file_okay=False),
              help="Read the audit files in DIR instead (e.g. OUT/audit of a chaos run).")
@click.option("--user", default=None, help="Only requests of this user (e.g. admin, system:node:node-1).")
@click.option("--since", default=None, help="Only requests received this long ago or later (30s, 5m, 1h).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def audit_command(state_dir: str | None, audit_dir: str | None, user: str | None, since: str | None,
                  output: str) -> None:
    """Print the audit log of every master, merged: who did what, when, with which answer."""
    directory = Path(audit_dir) if audit_dir else Path(state_dir or env_state_dir()) / audit.AUDIT_DIR
    files = audit.log_files(directory)
    if not files:
        raise _Fail(f"no audit log in {directory} (is this a cluster's state directory?)")
    cutoff = time.time() - parse_since(since) if since else None
    events = audit.merged(audit.read_events(files), user=user, since=cutoff)
    if output == "json":
        click.echo(json.dumps({"kind": "EventList", "apiVersion": audit.API_VERSION, "metadata": {},
                               "items": events}, indent=2))
        return
    if len(events) == 0:
        click.echo("No audit events found.")
        return
    tw = table_writer()
    tw.write("".join("\t".join(row) + "\n" for row in rows(events)))
    click.echo(tw.flush(), nl=False)


def register(main: click.Group) -> None:
    main.add_command(audit_command)
