"""Where a pod create spends its CPU on the leader and on a follower: py-spy on a fresh 3-master cluster under
the load `hacluster bench api` makes (stored creates, ~1 KB pods, a scheduler name nobody serves).

Starts a fresh cluster (`launcher.up`, fsync on unless --no-fsync), lets --clients clients create pods for
--seconds (spread over the masters, or `--target leader`), and meanwhile
- reads each master's CPU per thread (the Raft tick thread, the event loop's thread, the rest) from /proc,
  and prints it in milliseconds per acknowledged create, with the machine's load average at the start;
- with py-spy installed (`pip install -e '.[profile]'`), records every master (`py-spy record --threads
  --idle` off, 97 Hz, --native off) and writes `OUT/<master>-<role>.svg` (flame graph) and
  `OUT/<master>-<role>.txt` (collapsed stacks), then prints a table: per master and thread, the share of
  samples in each step of a create (HTTP parse, decode, validation, ..., peer message pickle/MAC/compress,
  apply, journal fsync; STEPS below), and CPU ms per create split by those shares.
Writes everything as JSON to OUT/profile.json. Asserts nothing; figures are only comparable on the same
machine and load (see README, "Where a create spends its time").

    scripts/bench-profile [--clients 16] [--seconds 10] [--target spread|leader] [--out DIR] [--no-py-spy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root, for a run without install

from hacluster.cli import bench_api  # noqa: E402
from hacluster.cluster import launcher  # noqa: E402
from hacluster.config import default_config  # noqa: E402
from hacluster.raft.replicated_store import RAFT_THREAD_NAME  # noqa: E402

# (step, substrings of a frame "function (file)" that put a sample in it). The first step whose marker is
# in the sample's stack, searched from the innermost frame outwards, wins.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    # pysyncobj 0.3.17's TcpConnection calls C code (pickle, zlib, socket) on these lines
    ("peer msg: pickle + compress", ("TcpConnection.send (pysyncobj/tcp_connection.py:144)",)),
    ("peer msg: decompress + unpickle", ("TcpConnection.__processParseMessage (pysyncobj/tcp_connection.py:291)",)),
    ("journal fsync", ("fsync (", "_sync_file (", "AppendFile.sync (hacluster/raft/storage.py:120)")),
    ("wake the loop (call_soon_threadsafe)", ("RaftStore._signal_change (", "call_soon_threadsafe (")),
    ("wake the Raft thread (pipe)", ("PipeNotifier.notify (",)),
    ("event loop (uvloop: C callbacks, transports, waiting)", ("Runner.run (asyncio/runners.py",)),
    ("journal append", ("add (hacluster/raft/journal", "_tail_for (", "encode_record (")),
    ("peer msg: pickle", ("dumps (", "_pickled (")),
    ("peer msg: unpickle", ("loads (", "_unpickled (")),
    ("peer msg: compress", ("compress (",)),
    ("peer msg: decompress", ("decompress (",)),
    ("peer msg: encrypt/MAC", ("encrypt", "_mac (", "hmac", "fernet", "blake2")),
    ("peer msg: decrypt/verify", ("decrypt", "open (hacluster/raft/peer_wire", "extract_timestamp")),
    ("peer socket send", ("__processSend (", "__trySendBuffer (")),
    ("peer socket recv", ("__processRead (", "__tryReadBuffer (")),
    ("Raft thread poll (epoll wait)", ("PollPoller.poll (pysyncobj/poller.py:88)",)),
    ("apply (state machine)", ("_apply_payload (", "apply (hacluster/store")),
    ("propose hand-off", ("propose (", "apply_command (", "_applyCommand (", "wake (", "notify (")),
    ("take queued commands", ("_checkCommandsToApply (",)),
    ("answer to the loop", ("_settle (", "on_result (")),
    ("Raft view/stats", ("_on_tick (hacluster", "as_dict (")),
    ("Raft: append entries", ("_SyncObj__sendAppendEntries (", "_SyncObj__getEntries (")),
    ("Raft: message handling", ("_SyncObj__onMessageReceived (",)),
    ("Raft: other", ("syncobj.py",)),
    ("encode response", ("encode (", "json_response (", "_respond (")),
    ("validation/admission", ("valid", "admit", "default", "authoriz", "authentic")),
    ("decode body", ("decode", "read_body (", "json (")),
    ("HTTP parse/serve", ("aiohttp", "web_protocol", "http_parser", "streams.py")),
    ("event loop", ("asyncio", "uvloop", "selectors")),
]


def step_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for step, markers in STEPS:
            if any(m in frame for m in markers):
                return step
    return "other"


def read_collapsed(path: Path) -> dict[str, Counter[str]]:
    """py-spy `--format raw --threads` output: per thread name, samples per step."""
    per_thread: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        frames = stack_text.split(";")
        thread = frames[0]  # "thread (TID): NAME" with --threads
        if "_autoTickThread" in thread or RAFT_THREAD_NAME in thread:
            name = "raft"
        elif "MainThread" in thread:
            name = "loop"
        else:
            name = "other"
        per_thread[name][step_of(frames[1:])] += int(count)
    return per_thread


async def _run_load(apis: list[str], token: str, clients: int, seconds: float) -> dict[str, Any]:
    return await bench_api._load(apis, token, clients, seconds, "create", f"prof{clients}",
                                 bench_api.NO_SCHEDULER)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--target", choices=("spread", "leader"), default="spread")
    ap.add_argument("--out", default="out/profile")
    ap.add_argument("--no-py-spy", action="store_true", help="only the CPU per thread, no sampling")
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--rate", type=int, default=97, help="py-spy samples per second")
    ap.add_argument("--gil", action="store_true", help="py-spy --gil: only samples holding the GIL")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py_spy = None if args.no_py_spy else (shutil.which("py-spy") or
                                          (str(Path(sys.executable).parent / "py-spy")
                                           if (Path(sys.executable).parent / "py-spy").exists() else None))
    if not args.no_py_spy and py_spy is None:
        print("py-spy not found (pip install -e '.[profile]'): CPU per thread only", file=sys.stderr)
    load_start = os.getloadavg()
    cfg = default_config(3)
    cfg = cfg.model_copy(update={"raft": cfg.raft.model_copy(update={"fsync": not args.no_fsync})})
    state_dir = Path(tempfile.mkdtemp(prefix="hacluster-profile-"))
    handle = launcher.up(cfg, state_dir)
    result: dict[str, Any] = {"clients": args.clients, "seconds": args.seconds, "target": args.target,
                              "fsync": not args.no_fsync, "loadavg_at_start": list(load_start)}
    try:
        token = handle.admin_token
        # a short warm-up, so that connections and caches exist before measuring
        asyncio.run(bench_api._load(list(handle.apis().values()), token, 4, 1.0, "create", "warm",
                                    bench_api.NO_SCHEDULER))
        leader = launcher.leader_of(handle)
        roles = {r["id"]: r["role"] for r in launcher.cluster_status(handle)}
        apis = [leader["api"]] if args.target == "leader" and leader else list(handle.apis().values())
        spies: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        if py_spy is not None:
            for m in handle.cfg.masters:
                stem = out / f"{m.id}-{roles.get(m.id, '?')}"
                for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
                    cmd = [py_spy, "record", "--pid", str(handle.pid(m.id)), "--threads", "--rate", str(args.rate),
                           "--duration", str(int(args.seconds)), "--format", fmt, "-o", str(stem) + suffix,
                           "--nonblocking", *(["--gil"] if args.gil else [])]
                    spies.append((m.id, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                         stderr=subprocess.PIPE), stem.with_suffix(suffix)))
            time.sleep(0.5)  # py-spy attaches
        before = bench_api.threads_by_master(handle)
        r = asyncio.run(_run_load(apis, token, args.clients, args.seconds))
        after = bench_api.threads_by_master(handle)
        for _, proc, _path in spies:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        cpu = bench_api.cpu_ms_per_op(before, after, r["ok"], roles)
        result.update({"ops_per_s": r["rate"], "p50_ms": r["p50"], "p99_ms": r["p99"], "answers": r["codes"],
                       "cpu_ms_per_create": cpu, "loadavg_at_end": list(os.getloadavg())})
        print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; "
              f"{args.clients} clients ({args.target}), {args.seconds:g} s: {r['rate']:.0f} creates/s, "
              f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, answers {dict(r['codes'])}")
        print("CPU ms per create:   " + "  ".join(f"{k:>6}" for k in (*bench_api.THREAD_ROLES, "total")))
        for mid, row in cpu.items():
            print(f"  {mid} {row['role']:<9} " + "  ".join(f"{row[k]:6.3f}" for k in (*bench_api.THREAD_ROLES,
                                                                                          "total")))
        steps: dict[str, Any] = {}
        for mid, _proc, path in spies:
            if path.suffix != ".txt" or not path.exists():
                continue
            per_thread = read_collapsed(path)
            steps[mid] = {}
            for thread in ("raft", "loop"):
                counts = per_thread.get(thread, Counter())
                total = sum(counts.values())
                if not total:
                    continue
                ms = (cpu.get(mid) or {}).get(thread)
                steps[mid][thread] = {k: {"share": round(v / total, 3),
                                          "ms_per_create": round(ms * v / total, 3) if ms else None}
                                      for k, v in counts.most_common()}
                print(f"\n{mid} ({roles.get(mid)}) {thread} thread, {total} samples"
                      + (f", {ms:.3f} ms per create" if ms else ""))
                for k, v in counts.most_common(12):
                    print(f"  {100 * v / total:5.1f} %  {ms * v / total if ms else float('nan'):6.3f} ms  {k}")
        result["steps"] = steps
        (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten: {out}/profile.json" + (f", flame graphs {out}/*.svg" if spies else ""))
        return 0
    finally:
        launcher.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
