"""The dashboard's pure parts: link states from Toxiproxy, write answers from /metrics, pod counts and
pages, a pod's journey, and the validation of the page's controls."""

from __future__ import annotations

from typing import Any

import pytest

from hacluster.dashboard.controls import POD_TEMPLATES, ControlError, parse_action, pod_from_template, template
from hacluster.dashboard.flow import failed_create_flow, pod_flow
from hacluster.dashboard.links import links_from_peers, links_from_toxiproxy, proxy_link_state
from hacluster.dashboard.pods import PodIndex, pod_summary
from hacluster.dashboard.rates import AnswerRates, write_answers


# ------------------------------------------------------------------------------------------- links
def _timeout(stream: str, timeout: int = 0) -> dict[str, Any]:
    return {"name": f"f1-{stream}", "type": "timeout", "stream": stream, "toxicity": 1.0,
            "attributes": {"timeout": timeout}}


@pytest.mark.parametrize("proxy, state", [
    ({"enabled": True, "toxics": []}, "healthy"),
    ({"enabled": False, "toxics": []}, "cut"),
    ({"enabled": True, "toxics": [_timeout("upstream"), _timeout("downstream")]}, "cut"),
    ({"enabled": True, "toxics": [_timeout("upstream")]}, "one-way"),
    ({"enabled": True, "toxics": [_timeout("upstream", 500), _timeout("downstream", 500)]}, "healthy"),
    ({"enabled": True, "toxics": [{"name": "f2-latency-upstream", "type": "latency", "stream": "upstream",
                                   "toxicity": 1.0, "attributes": {"latency": 100, "jitter": 10}}]}, "slow"),
])
def test_link_state_follows_toxiproxy(proxy: dict[str, Any], state: str) -> None:
    assert proxy_link_state(proxy)["state"] == state


def test_latency_link_says_how_slow() -> None:
    proxy = {"enabled": True, "toxics": [{"type": "latency", "stream": "downstream", "attributes": {"latency": 400}}]}
    assert proxy_link_state(proxy)["why"] == "+400 ms"


def test_links_from_toxiproxy_names_each_pair_and_a_missing_proxy_is_cut() -> None:
    raft = [{"proxy": "raft-m2-m1", "dialer": "m2", "acceptor": "m1"},
            {"proxy": "raft-m3-m1", "dialer": "m3", "acceptor": "m1"}]
    links = links_from_toxiproxy(raft, {"raft-m2-m1": {"enabled": False, "toxics": []}})
    assert links["m1-m2"]["state"] == "cut" and links["m1-m2"]["source"] == "toxiproxy"
    assert links["m1-m3"]["state"] == "cut" and "missing" in links["m1-m3"]["why"]


def test_links_from_peers() -> None:
    masters = {
        "m1": {"role": "leader", "peers": [{"id": "m2", "connected": True}, {"id": "m3", "connected": False}]},
        "m2": {"role": "follower", "peers": [{"id": "m1", "connected": True}, {"id": "m3", "connected": False}]},
        "m3": {"role": "down", "peers": []},
    }
    links = links_from_peers(["m1", "m2", "m3"], masters)
    assert links["m1-m2"]["state"] == "healthy"
    assert links["m1-m3"]["state"] == "down" and links["m2-m3"]["state"] == "down"
    masters["m3"] = {"role": "follower", "peers": [{"id": "m1", "connected": False}, {"id": "m2", "connected": True}]}
    links = links_from_peers(["m1", "m2", "m3"], masters)
    assert links["m1-m3"]["state"] == "cut" and links["m2-m3"]["state"] == "one-way"


# ------------------------------------------------------------------------------------------- rates
METRICS = """# HELP apiserver_request_total API requests by verb, resource and HTTP code
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",resource="pods",verb="create"} 10.0
apiserver_request_total{code="503",resource="pods",verb="create"} 3.0
apiserver_request_total{code="504",resource="pods",verb="update"} 1.0
apiserver_request_total{code="409",resource="pods",verb="patch"} 2.0
apiserver_request_total{code="200",resource="pods",verb="list"} 50.0
# HELP apiserver_request_created API requests by verb, resource and HTTP code
# TYPE apiserver_request_created gauge
apiserver_request_created{code="201",resource="pods",verb="create"} 1.7e9
"""


def test_write_answers_counts_only_writes_by_class() -> None:
    assert write_answers(METRICS) == {"ok": 10.0, "503": 3.0, "504": 1.0, "other": 2.0}


def test_answer_rates_and_a_restarted_master() -> None:
    r = AnswerRates()
    r.update({"ok": 10, "503": 0, "504": 0, "other": 0}, 100.0)
    assert r.update({"ok": 30, "503": 4, "504": 0, "other": 0}, 102.0) == {"ok": 10.0, "503": 2.0, "504": 0.0,
                                                                           "other": 0.0}
    # counters back at zero after a restart: the new values are the increase
    assert r.update({"ok": 6, "503": 0, "504": 0, "other": 0}, 104.0)["ok"] == 3.0


