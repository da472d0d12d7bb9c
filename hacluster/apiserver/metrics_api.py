"""The resource metrics API (`metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics) behind `kubectl top`.

Served by every master (`add_routes`), as metrics-server serves it in Kubernetes: each request asks the
kubelets of the nodes concerned for their `GET /stats/summary` (the port is in the Node's
`status.daemonEndpoints.kubeletEndpoint.Port`, on 127.0.0.1) and answers with what they measure now —
the process runtime's resident memory and CPU time, the simulated runtime's image data. Nothing goes
through Raft: usage is not cluster state. A kubelet that does not answer within `SCRAPE_TIMEOUT_S`
leaves its node (and its pods) out of the answer, as metrics-server leaves out nodes it cannot scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from hacluster.apiserver.auth import User, authorize
from hacluster.model import errors as E
from hacluster.model import schema
from hacluster.model.resources import Resource
from hacluster.model.selectors import LabelSelector, SelectorError, parse_label_selector
from hacluster.store.api import ReplicatedStore

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Authenticate = Callable[[web.Request, str, str], User]
"""The API server's authentication of a request (request, verb, resource name for its metrics)."""

GROUP_VERSION = "metrics.k8s.io/v1beta1"
SCRAPE_TIMEOUT_S = 2.0
SCRAPE_CONCURRENCY_MAX = 32
WINDOW = "10s"
NODE_METRICS = Resource("nodes", "", "NodeMetrics", "metrics.k8s.io", "v1beta1", False,
                        schema.Struct("NodeMetrics", {}))
POD_METRICS = Resource("pods", "", "PodMetrics", "metrics.k8s.io", "v1beta1", True,
                       schema.Struct("PodMetrics", {}))


def cpu_quantity(nano_cores: int) -> str:
    """CPU as metrics-server writes it: nanocores ("2500000n")."""
    return f"{int(nano_cores)}n"


def memory_quantity(size_bytes: int) -> str:
    """Memory as metrics-server writes it: kibibytes ("24576Ki")."""
    return f"{int(size_bytes) // 1024}Ki"


def _usage(stats: Obj) -> Obj:
    return {"cpu": cpu_quantity((stats.get("cpu") or {}).get("usageNanoCores", 0)),
            "memory": memory_quantity((stats.get("memory") or {}).get("workingSetBytes", 0))}


def node_metrics(node: Obj, summary: Obj) -> Obj:
    """The NodeMetrics of `node` from its kubelet's summary."""
    meta = node.get("metadata") or {}
    stats = summary.get("node") or {}
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta.get("name", ""), "creationTimestamp": (stats.get("cpu") or {}).get("time"),
                         "labels": dict(meta.get("labels") or {})},
            "timestamp": (stats.get("cpu") or {}).get("time"), "window": WINDOW, "usage": _usage(stats)}


def pod_metrics(pod: Obj, pod_stats: Obj) -> Obj:
    """The PodMetrics of `pod` from its entry in its kubelet's summary."""
    meta = pod.get("metadata") or {}
    time_text = (pod_stats.get("cpu") or {}).get("time")
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                         "creationTimestamp": time_text, "labels": dict(meta.get("labels") or {})},
            "timestamp": time_text, "window": WINDOW,
            "containers": [{"name": c.get("name", ""), "usage": _usage(c)} for c in pod_stats.get("containers") or ()]}


async def scrape(nodes: list[Obj]) -> dict[str, Obj]:
    """The summaries of `nodes` by node name (nodes whose kubelet did not answer are missing)."""
    out: dict[str, Obj] = {}
    sem = asyncio.Semaphore(SCRAPE_CONCURRENCY_MAX)
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)

    async def one(session: aiohttp.ClientSession, node: Obj) -> None:
        name = node["metadata"]["name"]
        endpoints = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
        port = endpoints.get("Port")
        if not port:
            return
        async with sem:
            try:
                async with session.get(f"http://127.0.0.1:{int(port)}/stats/summary", params={"node": name}) as r:
                    if r.status == 200:
                        out[name] = await r.json()
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                log.info("metrics: kubelet of node %s did not answer: %s", name, exc)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(session, n) for n in nodes))
    return out


def add_routes(router: web.UrlDispatcher, *, authenticate: Authenticate, store: ReplicatedStore) -> None:
    """Register the metrics.k8s.io routes (before the API server's generic group routes). Reads are local
    (no Raft barrier): which nodes and pods exist may lag a little, their usage is measured now."""

    async def prepare(request: web.Request, res: Resource, verb: str, namespace: str, name: str) -> LabelSelector:
        user = authenticate(request, verb, f"{res.plural}.metrics")
        authorize(user, verb, res, namespace, name)
        try:
            return parse_label_selector(request.query.get("labelSelector"))
        except SelectorError as exc:
            raise E.BadRequest(str(exc)) from exc

    def list_answer(kind: str, items: list[Obj]) -> web.Response:
        return web.json_response({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})

    async def nodes(request: web.Request) -> web.Response:
        name = request.match_info.get("name", "")
        labels = await prepare(request, NODE_METRICS, "get" if name else "list", "", name)
        chosen = store.read(lambda s: [n for n in s.list_objects("nodes")
                                              if (not name or n["metadata"]["name"] == name)
                                              and labels.matches(n["metadata"].get("labels"))])
        summaries = await scrape(chosen)
        items = [node_metrics(n, summaries[n["metadata"]["name"]]) for n in chosen
                 if n["metadata"]["name"] in summaries]
        if name:
            if not items:
                raise E.NotFound(f'nodemetrics.metrics.k8s.io "{name}" not found', kind="nodes", name=name,
                                 group="metrics.k8s.io")
            return web.json_response(items[0])
        return list_answer("NodeMetricsList", items)

    async def pods(request: web.Request) -> web.Response:
        namespace, name = request.match_info.get("namespace", ""), request.match_info.get("name", "")
        labels = await prepare(request, POD_METRICS, "get" if name else "list", namespace, name)

        def chosen_pods(s: Any) -> tuple[list[Obj], list[Obj]]:
            ps = [p for p in s.list_objects("pods", namespace)
                  if (not name or p["metadata"]["name"] == name) and labels.matches(p["metadata"].get("labels"))
                  and (p.get("spec") or {}).get("nodeName")]
            wanted = {(p.get("spec") or {}).get("nodeName") for p in ps}
            return ps, [n for n in s.list_objects("nodes") if n["metadata"]["name"] in wanted]
        chosen, their_nodes = store.read(chosen_pods)
        summaries = await scrape(their_nodes)
        by_uid: dict[str, Obj] = {}
        for summary in summaries.values():
            for entry in summary.get("pods") or ():
                by_uid[str((entry.get("podRef") or {}).get("uid"))] = entry
        items = [pod_metrics(p, by_uid[p["metadata"]["uid"]]) for p in chosen if p["metadata"]["uid"] in by_uid]
        if name:
            if not items:
                raise E.NotFound(f'podmetrics.metrics.k8s.io "{namespace}/{name}" not found', kind="pods",
                                 name=name, group="metrics.k8s.io")
            return web.json_response(items[0])
        return list_answer("PodMetricsList", items)

    base = f"/apis/{GROUP_VERSION}"
    router.add_get(f"{base}/nodes", nodes)
    router.add_get(f"{base}/nodes/{{name}}", nodes)
    router.add_get(f"{base}/pods", pods)
    router.add_get(f"{base}/namespaces/{{namespace}}/pods", pods)
    router.add_get(f"{base}/namespaces/{{namespace}}/pods/{{name}}", pods)

