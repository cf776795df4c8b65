"""The shim's event loop (corral.shim.loop) and ttrpc's socket transport (corral.ttrpc.sockio):
what the shim relies on, on real fds, signals and threads."""

import asyncio
import os
import signal
import socket
import threading
import time

import pytest

from corral.shim.loop import ShimLoop
from corral.ttrpc import sockio


def run(coro):
    return ShimLoop().run(coro)


def test_run_returns_the_result_and_raises_the_error():
    async def ok():
        await asyncio.sleep(0)
        return 42

    async def bad():
        raise ValueError("no")
    assert run(ok()) == 42
    with pytest.raises(ValueError):
        run(bad())


def test_timers_fire_in_order_and_cancelled_ones_do_not():
    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        for delay in (0.05, 0.01, 0.03):
            loop.call_later(delay, fired.append, delay)
        dropped = [loop.call_later(0.02, fired.append, "cancelled") for _ in range(100)]
        for handle in dropped:
            handle.cancel()
        start = time.monotonic()
        await asyncio.sleep(0.08)
        assert time.monotonic() - start >= 0.075  # timers may fire within the clock resolution
        return fired
    assert run(main()) == [0.01, 0.03, 0.05]


def test_asyncio_primitives_work_on_it():
    async def main():
        event = asyncio.Event()
        queue = asyncio.Queue()
        asyncio.get_running_loop().call_later(0.01, event.set)
        await asyncio.wait_for(event.wait(), 2)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        task = asyncio.create_task(queue.get())
        queue.put_nowait("item")
        return await task
    assert run(main()) == "item"


def test_readers_and_writers_on_a_socket_pair():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got = loop.create_future()
        writable = loop.create_future()
        loop.add_reader(b.fileno(), lambda: got.done() or got.set_result(b.recv(100)))
        loop.add_writer(a, lambda: writable.done() or writable.set_result(True))  # a file object works too
        assert await writable
        assert loop.remove_writer(a) and not loop.remove_writer(a)
        a.send(b"ping")
        assert await got == b"ping"
        assert loop.remove_reader(b.fileno()) and not loop.remove_reader(b.fileno())
        a.close()
        b.close()
    run(main())


def test_signal_handler_and_callbacks_from_threads():
    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, lambda: got.done() or got.set_result("signal"))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(got, 2) == "signal"
        from_thread = loop.create_future()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(from_thread.set_result, "thread")).start()
        return await asyncio.wait_for(from_thread, 2)
    assert run(main()) == "thread"
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # the loop's close restores it


def test_a_failing_callback_is_reported_and_the_loop_goes_on(capfd):
    async def main():
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: 1 / 0)
        await asyncio.sleep(0.01)
        return "still running"
    assert run(main()) == "still running"
    assert "ZeroDivisionError" in capfd.readouterr().err


def test_pending_tasks_are_cancelled_at_the_end():
    cleaned = []

    async def forever():
        try:
            await asyncio.sleep(100)
        finally:
            cleaned.append(True)

    async def main():
        asyncio.create_task(forever())
        await asyncio.sleep(0)
    run(main())
    assert cleaned == [True]


def test_sock_accept(tmp_path):
    async def main(path):
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.setblocking(False)
        loop.call_later(0.01, lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(path))
        conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 2)
        conn.close()
        listener.close()
        return True
    assert run(main(str(tmp_path / "s.sock")))


@pytest.mark.parametrize("runner", [asyncio.run, run], ids=["asyncio", "shimloop"])
def test_connection_backpressure_eof_and_close(runner):
    """More than the socket buffers hold: write() keeps the rest and drain() waits for the
    peer; the peer's close is EOF (IncompleteReadError); close() wakes a waiting read."""
    big = os.urandom(8 << 20)

    async def main():
        a, b = socket.socketpair()
        left, right = sockio.Connection(a), sockio.Connection(b)
        left.write(big)
        drained = asyncio.ensure_future(left.drain())
        await asyncio.sleep(0.01)
        assert not drained.done()  # the peer has not read yet
        got = await right.readexactly(len(big))
        await asyncio.wait_for(drained, 5)
        assert got == big
        left.close()
        await left.wait_closed()
        with pytest.raises(asyncio.IncompleteReadError):
            await right.readexactly(1)
        c, d = socket.socketpair()
        mine = sockio.Connection(c)
        waiting = asyncio.ensure_future(mine.readexactly(10))
        await asyncio.sleep(0.01)
        mine.close()
        with pytest.raises(asyncio.IncompleteReadError):
            await asyncio.wait_for(waiting, 2)
        right.close()
        d.close()
    runner(main())


@pytest.mark.parametrize("runner", [asyncio.run, run], ids=["asyncio", "shimloop"])
def test_listener_pauses_while_out_of_fds(runner, tmp_path):
    """accept() failing with EMFILE leaves the connection pending: the listener must not spin
    on it, and accepts it once fds are free again."""
    import resource

    from corral.ttrpc.sockets import listen_private

    async def main():
        path = str(tmp_path / "s.sock")
        accepted = asyncio.Event()

        async def on_connection(conn):
            accepted.set()
            conn.close()
        listener = sockio.Listener(listen_private(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, 8),
                                   on_connection)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fillers = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
            while True:
                try:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            client.connect(path)  # no fd is left to accept it with
            cpu = time.process_time()
            await asyncio.sleep(0.3)
            spent = time.process_time() - cpu
            assert not accepted.is_set()
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert spent < 0.15, f"the loop spun: {spent:.2f}s of CPU in 0.3s"
        await asyncio.wait_for(accepted.wait(), 3)
        client.close()
        listener.close()
    runner(main())