# -------------------------------------------------------------------------------------------- pods
def _pod(name: str, *, node: str = "", waiting: str = "", phase: str = "Pending", created: str = "2026-01-01T00:00:00Z",
         ready: bool = False, restarts: int = 0) -> dict[str, Any]:
    pod: dict[str, Any] = {"metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                                        "uid": f"uid-{name}"},
                           "spec": {"containers": [{"name": "main", "image": "busybox"}]},
                           "status": {"phase": phase, "conditions": []}}
    if node:
        pod["spec"]["nodeName"] = node
    if waiting or phase == "Running":
        state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": created}}
        pod["status"]["containerStatuses"] = [{"name": "main", "ready": ready, "restartCount": restarts,
                                               "state": state}]
    return pod


def test_pod_summary_uses_kubectls_words() -> None:
    s = pod_summary(_pod("a", node="node-1", waiting="CrashLoopBackOff", restarts=4))
    assert (s["status"], s["restarts"], s["node"], s["ready"]) == ("CrashLoopBackOff", 4, "node-1", "0/1")
    assert pod_summary(_pod("b"))["status"] == "Pending"


def test_pod_index_counts_follow_changes_and_pages_are_newest_first() -> None:
    idx = PodIndex()
    idx.reset([pod_summary(_pod(f"p{i}", created=f"2026-01-01T00:00:{i:02d}Z")) for i in range(30)])
    assert idx.ordered_counts() == [("Pending", 30)]
    v = idx.version
    idx.put(pod_summary(_pod("p3", node="n", phase="Running", ready=True, created="2026-01-01T00:00:03Z")))
    assert idx.ordered_counts() == [("Pending", 29), ("Running", 1)] and idx.version > v
    idx.remove("default", "p4")
    assert idx.ordered_counts() == [("Pending", 28), ("Running", 1)]
    page = idx.page(offset=0, limit=10)
    assert page["total"] == 29 and [p["name"] for p in page["items"]][:2] == ["p29", "p28"]
    assert idx.page(status="Running")["items"][0]["name"] == "p3"
    assert idx.page(limit=100_000)["limit"] == 200


# -------------------------------------------------------------------------------------------- flow
def _ev(reason: str, message: str, t: str, component: str = "kubelet") -> dict[str, Any]:
    return {"reason": reason, "message": message, "firstTimestamp": t, "source": {"component": component}}


def test_flow_of_a_running_pod_has_every_step_in_order() -> None:
    pod = _pod("web", node="node-1", phase="Running", ready=True)
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:03Z"}]
    events = [_ev("Scheduled", "Successfully assigned default/web to node-1", "2026-01-01T00:00:01Z",
                  "default-scheduler"),
              _ev("Pulling", 'Pulling image "busybox"', "2026-01-01T00:00:01Z"),
              _ev("Pulled", 'Successfully pulled image "busybox"', "2026-01-01T00:00:02Z"),
              _ev("Created", "Created container main", "2026-01-01T00:00:02Z"),
              _ev("Started", "Started container main", "2026-01-01T00:00:03Z")]
    flow = pod_flow(pod, events)
    assert [s["step"] for s in flow["steps"]] == [
        "create requested", "request accepted", "proposed and committed", "scheduler decision", "binding committed",
        "kubelet picked it up", "image pulled", "containers created and started", "Ready"]
    assert {s["state"] for s in flow["steps"]} == {"done"}
    assert [s["t_s"] for s in flow["steps"]] == [0, 0, 0, 1, 1, 1, 2, 3, 3]
    assert flow["stopped_at"] == ""


def test_flow_stops_at_the_scheduler_with_its_message() -> None:
    pod = _pod("big")
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/2 nodes are available: 2 Insufficient cpu.",
                                    "lastTransitionTime": "2026-01-01T00:00:01Z"}]
    flow = pod_flow(pod, [])
    assert flow["stopped_at"] == "scheduler decision"
    assert flow["steps"][-1]["state"] == "failed" and "Insufficient cpu" in flow["steps"][-1]["detail"]


def test_flow_stops_at_the_image_pull() -> None:
    pod = _pod("img", node="node-1", waiting="ImagePullBackOff")
    events = [_ev("Pulling", 'Pulling image "x"', "2026-01-01T00:00:01Z"),
              _ev("Failed", 'Failed to pull image "x": not found', "2026-01-01T00:00:02Z"),
              _ev("Failed", "Error: ErrImagePull", "2026-01-01T00:00:02Z")]
    flow = pod_flow(pod, events)
    assert flow["stopped_at"] == "image pulled"
    last = flow["steps"][-1]
    assert last["state"] == "failed" and last["detail"].startswith("ImagePullBackOff: Failed to pull image")


