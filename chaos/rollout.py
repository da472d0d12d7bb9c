"""A Deployment rolled out while the faults happen, and the check of what the rollout did (scenario key
`rollout`, shipped as `rollout-under-failover`).

Driven by the chaos runner beside the key-value workload. Before the workload starts, `RolloutDriver`
creates the Deployment through the proxied API links and waits until it is rolled out; at each
`updates_at_s` it changes the pod template's image (GET, then PUT with that resourceVersion, retried on any
master until it commits). After the heal it waits (bounded) for the last rollout to complete, then reads
one watch of the pods from the revision before the first update on a healed master — the reference
sequence of every committed pod change — and `check_rollout` replays it state by state:

- never more than `replicas + maxSurge` active pods (not terminating, not finished) of the Deployment,
- never fewer than `replicas - maxUnavailable` of them Ready,
- the final template's pods created exactly `replicas` times (a pod created twice for one intent shows
  up as an extra ADDED), and no template more than `replicas` times.

The verdict goes into `summary.json` under `rollout`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from chaos.scenario import RolloutSpec
from hacluster.asyncwait import wait_event
from hacluster.model.intstr import scaled_value

NAMESPACE = "default"
REQUEST_TIMEOUT_S = 3.0
READY_TIMEOUT_S = 90.0
UPDATE_TIMEOUT_S = 20.0
REPLAY_IDLE_S = 1.0
REPLAY_MAX_S = 60.0
POLL_S = 0.2
READY_ANNOTATION = "sim.hacluster.io/behaviour.c"

Obj = dict[str, Any]


def deployment_object(spec: RolloutSpec) -> Obj:
    labels = {"app": spec.deployment}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": spec.deployment},
            "spec": {"replicas": spec.replicas, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": spec.max_surge,
                                                                             "maxUnavailable": spec.max_unavailable}},
                     "template": {"metadata": {"labels": labels, "annotations": {
                         READY_ANNOTATION: json.dumps({"ready_after_s": spec.ready_after_s})}},
                                  "spec": {"containers": [{"name": "c", "image": spec.image}]}}}}


def image_of(spec: RolloutSpec, update: int) -> str:
    """The image the `update`-th update (1-based) sets."""
    return f"{spec.image}-rollout-{update}"


def is_rolled_out(d: Obj, replicas: int) -> bool:
    st = d.get("status") or {}
    return (st.get("observedGeneration") == (d.get("metadata") or {}).get("generation")
            and st.get("updatedReplicas") == replicas and st.get("replicas") == replicas
            and st.get("availableReplicas") == replicas)


def _ready(p: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or ())


def _active(p: Obj) -> bool:
    return not (p.get("metadata") or {}).get("deletionTimestamp") and \
        (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def check_rollout(initial: list[Obj], events: list[tuple[str, Obj]], *, app: str, replicas: int, max_surge: Any,
                  max_unavailable: Any, final_hash: str) -> Obj:
    """Replay the pods of the Deployment (label app=`app`) through `events` (type, pod) from `initial`:
    the bounds at every state and the pods created per template (see the module docstring)."""
    surge = scaled_value(max_surge, replicas, round_up=True)
    unavailable = scaled_value(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    pods = {p["metadata"]["name"]: p for p in initial if (p["metadata"].get("labels") or {}).get("app") == app}
    created: dict[str, int] = {}
    max_active, min_ready, states = len([p for p in pods.values() if _active(p)]), replicas, 0
    for etype, obj in events:
        meta = obj.get("metadata") or {}
        if (meta.get("labels") or {}).get("app") != app:
            continue
        if etype == "DELETED":
            pods.pop(meta["name"], None)
        else:
            if etype == "ADDED":
                h = meta["labels"].get("pod-template-hash", "")
                created[h] = created.get(h, 0) + 1
            pods[meta["name"]] = obj
        active = [p for p in pods.values() if _active(p)]
        max_active = max(max_active, len(active))
        min_ready = min(min_ready, sum(1 for p in active if _ready(p)))
        states += 1
    problems = []
    if max_active > replicas + surge:
        problems.append(f"{max_active} pods at once, more than replicas + maxSurge = {replicas + surge}")
    if min_ready < replicas - unavailable:
        problems.append(f"only {min_ready} ready at one point, fewer than replicas - maxUnavailable = "
                        f"{replicas - unavailable}")
    if created.get(final_hash, 0) != replicas:
        problems.append(f"the final template's pods were created {created.get(final_hash, 0)} times, not {replicas}")
    over = {h: n for h, n in created.items() if n > replicas}
    if over:
        problems.append(f"templates with more pods created than replicas: {over}")
    return {"states": states, "max_pods": max_active, "max_pods_allowed": replicas + surge,
            "min_ready": min_ready, "min_ready_allowed": replicas - unavailable, "pods_created_by_template": created,
            "final_template": final_hash, "problems": problems, "ok": not problems}


class RolloutDriver:
    """Creates the Deployment, updates it on schedule, and checks the rollouts after the heal."""

    def __init__(self, spec: RolloutSpec, endpoints: dict[str, str], token: str) -> None:
        self.spec = spec
        self.endpoints = endpoints
        self.headers = {"Authorization": f"Bearer {token}"}
        self.updates: list[Obj] = []
        self.start_rv = ""
        self.initial: list[Obj] = []
        self._path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"

    async def _call(self, session: aiohttp.ClientSession, endpoints: dict[str, str], method: str, path: str,
                    body: Any = None, timeout_s: float = UPDATE_TIMEOUT_S, ok: tuple[int, ...] = (200, 201)) -> Any:
        """One request through whichever master answers, retried across masters until `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            for master, base in endpoints.items():
                try:
                    async with session.request(method, base + path, json=body, headers=self.headers,
                                               timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as r:
                        data = await r.json(content_type=None)
                        if r.status in ok:
                            return data
                        last = f"{master}: HTTP {r.status} {(data or {}).get('message', '')}"
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    last = f"{master}: {type(exc).__name__} {exc}"
            await asyncio.sleep(POLL_S)  # every master refused: wait before the next round (bounded)
        raise TimeoutError(f"{method} {path}: {last}")

    async def _wait_rolled_out(self, session: aiohttp.ClientSession, endpoints: dict[str, str],
                               timeout_s: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            try:
                d = await self._call(session, endpoints, "GET", f"{self._path}/{self.spec.deployment}", timeout_s=5)
            except TimeoutError:
                continue
            if is_rolled_out(d, self.spec.replicas):
                return time.monotonic() - t0
            await asyncio.sleep(POLL_S)  # polling the Deployment's status until rolled out (bounded)
        return None

    async def prepare(self) -> None:
        """Create the Deployment, wait until it is rolled out, note the revision checks start from."""
        async with aiohttp.ClientSession() as session:
            await self._call(session, self.endpoints, "POST", self._path, deployment_object(self.spec), ok=(201, 409))
            if await self._wait_rolled_out(session, self.endpoints, READY_TIMEOUT_S) is None:
                raise TimeoutError(f"deployment {self.spec.deployment} not rolled out in {READY_TIMEOUT_S:g} s")
            listing = await self._call(session, self.endpoints, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
            self.start_rv = listing["metadata"]["resourceVersion"]
            self.initial = listing["items"]

    async def run(self, t0: float, stop: asyncio.Event, duration_s: float) -> None:
        """Change the image at each `updates_at_s` (seconds after `t0`, monotonic), and note when each
        rollout completed (if before the next update or the end of the run)."""
        times = list(self.spec.updates_at_s)
        async with aiohttp.ClientSession() as session:
            for i, at in enumerate(times, start=1):
                if await wait_event(stop, max(0.0, t0 + at - time.monotonic())):
                    return
                image = image_of(self.spec, i)
                started = time.monotonic() - t0
                record: Obj = {"at_s": round(started, 3), "image": image}
                self.updates.append(record)
                try:
                    await self._set_image(session, image)
                except TimeoutError as exc:
                    record["error"] = str(exc)
                    continue
                record["committed_after_s"] = round(time.monotonic() - t0 - started, 3)
                until = times[i] if i < len(times) else duration_s
                took = await self._wait_rolled_out(session, self.endpoints, max(0.0, t0 + until - time.monotonic()))
                if took is not None:
                    record["rolled_out_at_s"] = round(time.monotonic() - t0, 3)

    async def _set_image(self, session: aiohttp.ClientSession, image: str) -> None:
        deadline = time.monotonic() + UPDATE_TIMEOUT_S
        path = f"{self._path}/{self.spec.deployment}"
        while time.monotonic() < deadline:
            d = await self._call(session, self.endpoints, "GET", path)
            if d["spec"]["template"]["spec"]["containers"][0]["image"] == image:
                return  # an earlier PUT whose answer was lost did commit
            d["spec"]["template"]["spec"]["containers"][0]["image"] = image
            got = await self._call(session, self.endpoints, "PUT", path, d, ok=(200, 409))
            if got.get("kind") == "Deployment":
                return
        raise TimeoutError(f"setting image {image} did not commit in {UPDATE_TIMEOUT_S:g} s")

    async def finish(self, apis: dict[str, str]) -> Obj:
        """After the heal, on the masters' real addresses: wait for the last rollout, replay, check."""
        async with aiohttp.ClientSession() as session:
            waited = await self._wait_rolled_out(session, apis, READY_TIMEOUT_S)
            d = await self._call(session, apis, "GET", f"{self._path}/{self.spec.deployment}")
            sets = await self._call(session, apis, "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets")
            image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            final = [rs for rs in sets["items"] if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image
                     and (rs["metadata"].get("labels") or {}).get("app") == self.spec.deployment]
            final_hash = final[0]["metadata"]["labels"].get("pod-template-hash", "") if len(final) == 1 else ""
            events = await self._replay(session, apis)
        verdict = check_rollout(self.initial, events, app=self.spec.deployment, replicas=self.spec.replicas,
                                max_surge=self.spec.max_surge, max_unavailable=self.spec.max_unavailable,
                                final_hash=final_hash)
        if waited is None:
            verdict["problems"].append(f"the last rollout did not complete within {READY_TIMEOUT_S:g} s of the heal")
        if len(final) != 1:
            verdict["problems"].append(f"{len(final)} replica sets for the final template (want 1)")
        verdict["ok"] = not verdict["problems"]
        own = [rs for rs in sets["items"] if (rs["metadata"].get("labels") or {}).get("app") == self.spec.deployment]
        verdict.update({"deployment": self.spec.deployment, "replicas": self.spec.replicas, "updates": self.updates,
                        "completed": waited is not None, "replica_sets": len(own)})
        return verdict

    async def _replay(self, session: aiohttp.ClientSession, apis: dict[str, str]) -> list[tuple[str, Obj]]:
        """Every pod change after `start_rv`, from one watch on the first healed master that serves it."""
        for base in apis.values():
            url = f"{base}/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={self.start_rv}"
            events: list[tuple[str, Obj]] = []
            deadline = time.monotonic() + REPLAY_MAX_S
            try:
                async with session.get(url, headers=self.headers,
                                       timeout=aiohttp.ClientTimeout(total=REPLAY_MAX_S,
                                                                     sock_read=REPLAY_IDLE_S)) as r:
                    if r.status != 200:
                        continue
                    while time.monotonic() < deadline:
                        line = await r.content.readline()
                        if not line:
                            break
                        msg = json.loads(line)
                        if msg.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            events.append((msg["type"], msg["object"]))
                        elif msg.get("type") == "ERROR":
                            break
            except TimeoutError:
                return events  # idle: the replay has caught up with everything committed
            except (aiohttp.ClientError, ValueError):
                continue
            return events
        return []
