"""Benchmark the API's front door: requests/s served to a well-behaved client on one master, alone and then
while 1,000 connections trickle their headers and a flooding user hammers the same master.

Starts a one-master cluster with `hacluster up` (loopback only) and runs two phases of --seconds each:
- quiet: the well-behaved client alone — the viewer, 4 connections, linearizable GETs of one pod, waiting as
  a 429's Retry-After asks;
- abuse: the same client while another process keeps --trickle connections open sending one header byte a
  second (reopening those the master cuts off) and floods the master as the admin from --flooders
  connections (creates and 500-item lists, as fast as answers come; on a 429 each connection waits as
  Retry-After asks, as client-go and kubectl do — or, with --flood-ignores-retry-after, retries at once).
Prints the figures and writes them as JSON (--out). Every loop is bounded by the phase's duration.

    scripts/bench-frontdoor [--seconds 10] [--trickle 1000] [--flooders 64] [--limits 16,8] [--out FILE]
                            [--flood-ignores-retry-after] [--code DIR --label before]

`--code DIR` runs the cluster (and this script's CLI calls) from another checkout's `hacluster` package,
e.g. the code before the front door: `git archive <commit> | tar -x -C /tmp/before`. `--limits R,W` sets
api.max_requests_inflight and api.max_mutating_requests_inflight (omit it for the defaults, or for code
that has no such settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
POD = "/api/v1/namespaces/default/pods"


def run_cli(code: Path, *args: str, timeout: float = 120) -> str:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-m", "hacluster.cli.main", *args], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=str(code))
    if out.returncode != 0:
        raise SystemExit(f"error: hacluster {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "nginx"}]}}


# ------------------------------------------------------------------------------------- well-behaved client
async def well_behaved(api: str, token: str, seconds: float, connections: int = 4) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=10)) as s:
        async def worker() -> None:
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                try:
                    async with s.get(f"{api}{POD}/bench-target") as r:
                        await r.read()
                        codes[str(r.status)] += 1
                        if r.status == 200:
                            latencies.append(time.monotonic() - t0)
                        elif r.status == 429:
                            await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
                except (TimeoutError, aiohttp.ClientError) as exc:
                    codes[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    return {"served_per_s": round(len(latencies) / seconds, 1), "answers": dict(codes),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None}


# ------------------------------------------------------------------------------- the abusers' process
def abuse(api: str, admin: str, seconds: float, trickle: int, flooders: int, honour: bool, ready: Any,
          out: Any) -> None:
    out.put(asyncio.run(_abuse(api, admin, seconds, trickle, flooders, honour, ready)))


async def _abuse(api: str, admin: str, seconds: float, trickle: int, flooders: int, honour: bool,
                 ready: Any) -> dict[str, Any]:
    port = int(api.rsplit(":", 1)[1])
    stats: Counter[str] = Counter()
    opened = asyncio.Event()
    open_now = [0]
    stop_at = [float("inf")]

    async def trickler(i: int) -> None:
        head = f"GET {POD} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin}\r\nX-Trickle-{i}: ".encode()
        while time.monotonic() < stop_at[0]:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                stats["trickle_connect_failed"] += 1
                await asyncio.sleep(1)
                continue
            open_now[0] += 1
            if open_now[0] >= trickle:
                opened.set()
            try:
                k = 0
                while time.monotonic() < stop_at[0]:
                    writer.write(head[k:k + 1] if k < len(head) else b"a")
                    await writer.drain()
                    k += 1
                    try:
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            stats["trickle_cut"] += 1
                            break
                    except TimeoutError:
                        continue
            except OSError:
                stats["trickle_cut"] += 1
            finally:
                open_now[0] -= 1
                writer.close()

    async def flooder(session: aiohttp.ClientSession, w: int) -> None:
        i = 0
        while time.monotonic() < stop_at[0]:
            i += 1
            try:
                if i % 3 == 0:
                    req = session.get(f"{api}{POD}", params={"limit": "500"})
                else:
                    req = session.post(f"{api}{POD}", json=pod(f"flood-{w}-{i}"))
                async with req as r:
                    await r.read()
                    stats[f"flood_{r.status}"] += 1
                    if r.status == 429 and honour:
                        pause = min(float(r.headers.get("Retry-After", "1")), stop_at[0] - time.monotonic())
                        await asyncio.sleep(max(0.0, pause))
            except (TimeoutError, aiohttp.ClientError) as exc:
                stats[f"flood_{type(exc).__name__}"] += 1

    async def sample_open() -> None:
        lowest = open_now[0]
        while time.monotonic() < stop_at[0] - 2:
            lowest = min(lowest, open_now[0])
            await asyncio.sleep(0.25)
        stats["trickle_open_lowest"] = lowest

    tricklers = [asyncio.ensure_future(trickler(i)) for i in range(trickle)]
    try:
        await asyncio.wait_for(opened.wait(), 30) if trickle else None
    except TimeoutError:
        pass
    stats["trickle_open_at_start"] = open_now[0]
    stop_at[0] = time.monotonic() + seconds + 2  # outlasts the measured phase
    ready.set()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"},
                                     timeout=aiohttp.ClientTimeout(total=10),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(sample_open(), *(flooder(session, w) for w in range(flooders)))
    for t in tricklers:
        t.cancel()
    await asyncio.gather(*tricklers, return_exceptions=True)
    return dict(stats)


# -------------------------------------------------------------------------------------------------- run
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--trickle", type=int, default=1000)
    ap.add_argument("--flooders", type=int, default=64)
    ap.add_argument("--flood-ignores-retry-after", action="store_true")
    ap.add_argument("--limits", default="", help="R,W: api.max_requests_inflight, api.max_mutating_requests_inflight")
    ap.add_argument("--code", default=str(REPO), help="checkout whose hacluster package runs the cluster")
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", default="out/bench-frontdoor.json")
    args = ap.parse_args()
    code = Path(args.code).resolve()
    cfg: dict[str, Any] = {"masters": [{"id": "m1"}]}
    if args.limits:
        reads, writes = (int(x) for x in args.limits.split(","))
        cfg["api"] = {"max_requests_inflight": reads, "max_mutating_requests_inflight": writes}
    with tempfile.TemporaryDirectory(prefix="bench-frontdoor-") as tmp:
        sd = Path(tmp) / "state"
        cfg_file = Path(tmp) / "cluster.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg))
        run_cli(code, "up", "--config", str(cfg_file), "--detach", "--state-dir", str(sd))
        try:
            resolved = yaml.safe_load((sd / "cluster.yaml").read_text())
            api = f"http://127.0.0.1:{resolved['masters'][0]['api_port']}"
            tokens = {u["name"]: u["token"] for u in resolved["users"]}
            result = asyncio.run(_measure(api, tokens, args))
        finally:
            run_cli(code, "down", "--state-dir", str(sd))
    result.update({"label": args.label, "code": str(code), "limits": args.limits or "defaults",
                   "seconds": args.seconds, "trickle": args.trickle, "flooders": args.flooders,
                   "flood_honours_retry_after": not args.flood_ignores_retry_after,
                   "ratio_abuse_to_quiet": round(result["abuse"]["served_per_s"]
                                                 / max(result["quiet"]["served_per_s"], 0.1), 3),
                   "load_average_1m": os.getloadavg()[0],
                   "cpus": os.cpu_count()})
    q, a = result["quiet"], result["abuse"]
    style = "honours" if result["flood_honours_retry_after"] else "ignores"
    print(f"{args.label} (limits {result['limits']}, flood {style} Retry-After, load average "
          f"{result['load_average_1m']:.1f}): well-behaved client {q['served_per_s']} req/s alone "
          f"(p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms); {a['served_per_s']} req/s under abuse "
          f"(p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, answers {a['answers']})")
    ab = result["abusers"]
    flood = {k[6:]: v for k, v in ab.items() if k.startswith("flood_")}
    print(f"  abusers: {ab.get('trickle_open_at_start', 0)} trickling connections open at the start, "
          f"at least {ab.get('trickle_open_lowest', 0)} during the phase, {ab.get('trickle_cut', 0)} cut off; "
          f"flood answers {flood}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"  written to {out}")
    return 0


async def _measure(api: str, tokens: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {tokens['admin']}"}) as s:
        async with s.post(f"{api}{POD}", json=pod("bench-target")) as r:
            if r.status not in (201, 409):
                raise SystemExit(f"error: cannot create the bench pod: {r.status} {await r.text()}")
    quiet = await well_behaved(api, tokens["viewer"], args.seconds)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=abuse, args=(api, tokens["admin"], args.seconds, args.trickle, args.flooders,
                                           not args.flood_ignores_retry_after, ready, out), daemon=True)
    proc.start()
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise SystemExit("error: the abusers did not start within 60 s")
        loaded = await well_behaved(api, tokens["viewer"], args.seconds)
        abusers = await asyncio.to_thread(out.get, True, args.seconds + 60)
    finally:
        proc.join(timeout=args.seconds + 60)
        if proc.is_alive():
            proc.kill()
    return {"quiet": quiet, "abuse": loaded, "abusers": abusers}


if __name__ == "__main__":
    sys.exit(main())
