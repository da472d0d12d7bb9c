"""`hacluster get|apply|delete|describe|logs` against a real cluster: the same text kubectl prints for the
same objects (byte for byte, tables, YAML, JSON and describe), one-line errors with the server's reason,
apply interoperating with kubectl's, and failover to another master when one is down."""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import yaml

from hacluster.cluster import launcher
from tests.clients.conftest import SLEEP, KCluster, need_kubectl, pod, wait_for

pytestmark = [pytest.mark.slow, need_kubectl]


def same_as_kubectl(kc: KCluster, *args: str, attempts: int = 5) -> str:
    """`hacluster <args>` prints what `kubectl <args>` prints, byte for byte. Ages tick and kubelets renew
    leases and heartbeats between two runs, so kubectl runs before and after and the CLI must match one of
    them (a few attempts, for a busy machine)."""
    for _ in range(attempts):
        before = kc.ok(*args)
        mine = kc.hacluster(*args)
        after = kc.ok(*args)
        assert mine.returncode == 0, mine.stderr
        if mine.stdout in (before, after):
            return mine.stdout
    diff = "\n".join(difflib.unified_diff(after.splitlines(), mine.stdout.splitlines(), "kubectl", "hacluster",
                                          lineterm=""))
    raise AssertionError(f"hacluster {' '.join(args)} differs from kubectl:\n{diff}")


@pytest.fixture(scope="module")
def objects(kcluster: KCluster) -> KCluster:
    kc = kcluster
    kc.apply(pod("cli-run", command=["sh", "-c", "echo one; echo two; sleep 600"]))
    # Bound to a node without a kubelet: nothing changes it (no scheduling retries, no status), so
    # describe and -o yaml print the same text each time.
    complex_pod = pod("cli-pending", command=SLEEP, nodeName="ghost-node",
                      tolerations=[{"operator": "Exists"}, {"key": "k", "operator": "Equal", "value": "v",
                                                            "effect": "NoExecute", "tolerationSeconds": 5}],
                      volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                               {"name": "etc", "hostPath": {"path": "/etc"}}])
    complex_pod["metadata"]["annotations"] = {"long": "a" * 200, "multi": "one\ntwo\n", "short": "x"}
    complex_pod["spec"]["containers"][0].update({
        "args": ["--flag", "multi\nline"], "ports": [{"containerPort": 80, "name": "http"},
                                                     {"containerPort": 53, "protocol": "UDP"}],
        "env": [{"name": "PLAIN", "value": "x"}, {"name": "POD", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10},
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                         {"name": "etc", "mountPath": "/etc/x", "readOnly": True, "subPath": "x"}]})
    complex_pod["spec"]["initContainers"] = [{"name": "init", "image": "busybox", "command": ["true"]}]
    kc.apply(complex_pod)
    kc.apply(pod("cli-done", command=["sh", "-c", "exit 0"], restartPolicy="Never"))
    wait_for(lambda: kc.get_json("pod", "cli-run")["status"].get("phase") == "Running", 30, "cli-run running")
    wait_for(lambda: kc.get_json("pod", "cli-done")["status"].get("phase") == "Succeeded", 30, "cli-done done")
    return kc


def test_get_prints_what_kubectl_prints(objects: KCluster):
    kc = objects
    for args in (("get", "pods"), ("get", "pods", "-o", "wide"), ("get", "pods", "-A", "--show-labels"),
                 ("get", "nodes", "-o", "wide"), ("get", "ns"), ("get", "pods", "-o", "name"),
                 ("get", "pod", "cli-pending", "-o", "yaml"), ("get", "pod", "cli-pending", "-o", "json"),
                 ("get", "po/cli-run", "--no-headers")):
        same_as_kubectl(kc, *args)
    events = kc.hacluster("get", "events")
    assert events.returncode == 0 and events.stdout.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON",
                                                                                "OBJECT", "MESSAGE"]
    lst = yaml.safe_load(kc.hacluster("get", "pods", "-o", "yaml").stdout)
    assert lst["kind"] == "List" and {"cli-run", "cli-pending"} <= {i["metadata"]["name"] for i in lst["items"]}
    assert lst["items"] == yaml.safe_load(kc.ok("get", "pods", "-o", "yaml"))["items"]


