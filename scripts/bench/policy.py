"""Benchmark the scheduler's pure policy: schedule 5,000 pods onto 100 and onto 1,000 nodes.

No API server, no Raft: build a ClusterSnapshot, then for each pod in queue order call
`schedule_one` and `assume` the result, exactly as the leader's loop will. Prints pods/s per cluster
size. Everything is generated from --seed, so runs are comparable.

    scripts/bench-policy [--pods 5000] [--nodes 100,1000] [--seed 1] [--profile]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root, for a run without install

from hacluster.scheduler.nodeinfo import ClusterSnapshot
from hacluster.scheduler.policy import order_queue, schedule_one

ZONES = ("zone-a", "zone-b", "zone-c")


def make_nodes(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Nodes of 16–64 CPUs; a tenth carry a dedicated=gpu:NoSchedule taint, some a PreferNoSchedule."""
    nodes = []
    for i in range(count):
        cpus = rng.choice((16, 32, 64))
        taints = []
        if i % 10 == 0:
            taints.append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
        if i % 7 == 0:
            taints.append({"key": "maintenance", "value": "soon", "effect": "PreferNoSchedule"})
        nodes.append(
            {
                "metadata": {
                    "name": f"node-{i:04d}",
                    "labels": {
                        "kubernetes.io/hostname": f"node-{i:04d}",
                        "topology.kubernetes.io/zone": ZONES[i % len(ZONES)],
                        "disktype": "ssd" if i % 2 else "hdd",
                    },
                },
                "spec": {"taints": taints},
                "status": {"allocatable": {"cpu": str(cpus), "memory": f"{cpus * 4}Gi", "pods": "110"}},
            }
        )
    return nodes


def make_pods(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Pods of 100m–1 CPU and 128Mi–1Gi; a fifth select ssd, a tenth prefer a zone, some tolerate gpu."""
    pods = []
    for i in range(count):
        spec: dict[str, Any] = {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "resources": {
                        "requests": {
                            "cpu": rng.choice(("100m", "250m", "0.5", "1")),
                            "memory": rng.choice(("128Mi", "256Mi", "512Mi", "1Gi")),
                        }
                    },
                }
            ]
        }
        if i % 5 == 0:
            spec["nodeSelector"] = {"disktype": "ssd"}
        if i % 10 == 3:
            spec["affinity"] = {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 10,
                            "preference": {
                                "matchExpressions": [
                                    {
                                        "key": "topology.kubernetes.io/zone",
                                        "operator": "In",
                                        "values": [rng.choice(ZONES)],
                                    }
                                ]
                            },
                        }
                    ]
                }
            }
        if i % 8 == 0:
            spec["tolerations"] = [
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
            ]
        pods.append(
            {
                "metadata": {
                    "name": f"pod-{i:05d}",
                    "namespace": "bench",
                    "uid": f"uid-{i:05d}",
                    "creationTimestamp": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                },
                "spec": spec,
            }
        )
    return pods


def run(num_nodes: int, num_pods: int, seed: int) -> tuple[float, int]:
    rng = random.Random(seed)
    snapshot = ClusterSnapshot(make_nodes(num_nodes, rng))
    pods = order_queue(make_pods(num_pods, rng))
    start_index = 0
    placed = 0
    began = time.perf_counter()
    for pod in pods:
        decision, start_index = schedule_one(pod, snapshot, seed=seed, start_index=start_index)
        if decision.node_name is not None:
            snapshot.assume(pod, decision.node_name)
            placed += 1
    elapsed = time.perf_counter() - began
    return num_pods / elapsed, placed


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-policy", description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--nodes", default="100,1000", help="comma-separated cluster sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print the top functions by time")
    args = parser.parse_args()
    sizes = [int(s) for s in args.nodes.split(",") if s]
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    for size in sizes:
        rate, placed = run(size, args.pods, args.seed)
        print(f"{size:>6} nodes: {args.pods} pods, {placed} placed, {rate:,.0f} pods/s")
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