def test_flow_of_a_crash_looping_pod_ends_failed() -> None:
    pod = _pod("crash", node="node-1", waiting="CrashLoopBackOff", restarts=3)
    events = [_ev("Pulled", "already present", "2026-01-01T00:00:01Z"),
              _ev("Created", "Created container main", "2026-01-01T00:00:01Z"),
              _ev("Started", "Started container main", "2026-01-01T00:00:01Z"),
              _ev("BackOff", "Back-off restarting failed container main in pod crash", "2026-01-01T00:00:05Z")]
    flow = pod_flow(pod, events)
    assert flow["stopped_at"] == "ended: CrashLoopBackOff" and flow["steps"][-1]["t_s"] == 5


# ---------------------------------------------------------------------------------------- controls
@pytest.mark.parametrize("body, why", [
    ([], "JSON object"),
    ({"action": "explode"}, "action must be one of"),
    ({"action": "kill", "target": "m9"}, "target must be leader or one of m1, m2, m3"),
    ({"action": "restart", "target": "leader"}, "target must be one of m1, m2, m3"),
    ({"action": "split", "target": "ring"}, "split shape"),
    ({"action": "latency", "latency_ms": 0}, "latency_ms"),
    ({"action": "latency", "latency_ms": "100"}, "latency_ms"),
    ({"action": "kill", "target": "m1", "for_s": -1}, "for_s"),
    ({"action": "kill", "target": "m1", "for_s": True}, "for_s"),
    ({"action": "kill", "target": 3}, "target must be a string"),
])
def test_bad_controls_are_refused_with_a_reason(body: Any, why: str) -> None:
    with pytest.raises(ControlError, match=why):
        parse_action(body, ["m1", "m2", "m3"])


def test_good_controls() -> None:
    a = parse_action({"action": "kill", "target": "leader", "for_s": 0}, ["m1"])
    assert (a.kind, a.target, a.for_s) == ("kill", "leader", 0.0)
    assert parse_action({"action": "latency", "latency_ms": 100}, ["m1"]).latency_ms == 100


def test_pod_templates_make_valid_names() -> None:
    assert {t.reaches for t in POD_TEMPLATES} >= {"Running", "CrashLoopBackOff", "ImagePullBackOff", "OOMKilled",
                                                 "Completed"}
    pod = pod_from_template(template("memhog"), "abc123")
    assert pod["metadata"]["name"] == "memhog-abc123"
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"memory": "64Mi"}
    with pytest.raises(ControlError):
        pod_from_template(template("sleeper"), "Bad/Name")
    with pytest.raises(ControlError):
        template("nope")


def _trace(outcome: str = "committed", role: str = "follower", write: str = "Create") -> dict[str, Any]:
    return {"write": write, "user": "admin", "master": "m2", "role": role, "proposed_at": 1767225600.25,
            "outcome": outcome, "answered_s": 0.0041, "term": 3, "commit_index": 123}


def test_flow_takes_master_user_and_commit_from_the_api_servers_trace() -> None:
    flow = pod_flow(_pod("web"), [], [_trace(), _trace(write="Replace")])
    accepted, committed = flow["steps"][1], flow["steps"][2]
    assert accepted["detail"] == "master m2 (a follower, which forwarded it to the leader), user admin"
    assert committed["detail"] == "committed 4.1 ms after it was proposed; term 3, commit index 123 on m2 when " \
                                  "it answered"
    assert flow["steps"][0]["detail"] == "by admin"


def test_a_create_refused_for_want_of_quorum_stops_at_raft() -> None:
    flow = failed_create_flow("default", "web", [_trace(outcome="503 ServiceUnavailable")])
    assert flow is not None and flow["stopped_at"] == "proposed and committed"
    assert flow["steps"][-1]["state"] == "failed" and "no quorum" in flow["steps"][-1]["detail"]
    assert failed_create_flow("default", "web", []) is None


def test_traced_steps_are_timed_precisely_against_the_proposal() -> None:
    pod = _pod("web", node="node-1", phase="Running", ready=True)
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}]
    events = [_ev("Scheduled", "Successfully assigned default/web to node-1", "2026-01-01T00:00:00Z",
                  "default-scheduler"),
              _ev("Pulled", "already present", "2026-01-01T00:00:00Z"),
              _ev("Started", "Started container main", "2026-01-01T00:00:01Z")]
    kubelet = {"write": "Replace", "user": "system:node:node-1", "master": "m1", "outcome": "committed",
               "answered_s": 0.002}
    traces = [_trace(), {**kubelet, "proposed_at": 1767225600.40, "ready": False},
              {**kubelet, "proposed_at": 1767225600.90, "ready": True}]
    steps = {s["step"]: s for s in pod_flow(pod, events, traces)["steps"]}
    assert steps["proposed and committed"]["precise"] and steps["proposed and committed"]["t_s"] == 0.004
    assert steps["kubelet picked it up"]["t_s"] == 0.15 and steps["kubelet picked it up"]["precise"]
    assert steps["Ready"]["t_s"] == 0.652 and "committed through m1" in steps["Ready"]["detail"]
    # one-second stamps are put on the precise timeline: at most the next precise step's time
    assert steps["scheduler decision"]["bound"] and steps["scheduler decision"]["t_s"] == 0.15
    assert steps["image pulled"]["precise"] is False and steps["image pulled"]["t_s"] == 0.652
