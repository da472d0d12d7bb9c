"""Real kubectl (Debian's 1.20, and a 1.32 from /usr/bin where present) against a real 3-master cluster with
the kubeconfig `hacluster up` writes: every command of issue 8, with validation on and off, and the printed
text compared with what Kubernetes prints for the same objects."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest
import yaml

from tests.clients.conftest import AGE, KUBECTL, SLEEP, KCluster, find_modern_kubectl, need_kubectl, pod, wait_for

pytestmark = [pytest.mark.slow, need_kubectl]


def rows(text: str) -> list[list[str]]:
    """A kubectl table as lists of cells (cells are separated by 3+ spaces; single spaces stay inside)."""
    return [re.split(r" {2,}", line.rstrip()) for line in text.strip().splitlines()]


def phase(kc: KCluster, name: str) -> str:
    return str(kc.get_json("pod", name).get("status", {}).get("phase", ""))


def test_version_and_discovery(kcluster: KCluster):
    out = kcluster.ok("version")
    assert re.search(r'Server Version: version.Info\{Major:"1", Minor:"30", GitVersion:"v1.30.0-hacluster"', out)
    res = kcluster.ok("api-resources")
    assert re.search(r"^pods\s+po\s+v1\s+true\s+Pod$", res, re.M)
    assert re.search(r"^replicasets\s+rs\s+apps/v1\s+true\s+ReplicaSet$", res, re.M)


def test_tables_print_what_kubernetes_prints(kcluster: KCluster):
    """The same objects in Kubernetes print these cells (printPod / printNode / printEvent)."""
    kc = kcluster
    kc.apply(pod("runner", command=SLEEP))
    kc.apply(pod("done", command=["sh", "-c", "exit 0"], restartPolicy="Never"))
    kc.apply(pod("fails", command=["sh", "-c", "exit 3"], restartPolicy="Never"))
    kc.apply(pod("unplaced", command=SLEEP, nodeSelector={"disk": "none"}))
    for name, want in (("runner", "Running"), ("done", "Succeeded"), ("fails", "Failed")):
        wait_for(lambda n=name, w=want: phase(kc, n) == w, 30, f"{name} {want}")
    table = {r[0]: r for r in rows(kc.ok("get", "pods"))}
    assert table["NAME"] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table["runner"][1:4] == ["1/1", "Running", "0"]
    assert table["done"][1:4] == ["0/1", "Completed", "0"]
    assert table["fails"][1:4] == ["0/1", "Error", "0"]
    assert table["unplaced"][1:4] == ["0/1", "Pending", "0"]
    assert all(re.fullmatch(AGE, r[4]) for r in table.values() if r[0] != "NAME")

    wide = {r[0]: r for r in rows(kc.ok("get", "pods", "-o", "wide"))}
    assert wide["NAME"] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                            "READINESS GATES"]
    assert re.fullmatch(r"10\.\d+\.\d+\.\d+", wide["runner"][5]) and wide["runner"][6] in ("node-1", "node-2")
    assert wide["unplaced"][5:] == ["<none>", "<none>", "<none>", "<none>"]

    nodes = rows(kc.ok("get", "nodes", "-o", "wide"))
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                        "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert [r[:3] for r in nodes[1:]] == [["node-1", "Ready", "<none>"], ["node-2", "Ready", "<none>"]]
    assert nodes[1][4] == "v1.30.0-hacluster" and nodes[1][9] == "process://0.1.0"
    assert kc.ok("cordon", "node-2").strip() == "node/node-2 cordoned"
    assert rows(kc.ok("get", "node", "node-2"))[1][1] == "Ready,SchedulingDisabled"
    assert kc.ok("uncordon", "node-2").strip() == "node/node-2 uncordoned"

    events = rows(kc.ok("get", "events"))
    assert events[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    scheduled = [r for r in events if r[3] == "pod/runner" and r[2] == "Scheduled"]
    assert scheduled and scheduled[0][1] == "Normal"
    assert re.fullmatch(r"Successfully assigned default/runner to node-[12]", scheduled[0][4])
    assert any(r[3] == "pod/unplaced" and r[1:3] == ["Warning", "FailedScheduling"] for r in events)


def test_outputs_selectors_and_namespaces(kcluster: KCluster):
    kc = kcluster
    kc.apply(pod("sel-a", command=SLEEP, nodeSelector={"disk": "none"}))
    kc.ok("label", "pod", "sel-a", "tier=back")
    obj = yaml.safe_load(kc.ok("get", "pod", "sel-a", "-o", "yaml"))
    assert obj["kind"] == "Pod" and obj["metadata"]["labels"] == {"test": "sel-a", "tier": "back"}
    lst = kc.get_json("pods", "-l", "tier=back")
    assert [i["metadata"]["name"] for i in lst["items"]] == ["sel-a"] and lst["kind"] == "List"
    names = kc.ok("get", "pods", "--field-selector", "status.phase=Pending", "-o", "name").split()
    assert "pod/sel-a" in names and "pod/runner" not in names
    everywhere = rows(kc.ok("get", "pods", "-A", "-l", "tier=back"))
    assert everywhere[0][:2] == ["NAMESPACE", "NAME"] and everywhere[1][:2] == ["default", "sel-a"]
    labels = rows(kc.ok("get", "pod", "sel-a", "--show-labels"))
    assert labels[0][-1] == "LABELS" and labels[1][-1] == "test=sel-a,tier=back"
    kc.ok("create", "namespace", "team-a")
    assert rows(kc.ok("get", "ns", "team-a"))[1][:2] == ["team-a", "Active"]
    kc.apply(pod("elsewhere", command=SLEEP), "-n", "team-a")
    assert rows(kc.ok("get", "pods", "-n", "team-a"))[1][0] == "elsewhere"
    missing = kc.kubectl("get", "pods", "-l", "tier=none")
    assert missing.returncode == 0 and missing.stderr.strip() == "No resources found in default namespace."


def test_create_apply_replace(kcluster: KCluster):
    kc = kcluster
    manifest = pod("applied", command=SLEEP, nodeSelector={"disk": "none"})
    manifest["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m", "memory": "64Mi"}}
    text = yaml.safe_dump(manifest)
    assert kc.ok("apply", "-f", "-", input=text).strip() == "pod/applied created"
    assert kc.ok("apply", "-f", "-", input=text).strip() == "pod/applied unchanged"
    changed = yaml.safe_load(text)
    changed["metadata"]["labels"]["tier"] = "back"
    assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(changed)).strip() == "pod/applied configured"
    assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(changed)).strip() == "pod/applied unchanged"
    assert kc.ok("apply", "-f", "-", input=text).strip() == "pod/applied configured"
    assert kc.get_json("pod", "applied")["metadata"]["labels"] == {"test": "applied"}, "tier removed again"
    # Kubernetes stores "0.5" as "500m", so kubectl sends it again on every apply (kubernetes/kubernetes#66450).
    half = yaml.safe_load(text)
    half["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "0.5"
    for _ in range(2):
        assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(half)).strip() == "pod/applied configured"
    assert kc.get_json("pod", "applied")["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"

    created = kc.kubectl("create", "-f", "-", input=yaml.safe_dump(pod("created", command=SLEEP)))
    assert created.returncode == 0 and created.stdout.strip() == "pod/created created"
    again = kc.kubectl("create", "-f", "-", input=yaml.safe_dump(pod("created", command=SLEEP)))
    assert again.returncode == 1
    assert again.stderr.strip() == ('Error from server (AlreadyExists): error when creating "STDIN": '
                                    'pods "created" already exists')

    live = kc.ok("get", "pod", "created", "-o", "yaml")
    newer = live.replace("image: busybox", "image: busybox:1.36")
    assert kc.ok("replace", "-f", "-", input=newer).strip() == "pod/created replaced"
    stale = kc.kubectl("replace", "-f", "-", input=newer)
    assert stale.returncode == 1 and stale.stderr.strip() == (
        'Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on pods '
        '"created": the object has been modified; please apply your changes to the latest version and try again')


@pytest.mark.parametrize("validate", ["true", "false"])
def test_validation_on_and_off(kcluster: KCluster, validate: str):
    """With validation on, kubectl first downloads /openapi/v2 (protobuf); both ways the server validates."""
    kc = kcluster
    name = f"valid-{validate}"
    out = kc.kubectl("create", f"--validate={validate}", "-f", "-",
                     input=yaml.safe_dump(pod(name, command=SLEEP, nodeSelector={"disk": "none"})))
    assert out.returncode == 0 and out.stdout.strip() == f"pod/{name} created", out.stderr
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": []}}
    r = kc.kubectl("create", f"--validate={validate}", "-f", "-", input=yaml.safe_dump(bad))
    assert r.returncode == 1 and r.stderr.strip() == 'The Pod "bad" is invalid: spec.containers: Required value'
    r = kc.kubectl("apply", f"--validate={validate}", "-f", "-", input=yaml.safe_dump(bad))
    assert r.returncode == 1 and r.stderr.strip() == 'The Pod "bad" is invalid: spec.containers: Required value'


def test_delete_waits_until_gone(kcluster: KCluster):
    kc = kcluster
    kc.apply(pod("del-unbound", command=SLEEP, nodeSelector={"disk": "none"}))
    assert kc.ok("delete", "pod", "del-unbound").strip() == 'pod "del-unbound" deleted'
    gone = kc.kubectl("get", "pod", "del-unbound")
    assert gone.returncode == 1 and gone.stderr.strip() == 'Error from server (NotFound): pods "del-unbound" not found'

    kc.apply(pod("del-bound", command=SLEEP))
    wait_for(lambda: phase(kc, "del-bound") == "Running", 30, "del-bound running")
    t0 = time.monotonic()
    assert kc.ok("delete", "pod", "del-bound").strip() == 'pod "del-bound" deleted'
    assert time.monotonic() - t0 < 30
    assert kc.kubectl("get", "pod", "del-bound").returncode == 1, "the kubelet confirmed, the pod is gone"

    # Bound to a node without a kubelet: the graceful delete waits for a confirmation that never comes.
    kc.apply(pod("del-orphan", command=SLEEP, nodeName="ghost-node"))
    r = kc.kubectl("delete", "pod", "del-orphan", "--wait=false")
    assert r.returncode == 0
    assert rows(kc.ok("get", "pod", "del-orphan"))[1][2] == "Terminating"
    r = kc.kubectl("delete", "pod", "del-orphan", "--grace-period=0", "--force")
    assert r.returncode == 0 and 'pod "del-orphan" force deleted' in r.stdout
    assert kc.kubectl("get", "pod", "del-orphan").returncode == 1

    nope = kc.kubectl("delete", "pod", "nope")
    assert nope.returncode == 1 and nope.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'


def test_describe_and_logs(kcluster: KCluster):
    kc = kcluster
    kc.apply(pod("talker", command=["sh", "-c", "echo hello from hacluster; echo line two; sleep 600"]))
    wait_for(lambda: "hello from hacluster" in kc.kubectl("logs", "talker").stdout, 30, "talker's log")
    assert kc.ok("logs", "talker") == "hello from hacluster\nline two\n"
    assert kc.ok("logs", "talker", "--tail=1") == "line two\n"
    out = kc.ok("describe", "pod", "talker")
    assert re.search(r"^Name:\s+talker$", out, re.M) and re.search(r"^Status:\s+Running$", out, re.M)
    assert re.search(r"^Node:\s+node-[12]/127\.0\.0\.1$", out, re.M)
    assert re.search(r"^\s+Command:\n\s+sh\n\s+-c\n", out, re.M)
    assert re.search(r"^  Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default/talker",
                     out, re.M), out
    assert re.search(r"^  Normal\s+Started\s+\S+\s+kubelet\s+Started container main$", out, re.M), out
    node = kc.get_json("pod", "talker")["spec"]["nodeName"]
    nd = kc.ok("describe", "node", node)
    assert re.search(rf"^Name:\s+{node}$", nd, re.M) and "Non-terminated Pods:" in nd
    assert re.search(r"^  default\s+talker\s+0 \(0%\)", nd, re.M)
    missing = kc.kubectl("describe", "pod", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'


def test_get_watch_prints_table_rows(kcluster: KCluster):
    kc = kcluster
    proc = subprocess.Popen([kc.kubectl_path, "get", "pods", "-w", "-l", "test=watched"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kc.env())
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        time.sleep(1.0)  # kubectl has listed (nothing) and is watching
        kc.apply(pod("watched", command=SLEEP))
        wait_for(lambda: any(re.match(r"watched\s+1/1\s+Running\s+0\s+", line) for line in lines), 30,
                 "a Running row in kubectl get -w")
    finally:
        proc.kill()
        proc.wait(5)
    assert re.match(r"NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE", lines[0])
    assert sum(1 for line in lines if line.startswith("NAME")) == 1
    assert any(re.match(r"watched\s+0/1\s+(Pending|ContainerCreating)\s+0\s+", line) for line in lines), lines


def test_replicasets_get_and_scale(kcluster: KCluster):
    kc = kcluster
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "frontend", "labels": {"app": "fe"}},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fe"}},
                   "template": {"metadata": {"labels": {"app": "fe"}},
                                "spec": {"containers": [{"name": "php", "image": "busybox", "command": SLEEP}]}}}}
    assert kc.apply(rs).strip() == "replicaset.apps/frontend created"
    wait_for(lambda: rows(kc.ok("get", "rs", "frontend"))[1][1:4] == ["2", "2", "2"], 30, "2 ready replicas")
    table = rows(kc.ok("get", "rs", "-o", "wide"))
    assert table[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert table[1][0] == "frontend" and table[1][5:] == ["php", "busybox", "app=fe"]
    assert kc.ok("scale", "rs", "frontend", "--replicas=3").strip() == "replicaset.apps/frontend scaled"
    wait_for(lambda: rows(kc.ok("get", "rs", "frontend"))[1][1:4] == ["3", "3", "3"], 30, "3 ready replicas")
    assert len(kc.get_json("pods", "-l", "app=fe")["items"]) == 3
    assert kc.apply(rs).strip() == "replicaset.apps/frontend configured", "apply takes replicas back to 2"
    assert kc.apply(rs).strip() == "replicaset.apps/frontend unchanged"
    desc = kc.ok("describe", "rs", "frontend")
    assert re.search(r"^Replicas:\s+\d current / 2 desired$", desc, re.M)
    assert re.search(r"SuccessfulCreate\s+\S+\s+replicaset-controller\s+Created pod: frontend-", desc)


MODERN = find_modern_kubectl(KUBECTL[0]) if KUBECTL else None


@pytest.mark.skipif(MODERN is None, reason="no kubectl 1.24+ on /usr/bin besides the Debian one")
def test_modern_kubectl(kcluster: KCluster):
    """kubectl 1.32 (where installed) asks for aggregated discovery first (a plain answer makes it fall back),
    sends fieldValidation=Strict and protobuf Accept headers, and waits for deletions by GET until 404."""
    assert MODERN is not None
    kc, k = kcluster, MODERN[0]

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return kc.kubectl(*args, input=input, binary=k)

    assert "Server Version: v1.30.0-hacluster" in run("version").stdout
    text = yaml.safe_dump(pod("modern", command=SLEEP, nodeSelector={"disk": "none"}))
    assert run("apply", "-f", "-", input=text).stdout.strip() == "pod/modern created"
    assert run("apply", "-f", "-", input=text).stdout.strip() == "pod/modern unchanged"
    assert rows(run("get", "pod", "modern").stdout)[1][:3] == ["modern", "0/1", "Pending"]
    assert re.search(r"^Name:\s+modern$", run("describe", "pod", "modern").stdout, re.M)
    bad = run("create", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": []}}))
    assert bad.returncode == 1 and 'The Pod "bad" is invalid: spec.containers: Required value' in bad.stderr
    r = run("delete", "pod", "modern")
    assert r.returncode == 0 and r.stdout.startswith('pod "modern" deleted')
    nope = run("get", "pod", "modern")
    assert nope.returncode == 1 and 'Error from server (NotFound): pods "modern" not found' in nope.stderr
