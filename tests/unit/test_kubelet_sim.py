"""The simulated runtime and the data behind it: behaviour files, deterministic draws, the pure timeline of a
simulated container (tables in tests/unit/data/kubelet/sim_timelines.json), node profiles, eviction ranking
and messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hacluster.kubelet import eviction as ev
from hacluster.kubelet.behaviour import (
    ANNOTATION_PREFIX,
    Behaviour,
    BehaviourError,
    ImageCatalogue,
    ImagesFile,
    format_bytes,
    load_profiles,
    parse_override,
)
from hacluster.kubelet.sim import memory_at, memory_crossing, timeline

DATA = Path(__file__).parent / "data" / "kubelet"
TIMELINES = json.loads((DATA / "sim_timelines.json").read_text())


def _behaviour(d: dict[str, Any]) -> Behaviour:
    base: dict[str, Any] = dict(exists=True, pull_s=0.0, size_bytes=0, start_s=0.0, run_s=None, exit_code=0,
                                ready_after_s=0.0, memory=((0.0, 100),), terminate_s=0.2, terminate_exit_code=0,
                                log_lines=())
    base.update({k: v for k, v in d.items() if k != "memory"})
    if "memory" in d:
        base["memory"] = tuple((float(t), int(m)) for t, m in d["memory"])
    return Behaviour(**base)


@pytest.mark.parametrize("case", TIMELINES["cases"], ids=lambda c: c["name"])
def test_timeline_table(case: dict[str, Any]) -> None:
    o = timeline(_behaviour(case["behaviour"]), case.get("limit"), 0.0, case["now"], term_at=case.get("term_at"),
                 kill_at=case.get("kill_at"))
    want = case["expect"]
    assert o.state == want["state"]
    for key, attr in (("ready", "ready"), ("exit_code", "exit_code"), ("reason", "reason"), ("memory", "memory_bytes")):
        if key in want:
            assert getattr(o, attr) == want[key], key
    for key in ("finished_at", "next_change_at"):
        if key in want:
            assert getattr(o, key) == pytest.approx(want[key]) if want[key] is not None else getattr(o, key) is None


def test_memory_curve_and_crossing() -> None:
    pts = ((0.0, 100), (10.0, 1100), (20.0, 1100))
    assert memory_at(pts, 0) == 100 and memory_at(pts, 5) == 600 and memory_at(pts, 30) == 1100
    assert memory_crossing(pts, 600) == pytest.approx(5.0)
    assert memory_crossing(pts, 1100) is None
    assert memory_crossing(pts, 50) == 0.0


def test_shipped_images_file_and_matching() -> None:
    cat = ImageCatalogue.load(seed=1, time_scale=1.0)
    assert not cat.exists("example/does-not-exist:1") and not cat.exists("nginx:nonexistent")
    assert cat.exists("nginx:1.27") and cat.exists("anything/else")
    pod = {"metadata": {"name": "p", "namespace": "default"}}
    job = cat.behaviour_for(pod, {"name": "c", "image": "hacluster/job:1"}, 0)
    assert job.run_s == 3 and job.exit_code == 0
    crash = cat.behaviour_for(pod, {"name": "c", "image": "hacluster/crash"}, 0)
    assert crash.run_s is not None and crash.exit_code == 1
    stubborn = cat.behaviour_for(pod, {"name": "c", "image": "hacluster/ignore-sigterm"}, 0)
    assert stubborn.terminate_s is None
    assert cat.behaviour_for(pod, {"name": "c", "image": "nginx"}, 0).run_s is None


def test_draws_are_deterministic_per_seed_pod_container_and_attempt() -> None:
    pod = {"metadata": {"name": "p", "namespace": "default"}}
    c = {"name": "c", "image": "nginx"}
    a = ImageCatalogue.load(seed=7).behaviour_for(pod, c, 0)
    assert a == ImageCatalogue.load(seed=7).behaviour_for(pod, c, 0)
    draws = {ImageCatalogue.load(seed=s).behaviour_for(pod, c, 0).pull_s for s in range(8)}
    assert len(draws) > 4 and all(0.5 <= d <= 1.5 for d in draws)


def test_time_scale_scales_every_duration() -> None:
    pod = {"metadata": {"name": "p", "namespace": "default",
                        "annotations": {ANNOTATION_PREFIX + "c": '{"run_s": 4, "ready_after_s": 2, "pull_s": 10, '
                                                                  '"memory": [[0, "1Mi"], [8, "9Mi"]]}'}}}
    b = ImageCatalogue.load(time_scale=0.01).behaviour_for(pod, {"name": "c", "image": "x"}, 0)
    assert (b.run_s, b.ready_after_s, b.pull_s) == pytest.approx((0.04, 0.02, 0.1))
    assert b.memory == ((0.0, 1 << 20), (pytest.approx(0.08), 9 << 20))


def test_annotation_override_and_its_errors() -> None:
    assert parse_override('{"run_s": null}', "x").runs_forever is True
    assert parse_override("exit_code: 3\nrun_s: 1", "x").exit_code == 3
    with pytest.raises(BehaviourError, match="exit_code"):
        parse_override('{"exit_code": 300}', "pod default/p annotation")
    with pytest.raises(BehaviourError, match="must be a mapping"):
        parse_override("[1, 2]", "x")


def test_bad_images_file_names_file_key_and_reason(tmp_path: Path) -> None:
    p = tmp_path / "images.yaml"
    p.write_text("version: 1\nimages:\n  - match: x\n    pull_s: -1\n  - match: y\n    colour: red\n")
    with pytest.raises(BehaviourError) as exc:
        ImageCatalogue.load(p)
    text = str(exc.value)
    assert f"{p}: images.0.pull_s" in text and f"{p}: images.1.colour: unknown key" in text
    assert ImagesFile().images == ()


def test_node_profiles_allocatable() -> None:
    profiles = load_profiles()
    d = profiles["default"]
    assert d.allocatable() == {"cpu": "3900m", "memory": "7836Mi", "pods": "110", "ephemeral-storage": "100Gi"}
    assert profiles["gpu"].taints[0].key == "dedicated"
    assert format_bytes(95_686_656) == "93444Ki" and format_bytes(1000) == "1000" and format_bytes(8 << 30) == "8Gi"


# ----------------------------------------------------------------------------------------- eviction
def _usage(name: str, priority: int, usage_mi: int, request_mi: int) -> ev.PodUsage:
    return ev.PodUsage(uid=name, namespace="default", name=name, priority=priority,
                       containers=(ev.ContainerUsage("c", usage_mi << 20, request_mi << 20,
                                                     f"{request_mi}Mi" if request_mi else "0"),))


def test_eviction_ranking_usage_above_requests_then_priority_then_usage() -> None:
    pods = [
        _usage("guaranteed-big", 0, 900, 1000),    # under its request
        _usage("besteffort-small", 0, 50, 0),      # over (no request), small
        _usage("burstable-over", 0, 600, 100),     # over by 500
        _usage("important-over", 1000, 2000, 0),   # over, but higher priority
        _usage("critical", 2_000_000_000, 5000, 0),
    ]
    ranked = [p.name for p in ev.rank_for_memory(pods)]
    assert ranked == ["burstable-over", "besteffort-small", "important-over", "guaranteed-big"]


def test_eviction_message_is_kubernetes_wording() -> None:
    pod = _usage("hog", 0, 900, 100)
    msg = ev.eviction_message(pod, "100Mi", 60 << 20)
    assert msg == ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 60Mi. "
                   "Container c was using 900Mi, request is 100Mi, has larger consumption of memory. ")
    assert ev.memory_available(8 << 30, 512 << 20, 7 << 30) == 512 << 20
