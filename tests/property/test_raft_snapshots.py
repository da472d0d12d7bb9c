"""Snapshots and journal compaction (issue 13 finding 4): the forked snapshot writer holds no inherited
descriptor and is killed and reaped by `stop()`; a master stopped at each step of a compaction — after the
writer's rename, after the snapshot is published but before the journal is compacted, after compaction —
restarts with every entry it had acknowledged."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hacluster.model import commands as C
from hacluster.raft.replicated_store import SNAPSHOT_FILE, RaftStore
from tests.property.harness import NAMESPACE, InProcessCluster, fast_raft, pod

pytestmark = pytest.mark.slow


async def _write(store: RaftStore, names: list[str]) -> None:
    for name in names:
        res = await store.propose(C.Create(resource="pods", namespace=NAMESPACE, obj=pod(name, 0)))
        assert res.ok, res


async def _until(what: str, check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.01)


def _names(store: RaftStore) -> set[str]:
    return store.read(lambda s: {o["metadata"]["name"] for o in s.objects["pods"].values()})


@pytest.mark.parametrize("step", ["after-rename", "after-publish", "after-compaction"])
async def test_a_master_stopped_at_each_step_of_a_compaction_keeps_every_entry(tmp_path: Path, step: str) -> None:
    async with InProcessCluster(1, data_dir=tmp_path, raft=fast_raft(log_compaction_min_entries=1_000_000)) as c:
        await c.bootstrap()
        store = c.stores["m1"]
        assert store is not None and store.journal is not None
        data = tmp_path / "m1"
        await _write(store, [f"a{i}" for i in range(20)])
        if step == "after-rename":  # the master dies before it publishes the writer's file
            def die(*_: Any) -> None:
                raise OSError("killed before publishing")
            store.storage.publish = die  # type: ignore[method-assign,assignment]
        if step == "after-publish":  # ... or after publishing, before the journal is compacted
            store.journal.deleteEntriesTo = lambda entryTo: None  # type: ignore[method-assign]
        entries_before = len(store.journal)
        assert store._sync is not None
        store._sync.forceLogCompaction()
        if step == "after-rename":
            await _until("the writer renamed its file", lambda: any(data.glob(SNAPSHOT_FILE + ".0*")))
            await _until("the writer was reaped", lambda: store._snapshot_child is None)
            assert not (data / SNAPSHOT_FILE).exists()
        else:
            await _until("the snapshot was published", lambda: (data / SNAPSHOT_FILE).exists())
            if step == "after-compaction":
                await _until("the journal was compacted", lambda: len(store.journal) < entries_before)
            else:
                await _until("the writer was reaped", lambda: store._snapshot_child is None)
                assert len(store.journal) >= entries_before
        await _write(store, [f"b{i}" for i in range(5)])
        expected = _names(store)
        assert {f"a{i}" for i in range(20)} | {f"b{i}" for i in range(5)} <= expected
        await c.kill("m1")
        await c.restart("m1")
        store = c.stores["m1"]
        assert store is not None
        await c.wait_leader(10)
        await _until("the restarted master applied its log", lambda: _names(store) >= expected)
        assert not list(data.glob(SNAPSHOT_FILE + ".*")), "unpublished snapshot files are removed at start"
        await _write(store, ["after-restart"])


async def test_the_snapshot_writer_holds_no_inherited_descriptor_and_stop_reaps_it(tmp_path: Path) -> None:
    async with InProcessCluster(1, data_dir=tmp_path, raft=fast_raft(log_compaction_min_entries=1_000_000)) as c:
        await c.bootstrap()
        store = c.stores["m1"]
        assert store is not None and store._sync is not None
        await _write(store, ["x", "y"])

        def slow_snapshot() -> Any:  # runs in the forked writer only
            time.sleep(30)
            return {}
        store._state.snapshot = slow_snapshot  # type: ignore[method-assign]
        store._sync.forceLogCompaction()
        await _until("a snapshot writer runs", lambda: store._snapshot_child is not None)
        pid = store._snapshot_child
        assert pid is not None
        await _until("the writer closed what it inherited",
                     lambda: sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")) == [0, 1, 2])
        await c.kill("m1")
        assert not os.path.exists(f"/proc/{pid}"), "the writer was killed and reaped"
