"""Writes tests/unit/data/kubelet/pod_status.json: inputs and hand-written expectations, one case per call."""
# ruff: noqa: E501, E701, E702, E402
import json


def t(s):
    """2026-01-01T12:00:00Z plus `s` seconds."""
    return f"2026-01-01T12:{s // 60:02d}:{s % 60:02d}Z"

def pod(containers=None, *, init=None, policy=None, deleting=False, status=None, name="p", gates=None):
    spec = {"nodeName": "node-1", "containers": containers or [{"name": "app", "image": "nginx:1.27"}]}
    if init: spec["initContainers"] = init
    if policy: spec["restartPolicy"] = policy
    if gates: spec["readinessGates"] = [{"conditionType": g} for g in gates]
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": t(0)}
    if deleting:
        meta["deletionTimestamp"] = t(50); meta["deletionGracePeriodSeconds"] = 30
    st = {"phase": "Pending", "qosClass": "BestEffort",
          "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(0)}]}
    if status: st.update(status)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": st}

def rec(name="app", attempt=0, state="running", started=5, finished=None, code=None, reason="", ready=True, init=False, message=""):
    return {"id": f"sim://{name}-{attempt}", "name": name, "attempt": attempt, "state": state,
            "started_at": t(started) if started is not None else None, "finished_at": t(finished) if finished is not None else None,
            "exit_code": code, "reason": reason, "ready": ready if state == "running" else False, "init": init,
            "message": message, "image": "nginx:1.27", "image_id": "docker.io/library/nginx@sha256:abc"}

def facts(records=(), waiting=None, sandbox=True, terminal=None, disruption=None, pod_is_terminal=False, ip="10.128.1.2"):
    return {"records": list(records), "waiting": waiting or {}, "sandbox_ready": sandbox, "pod_ip": ip if sandbox else "",
            "start_time": t(1) if sandbox else "", "terminal": terminal, "disruption": disruption,
            "pod_is_terminal": pod_is_terminal}

NR = ["False", "ContainersNotReady", "containers with unready status: [app]"]
cases = []
def case(name, p, f, *, phase, status, ready, restarts, state, conditions, last=None, extra=None, previous=None, now=60):
    c = {"name": name, "pod": p, "facts": f, "now": t(now), "expect": {
        "phase": phase, "kubectl_status": status, "kubectl_ready": ready, "kubectl_restarts": restarts,
        "states": state, "conditions": conditions}}
    if last is not None: c["expect"]["last_states"] = last
    if previous is not None: c["previous"] = previous
    if extra: c["expect"].update(extra)
    cases.append(c)

C_ok = {"PodReadyToStartContainers": ["True"], "Initialized": ["True"], "Ready": ["True"], "ContainersReady": ["True"], "PodScheduled": ["True"]}
C_nr = {"PodReadyToStartContainers": ["True"], "Initialized": ["True"], "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]}

case("admitted, image not pulled yet: ContainerCreating",
     pod(), facts([], sandbox=False), phase="Pending", status="ContainerCreating", ready="0/1", restarts="0",
     state=[["waiting", "ContainerCreating"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True"], "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]})
case("running and ready", pod(), facts([rec()]), phase="Running", status="Running", ready="1/1", restarts="0",
     state=[["running", ""]], conditions=C_ok, extra={"podIP": "10.128.1.2", "hostIP": "127.0.0.1", "startTime": t(1), "qosClass": "BestEffort"})
case("running, readiness delay not over", pod(), facts([rec(ready=False)]), phase="Running", status="Running",
     ready="0/1", restarts="0", state=[["running", ""]], conditions=C_nr)
case("exit 0 with restartPolicy Never: Completed", pod(policy="Never"),
     facts([rec(state="exited", finished=30, code=0, reason="Completed")]), phase="Succeeded", status="Completed",
     ready="0/1", restarts="0", state=[["terminated", "Completed"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True", "PodCompleted"],
                 "Ready": ["False", "PodCompleted"], "ContainersReady": ["False", "PodCompleted"], "PodScheduled": ["True"]})
case("exit 0 with restartPolicy OnFailure: Completed", pod(policy="OnFailure"),
     facts([rec(state="exited", finished=30, code=0, reason="Completed")]), phase="Succeeded", status="Completed",
     ready="0/1", restarts="0", state=[["terminated", "Completed"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True", "PodCompleted"],
                 "Ready": ["False", "PodCompleted"], "ContainersReady": ["False", "PodCompleted"], "PodScheduled": ["True"]})
case("exit 1 with restartPolicy Never: Failed, Error", pod(policy="Never"),
     facts([rec(state="exited", finished=30, code=1, reason="Error")]), phase="Failed", status="Error",
     ready="0/1", restarts="0", state=[["terminated", "Error"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True"], "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]})
case("exit 1 with restartPolicy OnFailure, restart pending: Running phase, Error shown", pod(policy="OnFailure"),
     facts([rec(state="exited", finished=30, code=1, reason="Error")]), phase="Running", status="Error",
     ready="0/1", restarts="0", state=[["terminated", "Error"]], conditions=C_nr)
case("crash loop: waiting CrashLoopBackOff, last state terminated",
     pod(), facts([rec(attempt=1, state="exited", started=20, finished=21, code=1, reason="Error"),
                   rec(attempt=2, state="exited", started=40, finished=41, code=1, reason="Error")],
                  waiting={"app": ["CrashLoopBackOff", "back-off 20s restarting failed container=app pod=p_default(uid-p)"]}),
     phase="Running", status="CrashLoopBackOff", ready="0/1", restarts="2 (19s ago)",
     state=[["waiting", "CrashLoopBackOff"]], last=[["terminated", "Error"]], conditions=C_nr)
case("restarted after a crash: running, last state terminated", pod(),
     facts([rec(attempt=0, state="exited", started=5, finished=10, code=2, reason="Error"), rec(attempt=1, started=11)]),
     phase="Running", status="Running", ready="1/1", restarts="1 (50s ago)", state=[["running", ""]],
     last=[["terminated", "Error"]], conditions=C_ok)
case("image pull failed: ErrImagePull, pod Pending", pod(),
     facts([], waiting={"app": ["ErrImagePull", "rpc error: code = NotFound desc = failed to pull and unpack image"]}),
     phase="Pending", status="ErrImagePull", ready="0/1", restarts="0", state=[["waiting", "ErrImagePull"]], conditions=C_nr)
case("image pull in back-off: ImagePullBackOff, pod Pending", pod(),
     facts([], waiting={"app": ["ImagePullBackOff", "Back-off pulling image \"x\""]}),
     phase="Pending", status="ImagePullBackOff", ready="0/1", restarts="0", state=[["waiting", "ImagePullBackOff"]], conditions=C_nr)
case("OOMKilled with restartPolicy Never", pod(policy="Never"),
     facts([rec(state="exited", finished=30, code=137, reason="OOMKilled")]), phase="Failed", status="OOMKilled",
     ready="0/1", restarts="0", state=[["terminated", "OOMKilled"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True"], "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]},
     extra={"exit_codes": [137]})
case("OOMKilled with restartPolicy Always, restarted", pod(),
     facts([rec(attempt=0, state="exited", finished=30, code=137, reason="OOMKilled"), rec(attempt=1, started=31)]),
     phase="Running", status="Running", ready="1/1", restarts="1 (30s ago)", state=[["running", ""]],
     last=[["terminated", "OOMKilled"]], conditions=C_ok)
case("OOMKilled again, in back-off: CrashLoopBackOff", pod(),
     facts([rec(attempt=0, state="exited", finished=30, code=137, reason="OOMKilled"),
            rec(attempt=1, state="exited", started=31, finished=40, code=137, reason="OOMKilled")],
           waiting={"app": ["CrashLoopBackOff", "back-off 10s restarting failed container=app pod=p_default(uid-p)"]}),
     phase="Running", status="CrashLoopBackOff", ready="0/1", restarts="1 (20s ago)", state=[["waiting", "CrashLoopBackOff"]],
     last=[["terminated", "OOMKilled"]], conditions=C_nr)
case("being deleted, container still running: Terminating", pod(deleting=True), facts([rec()]), phase="Running",
     status="Terminating", ready="1/1", restarts="0", state=[["running", ""]], conditions=C_ok)
case("deleted and stopped after SIGTERM (exit 0): terminal phase Succeeded", pod(deleting=True),
     facts([rec(state="exited", finished=51, code=0, reason="Completed")], pod_is_terminal=True), phase="Succeeded",
     status="Completed", ready="0/1", restarts="0", state=[["terminated", "Completed"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True", "PodCompleted"],
                 "Ready": ["False", "PodCompleted"], "ContainersReady": ["False", "PodCompleted"], "PodScheduled": ["True"]})
case("deleted, killed at the end of the grace period (137): terminal phase Failed", pod(deleting=True),
     facts([rec(state="exited", finished=55, code=137, reason="Error")], pod_is_terminal=True), phase="Failed",
     status="Error", ready="0/1", restarts="0", state=[["terminated", "Error"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True"], "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]})
EV = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 60Mi. Container app was using 900Mi, request is 0, has larger consumption of memory. "
case("evicted for node memory pressure: Evicted", pod(),
     facts([rec(ready=False)], terminal=["Failed", "Evicted", EV],
           disruption={"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": EV}),
     phase="Failed", status="Evicted", ready="0/1", restarts="0", state=[["running", ""]],
     conditions={"DisruptionTarget": ["True", "TerminationByKubelet", EV], "PodReadyToStartContainers": ["False"],
                 "Initialized": ["True"], "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]},
     extra={"reason": "Evicted", "message": EV})
case("node came back: the node controller's NodeLost reason is replaced, the pod shows Terminating",
     pod(deleting=True, status={"phase": "Running", "reason": "NodeLost", "message": "Node node-1 which was running pod p is unresponsive",
                                "conditions": [{"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": t(40)},
                                               {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager", "lastProbeTime": None, "lastTransitionTime": t(45)},
                                               {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(0)}]}),
     facts([rec()]), phase="Running", status="Terminating", ready="1/1", restarts="0", state=[["running", ""]],
     conditions={"DisruptionTarget": ["True", "DeletionByTaintManager"], "PodReadyToStartContainers": ["True"], "Initialized": ["True"],
                 "Ready": ["True"], "ContainersReady": ["True"], "PodScheduled": ["True"]}, extra={"reason": None})
DONE = {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t(5), "finishedAt": t(30), "containerID": "sim://app-0"}},
        "lastState": {}, "ready": False, "restartCount": 0, "image": "nginx:1.27", "imageID": "docker.io/library/nginx@sha256:abc", "containerID": "sim://app-0", "started": False}
case("a terminal phase and finished containers are kept (kubelet restarted, containers unknown to it)",
     pod(policy="Never", status={"phase": "Succeeded", "containerStatuses": [DONE]}), facts([]), phase="Succeeded", status="Completed",
     ready="0/1", restarts="0", state=[["terminated", "Completed"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": ["True", "PodCompleted"],
                 "Ready": ["False", "PodCompleted"], "ContainersReady": ["False", "PodCompleted"], "PodScheduled": ["True"]})
RUN = {"name": "app", "state": {"running": {"startedAt": t(5)}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": t(2), "finishedAt": t(4), "containerID": "sim://app-2"}},
       "ready": True, "restartCount": 3, "image": "nginx:1.27", "imageID": "docker.io/library/nginx@sha256:abc", "containerID": "sim://app-3", "started": True}
case("kubelet restarted, a running container unknown to it: ContainerCreating with the old restart count",
     pod(status={"phase": "Running", "containerStatuses": [RUN]}), facts([]), phase="Running", status="ContainerCreating",
     ready="0/1", restarts="3 (56s ago)", state=[["waiting", "ContainerCreating"]], last=[["terminated", "Error"]], conditions=C_nr)
two = [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]
case("two containers, one exited 0 under Always, restart pending: NotReady",
     pod(two), facts([rec(), rec(name="side", state="exited", finished=30, code=0, reason="Completed")]),
     phase="Running", status="NotReady", ready="1/2", restarts="0", state=[["running", ""], ["terminated", "Completed"]],
     conditions={"PodReadyToStartContainers": ["True"], "Initialized": ["True"],
                 "Ready": ["False", "ContainersNotReady", "containers with unready status: [side]"],
                 "ContainersReady": ["False", "ContainersNotReady", "containers with unready status: [side]"], "PodScheduled": ["True"]})
INIT = [{"name": "setup", "image": "busybox"}]
NI = ["False", "ContainersNotInitialized", "containers with incomplete status: [setup]"]
case("init container running: Init:0/1, main PodInitializing", pod(init=INIT), facts([rec(name="setup", init=True, ready=False)]),
     phase="Pending", status="Init:0/1", ready="0/1", restarts="0", state=[["waiting", "PodInitializing"]],
     conditions={"PodReadyToStartContainers": ["True"], "Initialized": NI, "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]},
     extra={"init_states": [["running", ""]]})
case("init container failed under Never: Init:Error, Failed", pod(init=INIT, policy="Never"),
     facts([rec(name="setup", init=True, state="exited", finished=20, code=1, reason="Error")]),
     phase="Failed", status="Init:Error", ready="0/1", restarts="0", state=[["waiting", "PodInitializing"]],
     conditions={"PodReadyToStartContainers": ["False"], "Initialized": NI, "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]},
     extra={"init_states": [["terminated", "Error"]]})
case("init container crash loop: Init:CrashLoopBackOff, Pending", pod(init=INIT),
     facts([rec(name="setup", init=True, attempt=0, state="exited", finished=20, code=1, reason="Error"),
            rec(name="setup", init=True, attempt=1, state="exited", started=21, finished=22, code=1, reason="Error")],
           waiting={"setup": ["CrashLoopBackOff", "back-off 10s restarting failed container=setup pod=p_default(uid-p)"]}),
     phase="Pending", status="Init:CrashLoopBackOff", ready="0/1", restarts="1 (38s ago)", state=[["waiting", "PodInitializing"]],
     conditions={"PodReadyToStartContainers": ["True"], "Initialized": NI, "Ready": NR, "ContainersReady": NR, "PodScheduled": ["True"]},
     extra={"init_states": [["waiting", "CrashLoopBackOff"]]})
case("init done, main running", pod(init=INIT),
     facts([rec(name="setup", init=True, state="exited", finished=8, code=0, reason="Completed"), rec(started=9)]),
     phase="Running", status="Running", ready="1/1", restarts="0", state=[["running", ""]], conditions=C_ok,
     extra={"init_states": [["terminated", "Completed"]]})
case("could not start the process: RunContainerError, last state StartError", pod(),
     facts([rec(state="exited", started=None, finished=10, code=128, reason="StartError", message="exec: \"x\": executable file not found in $PATH")],
           waiting={"app": ["RunContainerError", "failed to start: exec: \"x\": executable file not found in $PATH"]}),
     phase="Running", status="RunContainerError", ready="0/1", restarts="0", state=[["waiting", "RunContainerError"]],
     last=[["terminated", "StartError"]], conditions=C_nr)
case("readiness gate not met: Ready False, Running", pod(gates=["example.com/lb"]), facts([rec()]),
     phase="Running", status="Running", ready="1/1", restarts="0", state=[["running", ""]],
     conditions={"PodReadyToStartContainers": ["True"], "Initialized": ["True"],
                 "Ready": ["False", "ReadinessGatesNotReady", "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."],
                 "ContainersReady": ["True"], "PodScheduled": ["True"]})
# transition times kept from the previous status while a condition's status holds
prev = {"phase": "Running", "conditions": [
    {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(2)},
    {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(2)},
    {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(6)},
    {"type": "ContainersReady", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(6)},
    {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": t(0)}]}
case("transition times: kept while the status holds, now when it flips", pod(), facts([rec(ready=False)]), previous=prev,
     phase="Running", status="Running", ready="0/1", restarts="0", state=[["running", ""]], conditions=C_nr,
     extra={"transition_times": {"PodReadyToStartContainers": t(2), "Initialized": t(2), "Ready": t(60), "ContainersReady": t(60), "PodScheduled": t(0)}})

doc = {"about": "Kubelet pod status: input (pod, what the kubelet knows, previous status, now) -> expected status fields and what kubectl prints. Times in records are RFC 3339.", "cases": cases}
from pathlib import Path

json.dump(doc, open(Path(__file__).with_name("pod_status.json"), "w"), indent=1)
print(len(cases))
