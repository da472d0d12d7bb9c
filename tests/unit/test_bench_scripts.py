"""Every `scripts/bench-*` (and `scripts/soak`) sets up the project's environment the way `scripts/bench-api`
does and then runs in it: a bash script that changes to the project root, runs `scripts/setup`, and execs
a program from `.venv` — never the system's python3 without the project's dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("scripts/bench-*"), ROOT / "scripts" / "soak"])


def test_there_are_bench_scripts() -> None:
    assert ROOT / "scripts" / "bench-api" in SCRIPTS and len(SCRIPTS) >= 8


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_bench_script_sets_up_the_venv_and_runs_in_it(script: Path) -> None:
    text = script.read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "#!/usr/bin/env bash", f"{script.name}: a bash wrapper, not {lines[0]!r}"
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    code = [line for line in lines[1:] if line and not line.startswith("#")]
    assert code[:3] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "scripts/setup"], (
        f"{script.name} must start as scripts/bench-api does: set -euo pipefail, cd to the root, scripts/setup")
    execs = [line for line in code if line.startswith("exec ")]
    assert len(execs) == 1 and code[-1] == execs[0], f"{script.name} ends by exec-ing one program"
    program = execs[0].split()[1]
    assert program.startswith(".venv/bin/"), f"{script.name} runs {program}, not a program from .venv"
    assert not re.search(r"(^|[\s;|&(])python3?\s", "\n".join(code)), f"{script.name} runs a bare python"
    for target in re.findall(r"scripts/[\w/.-]+\.py", execs[0]):
        assert (ROOT / target).is_file(), f"{script.name} runs {target}, which does not exist"
