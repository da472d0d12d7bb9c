"""`hacluster check HISTORY.jsonl`: is a recorded history linearizable?

Registered on the main command group by `hacluster.cli.main` (which imports this module when present).
The work is `hacluster.consistency.explain.run_check`; this module only parses the command line and turns
the verdict into the exit status: 0 linearizable, 1 not linearizable (the explanation is printed, and
written with timelines to `--out`), 2 unknown (a key's search hit the time limit, or the history could not
be read or is malformed).
"""

from __future__ import annotations

import sys

import click


@click.command("check")
@click.argument("history", type=click.Path(dir_okay=False))
@click.option("--model", default="register", show_default=True,
              help="Sequential model of one key (register: create / read / write / cas / delete).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write explanation.txt, timeline-<key>.png and timeline.html here.")
@click.option("--time-limit-s", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              help="Search budget per key; past it the verdict is unknown (exit 2).")
def check(history: str, model: str, out_dir: str | None, time_limit_s: float) -> None:
    """Check that HISTORY (JSON lines of invoke/ok/fail/info events) is linearizable.

    Exits 0 if it is, 1 if it is not (with an explanation), 2 if that cannot be decided.
    """
    from hacluster.consistency.explain import run_check

    sys.exit(run_check(history, model=model, out_dir=out_dir, time_limit_s=time_limit_s))


def register(main: click.Group) -> None:
    main.add_command(check)
