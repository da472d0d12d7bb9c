"""Which replication engine a master's store runs on: the one place that picks an engine by name.

Everything above `hacluster.store.api.ReplicatedStore` (API server, leader loops) is engine-blind; the
master asks `open_store` for the engine named by the config's `store.engine`. An engine is a module that
builds an object meeting that protocol plus `start(loop)` / `stop()`; add one here by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacluster.config import ClusterConfig
from hacluster.store.api import ReplicatedStore


def _open_pysyncobj(cfg: ClusterConfig, master_id: str, **options: Any) -> ReplicatedStore:
    from hacluster.raft.replicated_store import RaftStore  # the engine's own imports load only when chosen

    return RaftStore(cfg, master_id, **options)


def _open_unsafe_async_primary(cfg: ClusterConfig, master_id: str, **options: Any) -> ReplicatedStore:
    # Refused by the config unless store.unsafe_async_primary.loses_acknowledged_writes is true.
    from hacluster.unsafe.async_primary import open_unsafe_async_primary

    return open_unsafe_async_primary(cfg, master_id, **options)



def _open_etcd(cfg: ClusterConfig, master_id: str, *, data_dir: Path | None = None,
               dial_addresses: dict[str, str] | None = None,
               on_proposal_outcome: Callable[[str], None] | None = None, **_raft_only: Any) -> ReplicatedStore:
    """The etcd engine keeps no data of its own (etcd does): `data_dir` and pysyncobj's journal options
    (`storage_mode`, `on_fsync`) do not apply to it."""
    from hacluster.etcd.store import EtcdStore  # aetcd and gRPC load only when chosen

    return EtcdStore(cfg, master_id, dial_addresses=dial_addresses, on_proposal_outcome=on_proposal_outcome)


OPENERS: dict[str, Callable[..., ReplicatedStore]] = {"pysyncobj": _open_pysyncobj, "etcd": _open_etcd,
                                                      "unsafe-async-primary": _open_unsafe_async_primary}
"""Engine name (`store.engine`) -> opener(cfg, master_id, **options)."""


def open_store(cfg: ClusterConfig, master_id: str, *, data_dir: Path | None, **options: Any) -> ReplicatedStore:
    """The store of master `master_id` on the engine the config names.

    `options` are the engine's own keywords (for pysyncobj: `dial_addresses`, `on_proposal_outcome`,
    `storage_mode`, `on_fsync`; the unsafe engine takes the same and refuses test storage); an engine ignores
    none silently, so pass only what it takes."""
    try:
        opener = OPENERS[cfg.store.engine]
    except KeyError:
        raise ValueError(f"store.engine: unknown engine {cfg.store.engine!r} (have {', '.join(OPENERS)})") from None
    return opener(cfg, master_id, data_dir=data_dir, **options)
