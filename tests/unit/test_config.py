"""Cluster files: the shipped ones load; a bad one names the file, the key and the reason."""

import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_shipped_configs_load(n):
    cfg = load_config(ROOT / "configs" / f"cluster-{n}.yaml")
    assert len(cfg.masters) == n


def test_bad_config_names_file_key_and_reason(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("masters:\n  - id: m1\n  - id: M2!\nraft:\n  election_timeout_ms_min: 100\n  heartbeat_ms: 50\n"
                 "  colour: blue\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    text = str(exc.value)
    assert f"{p}: masters.1.id:" in text
    assert f"{p}: raft.colour: unknown key" in text
    assert "election_timeout_ms_min: must be > 3 × heartbeat_ms (got 100, heartbeat_ms 50)" in text


def test_not_yaml_and_not_a_mapping(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("masters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(p)


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("masters: []\n")
    r = subprocess.run([sys.executable, "-m", "hacluster.cli.main", "up", "--config", str(p), "--state-dir",
                        str(tmp_path / "sd")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "masters" in r.stderr and "Traceback" not in r.stderr
