"""Kubelet behaviour as data: what simulated images do, and what node profiles have.

Loaded by the kubelet (and the fleet) at start from `configs/kubelet/images.yaml` and
`configs/kubelet/node-profiles.yaml` (or the files named in the cluster config's `kubelet:` section), and
used by the simulated runtime (`hacluster.kubelet.sim`) and the node status code. Everything here is pure
data and pure functions: `behaviour_for(...)` picks the behaviour of one container attempt, drawing any
[min, max] range from a random source seeded by (seed, pod, container, attempt), so the same inputs give the
same behaviour. A bad file raises `BehaviourError` naming the file, the key and the reason.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hacluster.model.quantity import QuantityError, parse_quantity

ANNOTATION_PREFIX = "sim.hacluster.io/behaviour."
"""Pod annotation `sim.hacluster.io/behaviour.<container>`: JSON (or YAML) overriding that container's image
behaviour, e.g. '{"run_s": 3, "exit_code": 2}'."""

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES_FILE = REPO_ROOT / "configs" / "kubelet" / "images.yaml"
DEFAULT_PROFILES_FILE = REPO_ROOT / "configs" / "kubelet" / "node-profiles.yaml"

Seconds = Union[float, tuple[float, float]]


class BehaviourError(Exception):
    """A behaviour or profile file that cannot be used; the message names the file, the key and the reason."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def _check_range(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        if len(v) != 2 or not all(isinstance(x, (int, float)) for x in v) or v[0] > v[1] or v[0] < 0:
            raise ValueError("a range must be [min, max] with 0 <= min <= max")
        return (float(v[0]), float(v[1]))
    if isinstance(v, (int, float)) and v < 0:
        raise ValueError("must be >= 0")
    return v


def _check_quantity(v: Any) -> str:
    try:
        parse_quantity(v)
    except QuantityError as exc:
        raise ValueError(str(exc)) from exc
    return str(v)


class ImageBehaviour(_Frozen):
    """What a container of an image does. Every field is optional in the file; unset fields come from the
    file's `default` entry."""

    exists: bool | None = None
    """False: the image is in no registry; every pull fails (ErrImagePull, then ImagePullBackOff)."""
    pull_s: Seconds | None = None
    """Seconds a pull takes when the image is not on the node yet (before time scaling)."""
    size_bytes: int | None = Field(default=None, ge=0)
    """Image size, reported in the Pulled event and in node.status.images."""
    start_s: Seconds | None = None
    """Seconds to create and start a container."""
    run_s: Seconds | None = None
    """Seconds the container runs before it exits; absent or null: until it is stopped."""
    runs_forever: bool | None = None
    """Set by `run_s: null`: the container runs until it is stopped."""
    exit_code: int | None = Field(default=None, ge=0, le=255)
    """Exit code after `run_s` (0: Completed, otherwise Error)."""
    ready_after_s: Seconds | None = None
    """Seconds from start until the container reports ready."""
    memory: tuple[tuple[float, str], ...] | None = None
    """Resident memory over time since start: [[t_s, quantity], ...], linear between points, constant after
    the last. Above the container's limits.memory the container is OOMKilled (exit code 137)."""
    terminate_s: Seconds | None = None
    """Seconds from SIGTERM to exit; null in the file means the container ignores SIGTERM and is killed
    (exit 137) when the grace period ends."""
    ignores_sigterm: bool | None = None
    """Set by `terminate_s: null`: the container only stops when killed."""
    terminate_exit_code: int | None = Field(default=None, ge=0, le=255)
    """Exit code after a handled SIGTERM (0 for most servers; 143 for a process that simply dies of it)."""
    log_lines: tuple[str, ...] | None = None
    """Lines the container prints when it starts (served through `pods/{name}/log`)."""
    cpu: str | None = None
    """CPU the container uses while it runs, a quantity ("2m", "0.5"): what `kubectl top` shows."""
    liveness_fails_after_s: Seconds | None = None
    """Seconds from start after which the container's liveness probe fails (a hung server); unset: it
    never fails. Only a container with a livenessProbe is restarted for it."""

    _ranges = field_validator("pull_s", "start_s", "run_s", "ready_after_s", "terminate_s", "liveness_fails_after_s",
                              mode="before")(
        staticmethod(_check_range))

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        return v if v is None else _check_quantity(v)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("must be a non-empty list of [t_s, quantity]")
        out = []
        last_t = -1.0
        for point in v:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ValueError("each point must be [t_s, quantity]")
            t, q = point
            if not isinstance(t, (int, float)) or t < 0 or t <= last_t:
                raise ValueError("times must be >= 0 and increasing")
            last_t = float(t)
            out.append((float(t), _check_quantity(q)))
        return tuple(out)


class ImageEntry(ImageBehaviour):
    match: str = Field(min_length=1)
    """A glob on the image reference as the pod writes it ("nginx*", "*does-not-exist*")."""


class CommandEntry(ImageBehaviour):
    match: str = Field(min_length=1)
    """A glob on the container's command line: `command` and `args` joined by single spaces
    ("sh -c exit 0", "*sleep *")."""


