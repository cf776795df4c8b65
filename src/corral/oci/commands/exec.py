from corral.oci import jsonfast as json  # json.loads/dumps without importing json (re)
import os
import _socket

from corral.oci import container, state
from corral.oci.errors import RuntimeFailure

HELP = "run a new process inside a running container"

CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def configure(p):
    p.add_argument("-p", "--process", default=None, help="JSON file with the process (as in config.json)")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--pid-file", default=None)
    p.add_argument("-t", "--tty", action="store_true", help="give the process a terminal")
    p.add_argument("--console-socket", default=None)
    p.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE, repeatable")
    p.add_argument("--cwd", default=None)
    p.add_argument("-u", "--user", default=None, help="user[:group], names or numbers")
    p.add_argument("-g", "--additional-gids", action="append", default=[], type=int)
    p.add_argument("-c", "--cap", action="append", default=[], help="add a capability, repeatable")
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--process-label", default=None)
    p.add_argument("--apparmor", default=None)
    p.add_argument("--ignore-paused", action="store_true")
    p.add_argument("container_id")
    p.add_argument("command", nargs="...")  # argparse.REMAINDER


def _process(c, args):
    from corral.oci import spec as speclib
    from corral.oci.linux import security

    if args.process:
        try:
            with open(args.process) as f:
                process = json.loads(f.read())
        except OSError as e:
            raise RuntimeFailure(f"cannot read the process file {args.process}: {e.strerror}") from None
        except ValueError as e:
            raise RuntimeFailure(f"the process file {args.process} is not valid JSON: {e}") from None
    else:
        if not args.command:
            raise RuntimeFailure("exec needs a command (or --process FILE)")
        base = c.config.get("process") or {}
        process = {k: v for k, v in base.items() if k not in ("terminal", "consoleSize")}
        process = json.loads(json.dumps(process))  # a deep copy
        process["args"] = list(args.command)  # cwd stays the config's, as runc does
    if args.tty:
        process["terminal"] = True
    if args.cwd:
        process["cwd"] = args.cwd
    if args.env:
        env = [e for e in process.get("env") or []]
        for item in args.env:
            key = item.split("=", 1)[0]
            env = [e for e in env if e.split("=", 1)[0] != key] + [item]
        process["env"] = env
    if args.user:
        from corral.oci.linux import user
        # names resolve in the container's own /etc/passwd and /etc/group
        resolved = user.resolve_in_rootfs(args.user, f"/proc/{c.pid}/root")
        process["user"] = dict(process.get("user") or {}, **resolved)
        if "additionalGids" not in resolved:
            process["user"].pop("additionalGids", None)
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    if args.cap:
        caps = process.setdefault("capabilities", {})
        for kind in CAP_SETS:
            caps[kind] = list(caps.get(kind) or []) + [x for x in args.cap if x not in (caps.get(kind) or [])]
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    if args.process_label:
        process["selinuxLabel"] = args.process_label
    if args.apparmor:
        process["apparmorProfile"] = args.apparmor
    speclib.validate_process(process, "the exec process")
    security.validate_process(process, c.config.get("linux"), container.seccomp_cache(c.root))
    return process


def run(ctx, args):
    with container.failing_as(f"exec in container {args.container_id}"):
        return _run(ctx, args)


def _run(ctx, args):
    from corral.oci.init import exec_stage1, preload, recv, send
    from corral.oci.linux import cgroups, namespaces
    from corral.oci.linux import syscalls as sc

    c = state.load(ctx, args.container_id)
    status = c.status()
    if status not in ("created", "running") and not (status == "paused" and args.ignore_paused):
        raise RuntimeFailure(f"cannot exec in container {args.container_id}: it is {status}")
    process = _process(c, args)
    linux = c.config.get("linux") or {}
    terminal = bool(process.get("terminal"))
    own_pty = console_sock = None
    if terminal:
        if args.console_socket:
            from corral.oci import console
            console_sock = console.connect(args.console_socket)
        elif args.detach:
            raise RuntimeFailure("exec --tty --detach needs --console-socket")
        else:
            console_sock, own_pty = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    if not args.detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    preload(process)
    kinds = [ns["type"] for ns in linux.get("namespaces") or []]
    opened = namespaces.open_process(c.pid, kinds)
    parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    pid = 0
    master = None
    try:
        # stage1 starts in (or joins itself) the container's cgroups: cgroups.fork_into
        stage1, join = cgroups.fork_into(c.cgroup_manager())
        if stage1 == 0:
            parent_sock.close()
            exec_stage1(child_sock, opened, process, linux, console_sock, args.preserve_fds, join)
            os._exit(1)
        child_sock.close()
        child_sock = None
        namespaces.close_all(opened)
        opened = []
        if console_sock is not None:
            console_sock.close()
            console_sock = None
        try:
            send(parent_sock, t="go")
            msg = recv(parent_sock)
            if msg and msg["t"] == "pid":
                pid = msg["pid"]
                msg = recv(parent_sock)
        finally:
            os.waitpid(stage1, 0)
        if msg is None or msg["t"] != "ready":
            if msg and msg["t"] == "error":
                raise RuntimeFailure(msg["msg"])
            raise RuntimeFailure(f"exec in container {args.container_id} failed: the process exited during set-up")
        if args.pid_file:
            container.write_pid_file(args.pid_file, pid)
        if args.detach:
            return 0
        if own_pty is not None:
            from corral.oci import console, ptyproxy
            master, _ = console.recv_fd(own_pty)
            from corral.oci.commands.run import _forward_signals
            restore = _forward_signals(pid, master)
            status = ptyproxy.proxy(master, pid)
        else:
            from corral.oci.commands.run import _forward_signals, _wait
            restore = _forward_signals(pid, None)
            status = _wait(pid)
        restore()
        pid = 0
    except BaseException:
        if pid and (args.detach is False):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        raise
    finally:
        namespaces.close_all(opened)
        for s in (parent_sock, child_sock, own_pty, console_sock):
            if s is not None:
                s.close()
        if master is not None:
            os.close(master)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
