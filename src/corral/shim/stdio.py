"""A process's I/O as containerd hands it over: paths of FIFOs (or `file://` / `binary://` log
URIs) for stdin, stdout and stderr, or a terminal.

Without a terminal the container writes straight into the stdout/stderr FIFO or log file (no
copy through the shim); stdin goes through a pipe we own so CloseIO can give the container EOF.
With a terminal, the runtime sends us the pty master over a console socket (SCM_RIGHTS) and we
copy stdin FIFO -> master and master -> stdout FIFO.
"""

import array
import asyncio
import os
import socket
import uuid
from urllib.parse import parse_qsl, urlparse

from corral.shim.reaper import DEFAULT_SIGNALS, wait_readable

CONSOLE_DIR = "/run/containerd/s"


def _open_fifo_rw(path):
    # O_RDWR never blocks on a FIFO, whether or not the other side has opened it yet
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def _open_output(uri):
    if not uri:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    if uri.startswith("file://"):
        path = urlparse(uri).path
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    if uri.startswith("fifo://"):
        uri = uri[len("fifo://"):]
    return _open_fifo_rw(uri)


class ProcessIO:
    def __init__(self, loop, reaper, stdin, stdout, stderr, terminal, cid, namespace):
        self.loop = loop
        self.reaper = reaper
        self.paths = (stdin, stdout, stderr)
        self.terminal = terminal
        self.cid = cid
        self.namespace = namespace
        self.child_fds = []  # fds only the child needs: closed once the runtime has run
        self.stdin_fifo = None
        self.stdin_w = None  # where stdin data goes: a pipe to the container, or the pty master
        self.master = None
        self.stdout_fd = None
        self.console_path = None
        self.console_sock = None
        self.done = asyncio.Event()
        self.stdin_pump = None
        self.output_pump = None
        self.logs = None  # jsonfile:// outputs (corral.shim.logfile), written by threads

    async def prepare(self):
        """Open everything; returns (stdio fds for the runtime, console socket path or None)."""
        stdin, stdout, stderr = self.paths
        try:
            if self.terminal:
                self.console_path = os.path.join(CONSOLE_DIR, f"pty-{uuid.uuid4().hex[:16]}.sock")
                os.makedirs(CONSOLE_DIR, mode=0o711, exist_ok=True)
                self.console_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.console_sock.bind(self.console_path)
                self.console_sock.listen(1)
                if stdout.startswith("jsonfile://"):
                    self.stdout_fd = self._log_pipe(stdout, "stdout")
                elif stdout:
                    self.stdout_fd = _open_output(stdout)
                null = self._child(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                if stdin:
                    self.stdin_fifo = _open_fifo_rw(stdin)
                return (null, null, null), self.console_path
            jsonfile = stdout.startswith("jsonfile://") or stderr.startswith("jsonfile://")
            if not jsonfile:
                self.done.set()
            if stdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                self._child(r)
                self.stdin_w = w
                self.stdin_fifo = _open_fifo_rw(stdin)
                self._start_stdin_copy()
                child_in = r
            else:
                child_in = self._child(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            if jsonfile:  # a pipe per stream, even to the same file: each line names its stream
                out = self._child(self._log_pipe(stdout, "stdout") if stdout.startswith("jsonfile://")
                                  else _open_output(stdout))
                err = self._child(self._log_pipe(stderr, "stderr") if stderr.startswith("jsonfile://")
                                  else _open_output(stderr))
                self.logs.start()
            elif stdout.startswith("binary://") or stderr.startswith("binary://"):
                out, err = await self._start_logger(stdout if stdout.startswith("binary://") else stderr)
            else:
                out = self._child(_open_output(stdout))
                err = out if stderr == stdout and stdout else self._child(_open_output(stderr))
            return (child_in, out, err), None
        except BaseException:
            self.close()
            raise

    def _log_pipe(self, uri, stream):
        if self.logs is None:
            from corral.shim.logfile import Logs
            self.logs = Logs(self._logs_done)
        return self.logs.pipe(uri, stream)

    def _logs_done(self):  # from a writer thread
        try:
            self.loop.call_soon_threadsafe(self.done.set)
        except RuntimeError:
            pass  # the loop is closed: the shim is exiting

    def _child(self, fd):
        self.child_fds.append(fd)
        return fd

    async def _start_logger(self, uri):
        """Start a `binary://` logging driver: container stdout on its fd 3, stderr on fd 4, and
        fd 5 to close when it is ready (containerd's contract)."""
        u = urlparse(uri)
        argv = [u.path]
        for key, value in parse_qsl(u.query, keep_blank_values=True):
            argv.append(key)
            if value:
                argv.append(value)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        wait_r, wait_w = os.pipe2(os.O_CLOEXEC)
        self._child(out_w)
        self._child(err_w)
        env = dict(os.environ, CONTAINER_ID=self.cid, CONTAINER_NAMESPACE=self.namespace)
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out_r, 3), (os.POSIX_SPAWN_DUP2, err_r, 4),
                   (os.POSIX_SPAWN_DUP2, wait_w, 5)]
        try:
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsigdef=DEFAULT_SIGNALS)
        except OSError as e:
            for fd in (out_r, err_r, wait_r, wait_w):
                os.close(fd)
            raise OSError(e.errno, f"cannot start logging binary {argv[0]}: {e.strerror}") from None
        self.reaper.watch(pid, lambda status, at: None)
        for fd in (out_r, err_r, wait_w):
            os.close(fd)
        try:
            await wait_readable(self.loop, wait_r, 10)
        except asyncio.TimeoutError:
            raise OSError(f"logging binary {argv[0]} did not signal readiness in 10s") from None
        finally:
            os.close(wait_r)
        return out_w, err_w

    def after_runtime(self):
        """The runtime has started the process with its stdio: drop our copies of the child's ends."""
        for fd in self.child_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.child_fds = []

    async def receive_console(self, timeout=10):
        """Accept the runtime's connection on the console socket and take the pty master."""
        sock = self.console_sock
        sock.setblocking(False)
        conn, _ = await asyncio.wait_for(self.loop.sock_accept(sock), timeout)
        try:
            fds = array.array("i")
            conn.setblocking(False)
            await wait_readable(self.loop, conn.fileno(), timeout)
            msg, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            for level, ctype, data in ancdata:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
            if not fds:
                raise OSError("the runtime sent no terminal on the console socket")
            self.master = fds[0]
        finally:
            conn.close()
            self._close_console_socket()
        os.set_inheritable(self.master, False)
        os.set_blocking(self.master, False)
        self.stdin_w = self.master
        if self.stdin_fifo is not None:
            self._start_stdin_copy()
        if self.stdout_fd is not None:
            if self.logs is not None:
                self.logs.start()
            self._start_output_copy()
        else:
            self.done.set()

    def _close_console_socket(self):
        if self.console_sock is not None:
            self.console_sock.close()
            self.console_sock = None
            try:
                os.unlink(self.console_path)
            except OSError:
                pass

    def _start_stdin_copy(self):
        self.stdin_pump = Pump(self.loop, self.stdin_fifo, self.stdin_w, self._stdin_finished)

    def _start_output_copy(self):
        self.output_pump = Pump(self.loop, self.master, self.stdout_fd, self._output_finished)

    def _stdin_finished(self):
        os.close(self.stdin_fifo)
        self.stdin_fifo = None
        if self.master is not None:
            try:
                os.write(self.master, b"\x04")  # EOF for the terminal's line discipline
            except OSError:
                pass
        elif self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def _output_finished(self):
        os.close(self.stdout_fd)
        self.stdout_fd = None
        if self.logs is None:
            self.done.set()  # else when the log writer has written the rest

    def close_stdin(self):
        """CloseIO: what was written so far is delivered, then the container sees EOF on stdin."""
        if self.stdin_pump is not None and self.stdin_pump.active:
            self.stdin_pump.finish(drain=True)

    def _stop_pumps(self):
        for pump in (self.stdin_pump, self.output_pump):
            if pump is not None:
                pump.stop()

    def resize(self, width, height):
        if self.master is None:
            return
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close(self):
        self.after_runtime()
        self._stop_pumps()
        self._close_console_socket()
        if self.stdin_fifo is not None:
            os.close(self.stdin_fifo)
            self.stdin_fifo = None
        if self.master is not None:
            os.close(self.master)
            self.master = None
            self.stdin_w = None
        if self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None
        if self.stdout_fd is not None:
            os.close(self.stdout_fd)
            self.stdout_fd = None
        if self.logs is not None:
            self.logs.close()
        self.done.set()


