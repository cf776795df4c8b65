"""The shim server's event loop: epoll, timers, signal handlers and callbacks from threads;
enough for asyncio's futures, tasks, Event, Queue, sleep, wait_for and timeout, and for ttrpc
over corral.ttrpc.sockio.

Why not asyncio's own loop: a shim server is forked from a warm zygote, and every object it
touches after the fork costs it a private copy of that object's page (CPython writes reference
counts). asyncio's loop, with its transports, executors and debug paths, made a server carry
about 0.7 MB more private memory than this one (measured, idle), on every container.

    ShimLoop().run(main())       # like asyncio.run(main())
"""

import asyncio
import collections
import heapq
import os
import select
import signal
import sys
import time
import traceback
from asyncio import events

_IN = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
_OUT = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR


def _noop(signum, frame):
    pass  # the wakeup fd carries the signal to the loop


def _fileno(fd):
    return fd if isinstance(fd, int) else fd.fileno()


class ShimLoop(asyncio.AbstractEventLoop):
    def __init__(self):
        self._ready = collections.deque()  # one deque for good: other threads append to it
        self._timers = []  # heap of TimerHandle
        self._cancelled_timers = 0
        self._fds = {}  # fd -> [reader Handle or None, writer Handle or None]
        self._epoll = select.epoll()
        self._signals = {}  # signum -> Handle
        # the wakeup pipe: signal numbers (set_wakeup_fd), and 0 from call_soon_threadsafe
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._running = False
        self._closed = False

    # --- what asyncio's futures and tasks call ------------------------------------------

    def time(self):
        return time.monotonic()

    def get_debug(self):
        return False

    def is_running(self):
        return self._running

    def is_closed(self):
        return self._closed

    def create_future(self):
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None):
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def call_soon(self, callback, *args, context=None):
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args, context=None):
        handle = self.call_soon(callback, *args, context=context)
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # full: the loop wakes anyway
        return handle

    def call_at(self, when, callback, *args, context=None):
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, timer)
        timer._scheduled = True
        return timer

    def call_later(self, delay, callback, *args, context=None):
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle):
        self._cancelled_timers += 1
        if self._cancelled_timers > 64 and self._cancelled_timers * 2 > len(self._timers):
            self._timers = [t for t in self._timers if not t.cancelled()]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def call_exception_handler(self, context):
        lines = [f"corral-shim: {context.get('message', 'unhandled exception in the loop')}"]
        exc = context.get("exception")
        if exc is not None:
            lines += traceback.format_exception(type(exc), exc, exc.__traceback__)
        try:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    default_exception_handler = call_exception_handler

    # --- file descriptors ---------------------------------------------------------------

    def _watch(self, fd, index, handle):
        entry = self._fds.get(fd)
        if entry is None:
            entry = self._fds[fd] = [None, None]
        was = (_IN if entry[0] else 0) | (_OUT if entry[1] else 0)
        entry[index] = handle
        now = (_IN if entry[0] else 0) | (_OUT if entry[1] else 0)
        try:
            if not was:
                self._epoll.register(fd, now)
            else:
                self._epoll.modify(fd, now)
        except FileExistsError:  # a closed fd's number came back before we forgot it
            self._epoll.modify(fd, now)
        except FileNotFoundError:
            self._epoll.register(fd, now)

    def _unwatch(self, fd, index):
        entry = self._fds.get(fd)
        if entry is None or entry[index] is None:
            return False
        entry[index].cancel()
        entry[index] = None
        now = (_IN if entry[0] else 0) | (_OUT if entry[1] else 0)
        try:
            if now:
                self._epoll.modify(fd, now)
            else:
                del self._fds[fd]
                self._epoll.unregister(fd)
        except OSError:
            pass  # closed already: epoll forgot it by itself
        return True

    def add_reader(self, fd, callback, *args):
        self._watch(_fileno(fd), 0, asyncio.Handle(callback, args, self, None))

    def remove_reader(self, fd):
        return self._unwatch(_fileno(fd), 0)

    def add_writer(self, fd, callback, *args):
        self._watch(_fileno(fd), 1, asyncio.Handle(callback, args, self, None))

    def remove_writer(self, fd):
        return self._unwatch(_fileno(fd), 1)

    async def sock_accept(self, sock):
        while True:
            try:
                return sock.accept()
            except (BlockingIOError, InterruptedError):
                pass
            fut = self.create_future()
            self.add_reader(sock, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                self.remove_reader(sock)

    # --- signals ------------------------------------------------------------------------

    def add_signal_handler(self, sig, callback, *args):
        self._signals[sig] = asyncio.Handle(callback, args, self, None)
        signal.signal(sig, _noop)
        signal.siginterrupt(sig, False)

    def remove_signal_handler(self, sig):
        if self._signals.pop(sig, None) is None:
            return False
        signal.signal(sig, signal.SIG_DFL)
        return True

    def _read_wakeups(self):
        try:
            data = os.read(self._wake_r, 4096)
        except OSError:
            return
        for signum in data:
            handle = self._signals.get(signum)
            if handle is not None and not handle.cancelled():
                self._ready.append(handle)

    # --- running ------------------------------------------------------------------------

    def run(self, main):
        """Run the coroutine main to its end (or until the process exits) and return its
        result; then the loop is closed."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        events._set_running_loop(self)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._running = True
        task = self.create_task(main)
        try:
            while not task.done():
                self._step()
            return task.result()
        finally:
            self._cancel_tasks(task)
            self._running = False
            signal.set_wakeup_fd(old_wakeup)
            events._set_running_loop(None)
            self.close()

    def _cancel_tasks(self, main):
        pending = [t for t in asyncio.all_tasks(self) if t is not main and not t.done()]
        for t in pending:
            t.cancel()
        for _ in range(8):  # a few steps for their finally blocks
            if all(t.done() for t in pending):
                break
            self._step(0)

    def _step(self, timeout=None):
        timers = self._timers
        while timers and timers[0].cancelled():
            heapq.heappop(timers)._scheduled = False
            self._cancelled_timers = max(0, self._cancelled_timers - 1)
        if self._ready:
            timeout = 0
        elif timers:
            delay = max(0.0, timers[0].when() - self.time())
            timeout = delay if timeout is None else min(timeout, delay)
        for fd, mask in self._epoll.poll(-1 if timeout is None else timeout):
            entry = self._fds.get(fd)
            if entry is None:
                if fd == self._wake_r:
                    self._read_wakeups()
                continue
            reader, writer = entry
            if reader is not None and mask & _IN:
                self._ready.append(reader)
            if writer is not None and mask & _OUT:
                self._ready.append(writer)
        end = self.time() + 1e-6
        while timers and timers[0].when() <= end:
            timer = heapq.heappop(timers)
            timer._scheduled = False
            if not timer.cancelled():
                self._ready.append(timer)
        ready = self._ready
        for _ in range(len(ready)):  # what is added while these run waits for the next step
            handle = ready.popleft()
            if not handle.cancelled():
                handle._run()

    def close(self):
        if self._closed:
            return
        self._closed = True
        for sig in list(self._signals):
            self.remove_signal_handler(sig)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._ready.clear()
        self._timers.clear()
        self._fds.clear()


def run(main):
    return ShimLoop().run(main)
