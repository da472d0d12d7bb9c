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


def test_state_machine_limits_are_not_per_master_settings(tmp_path):
    """Issue 13, finding 2: `dedup_max` and `events_max` change what `apply` returns and which events exist;
    read from each master's own file, two masters with different files diverged. They are constants of the
    state machine: a config may only repeat them, and every master's store applies with them."""
    from hacluster.raft.replicated_store import RaftStore
    from hacluster.store.state import DEDUP_MAX, EVENTS_MAX

    base = "masters:\n  - id: m1\n    api_port: 7001\n    raft_port: 7002\n"
    p = tmp_path / "c.yaml"
    p.write_text(base + f"store:\n  events_max: {EVENTS_MAX}\n  dedup_max: {DEDUP_MAX}\n")
    cfg = load_config(p)
    p.write_text(base + "store:\n  events_max: 3\n  dedup_max: 4\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert f"{p}: store: events_max: is a constant of the replicated state machine ({EVENTS_MAX})" in str(exc.value)
    assert f"{p}: store: dedup_max: is a constant of the replicated state machine ({DEDUP_MAX})" in str(exc.value)
    # Even a config built in code with other values cannot reach the state machine.
    odd = cfg.model_copy(update={"store": cfg.store.model_construct(watch_history_max=50, dedup_max=4, events_max=3)})
    limits = RaftStore(odd, "m1", data_dir=None)._state.limits
    assert (limits.dedup_max, limits.events_max, limits.watch_history_max) == (DEDUP_MAX, EVENTS_MAX, 50)


def test_every_setting_has_a_docstring() -> None:
    """The config is the documentation of every tunable: each setting of each section says what it does."""
    import hacluster.config as config_module

    sections = [obj for obj in vars(config_module).values()
                if isinstance(obj, type) and issubclass(obj, config_module._Frozen) and obj is not config_module._Frozen]
    assert len(sections) >= 10, sections
    undocumented = [f"{section.__name__}.{name}" for section in sections
                    for name, field in section.model_fields.items() if not (field.description or "").strip()]
    assert not undocumented, f"settings without a docstring: {undocumented}"
