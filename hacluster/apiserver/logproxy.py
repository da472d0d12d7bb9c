"""The `pods/{name}/log` proxy: finds the kubelet of the pod's node and streams the container's log from it
over HTTP, as the Kubernetes API server does.

Used by the API server's routing (`hacluster.apiserver.routing`); the kubelet side is
`hacluster.kubelet.logs`.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from hacluster.apiserver.auth import User, authorize
from hacluster.apiserver.reads import Reads
from hacluster.apiserver.request import Target, truthy
from hacluster.model import errors as E
from hacluster.store.api import ReplicatedStore


class LogProxy:
    """Streams container logs from kubelets; `reads` gives the consistent-read barrier."""

    def __init__(self, store: ReplicatedStore, reads: Reads) -> None:
        self.store = store
        self.reads = reads

    async def pod_log(self, request: web.Request, user: User, t: Target) -> web.StreamResponse:
        """Proxy `pods/{name}/log` to the kubelet of the pod's node, as the Kubernetes API server does: the
        node advertises its port in `status.daemonEndpoints.kubeletEndpoint.Port`, the kubelet serves
        `/containerLogs/{namespace}/{pod}/{container}` on 127.0.0.1."""
        authorize(user, "get", t.res, t.namespace, t.name, "log")
        await self.reads.consistent(request)
        pod = self.store.read(lambda s: s.get("pods", t.namespace, t.name))
        if pod is None:
            raise E.not_found("pods", t.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise E.BadRequest(f'pod {t.name} does not have a host assigned')
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container", "")
        if not container:
            if len(containers) != 1:
                raise E.BadRequest(f"a container name must be specified for pod {t.name}, choose one of: "
                                   f"[{' '.join(containers)}]")
            container = containers[0]
        node = self.store.read(lambda s: s.get("nodes", "", node_name))
        port = (((node or {}).get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port")
        if not port:
            raise E.BadRequest(f'the node "{node_name}" of pod {t.name} does not serve container logs '
                               "(no kubelet endpoint)")
        params = {k: v for k, v in request.query.items()
                  if k in ("tailLines", "follow", "previous", "timestamps", "sinceSeconds", "limitBytes")}
        url = f"http://127.0.0.1:{int(port)}/containerLogs/{t.namespace}/{t.name}/{container}"
        follow = truthy(request.query.get("follow"))
        timeout = aiohttp.ClientTimeout(total=None if follow else 30, sock_connect=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, params=params) as upstream:
                    if upstream.status != 200:
                        raw = await upstream.read()
                        return web.Response(body=raw, status=upstream.status,
                                            content_type=upstream.content_type or "application/json")
                    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
                    await resp.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await resp.write(chunk)
                    await resp.write_eof()
                    return resp
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise E.InternalError(f'Get "{url}": {exc}') from exc
