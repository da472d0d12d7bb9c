"""What every part of one node's kubelet is given: `NodeContext` (the node's name, API client, container
runtime, settings, profile, identity and clock) and `NodePart`, the base that unpacks it into attributes.

Built by `hacluster.kubelet.agent.Kubelet`, which hands one context to the node loops
(`hacluster.kubelet.nodeloops`), the pod workers (`hacluster.kubelet.podworker`) and the usage monitor
(`hacluster.kubelet.usage`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hacluster.client import ApiClient
from hacluster.config import KubeletConfig
from hacluster.kubelet import nodestatus as ns
from hacluster.kubelet.behaviour import NodeProfile
from hacluster.kubelet.runtime import Runtime


@dataclass(frozen=True)
class NodeContext:
    """One node's shared dependencies."""

    node: str
    api: ApiClient
    runtime: Runtime
    cfg: KubeletConfig
    profile: NodeProfile
    identity: ns.NodeIdentity
    clock: Callable[[], float]
    """Wall-clock seconds (time.time, or a test's clock)."""


class NodePart:
    """A part of one node's kubelet: the context's fields as attributes, and `scale` (the time scale)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.node = ctx.node
        self.api = ctx.api
        self.runtime = ctx.runtime
        self.cfg = ctx.cfg
        self.profile = ctx.profile
        self.identity = ctx.identity
        self.clock = ctx.clock
        self.scale = ctx.cfg.time_scale
