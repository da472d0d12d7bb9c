"""Chaos scenarios as data: `configs/chaos/*.yaml` loaded into typed, frozen settings.

A scenario names the cluster size, the client workload (rate, concurrency, operation mix, keys), the fault
schedule (when, for how long, what, against whom) and the seed. Read by `hacluster chaos run` and by the
quorum experiment, which builds scenarios in code. The seed fixes every random choice of the schedule
(which follower, which minority), so the same seed gives the same fault schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hacluster.config import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "configs" / "chaos"

FaultKind = Literal[
    "kill", "kill-leader", "kill-follower", "kill-two", "restart",
    "pause", "pause-leader",
    "isolate", "isolate-leader", "split", "even-split", "bridge", "ring",
    "latency", "bandwidth", "slicer",
    "kill-kubelet",
    "power-cut", "power-cut-leader", "power-cut-follower", "power-cut-minority", "power-cut-all",
    "disk-fault",
]

# Faults that need the masters on write-back test storage (a SIGKILL must lose the unsynced writes).
POWER_KINDS: frozenset[str] = frozenset({"power-cut", "power-cut-leader", "power-cut-follower", "power-cut-minority",
                                         "power-cut-all"})


OpName = Literal["create", "read", "write", "cas", "delete", "list"]
DEFAULT_MIX: dict[OpName, float] = {"read": 3.0, "write": 3.0, "cas": 2.0, "create": 1.0, "delete": 1.0, "list": 0.2}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class WorkloadSpec(_Frozen):
    rate_per_s: float = Field(default=200.0, gt=0, le=20_000)
    """Operations started per second, all clients together (the rate is a ceiling, not a promise)."""
    concurrency: int = Field(default=8, ge=1, le=256)
    """Client processes running one operation at a time each."""
    keys: int = Field(default=16, ge=1, le=10_000)
    """Pods the clients operate on (`chaos-0` …): fewer keys, more contention."""
    mix: dict[OpName, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    """Relative weights of the operations."""
    local_read_fraction: float = Field(default=0.0, ge=0, le=1)
    """Share of reads sent with resourceVersion=0 (possibly stale local reads; the checker catches them)."""
    request_timeout_s: float = Field(default=3.0, gt=0, le=60)
    """Client-side timeout of one request; a timeout after sending is an `info` (outcome unknown)."""
    stay_on_master: bool = False
    """Each client keeps talking to its own master whatever it answers, instead of moving on to the next one
    after a 503, a refused connection or an unknown outcome: clients stay on their side of a partition (the
    split-brain experiment measures what each side accepts)."""


class FaultSpec(_Frozen):
    at_s: float = Field(ge=0)
    """Seconds after the workload starts."""
    duration_s: float = Field(gt=0, le=600)
    """How long the fault lasts before it is healed (every fault is bounded)."""
    kind: FaultKind
    """What happens: see chaos/nemesis.py for each kind."""
    target: str = ""
    """A master id ("m2") where the kind needs one; kubelet node name for kill-kubelet; for disk-fault also
    "leader" (the default) or "follower"."""
    partition: Literal["blackhole", "reject"] = "blackhole"
    """How partitions cut links: silently hold data, or refuse connections."""
    direction: Literal["both", "to", "from"] = "both"
    """Partitions: "to" loses only the target's messages to the others (asymmetric)."""
    clients_too: bool = False
    """isolate*: also refuse clients' API connections to the isolated master."""
    latency_ms: int = Field(default=100, ge=0, le=60_000)
    jitter_ms: int = Field(default=0, ge=0, le=60_000)
    rate_kb_s: int = Field(default=64, gt=0)
    """bandwidth: KB/s per direction."""
    links: Literal["all", "leader"] = "all"
    """latency/bandwidth/slicer: every Raft link, or only the leader's."""
    every_s: float = Field(default=0, ge=0)
    """kill-leader/kill-follower: repeat every this many seconds during the fault (0: once)."""
    errno: Literal["ENOSPC", "EIO"] = "ENOSPC"
    """disk-fault: the error the target's journal writes (or fsyncs) fail with: disk full, or I/O error."""
    operation: Literal["write", "fsync"] = "write"
    """disk-fault: which journal operation fails."""


class RolloutSpec(_Frozen):
    deployment: str = "web"
    """Name of the Deployment (label app=<name>) rolled out during the run (see chaos/rollout.py)."""
    replicas: int = Field(default=10, ge=1, le=200)
    """Its replicas."""
    image: str = "nginx:1.26"
    """Its first image; the n-th update sets `<image>-rollout-<n>`."""
    updates_at_s: tuple[float, ...] = ()
    """Seconds after the workload starts at which the pod template's image changes."""
    ready_after_s: float = Field(default=1.0, ge=0, le=60)
    """Sim runtime: seconds from a container's start until it is ready (paces the rollout)."""
    max_surge: int | str = "25%"
    """The Deployment's maxSurge."""
    max_unavailable: int | str = "25%"
    """The Deployment's maxUnavailable."""


class Scenario(_Frozen):
    name: str
    description: str = ""
    masters: int = Field(default=3, ge=1, le=9)
    """Cluster size (overridden by `--masters`)."""
    nodes: int = Field(default=0, ge=0, le=100)
    """Kubelets to start (their API links go through Toxiproxy too)."""
    seed: int = 0
    duration_s: float = Field(default=20.0, gt=0, le=3600)
    """Length of the workload; faults must end before it does."""
    workload: WorkloadSpec = WorkloadSpec()
    faults: tuple[FaultSpec, ...] = ()
    sample_period_ms: int = Field(default=100, ge=20, le=5000)
    """How often every master's Raft status is sampled into raft.jsonl."""
    cluster: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the cluster config (e.g. {"raft": {"leader_fallback_ms": 1500}})."""
    rollout: RolloutSpec | None = None
    """A Deployment rolled out during the faults and checked afterwards (needs `nodes`)."""

    @property
    def has_power_faults(self) -> bool:
        """Whether the run must start its masters on write-back test storage."""
        return any(f.kind in POWER_KINDS for f in self.faults)

    @model_validator(mode="after")
    def _faults_fit(self) -> Scenario:
        if self.rollout is not None:
            if self.nodes < 1:
                raise ValueError("rollout: needs at least one node (nodes: 2)")
            late = [at for at in self.rollout.updates_at_s if at >= self.duration_s]
            if late:
                raise ValueError(f"rollout.updates_at_s: {late[0]:g} s is after the run (duration_s "
                                 f"{self.duration_s:g})")
        for i, f in enumerate(self.faults):
            if f.at_s + f.duration_s > self.duration_s:
                raise ValueError(f"faults.{i}: ends at {f.at_s + f.duration_s:g} s, after the run "
                                 f"(duration_s {self.duration_s:g})")
        return self


def resolve_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def load_scenario(name_or_path: str) -> Scenario:
    """Load a shipped scenario by name (`leader-isolation`) or any YAML file; ConfigError names the problem."""
    path = resolve_path(name_or_path)
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise ConfigError(f"no scenario {name_or_path!r} (shipped: {shipped})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{path}: {loc + ': ' if loc else ''}{msg}")
        raise ConfigError("\n".join(lines)) from exc
