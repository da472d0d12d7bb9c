"""The kubelet: node agents that run the pods bound to their node and report every state from its cause.

Layout (pure modules first):
- `behaviour`  — simulated images and node profiles, as data (configs/kubelet/*.yaml);
- `backoff`    — CrashLoopBackOff / ImagePullBackOff timing (10 s doubling to 300 s, reset after 10 min);
- `status`     — the pod status the kubelet writes, computed from what the runtime reports;
- `eviction`   — node-pressure signals, the kubelet's ranking of pods, Kubernetes' eviction message;
- `nodestatus` — the Node and Lease objects;
- `runtime`    — the container runtime interface and `RuntimeBase`; `sim` and `process` implement it
                 (`crilog`: the process runtime's CRI log files);
- `agent`      — one node's kubelet (registration, heartbeats, watch, pod workers, status, eviction),
                 its parts built on one `nodepart.NodeContext`;
- `logs`       — the log endpoint the API server's pods/log proxies to;
- `events`     — bounded event recording (the aggregation is `hacluster.model.events`);
- `fleet`      — many simulated nodes in one process; `daemon` — one kubelet process;
- `launch`     — kubelets of `hacluster up`; `bench` — scripts/bench-kubelet.
"""
