"""Attached runs (`run` without -d, `start -a`, `exec`): stdio through FIFOs, the local
terminal in raw mode with -t, signals passed on to the container, the exit status returned."""

import signal
import sys

from corral.cli.errors import CLIError


# The runtime's words when the container's own command cannot be exec'd (exit 127: not found,
# 126: found but cannot be run, docker's codes). corral-runc's (corral/oci/init.py
# find_executable) and runc's; any other start error (a CNI plugin, a mount, a hook...) is 125.
_NOT_FOUND = (r"executable .+ not found in the container(?:'s \$PATH)?: check process\.args\[0\]"
              r'|exec: ".*": (?:executable file not found in \$PATH|stat .*: no such file or directory)')
_CANNOT_RUN = (r"executable .+ in the container (?:is a directory|is not executable \(permission denied\))"
               r'|exec: ".*": (?:permission denied|is a directory)')


def start_error(e):
    """The CLIError for a task that could not start: 127 when the command is not there, 126
    when it cannot be run, else 125."""
    import re
    msg = getattr(e, "message", None) or str(e)
    if re.search(_NOT_FOUND, msg):
        return CLIError(f"cannot run the command in the container: {msg}", 127)
    if re.search(_CANNOT_RUN, msg):
        return CLIError(f"cannot run the command in the container: {msg}", 126)
    hook = "corral-oci-hook: "  # the network hook's own line says it all (port taken, plugin...)
    if hook in msg:
        return CLIError(f"cannot attach the container's network: {msg.split(hook, 1)[1]}")
    return CLIError(msg)


def run_attached(c, stdin=False, tty=False, remove=False):
    from corral.containers.stdio import FifoIO
    exited = False
    io = FifoIO(c.id, stdin=stdin, terminal=tty, output=False)
    try:
        if tty:
            io.start_output()
        else:
            io.follow_log(c.log_path)
        waits = []  # Wait is asked before Start: no exit can be missed, and no round trip after
        try:
            c.start(io=io, created=lambda: waits.append(c.client.wait_task_future(c.id)))
        except Exception as e:
            raise start_error(e) from None
        io.unlink()
        status = _follow(c, io, stdin, tty, lambda: c.client.close_stdin(c.id),
                         lambda sig: c.client.kill(c.id, sig),
                         lambda w, h: c.client.resize_pty(c.id, w, h),
                         lambda: wait_exit(c.client, c.id, "", waits[0]))
        exited = True
        return status
    finally:
        io.finish()
        io.close()
        if remove:
            try:
                c.remove(force=True, exited=exited)
            except Exception as e:
                print(f"corral: removing {c.name}: {getattr(e, 'message', None) or e}", file=sys.stderr)


def _follow(c, io, stdin, tty, close_stdin, kill, resize, wait):
    import gc
    from corral.containers.stdio import RawTerminal
    gc.enable()  # the container may run for long (corral.cli.main turned it off for the set-up)
    previous = {}

    def forward(signum, frame):
        # not in the handler itself: it runs between two bytecodes of this thread, which may
        # be in the middle of a call on the same connection
        import threading
        threading.Thread(target=_safe, args=(kill, signum), daemon=True).start()

    def forward_resize():
        import threading
        threading.Thread(target=_safe, args=(lambda: resize(*term.size()),), daemon=True).start()

    if not tty:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[s] = signal.signal(s, forward)
    term = RawTerminal(0) if tty and sys.stdin.isatty() else None
    try:
        if term is not None:
            term.__enter__()
            try:
                resize(*term.size())
            except Exception:
                pass
            previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: forward_resize())
        if stdin:
            io.start_input(close_stdin)
        return wait()
    finally:
        if term is not None:
            term.__exit__(None, None, None)
        for s, h in previous.items():
            signal.signal(s, h)


def wait_exit(client, cid, exec_id, fut):
    """The exit status from the Wait call `fut`; while it is pending, the process's state is
    also checked every second, so an exit whose Wait answer never comes is still seen."""
    import os
    from corral.api.containerd.types import task_pb2
    from corral.client_wire import FutureTimeoutError
    gone = 0
    while True:
        try:
            return fut.result(timeout=1.0).exit_status
        except FutureTimeoutError:
            p = client.task(cid, exec_id)
            if p.status == task_pb2.STOPPED:
                fut.cancel()
                return p.exit_status
            try:
                os.kill(p.pid, 0)
                gone = 0
            except ProcessLookupError:
                gone += 1
            if gone >= 3:
                # the process is gone and reaped, but the shim never reported its exit
                fut.cancel()
                raise CLIError(f"process {p.pid} in {cid[:12]} has ended but its exit status was lost by the shim")


def _safe(fn, *a):
    try:
        fn(*a)
    except Exception:
        pass


def exec_attached(c, io, stdin, tty, start):
    """Follow an exec process started by `start()` (which returns its exec id)."""
    client = c.client
    io.start_output()
    exec_id = start()
    try:
        fut = client.wait_task_future(c.id, exec_id)
        try:
            client.start_task(c.id, exec_id)
        except Exception as e:
            raise start_error(e) from None
        io.unlink()
        return _follow(c, io, stdin, tty, lambda: client.close_stdin(c.id, exec_id),
                       lambda sig: client.kill(c.id, sig, exec_id=exec_id),
                       lambda w, h: client.resize_pty(c.id, w, h, exec_id=exec_id),
                       lambda: wait_exit(client, c.id, exec_id, fut))
    finally:
        io.finish()
        try:
            client.delete_process(c.id, exec_id)
        except Exception:
            pass
