"""The watch hub on an in-process store: a watch resumed from a revision this master has not applied yet
(it is catching up after a restart) gets only the changes after that revision, never ones it has seen."""

import asyncio

from hacluster.apiserver.watchhub import WatchHub
from hacluster.model import commands as C
from hacluster.store.local import LocalStore
from tests.unit.leader_fixtures import leader_store, must


def _pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}


async def _create(store: LocalStore, name: str) -> int:
    await must(store, C.Create(resource="pods", namespace="default", obj=_pod(name)))
    return store.read(lambda s: s.revision)


async def _drain(queue: asyncio.Queue, n: int) -> list[int]:
    return [(await asyncio.wait_for(queue.get(), 5)).revision for _ in range(n)]


async def test_a_watch_from_a_revision_ahead_of_this_master_skips_what_it_has_seen():
    store = await leader_store()
    hub = WatchHub(store, queue_max=100)
    try:
        await _create(store, "a")
        now = store.read(lambda s: s.revision)
        subscribed = hub.subscribe("pods", "default/", None, now + 2)  # the client saw two more changes elsewhere
        assert subscribed is not None
        sub, backlog = subscribed
        assert backlog == []
        revisions = [await _create(store, name) for name in ("b", "c", "d", "e")]
        assert await _drain(sub.queue, 2) == revisions[2:], "a change the client had seen came again"
        # A watch from a revision this master has passed gets its backlog, then every later change.
        again = hub.subscribe("pods", "default/", None, now)
        assert again is not None and [ev.revision for ev in again[1]] == revisions
        last = await _create(store, "f")
        assert await _drain(again[0].queue, 1) == [last] and await _drain(sub.queue, 1) == [last]
    finally:
        hub.close()
