"""An API server in this process over an unreplicated store, driven by aiohttp's test client."""

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hacluster.apiserver.server import ApiServer
from hacluster.config import ClusterConfig, MasterConfig, UserConfig
from hacluster.model import commands as C
from hacluster.store.local import LocalStore

ADMIN, VIEWER, NODE1 = "admin-token-0001", "viewer-token-0001", "node1-token-0001"


def make_config(**api):
    return ClusterConfig(
        masters=(MasterConfig(id="m1", api_port=1, raft_port=2),),
        users=(UserConfig(name="admin", token=ADMIN, groups=("system:masters",)),
               UserConfig(name="viewer", token=VIEWER, groups=("viewers",)),
               UserConfig(name="system:node:node-1", token=NODE1, groups=("system:nodes",))),
        api=api or {})


class Api:
    """The test client with the admin token set, and the store behind it."""

    def __init__(self, client: TestClient, store: LocalStore):
        self.client = client
        self.store = store

    async def call(self, method, path, body=None, token=ADMIN, headers=None, raw=None, **kw):
        h = {"Authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        if raw is not None:
            resp = await self.client.request(method, path, data=raw, headers=h, **kw)
        elif body is not None:
            resp = await self.client.request(method, path, json=body, headers=h, **kw)
        else:
            resp = await self.client.request(method, path, headers=h, **kw)
        try:
            data = await resp.json(content_type=None)
        except ValueError:
            data = await resp.text()
        return resp.status, data, resp


@contextlib.asynccontextmanager
async def serving(config: ClusterConfig, store: LocalStore) -> AsyncIterator[Api]:
    """Master m1's API over `store`, which first commits m1's leadership of term 1."""
    await store.propose(C.LeaderElected(leader_id="m1", term=1, time="2026-01-01T00:00:00Z", fence_term=1))
    server = ApiServer(config, "m1", store)
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    try:
        yield Api(client, store)
    finally:
        server.stop_watches()
        await client.close()


@pytest.fixture
async def api():
    async with serving(make_config(max_body_bytes=64 * 1024), LocalStore()) as served:
        yield served


def pod(name, **spec):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    p["spec"].update(spec)
    return p
