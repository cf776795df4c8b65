"""Stdio of an attached process through FIFOs the shim opens (as ctr does): the CLI copies
its own stdin into the stdin FIFO and the output FIFOs to its stdout/stderr; with a terminal,
the local tty goes into raw mode and its size follows the window."""

import os
import select
import stat
import threading

FIFO_DIR = "/run/corral/fifo"


class FifoIO:
    """FIFOs for one process: stdin (if wanted), and unless output=False (the output goes to
    the container's log) stdout, and stderr unless a terminal."""

    def __init__(self, name, stdin=False, terminal=False, output=True, base=FIFO_DIR):
        os.makedirs(base, mode=0o700, exist_ok=True)
        while True:  # a private directory (what tempfile.mkdtemp makes, without its imports)
            self.dir = os.path.join(base, f"{name[:12]}-{os.urandom(6).hex()}")
            try:
                os.mkdir(self.dir, 0o700)
                break
            except FileExistsError:
                continue
        self.terminal = terminal
        self.stdin = os.path.join(self.dir, "stdin") if stdin else ""
        self.stdout = os.path.join(self.dir, "stdout") if output or terminal else ""
        self.stderr = os.path.join(self.dir, "stderr") if output and not terminal else ""
        self._fds = {}
        for p in (self.stdin, self.stdout, self.stderr):
            if p:
                os.mkfifo(p, 0o600)
                # read-write: opening never blocks and never sees EOF before the shim is there
                self._fds[p] = os.open(p, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._threads = []
        self._stop_r, self._stop_w = os.pipe()

    def unlink(self):
        """Remove the FIFOs' names once the shim has opened them (the open FIFOs work on), so
        nothing is left behind even if this process is killed."""
        remove_tree(self.dir)

    def paths(self):
        return {"stdin": self.stdin, "stdout": self.stdout, "stderr": self.stderr, "terminal": self.terminal}

    def start_output(self, out_fd=1, err_fd=2):
        for path, dst in ((self.stdout, out_fd), (self.stderr, err_fd)):
            if path:
                t = threading.Thread(target=self._copy_out, args=(self._fds[path], dst), daemon=True)
                t.start()
                self._threads.append(t)

    def _copy_out(self, src, dst):
        while True:
            r, _, _ = select.select([src, self._stop_r], [], [])
            if src in r:
                try:
                    data = os.read(src, 65536)
                except BlockingIOError:
                    continue
                if data:
                    _write_all(dst, data)
                    continue
            if self._stop_r in r:
                _drain(src, dst, self.terminal)
                return

    def start_input(self, on_eof, in_fd=0):
        """Copy in_fd into the stdin FIFO; on EOF call on_eof() (CloseIO)."""
        fd = self._fds[self.stdin]
        os.set_blocking(fd, True)

        def copy():
            while True:
                try:
                    data = os.read(in_fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    try:
                        on_eof()
                    except Exception:
                        pass
                    return
                try:
                    _write_all(fd, data)
                except OSError:
                    return
        threading.Thread(target=copy, daemon=True).start()

    def follow_log(self, path, out_fd=1, err_fd=2):
        """Print the container's JSON log as it grows (corral.logs.follow) until finish()."""
        import time
        from corral import logs
        self._log_done = threading.Event()
        since = time.time_ns()  # what an earlier run of the container logged is not shown

        def copy():
            try:
                with open(out_fd, "wb", closefd=False) as out, open(err_fd, "wb", closefd=False) as err:
                    logs.write(logs.follow(path, since=since, stop=self._log_done.is_set, interval=0.02,
                                           sleep=self._log_done.wait), out, err)
            except BrokenPipeError:
                pass  # the reader went away (`corral run ... | head`): nothing more to show
        t = threading.Thread(target=copy, daemon=True)
        t.start()
        self._threads.append(t)

    def finish(self):
        """The process has exited: copy what is left in the FIFOs (and the log), then stop."""
        os.write(self._stop_w, b"x")
        if getattr(self, "_log_done", None) is not None:
            self._log_done.set()
        for t in self._threads:
            t.join(5)

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        os.close(self._stop_r)
        os.close(self._stop_w)
        remove_tree(self.dir)


def remove_tree(path):
    """rm -rf `path` (what shutil.rmtree(ignore_errors=True) does, without shutil's imports of
    bz2, lzma and fnmatch); symlinks are removed, never followed."""
    try:
        entries = list(os.scandir(path))
    except NotADirectoryError:
        entries = None
    except OSError:
        return
    if entries is None:
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                remove_tree(e.path)
            else:
                os.unlink(e.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def _drain(src, dst, terminal):
    """Copy what is left. Without a terminal the container wrote into the FIFO itself, so all
    of it is there once it has exited; a terminal's last bytes may still be in the shim's copy."""
    import time
    quiet_until = time.monotonic() + (0.05 if terminal else 0)
    while True:
        try:
            data = os.read(src, 65536)
        except BlockingIOError:
            data = None
        if data:
            _write_all(dst, data)
            quiet_until = time.monotonic() + 0.05
        elif time.monotonic() >= quiet_until:
            return
        else:
            select.select([src], [], [], 0.01)


class RawTerminal:
    """The local terminal in raw mode for the duration (restored on exit), and its size."""

    def __init__(self, fd=0):
        self.fd = fd
        self.saved = None

    def __enter__(self):
        import termios
        import tty
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc):
        import termios
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def size(self):
        try:
            s = os.get_terminal_size(self.fd if os.isatty(self.fd) else 1)
            return s.columns, s.lines
        except OSError:
            return 80, 24


def is_fifo(path):
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False
