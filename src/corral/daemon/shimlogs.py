"""The shims' `log` FIFOs (one per bundle, the shim's stderr), read by one thread for all of them
and copied into the daemon's debug log.

One epoll thread instead of a thread per shim: no idle wake-ups (100 threads polling every few
seconds cost measurable idle CPU), and no thread stacks per container. Each FIFO is opened
read-write, so it never reads as closed while its shim is gone or not yet started; it is
closed when its bundle is removed.
"""

import logging
import os
import selectors
import threading

log = logging.getLogger("corrald")


class ShimLogs:
    def __init__(self):
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.fifos = {}  # bundle -> fd
        self.ids = {}  # fd -> container id
        self.partial = {}  # fd -> bytes of an unfinished line
        self.thread = None
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)

    def add(self, bundle, cid):
        path = os.path.join(bundle, "log")
        if not os.path.exists(path):
            os.mkfifo(path, 0o600)
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        with self.lock:
            old = self.fifos.pop(bundle, None)
            if old is not None:
                self._close(old)
            self.fifos[bundle] = fd
            self.ids[fd] = cid
            self.selector.register(fd, selectors.EVENT_READ)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="shim-logs", daemon=True)
                self.thread.start()

    def remove(self, bundle):
        with self.lock:
            fd = self.fifos.pop(bundle, None)
            if fd is not None:
                self._drain(fd)
                self._close(fd)

    def close(self):
        with self.lock:
            for fd in self.fifos.values():
                self._close(fd)
            self.fifos.clear()
            self.thread = None
        try:
            os.write(self.wake_w, b"x")  # the thread sees it has nothing left and ends
        except OSError:
            pass

    def _close(self, fd):
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        self.partial.pop(fd, None)
        self.ids.pop(fd, None)
        os.close(fd)

    def _run(self):
        me = threading.current_thread()
        while True:
            events = self.selector.select()
            with self.lock:
                if self.thread is not me:
                    return
                for key, _ in events:
                    if key.fd == self.wake_r:
                        try:
                            os.read(self.wake_r, 512)
                        except OSError:
                            pass
                    elif key.fd in self.ids:  # not closed since select() returned
                        self._drain(key.fd)

    def _drain(self, fd):
        """Read what is there (non-blocking) and log its complete lines."""
        buf = self.partial.get(fd, b"")
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            buf += data
        *lines, buf = buf.split(b"\n")
        self.partial[fd] = buf
        for line in lines:
            log.debug("shim %s: %s", self.ids.get(fd, "?"), line.decode(errors="replace"))