def test_describe_prints_what_kubectl_prints(objects: KCluster):
    kc = objects
    node = kc.get_json("pod", "cli-run")["spec"]["nodeName"]
    for args in (("describe", "pod", "cli-run"), ("describe", "pod", "cli-pending"), ("describe", "pod", "cli-done"),
                 ("describe", "node", node), ("describe", "ns", "default")):
        same_as_kubectl(kc, *args)


def test_errors_are_one_line_with_the_servers_reason(objects: KCluster):
    kc = objects
    r = kc.hacluster("get", "pod", "nope")
    assert r.returncode == 1 and r.stderr == 'Error from server (NotFound): pods "nope" not found\n'
    r = kc.hacluster("describe", "pod", "nope")
    assert r.returncode == 1 and r.stderr == 'Error from server (NotFound): pods "nope" not found\n'
    r = kc.hacluster("delete", "pod", "nope")
    assert r.returncode == 1 and r.stderr == 'Error from server (NotFound): pods "nope" not found\n'
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": []}}
    r = kc.hacluster("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert r.returncode == 1 and r.stderr == 'The Pod "bad" is invalid: spec.containers: Required value\n'
    r = kc.hacluster("get", "widgets")
    assert r.returncode == 1 and r.stderr == 'error: the server doesn\'t have a resource type "widgets"\n'
    r = kc.hacluster("get", "pods", "--state-dir", "/nonexistent")
    assert r.returncode == 1 and r.stderr.startswith("error: cannot read the kubeconfig /nonexistent/kubeconfig")
    assert "Traceback" not in r.stderr
    r = kc.hacluster("get", "pods", "-l", "test=none")
    assert r.returncode == 0 and r.stderr == "No resources found in default namespace.\n"


def test_apply_created_configured_unchanged_and_kubectl_agrees(objects: KCluster):
    kc = objects
    manifest = pod("cli-apply", command=SLEEP, nodeSelector={"disk": "none"})
    text = yaml.safe_dump(manifest)
    assert kc.hacluster("apply", "-f", "-", input=text).stdout == "pod/cli-apply created\n"
    assert kc.hacluster("apply", "-f", "-", input=text).stdout == "pod/cli-apply unchanged\n"
    assert kc.ok("apply", "-f", "-", input=text) == "pod/cli-apply unchanged\n", "kubectl reads our annotation"
    changed = yaml.safe_load(text)
    changed["metadata"]["labels"]["tier"] = "back"
    assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(changed)) == "pod/cli-apply configured\n"
    assert kc.hacluster("apply", "-f", "-", input=yaml.safe_dump(changed)).stdout == "pod/cli-apply unchanged\n"
    assert kc.hacluster("apply", "-f", "-", input=text).stdout == "pod/cli-apply configured\n"
    assert kc.get_json("pod", "cli-apply")["metadata"]["labels"] == {"test": "cli-apply"}, "tier removed"
    assert kc.ok("apply", "-f", "-", input=text) == "pod/cli-apply unchanged\n"


def test_apply_directory_and_multi_document(objects: KCluster, tmp_path):
    kc = objects
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all([pod("cli-dir-a", command=SLEEP),
                                                         pod("cli-dir-b", command=SLEEP)]))
    (tmp_path / "b.json").write_text(json.dumps(pod("cli-dir-c", command=SLEEP)))
    (tmp_path / "notes.txt").write_text("not a manifest")
    r = kc.hacluster("apply", "-f", str(tmp_path))
    assert r.returncode == 0 and r.stdout == "pod/cli-dir-a created\npod/cli-dir-b created\npod/cli-dir-c created\n"
    r = kc.hacluster("delete", "-f", str(tmp_path / "a.yaml"))
    assert r.returncode == 0 and r.stdout == 'pod "cli-dir-a" deleted\npod "cli-dir-b" deleted\n'
    assert kc.kubectl("get", "pod", "cli-dir-a").returncode == 1
    assert kc.kubectl("get", "pod", "cli-dir-b").returncode == 1


