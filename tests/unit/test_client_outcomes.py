"""The ApiClient reads the outcome table (hacluster/model/outcomes.py): what it repeats on the next master, what
it raises as an unknown outcome, and what it hands back as the server's answer. Against an in-process HTTP server
whose answers are scripted per request."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hacluster.client import ApiClient, ClientError, Indeterminate


async def scripted(codes: list[int], seen: list[str]) -> TestServer:
    """A server that answers the n-th request with codes[n] (the last one from then on)."""
    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        code = codes[min(len(seen) - 1, len(codes) - 1)]
        if code < 400:
            return web.json_response({"kind": "Pod", "metadata": {"name": "x"}}, status=code)
        return web.json_response({"kind": "Status", "status": "Failure", "reason": f"R{code}", "code": code},
                                 status=code)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("method", "codes", "raises", "requests"), [
    ("GET", [504, 200], None, 2),            # unknown, but safe to repeat: repeated
    ("POST", [504, 201], Indeterminate, 1),  # unknown and not safe to repeat: the caller decides
    ("POST", [503, 201], None, 2),           # refused, nothing done: repeated
    ("POST", [409], ClientError, 1),         # a definite answer
    ("GET", [500, 200], ClientError, 1),     # a server error is the answer, not repeated (even for a GET)
    ("POST", [500, 201], ClientError, 1),
])
async def test_api_client_follows_the_outcome_table(method: str, codes: list[int], raises: type | None,
                                                    requests: int) -> None:
    seen: list[str] = []
    server = await scripted(codes, seen)
    client = ApiClient([str(server.make_url("")).rstrip("/")], "token-000000", deadline_s=5)
    try:
        if raises is None:
            resp = await client.request(method, "/api/v1/namespaces/default/pods",
                                        None if method == "GET" else {"metadata": {"name": "x"}})
            assert resp.code < 400
        else:
            with pytest.raises(raises) as info:
                await client.request(method, "/api/v1/namespaces/default/pods",
                                     None if method == "GET" else {"metadata": {"name": "x"}})
            if raises is ClientError:
                assert info.value.code == codes[0]  # type: ignore[attr-defined]
    finally:
        await client.close()
        await server.close()
    assert len(seen) == requests


async def test_a_refused_connection_moves_a_create_to_the_next_master() -> None:
    seen: list[str] = []
    server = await scripted([201], seen)
    client = ApiClient([f"http://127.0.0.1:{free_port()}", str(server.make_url("")).rstrip("/")], "token-000000",
                       deadline_s=5)
    try:
        body = await client.post("/api/v1/namespaces/default/pods", {"metadata": {"name": "x"}})
    finally:
        await client.close()
        await server.close()
    assert body["metadata"]["name"] == "x" and seen == ["POST"]
