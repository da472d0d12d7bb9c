"""The stalled-watcher monitor (`hacluster.apiserver.limits`) on both event loops the masters run: asyncio's
and uvloop's (whose transports are not `asyncio.Transport` instances — a check by type found none of them)."""

import asyncio
import socket

import pytest

from hacluster.apiserver import limits

LOOPS = ["asyncio"]
try:
    import uvloop

    LOOPS.append("uvloop")
except ImportError:  # the masters fall back to asyncio's loop too
    uvloop = None


async def stalled_connection_is_dropped() -> tuple[bool, bool]:
    """A server writing to a client that never reads: the monitor aborts the connection; a reading client's
    connection is left alone."""
    dropped: dict[str, bool] = {}
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        who = (await reader.readline()).decode().strip()
        task = limits.monitor_stalled(writer.transport, 0.3)
        assert task is not None, f"no monitor for {type(writer.transport)}"
        try:
            for _ in range(200):  # ≤ 200 × 64 KiB, far more than the socket buffers hold
                if writer.transport.is_closing():  # as aiohttp's writer checks before each write
                    raise ConnectionResetError("aborted")
                writer.write(b"x" * 65536)
                await asyncio.wait_for(writer.drain(), 10)
            dropped[who] = False
        except (ConnectionError, TimeoutError):
            dropped[who] = True
        finally:
            task.cancel()
            if len(dropped) == 2:
                done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(b"stalled\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"reading\n")

    async def drain_all() -> None:
        while await reader.read(1 << 20):
            pass

    drainer = asyncio.ensure_future(drain_all())
    await asyncio.wait_for(done.wait(), 30)
    drainer.cancel()
    writer.close()
    stalled.close()
    server.close()
    return dropped["stalled"], dropped["reading"]


@pytest.mark.parametrize("loop", LOOPS)
def test_stalled_connection_dropped_reading_one_kept(loop):
    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(stalled_connection_is_dropped()) == (True, False)


def test_no_monitor_without_a_socket_transport():
    assert limits.monitor_stalled(None, 1.0) is None
