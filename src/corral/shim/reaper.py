"""Child reaping for a subreaper: on SIGCHLD, waitpid(-1) until no zombie is left, and hand each
exit to whoever registered the pid. Exits of pids nobody has claimed yet (a process that ends
before the runtime's pid file is read) are kept for a while, so a late claim still gets them."""

import asyncio
import os
import signal
import time

UNCLAIMED_TTL = 120.0


def exit_code(status):
    """Wait status -> containerd's exit status (128+signal for a signal death)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Reaper:
    def __init__(self, loop):
        self.loop = loop
        self.waiters = {}  # pid -> callback(exit_status, exited_at_ns)
        self.unclaimed = {}  # pid -> (status, exited_at_ns, monotonic time)
        loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def watch(self, pid, callback):
        """Call callback(status, exited_at_ns) when pid exits (now, if it already did)."""
        early = self.unclaimed.pop(pid, None)
        if early:
            callback(early[0], early[1])
        else:
            self.waiters[pid] = callback

    def forget(self, pid):
        self.waiters.pop(pid, None)

    def wait(self, pid):
        """A future of (status, exited_at_ns) for pid."""
        fut = self.loop.create_future()

        def done(status, at):
            if not fut.done():
                fut.set_result((status, at))
        self.watch(pid, done)
        return fut

    def reap(self):
        now = time.monotonic()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            at = time.time_ns()
            callback = self.waiters.pop(pid, None)
            if callback:
                callback(exit_code(status), at)
            else:
                self.unclaimed[pid] = (exit_code(status), at, now)
        for pid in [p for p, v in self.unclaimed.items() if now - v[2] > UNCLAIMED_TTL]:
            del self.unclaimed[pid]


def _read_pipe(loop, f):
    """A future of everything f (a pipe) gives until EOF, read by a plain reader callback (no
    transport and stream per pipe: runtime calls have two each, on the task path)."""
    fut = loop.create_future()
    fd = f.fileno()
    os.set_blocking(fd, False)
    chunks = []

    def readable():
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            chunks.append(data)
            return
        loop.remove_reader(fd)
        f.close()
        if not fut.done():
            fut.set_result(b"".join(chunks))

    loop.add_reader(fd, readable)
    return fut


async def wait_readable(loop, fd, timeout):
    """Wait until fd is readable (no thread: the loop watches it)."""
    fut = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_reader(fd)


async def run_command(reaper, argv, stdin_data=None, stdin=None, stdout=None, stderr=None, timeout=120,
                      in_process=False):
    """Run a command with the reaper as its only waiter; returns (exit status, stdout, stderr)
    (captured when stdout/stderr are not given as fds). in_process: argv is corral-runc's
    command line, run in a forked child (see inproc.py)."""
    loop = reaper.loop
    pipes = {}
    proc = _start(argv, stdin_data, stdin, stdout, stderr, in_process)
    exited = reaper.wait(proc.pid)  # registered before any SIGCHLD handler can run
    if stdin_data is not None:
        proc.stdin.write(stdin_data)
        proc.stdin.close()
    for name in ("stdout", "stderr"):
        f = getattr(proc, name)
        if f is not None:
            pipes[name] = _read_pipe(loop, f)
    try:
        async with asyncio.timeout(timeout):  # no wait_for: one loop step less after the exit
            status, _ = await exited
    except TimeoutError:
        exited = reaper.wait(proc.pid)  # the timeout cancelled the first one
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await exited
        raise TimeoutError(f"{argv[0]} {' '.join(argv[1:3])}: no answer after {timeout}s") from None
    out = {}
    for name, fut in pipes.items():
        out[name] = await fut
    return status, out.get("stdout", b""), out.get("stderr", b"")


class _Forked:
    """What run_command needs of a child: pid and the parent's ends of its pipes."""

    def __init__(self, pid, stdin, stdout, stderr):
        self.pid, self.stdin, self.stdout, self.stderr = pid, stdin, stdout, stderr


# what a fresh interpreter or Go program expects (Python ignores them): for every program we start
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def _start(argv, stdin_data, stdin, stdout, stderr, in_process):
    """The child, with the given fds (or new pipes, or /dev/null for stdin) as its stdio.
    A binary is started with posix_spawn: no subprocess code runs in the server (each object
    it touches after the fork from the zygote costs the server a private page)."""
    from corral.shim import inproc

    mine, theirs = {}, []  # our pipe ends by name; the child's ends, closed here after the start
    try:
        fds = []
        for name, given in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
            if given is not None:
                fds.append(given)
            elif name == "stdin" and stdin_data is None:
                fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                theirs.append(fd)
                fds.append(fd)
            else:
                r, w = os.pipe()
                child, parent = (r, w) if name == "stdin" else (w, r)
                theirs.append(child)
                mine[name] = parent
                fds.append(child)
        if in_process:
            pid = inproc.spawn(argv, *fds)
        else:
            try:
                pid = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=DEFAULT_SIGNALS,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)])
            except OSError as e:
                raise OSError(e.errno, f"cannot run {argv[0]}: {e.strerror}") from None
    except BaseException:
        for fd in list(mine.values()):
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    files = {name: open(fd, "wb" if name == "stdin" else "rb", buffering=0) for name, fd in mine.items()}
    return _Forked(pid, files.get("stdin"), files.get("stdout"), files.get("stderr"))