def test_delete_waits_and_force(objects: KCluster):
    kc = objects
    kc.apply(pod("cli-del", command=SLEEP))
    wait_for(lambda: kc.get_json("pod", "cli-del")["status"].get("phase") == "Running", 30, "cli-del running")
    r = kc.hacluster("delete", "pod", "cli-del")
    assert r.returncode == 0 and r.stdout == 'pod "cli-del" deleted\n'
    assert kc.kubectl("get", "pod", "cli-del").returncode == 1, "delete returned only once the pod was gone"
    kc.apply(pod("cli-orphan", command=SLEEP, nodeName="ghost-node"))
    r = kc.hacluster("delete", "pod/cli-orphan", "--timeout", "1")
    assert r.returncode == 1 and r.stderr.strip().endswith("timed out waiting for the condition on pods/cli-orphan")
    r = kc.hacluster("delete", "pod", "cli-orphan", "--grace-period=0", "--force")
    assert r.returncode == 0 and r.stdout == 'pod "cli-orphan" deleted\n' and "Immediate deletion" in r.stderr
    assert kc.kubectl("get", "pod", "cli-orphan").returncode == 1


def test_logs(objects: KCluster):
    kc = objects
    wait_for(lambda: kc.hacluster("logs", "cli-run").stdout == "one\ntwo\n", 30, "cli-run's log")
    assert kc.hacluster("logs", "pod/cli-run", "--tail", "1").stdout == "two\n"
    assert kc.hacluster("logs", "cli-run").stdout == kc.ok("logs", "cli-run")
    kc.apply(pod("cli-unplaced", command=SLEEP, nodeSelector={"disk": "none"}))
    r = kc.hacluster("logs", "cli-unplaced")
    assert r.returncode == 1
    assert r.stderr == "Error from server (BadRequest): pod cli-unplaced does not have a host assigned\n"


def _watch_lines(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    # Ctrl-C must reach the command even when the test run itself was started in the background by a
    # shell without job control, which makes children inherit an ignored SIGINT.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, lines


def test_get_watch(objects: KCluster):
    kc = objects
    # A pod that stays Pending makes the initial list print something: once its row is out, the watch
    # resumes from that list's resourceVersion, so anything created afterwards must appear.
    placeholder = pod("cli-w-pending", nodeSelector={"disk": "none"})
    placeholder["metadata"]["labels"] = {"test": "cli-w"}
    kc.apply(placeholder)
    proc, lines = _watch_lines([sys.executable, "-m", "hacluster.cli.main", "get", "pods", "-w", "-l", "test=cli-w"],
                               kc.env())
    try:
        wait_for(lambda: any(x.startswith("cli-w-pending") for x in lines), 30, "the list printed by get -w")
        kc.apply(pod("cli-w", command=SLEEP))
        wait_for(lambda: any(re.match(r"cli-w\s+1/1\s+Running\s+0\s+\d+s$", x.rstrip()) for x in lines), 30,
                 "a Running row from hacluster get -w")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
    assert re.match(r"NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$", lines[0].rstrip())
    assert any(re.match(r"cli-w\s+0/1\s+(Pending|ContainerCreating)\s+0\s+", x) for x in lines)


def test_failover_to_another_master_and_pinned_master(objects: KCluster):
    """The kubeconfig's default server is m1; with m1 down the CLI answers from m2 or m3, while
    `--master m1` (like kubectl --context <cluster>-m1) shows m1 is unreachable, in one line."""
    kc = objects
    pid = launcher.read_pid(kc.sd, "m1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    try:
        r = kc.hacluster("get", "pods", "-l", "test=cli-run")
        assert r.returncode == 0 and "cli-run" in r.stdout, r.stderr
        r = kc.hacluster("apply", "-f", "-", input=yaml.safe_dump(pod("cli-failover", command=SLEEP)))
        assert r.returncode == 0 and r.stdout == "pod/cli-failover created\n", r.stderr
        r = kc.hacluster("get", "pods", "--master", "m1")
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
        assert r.stderr.startswith("error: no master answered: ") and "connection refused" in r.stderr
        k = kc.kubectl("get", "pods", master="m2")
        assert k.returncode == 0 and "cli-failover" in k.stdout
    finally:
        launcher.start_master(kc.h, "m1")
        launcher.wait_ready(kc.h, 30)
