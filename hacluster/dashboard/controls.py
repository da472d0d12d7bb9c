"""The dashboard's controls: which faults the page may ask for, and the pods it can create.

The faults themselves are not made here: `hacluster/` never imports `chaos/`, so the CLI (`hacluster
dashboard`) hands the server an object that satisfies `FaultControls`, built on the same `chaos.nemesis`
code as the `hacluster chaos …` commands. `parse_action` turns the page's request into an `Action` or raises
`ControlError` with a one-line reason (the server answers 422 with it). Pod templates are data: each one
makes one of the seed's pod states happen with the simulated runtime's images (configs/kubelet/images.yaml).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

ACTIONS = ("kill", "restart", "pause", "resume", "isolate", "split", "latency", "heal")
SPLIT_SHAPES = ("even", "minority", "bridge")
FOR_S_MAX = 600.0
LATENCY_MS_MAX = 5000


class ControlError(Exception):
    """The request cannot be carried out; the message is one line for the page."""


@dataclass(frozen=True)
class Action:
    """One fault asked for by the page. `target` is a master id or "leader" (kill, pause, isolate), a split
    shape (split), or "" (latency, heal). `for_s` 0 means: until "heal" (or restart / resume)."""

    kind: str
    target: str = ""
    for_s: float = 30.0
    latency_ms: int = 0


@dataclass(frozen=True)
class Started:
    """What a started fault did: its index (to end it) and a line for the page's timeline."""

    index: int | None
    message: str


class FaultControls(Protocol):
    """Carries out faults on one cluster (blocking calls; the server runs them in a thread)."""

    def start(self, action: Action) -> Started:
        """Inject the fault; ControlError if it cannot be done (e.g. link faults without --chaos)."""

    def end(self, index: int) -> None:
        """Undo the fault `index` returned by `start` (nothing if it already ended)."""

    def heal_all(self) -> None:
        """Undo every fault, reset Toxiproxy, resume and restart every master."""


def parse_action(body: Any, master_ids: list[str]) -> Action:
    """The page's JSON `{"action", "target", "for_s", "latency_ms"}` as an Action."""
    if not isinstance(body, Mapping):
        raise ControlError("the body must be a JSON object")
    kind = body.get("action")
    if kind not in ACTIONS:
        raise ControlError(f"action must be one of {', '.join(ACTIONS)}")
    target = body.get("target", "")
    if not isinstance(target, str):
        raise ControlError("target must be a string")
    for_s = body.get("for_s", 30)
    if isinstance(for_s, bool) or not isinstance(for_s, int | float) or not 0 <= for_s <= FOR_S_MAX:
        raise ControlError(f"for_s must be a number of seconds from 0 (until heal) to {FOR_S_MAX:g}")
    latency_ms = body.get("latency_ms", 0)
    if kind in ("kill", "pause", "isolate") and target != "leader" and target not in master_ids:
        raise ControlError(f"target must be leader or one of {', '.join(master_ids)}")
    if kind in ("restart", "resume") and target not in master_ids:
        raise ControlError(f"target must be one of {', '.join(master_ids)}")
    if kind == "split" and target not in SPLIT_SHAPES:
        raise ControlError(f"split shape must be one of {', '.join(SPLIT_SHAPES)}")
    if kind == "latency" and (isinstance(latency_ms, bool) or not isinstance(latency_ms, int)
                              or not 1 <= latency_ms <= LATENCY_MS_MAX):
        raise ControlError(f"latency_ms must be a whole number from 1 to {LATENCY_MS_MAX}")
    return Action(kind, target, float(for_s), int(latency_ms) if kind == "latency" else 0)


# ----------------------------------------------------------------------------------- pod templates
@dataclass(frozen=True)
class PodTemplate:
    """A pod the page can create, and the state it is meant to reach."""

    name: str
    title: str
    reaches: str
    image: str
    memory_limit: str = ""
    cpu_request: str = "50m"
    restart_policy: str = "Always"


POD_TEMPLATES: tuple[PodTemplate, ...] = (
    PodTemplate("sleeper", "sleeps", "Running", "busybox:1.36"),
    PodTemplate("crashloop", "crash-loops", "CrashLoopBackOff", "hacluster/crash:1"),
    PodTemplate("missing-image", "pulls a missing image", "ImagePullBackOff", "hacluster/does-not-exist:1"),
    PodTemplate("memhog", "runs out of memory", "OOMKilled", "hacluster/memhog:1", memory_limit="64Mi",
                restart_policy="Never"),
    PodTemplate("job", "completes", "Completed", "hacluster/job:1", restart_policy="Never"),
    PodTemplate("too-big", "asks for too much cpu", "Pending", "busybox:1.36", cpu_request="512"),
)

_SUFFIX = re.compile(r"^[a-z0-9]{1,12}$")


def template(name: str) -> PodTemplate:
    for t in POD_TEMPLATES:
        if t.name == name:
            return t
    raise ControlError(f"template must be one of {', '.join(t.name for t in POD_TEMPLATES)}")


def pod_from_template(t: PodTemplate, suffix: str) -> dict[str, Any]:
    """A Pod named `<template>-<suffix>` in namespace default (suffix: lowercase letters and digits)."""
    if not _SUFFIX.match(suffix):
        raise ControlError("suffix must be 1-12 lowercase letters or digits")
    resources: dict[str, Any] = {"requests": {"cpu": t.cpu_request, "memory": "16Mi"}}
    if t.memory_limit:
        resources["limits"] = {"memory": t.memory_limit}
        resources["requests"]["memory"] = t.memory_limit
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{t.name}-{suffix}", "namespace": "default",
                         "labels": {"app.kubernetes.io/created-by": "hacluster-dashboard", "template": t.name}},
            "spec": {"restartPolicy": t.restart_policy,
                     "containers": [{"name": "main", "image": t.image, "resources": resources}]}}