class Pump:
    """Copies src to dst on the event loop without ever blocking it: while dst is full, src is
    not read (so a client that stops reading only stalls its own process's output)."""

    def __init__(self, loop, src, dst, on_finish):
        self.loop, self.src, self.dst, self.on_finish = loop, src, dst, on_finish
        self.pending = b""
        self.eof = False
        self.active = True
        self.reading = False
        self.writing = False
        os.set_blocking(src, False)
        os.set_blocking(dst, False)
        self._resume_reading()

    def _resume_reading(self):
        if self.active and not self.reading and not self.eof:
            self.loop.add_reader(self.src, self._readable)
            self.reading = True

    def _pause_reading(self):
        if self.reading:
            self.loop.remove_reader(self.src)
            self.reading = False

    def _readable(self):
        try:
            data = os.read(self.src, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO from a pty master: the last process holding the terminal is gone
        if data:
            self._send(data)
        else:
            self.finish()

    def _send(self, data):
        try:
            n = os.write(self.dst, data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._done()  # the reader is gone: nothing more can be delivered
            return
        self.pending = data[n:]
        if self.pending:
            self._pause_reading()
            self.loop.add_writer(self.dst, self._writable)
            self.writing = True

    def _writable(self):
        self.loop.remove_writer(self.dst)
        self.writing = False
        data, self.pending = self.pending, b""
        self._send(data)
        if not self.pending and self.active:
            if self.eof:
                self._done()
            else:
                self._resume_reading()

    def finish(self, drain=False):
        """No more reading: deliver what is pending (and, with drain, what src still holds), then
        call on_finish."""
        if drain:
            chunks = []
            while True:
                try:
                    chunk = os.read(self.src, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            if chunks:
                if self.pending:
                    self.pending += b"".join(chunks)
                else:
                    self._pause_reading()
                    self.eof = True
                    self._send(b"".join(chunks))
        self.eof = True
        self._pause_reading()
        if not self.pending and self.active:
            self._done()

    def _done(self):
        if self.active:
            self.stop()
            self.on_finish()

    def stop(self):
        # only ever touch the loop's registrations we made: once finished, src or dst may be
        # closed and their numbers reused by other file descriptors
        if not self.active:
            return
        self.active = False
        self._pause_reading()
        if self.writing:
            self.loop.remove_writer(self.dst)
            self.writing = False
