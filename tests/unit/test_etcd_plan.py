"""The etcd engine's pure parts: a command planned against the watch cache (what it read, what it writes),
results re-stamped with the transaction's revision, the cache's watch history and the key layout."""

from __future__ import annotations

from hacluster.etcd import layout
from hacluster.etcd.cache import Change, WatchCache
from hacluster.etcd.plan import Plan, with_revision
from hacluster.model.commands import Batch, Bind, Create, Replace

T = "2026-01-01T00:00:00Z"


def ns(name: str, rv: int) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "resourceVersion": str(rv)}}


def pod(name: str, rv: int | None = None, **spec: object) -> dict:
    meta: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}


def cache_with(*objects: tuple[str, str, dict, int], revision: int = 10) -> WatchCache:
    c = WatchCache()
    c.load(revision, list(objects))
    return c


def test_create_reads_the_key_absent_and_its_namespace_and_writes_one_key():
    cache = cache_with(("namespaces", "default", ns("default", 3), 3))
    plan = Plan(cache)
    result = plan.run(Create(resource="pods", namespace="default", obj=pod("web")))
    assert result.ok
    assert plan.reads == {("namespaces", "default"): 3, ("pods", "default/web"): 0}
    writes = plan.writes()
    assert list(writes) == [("pods", "default/web")]
    assert cache.get("pods", "default", "web") is None  # the cache itself is untouched


def test_stale_resource_version_is_refused_without_writes():
    cache = cache_with(("namespaces", "default", ns("default", 3), 3), ("pods", "default/web", pod("web", 7), 7))
    plan = Plan(cache)
    result = plan.run(Replace(resource="pods", namespace="default", name="web", obj=pod("web"), expected_rv="6"))
    assert not result.ok and result.error is not None and result.error.reason == "Conflict"
    assert plan.writes() == {}
    assert plan.reads == {("pods", "default/web"): 7}


def test_a_batch_writes_every_binding_and_restamps_them_with_one_revision():
    cache = cache_with(("namespaces", "default", ns("default", 3), 3), ("pods", "default/a", pod("a", 5), 5),
                       ("pods", "default/b", pod("b", 6), 6), ("pods", "default/c", pod("c", 4, nodeName="n0"), 4))
    plan = Plan(cache)
    result = plan.run(Batch(commands=[Bind(namespace="default", name=n, node_name="n1", time=T)
                                      for n in ("a", "b", "c")]))
    assert [r.ok for r in result.results] == [True, True, False]  # c was bound already
    assert set(plan.writes()) == {("pods", "default/a"), ("pods", "default/b")}
    committed = with_revision(result, plan.base_revision, 42)
    assert [r.obj["metadata"]["resourceVersion"] for r in committed.results[:2]] == ["42", "42"]
    assert committed.results[2].obj is None and committed.revision == 42


def test_unchanged_objects_keep_their_resource_version():
    cache = cache_with(("pods", "default/web", pod("web", 7), 7))
    plan = Plan(cache)
    same = plan.run(Replace(resource="pods", namespace="default", name="web", obj=pod("web")))
    assert same.ok and plan.writes() == {}
    assert with_revision(same, plan.base_revision, 50).obj["metadata"]["resourceVersion"] == "7"


def test_watch_history_with_several_events_per_revision_and_gaps():
    cache = cache_with(revision=10)
    cache.observe(12, [Change("pods", "default/a", pod("a", 12), None), Change("pods", "default/b", pod("b", 12), None)])
    cache.advance(14)  # a revision of a key outside the objects (the leadership key)
    cache.observe(15, [Change("pods", "default/a", None, None)])
    assert [(e.revision, e.type) for e in cache.events_since(10)] == [(12, "ADDED"), (12, "ADDED"), (15, "DELETED")]
    assert [(e.revision, e.key) for e in cache.events_since(12)] == [(15, "default/a")]
    assert cache.events_since(15) == []
    assert cache.events_since(9) is None  # before the list the cache started from: 410
    deleted = cache.events_since(14)[0]
    assert deleted.obj["metadata"]["resourceVersion"] == "15" and deleted.prev["metadata"]["resourceVersion"] == "12"


def test_layout_keys_and_values():
    assert layout.object_key("/registry/", "pods", "default/web") == b"/registry/pods/default/web"
    assert layout.split_key("/registry/", b"/registry/nodes/n1") == ("nodes", "n1")
    assert layout.split_key("/registry/", b"/registry/widgets/x") is None
    assert layout.split_key("/registry/", b"/hacluster/leader-loops") is None
    value = layout.encode(pod("web", 9))
    assert b"resourceVersion" not in value
    assert layout.decode(value, 11)["metadata"]["resourceVersion"] == "11"


def test_leader_key_follows_the_prefix():
    assert layout.leader_key("/registry/") == b"/hacluster/leader-loops"
    assert layout.leader_key("/team-a/registry/") == b"/hacluster/leader-loops-team-a-registry"
