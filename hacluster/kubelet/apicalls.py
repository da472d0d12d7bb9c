"""How the kubelet's parts talk to the API server: the paths and request options they share, the errors a
call may end with, the back-off bounds of their loops, and a paged list.

Used by the status manager (`statusmanager`), the pod source (`podsource`), the pod workers (`podworker`),
the node loops (`nodeloops`), the fleet's shared watch (`fleet`) and the kubelet benchmark (`bench`).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable

Obj = dict[str, Any]
ApiErrors = (ClientError, Indeterminate, Unreachable)

RETRY_S = (0.1, 2.0)
"""Bounds of the back-off between failed API calls of the heartbeat, watch and registration loops."""


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


FAST_WRITE = {"resourceVersion": "0"}
"""On an update, lets the API server read the object from its local state instead of first waiting for a Raft
read barrier: the write itself is a compare-and-set on the resourceVersion it read, so a stale read only
costs a retry (which does wait for the barrier)."""
LIST_PAGE_SIZE = 500
"""Items per page by default (Kubernetes' reflectors list in pages of 500; a kubelet passes its
`kubelet.list_page_size`)."""
LIST_PAGES_MAX = 1000
"""Most pages one list may take (500,000 objects) before it is given up as malformed."""


async def list_all(api: ApiClient, path: str, params: dict[str, str], *,
                   page_size: int = LIST_PAGE_SIZE) -> tuple[list[Obj], str]:
    """Every object a list returns, following `continue` tokens page by page; and the list's resourceVersion.
    (A list without a limit is cut at the server's list_limit_max: reading only its first page would make
    the rest look deleted.)"""
    items: list[Obj] = []
    cont = ""
    rv = ""
    for _ in range(LIST_PAGES_MAX):
        q = dict(params, limit=str(page_size))
        if cont:
            q["continue"] = cont
        page = await api.get(path, params=q)
        items.extend(page.get("items") or [])
        meta = page.get("metadata") or {}
        rv = rv or str(meta.get("resourceVersion", ""))
        cont = str(meta.get("continue") or "")
        if not cont:
            return items, rv
    raise ValueError(f"list of {path} did not end after {LIST_PAGES_MAX} pages")


def is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, (aiohttp.ClientError, aiohttp.ClientPayloadError))
