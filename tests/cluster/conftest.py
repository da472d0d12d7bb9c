"""Real master processes on 127.0.0.1, started with the same launcher `hacluster up` uses."""

import json
import time
import urllib.error
import urllib.request

import pytest

from hacluster.cluster import launcher
from hacluster.config import default_config


class Cluster:
    def __init__(self, handle: launcher.ClusterHandle):
        self.h = handle
        self.token = handle.admin_token

    def req(self, method, mid_or_url, path, body=None, timeout=10.0):
        base = mid_or_url if mid_or_url.startswith("http") else self.h.api(mid_or_url)
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(base + path, data=data, method=method)
        r.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            r.add_header("Content-Type", "application/json")
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(r, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null"), time.monotonic() - t0
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw), time.monotonic() - t0
            except ValueError:
                return e.code, raw.decode(errors="replace"), time.monotonic() - t0

    def status(self):
        return {r["id"]: r for r in launcher.cluster_status(self.h)}

    def leader(self, timeout_s=10.0, exclude=()):
        """Wait (bounded) for exactly one leader among the live masters not excluded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = [r for r in self.status().values() if r["id"] not in exclude]
            leaders = [r for r in rows if r["role"] == "leader"]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise AssertionError(f"no single leader within {timeout_s}s: {self.status()}")

    def wait_converged(self, ids, timeout_s=15.0):
        """Wait (bounded) until the given masters have applied the same state; return their fingerprint."""
        deadline = time.monotonic() + timeout_s
        rows = {}
        while time.monotonic() < deadline:
            rows = self.status()
            fps = {rows[i].get("fingerprint") for i in ids}
            revs = {rows[i].get("revision") for i in ids}
            if len(fps) == 1 and None not in fps and len(revs) == 1:
                return fps.pop()
            time.sleep(0.05)
        raise AssertionError(f"masters {ids} did not converge: {[(i, rows[i].get('revision')) for i in ids]}")


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


@pytest.fixture
def cluster_factory(tmp_path):
    started = []

    def start(masters=3):
        sd = tmp_path / f"cluster{len(started)}"
        started.append(sd)
        return Cluster(launcher.up(default_config(masters), sd))

    yield start
    for sd in started:
        launcher.down(sd)
        assert not launcher.processes_of(sd), "down left processes behind"
