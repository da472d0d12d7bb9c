"""A deliberately unsafe replication engine (primary-backup, asynchronous, timeout failover) for the
split-brain experiment; see `hacluster.unsafe.async_primary`. Never a default."""