class ImagesFile(_Frozen):
    version: Literal[1] = 1
    """Format version of the file."""
    default: ImageBehaviour = ImageBehaviour()
    """Behaviour of images no entry matches, and of every field an entry leaves unset."""
    images: tuple[ImageEntry, ...] = ()
    """Entries, first match wins."""
    commands: tuple[CommandEntry, ...] = ()
    """What a container's command line does, over its image's behaviour (first match wins): how a
    `kubectl create job --image=busybox -- sh -c 'exit 0'` pod ends."""


class Behaviour(_Frozen):
    """One container attempt's resolved behaviour: every duration drawn and already time-scaled."""

    exists: bool
    pull_s: float
    size_bytes: int
    start_s: float
    run_s: float | None
    exit_code: int
    ready_after_s: float
    memory: tuple[tuple[float, int], ...]
    """(t_s scaled, bytes) points."""
    terminate_s: float | None
    terminate_exit_code: int
    log_lines: tuple[str, ...]
    cpu_millis: int = 0
    """CPU used while running, in millicores."""
    liveness_fails_after_s: float | None = None
    """Seconds (scaled) from start after which its liveness probe fails; None: never."""


_BUILTIN_DEFAULT = ImageBehaviour(exists=True, pull_s=1.0, size_bytes=50_000_000, start_s=0.05, run_s=None,
                                  exit_code=0, ready_after_s=0.0, memory=((0.0, "16Mi"),), terminate_s=0.2,
                                  terminate_exit_code=0, log_lines=("started",), cpu="1m")


class ImageCatalogue:
    """The images file, loaded; `behaviour_for` answers what one container attempt does."""

    def __init__(self, data: ImagesFile, *, seed: int = 0, time_scale: float = 1.0) -> None:
        self.data = data
        self.seed = seed
        self.time_scale = time_scale
        self._default = _merge(_BUILTIN_DEFAULT, data.default)

    @classmethod
    def load(cls, path: str | Path | None = None, *, seed: int = 0, time_scale: float = 1.0) -> ImageCatalogue:
        p = Path(path) if path else DEFAULT_IMAGES_FILE
        return cls(_load_model(p, ImagesFile), seed=seed, time_scale=time_scale)

    def entry_for(self, image: str) -> ImageBehaviour:
        """The unresolved behaviour of `image`: the first matching entry over the default."""
        for e in self.data.images:
            if fnmatch.fnmatchcase(image, e.match):
                return _merge(self._default, e)
        return self._default

    def command_entry_for(self, container: dict[str, Any]) -> ImageBehaviour | None:
        """The first `commands` entry matching the container's command line, if it has one."""
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        if not words:
            return None
        line = " ".join(words)
        for e in self.data.commands:
            if fnmatch.fnmatchcase(line, e.match):
                return e
        return None

    def exists(self, image: str) -> bool:
        return bool(self.entry_for(image).exists)

    def behaviour_for(self, pod: dict[str, Any], container: dict[str, Any], attempt: int) -> Behaviour:
        """Resolve the behaviour of `container` (a pod spec container) in its `attempt`-th run (0-based).
        Raises BehaviourError when the pod's override annotation is not valid."""
        meta = pod.get("metadata") or {}
        name = container.get("name", "")
        image = container.get("image", "")
        b = self.entry_for(image)
        by_command = self.command_entry_for(container)
        if by_command is not None:
            b = _merge(b, by_command)
        raw = (meta.get("annotations") or {}).get(ANNOTATION_PREFIX + name)
        if raw:
            b = _merge(b, parse_override(raw, f"pod {meta.get('namespace')}/{meta.get('name')} annotation "
                                              f"{ANNOTATION_PREFIX}{name}"))
        key = f"{self.seed}/{meta.get('namespace', '')}/{meta.get('name', '')}/{name}/{attempt}"
        rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
        s = self.time_scale

        def draw(v: Seconds | None, default: float = 0.0) -> float:
            if v is None:
                return default
            if isinstance(v, tuple):
                return rng.uniform(v[0], v[1]) * s
            return float(v) * s

        run = None if b.runs_forever or b.run_s is None else draw(b.run_s)
        terminate = None if b.ignores_sigterm else draw(b.terminate_s)
        return Behaviour(
            exists=bool(b.exists), pull_s=draw(b.pull_s), size_bytes=int(b.size_bytes or 0),
            start_s=draw(b.start_s), run_s=run, exit_code=int(b.exit_code or 0),
            ready_after_s=draw(b.ready_after_s),
            memory=tuple((t * s, parse_quantity(q).units()) for t, q in (b.memory or ((0.0, "0"),))),
            terminate_s=terminate, terminate_exit_code=int(b.terminate_exit_code or 0),
            log_lines=tuple(b.log_lines or ()), cpu_millis=parse_quantity(b.cpu or "0").millis(),
            liveness_fails_after_s=None if b.liveness_fails_after_s is None else draw(b.liveness_fails_after_s))


