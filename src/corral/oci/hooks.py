"""OCI hooks: each runs with the container's state JSON on stdin, its own args and env, and an
optional timeout (seconds) after which it is killed and counts as failed."""

from corral.oci import jsonfast as json  # json.loads/dumps without importing json (re)
import os
import select  # here, not in _wait: startContainer hooks run inside the container's rootfs
import time

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import syscalls


def run_hooks(spec, kind, state):
    """Run every hook of `kind` in order; the first failure raises RuntimeFailure."""
    hooks = (spec.get("hooks") or {}).get(kind) or []
    if not hooks:
        return
    data = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        _run_one(kind, i, hook, data)


def _run_one(kind, index, hook, data):
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(e.split("=", 1) for e in hook.get("env") or [])
    timeout = hook.get("timeout")
    what = f"{kind} hook #{index} ({path})"
    r_in, w_in = os.pipe()
    # the hook's stdout and stderr go to a memory file (a pipe could fill up and block it);
    # their start is quoted when the hook fails
    out = os.memfd_create("hook-output", os.MFD_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as e:
        for fd in (r_in, w_in, out):
            os.close(fd)
        raise RuntimeFailure(f"{what} could not start: {e.strerror}") from None
    if pid == 0:
        try:
            os.dup2(r_in, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 65536)
            os.execve(path, args, env)
        except OSError as e:
            os.write(2, f"exec failed: {e.strerror}".encode())
        os._exit(127)
    os.close(r_in)
    try:
        os.set_blocking(w_in, False)  # a hook that reads no stdin must not block us
        try:
            os.write(w_in, data)
        except OSError:
            pass
        os.close(w_in)
        w_in = -1
        status = _wait(pid, timeout)
        if status is None:
            raise RuntimeFailure(f"{what} timed out after {timeout}s and was killed")
        err = os.pread(out, 4096, 0).decode(errors="replace").strip().replace("\n", " ")
        if status != 0:
            detail = f": {err}" if err else ""
            raise RuntimeFailure(f"{what} failed with {_describe(status)}{detail}")
    finally:
        if w_in >= 0:
            os.close(w_in)
        os.close(out)


def _wait(pid, timeout):
    """The hook's wait status, or None after killing it at the timeout."""
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    try:
        pidfd = syscalls.pidfd_open(pid)
    except OSError:
        pidfd = -1  # an older kernel: poll with sleeps
    if pidfd >= 0:
        # woken when the hook exits, not at the next of a growing series of sleeps
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while not poller.poll(max(0, int((deadline - time.monotonic()) * 1000) + 1)):
                if time.monotonic() >= deadline:
                    break
        finally:
            os.close(pidfd)
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, 9)  # SIGKILL
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
