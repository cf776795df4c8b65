import os

import _signal  # the C module: `signal` builds enums we do not need

from corral.oci import container
from corral.oci.errors import RuntimeFailure
from corral.oci.linux import syscalls as sc

HELP = "create and start a container; in the foreground wait for it and exit with its status"


def configure(p):
    p.add_argument("-b", "--bundle", default=".", help="bundle directory (default: the current one)")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--console-socket", default=None)
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for the container")
    p.add_argument("--no-pivot", action="store_true")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--no-new-keyring", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--keep", action="store_true", help="do not delete the container after it exits")
    p.add_argument("container_id")


def run(ctx, args):
    with container.failing_as(f"running container {args.container_id}"):
        return _run(ctx, args)


def _run(ctx, args):
    if args.detach:
        c = container.create(ctx, args.container_id, args.bundle, pid_file=args.pid_file,
                             console_socket=args.console_socket, no_pivot=args.no_pivot,
                             preserve_fds=args.preserve_fds)
        _start_or_delete(ctx, args.container_id, c)
        container.fast_exit(0)
    # become the subreaper so the container's init (forked by our child) is reparented to us
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    own_pty = None
    console_sock = None
    if args.console_socket is None and _wants_terminal(args.bundle):
        import _socket  # the C module: `socket` costs ~10 ms of enum set-up
        console_sock, own_pty = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        c = container.create(ctx, args.container_id, args.bundle, pid_file=args.pid_file,
                             console_socket=args.console_socket, no_pivot=args.no_pivot,
                             preserve_fds=args.preserve_fds, console_sock=console_sock)
    finally:
        if console_sock is not None:
            console_sock.close()
    master = None
    try:
        if own_pty is not None:
            from corral.oci import console
            master, _ = console.recv_fd(own_pty)
        forward = _forward_signals(c.pid, master)
        _start_or_delete(ctx, args.container_id, c)
        if master is not None:
            from corral.oci import ptyproxy
            status = ptyproxy.proxy(master, c.pid)
        else:
            status = _wait(c.pid)
        forward()
    finally:
        if own_pty is not None:
            own_pty.close()
        if master is not None:
            os.close(master)
        if not args.keep and os.path.isdir(os.path.join(ctx.root, args.container_id)):
            try:
                # the state we created, not read again (a `delete` from elsewhere leaves no dir)
                container.delete(ctx, args.container_id, force=True, c=c)
            except RuntimeFailure as e:
                container.warn(ctx, str(e))
    container.fast_exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _start_or_delete(ctx, cid, c=None):
    try:
        container.start(ctx, cid, c)
    except BaseException:
        try:
            container.delete(ctx, cid, force=True, c=c)
        except RuntimeFailure:
            pass
        raise


def _wants_terminal(bundle):
    from corral.oci import jsonfast as json
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return bool((json.loads(f.read()).get("process") or {}).get("terminal"))
    except (OSError, ValueError, AttributeError):
        return False  # create reports the problem


def _wait(pid):
    """Reap children (we are a subreaper) until `pid` exits; returns its wait status."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise RuntimeFailure("lost the container's init: it is not our child") from None
        if done == pid:
            return status


FORWARDED = sorted(_signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD,
                                               _signal.SIGWINCH, _signal.SIGURG})


def _forward_signals(pid, master):
    """Pass the signals we get on to the container's init; returns a function that undoes it."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    old = {}
    for s in FORWARDED:
        try:
            old[s] = _signal.signal(s, forward)
        except (OSError, ValueError):
            pass

    def restore():
        for s, h in old.items():
            _signal.signal(s, h)
    return restore
