"""Flow control of one master (`hacluster.apiserver.flowcontrol`): seats, per-user fair queues, the system
share, and 429 when a user's queue is full or its wait runs out."""

import asyncio

import pytest

from hacluster.apiserver.flowcontrol import FlowControl, is_long_running, is_system_user
from hacluster.model.errors import TooManyRequests


def control(**kw):
    opts = dict(max_inflight=4, max_mutating_inflight=2, system_reserved_share=0.0, queue_length_per_user=2,
                queue_wait_s=5.0)
    opts.update(kw)
    return FlowControl(**opts)


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_seats_then_queue_then_429_at_once():
    fc = control()
    seats = [await fc.admit("POST", "alice") for _ in range(2)]
    queued = [asyncio.ensure_future(fc.admit("POST", "alice")) for _ in range(2)]
    await settle()
    assert not any(q.done() for q in queued) and fc.writes.waiting() == 2
    with pytest.raises(TooManyRequests) as err:
        await fc.admit("POST", "alice")
    assert err.value.code == 429 and err.value.retry_after_s == 1
    status = err.value.to_status()
    assert status["reason"] == "TooManyRequests" and status["details"]["retryAfterSeconds"] == 1
    # reads have their own seats
    read = await fc.admit("GET", "alice")
    seats[0].release()
    await settle()
    assert queued[0].done() and not queued[1].done()
    for s in [seats[1], (await queued[0]), read]:
        s.release()
    (await queued[1]).release()
    assert fc.writes.in_use == 0 and fc.reads.in_use == 0 and not fc.writes.queues


async def test_freed_seat_goes_to_the_user_holding_fewest():
    fc = control(queue_length_per_user=10)
    flood = [await fc.admit("POST", "flooder") for _ in range(2)]
    flood_waiting = [asyncio.ensure_future(fc.admit("POST", "flooder")) for _ in range(5)]
    await settle()
    other = asyncio.ensure_future(fc.admit("POST", "bob"))
    await settle()
    flood[0].release()
    await settle()
    assert other.done(), "bob holds no seat: the freed one is his although the flooder queued first"
    assert not any(f.done() for f in flood_waiting)
    (await other).release()
    await settle()
    assert sum(f.done() for f in flood_waiting) == 1
    for f in flood_waiting:
        f.cancel()
    await asyncio.gather(*flood_waiting, return_exceptions=True)
    flood[1].release()
    assert fc.writes.in_use == 1  # the flooder's seat granted before the cancellation, released by it
    assert not fc.writes.queues


async def test_system_users_keep_their_share():
    fc = control(max_mutating_inflight=4, system_reserved_share=0.25, queue_length_per_user=0)
    assert fc.writes.reserved_for_system == 1
    held = [await fc.admit("POST", "admin", ("system:masters",)) for _ in range(3)]
    with pytest.raises(TooManyRequests):
        await fc.admit("POST", "admin", ("system:masters",))
    kubelet = await fc.admit("PUT", "system:node:node-1", ("system:nodes",))
    with pytest.raises(TooManyRequests):
        await fc.admit("PUT", "system:node:node-2", ("system:nodes",))
    for s in held + [kubelet]:
        s.release()


async def test_a_wait_that_runs_out_is_429_and_leaves_no_trace():
    fc = control(max_mutating_inflight=1, queue_wait_s=0.05)
    seat = await fc.admit("POST", "alice")
    with pytest.raises(TooManyRequests):
        await fc.admit("POST", "alice")
    assert not fc.writes.queues and fc.writes.rejected == 1
    seat.release()
    seat.release()  # a second release is harmless
    assert fc.writes.in_use == 0


def test_long_running_and_system_classification():
    assert is_long_running("GET", "/api/v1/watch/pods", {})
    assert is_long_running("GET", "/api/v1/namespaces/default/pods", {"watch": "true"})
    assert is_long_running("GET", "/api/v1/namespaces/default/pods/web/log", {"follow": "true"})
    assert not is_long_running("GET", "/api/v1/namespaces/default/pods/web/log", {})
    assert not is_long_running("POST", "/api/v1/namespaces/default/pods", {"watch": "true"})
    assert not is_long_running("GET", "/api/v1/namespaces/watch/pods", {})
    assert is_long_running("GET", "/apis/apps/v1/watch/namespaces/watch/replicasets", {})
    assert is_system_user("system:node:n1", ("system:nodes",))
    assert is_system_user("system:kube-scheduler", ())
    assert not is_system_user("system:anonymous", ())
    assert not is_system_user("admin", ("system:masters",))
