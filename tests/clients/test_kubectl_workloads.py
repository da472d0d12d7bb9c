"""Real kubectl (Debian's 1.20) against a real 3-master cluster with two process-runtime kubelets: every
workload command of issue 18 — Deployments (create, apply, get, rollout status|history|undo|restart|
pause|resume, scale, set image, describe), Jobs (create, get, wait --for=condition=complete, a failing
one), `kubectl top nodes|pods` with the kubelets' real numbers, and `kubectl auth can-i` — plus the
official Python client reading a Deployment's status and its scale subresource."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.clients.conftest import KUBECTL, KCluster, find_modern_kubectl, need_kubectl, wait_for

pytestmark = [pytest.mark.slow, need_kubectl]


def rows(text: str) -> list[list[str]]:
    return [re.split(r" {2,}", line.rstrip()) for line in text.strip().splitlines()]


def images_of_sets(kc: KCluster, app: str) -> dict[str, tuple[int, str, str]]:
    """ReplicaSets of a Deployment: name -> (spec.replicas, image, revision)."""
    out = {}
    for rs in kc.get_json("rs", "-l", f"app={app}")["items"]:
        out[rs["metadata"]["name"]] = (rs["spec"]["replicas"], rs["spec"]["template"]["spec"]["containers"][0]["image"],
                                       rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    return out


def test_deployment_lifecycle_with_kubectl(kcluster: KCluster):
    kc = kcluster
    assert kc.ok("create", "deployment", "web", "--image=nginx", "--replicas=3").strip() == \
        "deployment.apps/web created"
    out = kc.ok("rollout", "status", "deployment/web", "--timeout=60s")
    assert out.strip().endswith('deployment "web" successfully rolled out')
    table = rows(kc.ok("get", "deploy", "web"))
    assert table[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1][:4] == ["web", "3/3", "3", "3"]
    assert kc.ok("set", "image", "deployment/web", "nginx=nginx:1.27").strip() == "deployment.apps/web image updated"
    kc.ok("rollout", "status", "deployment/web", "--timeout=60s")
    sets = images_of_sets(kc, "web")
    assert sorted(sets.values()) == [(0, "nginx", "1"), (3, "nginx:1.27", "2")]
    history = kc.ok("rollout", "history", "deployment/web")
    assert [r[0] for r in rows(history.split("\n", 1)[1])[1:]] == ["1", "2"]

    assert kc.ok("rollout", "undo", "deployment/web").strip() == "deployment.apps/web rolled back"
    kc.ok("rollout", "status", "deployment/web", "--timeout=60s")
    sets = images_of_sets(kc, "web")
    assert sorted(sets.values()) == [(0, "nginx:1.27", "2"), (3, "nginx", "3")]

    kc.ok("scale", "deployment/web", "--replicas=5")
    kc.ok("rollout", "status", "deployment/web", "--timeout=60s")
    assert kc.ok("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}") == "5"
    assert kc.ok("get", "deployment", "web", "-o", "jsonpath={.status.observedGeneration}") == \
        kc.ok("get", "deployment", "web", "-o", "jsonpath={.metadata.generation}")

    assert kc.ok("rollout", "pause", "deployment/web").strip() == "deployment.apps/web paused"
    kc.ok("set", "image", "deployment/web", "nginx=nginx:1.28")
    assert "nginx:1.28" not in {img for _, img, _ in images_of_sets(kc, "web").values()}
    kc.ok("rollout", "resume", "deployment/web")
    kc.ok("rollout", "status", "deployment/web", "--timeout=60s")
    assert (5, "nginx:1.28", "4") in images_of_sets(kc, "web").values()

    assert kc.ok("rollout", "restart", "deployment/web").strip() == "deployment.apps/web restarted"
    kc.ok("rollout", "status", "deployment/web", "--timeout=60s")
    assert len([s for s in images_of_sets(kc, "web").values() if s[0] == 5]) == 1

    described = kc.ok("describe", "deployment", "web")
    assert re.search(r"^Replicas:\s+5 desired \| 5 updated \| 5 total \| 5 available \| 0 unavailable$", described,
                     re.M), described
    assert re.search(r"^StrategyType:\s+RollingUpdate$", described, re.M)
    assert re.search(r"^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$", described, re.M)
    assert re.search(r"Progressing\s+True\s+NewReplicaSetAvailable", described)
    assert "ScalingReplicaSet" in described and "deployment-controller" in described

    kc.ok("delete", "deployment", "web")
    wait_for(lambda: not kc.get_json("rs", "-l", "app=web")["items"] and not kc.get_json("pods", "-l", "app=web")[
        "items"], 60, "replica sets and pods of the deleted deployment collected")


def test_apply_a_recreate_deployment_and_its_update(kcluster: KCluster):
    kc = kcluster
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db"},
         "spec": {"replicas": 2, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": "db"}},
                  "template": {"metadata": {"labels": {"app": "db"}},
                               "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}}
    assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(d)).strip() == "deployment.apps/db created"
    kc.ok("rollout", "status", "deployment/db", "--timeout=60s")
    assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(d)).strip() == "deployment.apps/db unchanged"
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:17"
    assert kc.ok("apply", "-f", "-", input=yaml.safe_dump(d)).strip() == "deployment.apps/db configured"
    kc.ok("rollout", "status", "deployment/db", "--timeout=60s")
    assert sorted(s[:2] for s in images_of_sets(kc, "db").values()) == [(0, "postgres:16"), (2, "postgres:17")]
    bad = kc.kubectl("create", "deployment", "bad", "--image=nginx", "--replicas=-1")
    assert bad.returncode != 0


def test_rollout_status_reports_a_progress_deadline_exceeded(kcluster: KCluster):
    kc = kcluster
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
         "spec": {"replicas": 2, "progressDeadlineSeconds": 3, "selector": {"matchLabels": {"app": "stuck"}},
                  "template": {"metadata": {"labels": {"app": "stuck"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx:does-not-exist"}]}}}}
    kc.apply(d)
    r = kc.kubectl("rollout", "status", "deployment/stuck", "--timeout=60s")
    assert r.returncode == 1 and 'deployment "stuck" exceeded its progress deadline' in r.stderr, r.stderr
    cond = {c["type"]: c for c in kc.get_json("deployment", "stuck")["status"]["conditions"]}
    assert cond["Progressing"]["status"] == "False" and cond["Progressing"]["reason"] == "ProgressDeadlineExceeded"
    assert cond["Available"]["status"] == "False"
    kc.ok("delete", "deployment", "stuck")


def test_jobs_complete_or_fail_as_their_pods_do(kcluster: KCluster):
    kc = kcluster
    assert kc.ok("create", "job", "once", "--image=busybox", "--", "sh", "-c", "exit 0").strip() == \
        "job.batch/once created"
    assert kc.ok("wait", "--for=condition=complete", "job/once", "--timeout=60s").strip() == \
        "job.batch/once condition met"
    table = rows(kc.ok("get", "jobs", "once"))
    assert table[0][:3] == ["NAME", "STATUS", "COMPLETIONS"] and table[1][:3] == ["once", "Complete", "1/1"]
    (p,) = kc.get_json("pods", "-l", "job-name=once")["items"]
    assert p["status"]["phase"] == "Succeeded"
    assert rows(kc.ok("get", "pods", "-l", "job-name=once"))[1][2] == "Completed"

    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "flaky"},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]}}}}
    kc.apply(job)
    kc.ok("wait", "--for=condition=failed", "job/flaky", "--timeout=60s")
    failed = kc.get_json("job", "flaky")
    assert [c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed"] == ["BackoffLimitExceeded"]
    assert rows(kc.ok("get", "pods", "-l", "job-name=flaky"))[1][2] == "Error"


def test_top_and_auth_can_i(kcluster: KCluster):
    kc = kcluster
    # One process that spins: its CPU shows (the machine is shared, so only a lower bound is asserted).
    kc.ok("create", "deployment", "busy", "--image=python", "--replicas=1", "--", "python3", "-c",
          "while True: pass")
    kc.ok("rollout", "status", "deployment/busy", "--timeout=60s")

    def busy_pods():
        out = kc.kubectl("top", "pods", "-l", "app=busy")
        if out.returncode != 0:
            return None
        cells = rows(out.stdout)[1:]
        return cells if len(cells) == 1 and int(cells[0][1].rstrip("m")) >= 50 else None
    cells = wait_for(busy_pods, 30, "the busy pod using at least 50m of CPU")
    assert all(re.fullmatch(r"\d+Mi", c[2]) for c in cells)
    nodes = rows(kc.ok("top", "nodes"))
    assert nodes[0] == ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    assert sorted(r[0] for r in nodes[1:]) == ["node-1", "node-2"]
    kc.ok("delete", "deployment", "busy")

    assert kc.ok("auth", "can-i", "create", "pods").strip() == "yes"
    assert kc.ok("auth", "can-i", "delete", "deployments.apps", "-n", "kube-system").strip() == "yes"
    viewer = next(u for u in yaml.safe_load((kc.sd / "cluster.yaml").read_text())["users"] if u["name"] == "viewer")
    no = kc.kubectl("auth", "can-i", "create", "pods", f"--token={viewer['token']}")
    assert no.returncode == 1 and no.stdout.strip() == "no"
    assert kc.ok("auth", "can-i", "list", "jobs.batch", f"--token={viewer['token']}").strip() == "yes"


def test_python_client_reads_deployments_and_scales_them(kcluster: KCluster):
    kubernetes = pytest.importorskip("kubernetes")
    kc = kcluster
    kc.ok("create", "deployment", "py", "--image=nginx", "--replicas=1")
    kc.ok("rollout", "status", "deployment/py", "--timeout=60s")
    client = kubernetes.config.new_client_from_config(config_file=str(kc.kubeconfig))
    apps = kubernetes.client.AppsV1Api(client)
    d = apps.read_namespaced_deployment("py", "default")
    assert d.status.available_replicas == 1 and d.spec.strategy.type == "RollingUpdate"
    apps.patch_namespaced_deployment_scale("py", "default", {"spec": {"replicas": 2}})
    wait_for(lambda: (apps.read_namespaced_deployment_status("py", "default").status.ready_replicas or 0) == 2, 30,
             "two ready replicas")
    auth = kubernetes.client.AuthorizationV1Api(client)
    review = auth.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "create", "resource": "deployments", "group": "apps"}}})
    assert review.status.allowed is True
    kc.ok("delete", "deployment", "py")


MODERN = find_modern_kubectl(KUBECTL[0]) if KUBECTL else None


@pytest.mark.skipif(MODERN is None, reason="no kubectl 1.24+ on /usr/bin besides the Debian one")
def test_modern_kubectl_rollout_whoami_and_top(kcluster: KCluster):
    """kubectl 1.32 (where installed): a rollout, `auth can-i` and `auth whoami` (which it posts as protobuf)
    and `top nodes`. Its `create deployment|job` post protobuf too, which hacluster does not decode (415):
    the Deployment is applied as JSON."""
    assert MODERN is not None
    kc, k = kcluster, MODERN[0]

    def run(*args: str) -> str:
        r = kc.kubectl(*args, binary=k)
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r.stdout

    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "modern"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "modern"}},
                  "template": {"metadata": {"labels": {"app": "modern"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    r = kc.kubectl("apply", "-f", "-", input=yaml.safe_dump(d), binary=k)
    assert r.returncode == 0, r.stderr
    assert 'deployment "modern" successfully rolled out' in run("rollout", "status", "deployment/modern",
                                                                "--timeout=60s")
    assert run("auth", "can-i", "create", "deployments.apps").strip() == "yes"
    who = rows(run("auth", "whoami"))
    assert who[0] == ["ATTRIBUTE", "VALUE"] and ["Username", "admin"] in who
    assert rows(run("top", "nodes"))[0][0] == "NAME"
    run("delete", "deployment", "modern")
