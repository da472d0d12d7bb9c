"""The Kubernetes-compatible REST API of one master (aiohttp): `ApiServer` wires its parts.

Built by the master process (`hacluster.cluster.master`) around a `ReplicatedStore`. Each handler
authenticates, authorizes, decodes and validates the request, builds a command and proposes it — nothing
reaches the store from a rejected request. Every error leaves through one middleware as a Kubernetes
`Status`. Reads are linearizable by default (a Raft barrier before reading local state);
`resourceVersion=0` asks for a possibly stale local read, as Kubernetes' watch cache serves it.

Where each concern lives:
- `routing`: the application, its route table and the dispatch of a resource path to a handler;
- `frontdoor`: the middlewares (audit, errors as `Status`, flow control and request timeout);
- `request`: request keys, query parameters and answers shared by every handler;
- `decode`: request bodies (limits, JSON/YAML, the Go shape of an object);
- `reads`: get and list behind the linearizable barrier; `watchstream`: watch streaming;
- `writes`: create/update/patch/delete, guaranteed update, binding, eviction and scale;
- `logproxy`: `pods/{name}/log`, streamed from the node's kubelet;
- `nonresource`: version, health, metrics, discovery documents and the debug endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from hacluster.apiserver import audit, limits
from hacluster.apiserver.auth import Authenticator
from hacluster.apiserver.decode import BodyDecoder
from hacluster.apiserver.flowcontrol import FlowControl
from hacluster.apiserver.frontdoor import FrontDoor
from hacluster.apiserver.logproxy import LogProxy
from hacluster.apiserver.metrics import MasterMetrics
from hacluster.apiserver.nonresource import NonResource
from hacluster.apiserver.objtrace import ObjectTraces
from hacluster.apiserver.reads import Reads
from hacluster.apiserver.routing import Routes
from hacluster.apiserver.watchhub import WatchHub
from hacluster.apiserver.watchstream import WatchStreams
from hacluster.apiserver.writes import Writes
from hacluster.config import ClusterConfig
from hacluster.store.api import ReplicatedStore


class ApiServer:
    """One master's API; `app()` gives the aiohttp application, `stop_watches()` ends every open watch."""

    def __init__(self, cfg: ClusterConfig, master_id: str, store: ReplicatedStore, *,
                 clock: Callable[[], float] = time.time, metrics: MasterMetrics | None = None,
                 audit_log: audit.AuditLog | None = None) -> None:
        self.cfg = cfg
        self.master_id = master_id
        self.store = store
        self.clock = clock
        self.metrics = metrics or MasterMetrics()
        self.authn = Authenticator(cfg)
        self.hub = WatchHub(store, cfg.api.watch_queue_max)
        self.flow = FlowControl(max_inflight=cfg.api.max_requests_inflight,
                                max_mutating_inflight=cfg.api.max_mutating_requests_inflight,
                                system_reserved_share=cfg.api.system_reserved_share,
                                queue_length_per_user=cfg.api.queue_length_per_user,
                                queue_wait_s=cfg.api.queue_wait_s)
        self.watch_caps = limits.WatchCaps(cfg.api.max_watches_per_user)
        self.audit_log = audit_log
        self.traces = ObjectTraces()

        decoder = BodyDecoder(cfg.api)
        reads = Reads(cfg, store, clock)
        self.routes = Routes(
            cfg, store, authn=self.authn, decoder=decoder, reads=reads,
            front=FrontDoor(cfg, master_id, store, clock=clock, metrics=self.metrics, authn=self.authn,
                            flow=self.flow, watch_caps=self.watch_caps, audit_log=audit_log),
            info=NonResource(master_id, store, metrics=self.metrics, authn=self.authn, flow=self.flow,
                             traces=self.traces, decoder=decoder,
                             store_info=cfg.store.summary()),
            watches=WatchStreams(cfg, master_id, store, self.hub, self.metrics, reads),
            writes=Writes(master_id, store, clock, self.traces, decoder, reads,
                          update_conflict_retries=cfg.api.update_conflict_retries),
            logs=LogProxy(store, reads))

    def app(self) -> web.Application:
        return self.routes.app()

    def stop_watches(self, spread_s: float = 0.0) -> None:
        """End every open watch (this master lost its quorum): clients resume on another master. With
        `spread_s`, the ends are spread over that many seconds so thousands of clients don't relist at once."""
        self.hub.end_all(spread_s)