def parse_override(raw: str, where: str) -> ImageBehaviour:
    """The behaviour in a pod annotation (JSON or YAML mapping)."""
    try:
        data = json.loads(raw)
    except ValueError:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise BehaviourError(f"{where}: not JSON or YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BehaviourError(f"{where}: must be a mapping")
    data = _null_terminate(data)
    try:
        return ImageBehaviour.model_validate(data)
    except ValidationError as exc:
        raise BehaviourError("; ".join(f"{where}: {'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in exc.errors())) from exc


def _null_terminate(data: dict[str, Any]) -> dict[str, Any]:
    """`terminate_s: null` written in a file means "ignores SIGTERM"; `run_s: null` means "runs forever"."""
    out = dict(data)
    if "terminate_s" in out and out["terminate_s"] is None:
        out.pop("terminate_s")
        out["ignores_sigterm"] = True
    elif "terminate_s" in out:
        out.setdefault("ignores_sigterm", False)
    if "run_s" in out and out["run_s"] is None:
        out.pop("run_s")
        out["runs_forever"] = True
    elif "run_s" in out:
        out.setdefault("runs_forever", False)
    return out


def _merge(base: ImageBehaviour, over: ImageBehaviour) -> ImageBehaviour:
    fields = {k: v for k, v in over.model_dump(exclude_unset=True).items() if k != "match"}
    return base.model_copy(update=fields)


# ------------------------------------------------------------------------------------ node profiles
class TaintEntry(_Frozen):
    key: str
    """Taint key."""
    value: str = ""
    """Taint value."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    """Taint effect."""


class NodeProfile(_Frozen):
    capacity: dict[str, str] = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    """status.capacity of the node."""
    reserved: dict[str, str] = {}
    """system-reserved + kube-reserved: subtracted from capacity to give allocatable."""
    eviction_hard_memory_available: str = "100Mi"
    """Hard eviction threshold `memory.available<X`; also subtracted from allocatable memory."""
    base_memory_used: str = "512Mi"
    """Memory the node's own processes use; counts against memory.available for eviction."""
    labels: dict[str, str] = {}
    """Labels set at registration."""
    taints: tuple[TaintEntry, ...] = ()
    """Taints set at registration."""

    @field_validator("capacity", "reserved", mode="after")
    @classmethod
    def _quantities(cls, v: dict[str, str]) -> dict[str, str]:
        for q in v.values():
            _check_quantity(q)
        return v

    @field_validator("eviction_hard_memory_available", "base_memory_used", mode="after")
    @classmethod
    def _quantity(cls, v: str) -> str:
        return _check_quantity(v)

    def capacity_units(self, resource: str) -> int:
        """Capacity in whole units (memory in bytes, pods in pods); CPU use `capacity_millis`."""
        return parse_quantity(self.capacity.get(resource, "0")).units()

    def capacity_millis(self, resource: str) -> int:
        return parse_quantity(self.capacity.get(resource, "0")).millis()

    def allocatable(self) -> dict[str, str]:
        """capacity − reserved (− the hard eviction threshold for memory), as Kubernetes computes it."""
        out = {}
        for res, cap in self.capacity.items():
            q = parse_quantity(cap).value - parse_quantity(self.reserved.get(res, "0")).value
            if res == "memory":
                q -= parse_quantity(self.eviction_hard_memory_available).value
            q = max(q, Fraction(0))
            if res == "cpu":
                millis = int(q * 1000)
                out[res] = f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"
            elif res in ("memory", "ephemeral-storage"):
                out[res] = format_bytes(int(q))
            else:
                out[res] = str(int(q))
        return out


class ProfilesFile(_Frozen):
    version: Literal[1] = 1
    """Format version of the file."""
    profiles: dict[str, NodeProfile] = {"default": NodeProfile()}
    """Profiles by name; `default` is used by nodes that name none."""


def load_profiles(path: str | Path | None = None) -> dict[str, NodeProfile]:
    p = Path(path) if path else DEFAULT_PROFILES_FILE
    profiles = dict(_load_model(p, ProfilesFile).profiles)
    profiles.setdefault("default", NodeProfile())
    return profiles


def format_bytes(n: int) -> str:
    """A byte count the way Kubernetes prints a binary-SI quantity: 8Gi, 7936Mi, 93444Ki, 1000."""
    if n == 0:
        return "0"
    for suffix, unit in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _load_model(path: Path, model: type[_Frozen]) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BehaviourError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BehaviourError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BehaviourError(f"{path}: the file must hold a mapping")
    if model is ImagesFile:
        data = dict(data)
        if isinstance(data.get("default"), dict):
            data["default"] = _null_terminate(data["default"])
        for section in ("images", "commands"):
            if isinstance(data.get(section), list):
                data[section] = [_null_terminate(e) if isinstance(e, dict) else e for e in data[section]]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {'.'.join(map(str, e['loc']))}: {msg}")
        raise BehaviourError("\n".join(lines)) from exc
