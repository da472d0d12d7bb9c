"""Formatting shared by the API server and the clients: Kubernetes' table printers (`tables` and the row
printers `pods`, `nodes`, `events`, `workloads`), Go-style durations (`durations`), label selectors
(`selectors`) and the readers of JSON dicts (`accessors`). RFC 3339 timestamps are `hacluster.model.timestamps`
(the state machine stamps objects with them, and `model` imports nothing else from the project).

Pure functions only; imports nothing of the project but `hacluster.model`. Used by the API server's reads
(`hacluster.apiserver.reads`), the CLI (`hacluster.cli`), the kubelet and the dashboard.
"""
