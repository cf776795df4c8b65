"""The container side of `create` (and of `exec`): runs in forked children, never returns.

stage1() runs in the first child: it joins namespaces given by path, creates the user
namespace (the parent then writes the id maps), creates the other namespaces and forks the
container's init, which becomes pid 1 of a new pid namespace; stage1 reports init's host pid
and exits. Where no user or time namespace is made and none is joined by path, the parent
clones init straight into its namespaces instead (direct_init: no stage1). init_main() sets
the container up, reports "ready", waits on the exec FIFO for `start`, then execs the user's
process.

Messages to the parent go over a SOCK_SEQPACKET socket as small JSON objects; an error is
{"t": "error", "msg": ...}, which the parent prints as its one line.
"""

from corral.oci import jsonfast as json  # json.loads/dumps without importing json (re)
import os

import _signal  # the C module: `signal` builds enums we do not need

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import namespaces
from corral.oci.linux import syscalls as sc

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def send(sock, **msg):
    sock.send(json.dumps(msg).encode())


def recv(sock):
    data = sock.recv(65536)
    if not data:
        return None
    return json.loads(data)


def _message(exc):
    if isinstance(exc, RuntimeFailure):
        return str(exc)
    if isinstance(exc, OSError):
        return f"container set-up failed: {exc.args[-1] if len(exc.args) > 1 else exc}"
    return f"container set-up failed: {exc!r}"


def _report_and_exit(sock, exc):
    """Before "ready": the parent prints the error. If it is gone, it is cleaning up already."""
    try:
        send(sock, t="error", msg=_message(exc))
    except OSError:
        pass
    os._exit(1)


def _fail_after_start(exc):
    """After "ready" the parent has exited: the process's stderr is the only place left."""
    try:
        os.write(2, f"corral-runc: {_message(exc)}\n".encode())
    except OSError:
        pass
    os._exit(1)


def preload(process, spec=None):
    """Import, before fork, what the container side needs after it has left the host's
    filesystem (after pivot_root, or after joining the container's mount namespace)."""
    if process.get("terminal"):
        from corral.oci import console  # noqa: F401
    if spec is not None and (spec.get("hooks") or {}).get("startContainer"):
        from corral.oci import hooks  # noqa: F401
    if spec is not None and namespaces.creates_network((spec.get("linux") or {}).get("namespaces")):
        # loopback_up's modules: a mapped root of a new user namespace may not read ours
        import _socket  # noqa: F401
        import fcntl  # noqa: F401


class Setup:
    """Everything the container side needs, prepared by the parent before fork."""

    def __init__(self, spec, bundle, rootfs, container_id, ns_fds, fifo_fd, console_sock,
                 no_pivot, preserve_fds, cgroup_paths):
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.id = container_id
        self.ns_fds = ns_fds
        self.fifo_fd = fifo_fd
        self.console_sock = console_sock
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.cgroup_paths = cgroup_paths
        self.cgroup_join = ()  # files stage1 writes 0 to, to join the cgroups (cgroups.fork_into)


def close_fds_except(keep):
    """Close every fd not in `keep` now, so no fd of the caller waits in init until start."""
    low = 0
    for fd in sorted(set(keep)) + [1 << 20]:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1


def _enter(sock, setup):
    """The first steps of the container side: no dumping, no fds but ours, into the cgroups."""
    # keeps /proc/<pid>/exe (the runtime's interpreter) out of the container's reach
    sc.prctl(sc.PR_SET_DUMPABLE, 0)
    keep = [0, 1, 2, sock.fileno(), setup.fifo_fd, *range(3, 3 + setup.preserve_fds),
            *(fd for _, fd in setup.ns_fds)]
    if setup.console_sock is not None:
        keep.append(setup.console_sock.fileno())
    close_fds_except(keep)
    # into the container's cgroups first, while the host's cgroupfs is in reach and we are
    # its root (before joining namespaces, or creating the cgroup namespace)
    from corral.oci.linux import cgroups
    cgroups.join(setup.cgroup_join)


def direct_init(sock, setup, cgroup_ns):
    """The container's init when it was cloned straight into its cgroup2 directory and its new
    namespaces (cgroups.clone_into: no user or time namespace, none joined by path), so no
    stage1 stands between: it joins the v1 hierarchies, then creates the cgroup namespace
    (cgroup_ns) rooted at the container's cgroups, as stage1's unshare would have."""
    try:
        _enter(sock, setup)
        if cgroup_ns:
            namespaces.unshare(sc.CLONE_NEWCGROUP)
    except BaseException as e:
        _report_and_exit(sock, e)
    init_main(sock, setup)


def stage1(sock, setup):
    try:
        _enter(sock, setup)
        linux = setup.spec.get("linux") or {}
        nss = linux.get("namespaces") or []
        namespaces.join(setup.ns_fds)
        new_user = namespaces.new_flags(nss) & sc.CLONE_NEWUSER
        if new_user:
            namespaces.unshare(sc.CLONE_NEWUSER)
        send(sock, t="hello")  # the parent writes the id maps
        reply = recv(sock)
        if not reply or reply.get("t") != "go":
            os._exit(1)
        if new_user:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        namespaces.unshare(namespaces.new_flags(nss, skip=("user",)))
        if linux.get("timeOffsets"):
            # /proc/self of a non-dumpable task belongs to the host's root, which a new
            # user namespace does not map: be dumpable just for this write
            sc.prctl(sc.PR_SET_DUMPABLE, 1)
            namespaces.write_time_offsets(linux["timeOffsets"])
            sc.prctl(sc.PR_SET_DUMPABLE, 0)
        # init speaks to the parent only after our "pid" message: it waits for this pipe's EOF
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os.close(r)
            init_main(sock, setup)
        send(sock, t="pid", pid=pid)
        os.close(w)  # init goes on now, not after our exit has unmapped our memory
        os._exit(0)
    except BaseException as e:
        _report_and_exit(sock, e)


def init_main(sock, setup):
    try:
        exe, env, last_step = _init(sock, setup)
    except BaseException as e:
        _report_and_exit(sock, e)
    try:
        _after_ready(sock, setup, exe, env, last_step)
    except BaseException as e:
        _fail_after_start(e)
    os._exit(1)


def _init(sock, setup):
    spec = setup.spec
    process = spec["process"]
    linux = spec.get("linux") or {}
    from corral.oci.linux import security

    security.apply_rlimits(process)
    if spec.get("hostname"):
        sc.sethostname(spec["hostname"])
    if spec.get("domainname"):
        sc.setdomainname(spec["domainname"])
    if namespaces.creates_network(linux.get("namespaces")):
        namespaces.loopback_up()
    # /proc/sys shows the namespaces of the task that opens it, so the host's /proc works here
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise RuntimeFailure(f"setting sysctl {key}={value} failed: {e.strerror}") from None

    hooks = spec.get("hooks") or {}
    need_sync = any(hooks.get(k) for k in ("prestart", "createRuntime", "createContainer"))

    def before_pivot():
        if not need_sync:
            return
        send(sock, t="hooks")  # the parent runs prestart and createRuntime hooks
        reply = recv(sock)
        if not reply or reply.get("t") != "ok":
            os._exit(1)
        if hooks.get("createContainer"):
            from corral.oci import hooks as hooklib
            hooklib.run_hooks(spec, "createContainer", reply["state"])

    from corral.oci.linux import rootfs

    rootfs.setup(spec, setup.bundle, setup.cgroup_paths, no_pivot=setup.no_pivot,
                 before_pivot=before_pivot)

    env = list(process.get("env") or [])
    process["env"] = env
    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        try:
            os.makedirs(cwd, 0o755, exist_ok=True)
            os.chdir(cwd)
        except OSError as e:
            raise RuntimeFailure(f"process.cwd {cwd} does not exist in the container and cannot be "
                                 f"created: {e.strerror}") from None
    except OSError as e:
        raise RuntimeFailure(f"cannot enter process.cwd {cwd} in the container: {e.strerror}") from None

    if process.get("terminal"):
        _console(setup, process)
    exe = find_executable(process["args"][0], env)
    last_step = security.finalize(process, linux)
    send(sock, t="ready")
    return exe, env, last_step


def _after_ready(sock, setup, exe, env, last_step):
    spec = setup.spec
    process = spec["process"]
    hooks = spec.get("hooks") or {}
    sock.close()
    # As pid 1 of its namespace, init ignores signals it has no handler for, even from the host:
    # a kill of a created container must still end it (runc's waiting init exits with 2)
    for sig in (_signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM):
        _signal.signal(sig, _exit_waiting)
    try:
        fifo = os.open(f"/proc/self/fd/{setup.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"cannot open the exec FIFO: {e.strerror} (is /proc mounted in the container?)")
    os.write(fifo, b"0")
    os.close(fifo)
    os.close(setup.fifo_fd)
    if hooks.get("startContainer"):
        from corral.oci import hooks as hooklib
        hooklib.run_hooks(spec, "startContainer", {
            "ociVersion": spec.get("ociVersion"), "id": setup.id, "status": "created",
            "pid": os.getpid(), "bundle": setup.bundle, "annotations": spec.get("annotations") or {}})
    exec_process(exe, process["args"], env, setup.preserve_fds, last_step)


def _exit_waiting(_signum, _frame):
    os._exit(2)


def exec_process(exe, args, env, preserve_fds, last_step):
    """Close every fd but stdio and the preserved ones, restore signals, run last_step, execve."""
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    os.closerange(3 + preserve_fds, 1 << 20)
    for sig in _signal.valid_signals():
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP):
            try:
                _signal.signal(sig, _signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    last_step()
    try:
        os.execve(exe, args, dict(e.split("=", 1) for e in env))
    except OSError as e:
        os.write(2, f"corral-runc: starting {args[0]} in the container failed: {e.strerror}\n".encode())
        os._exit(127)


def find_executable(name, env):
    """Resolve args[0] in the container's PATH (we are inside the container's root)."""
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    # the wording tells "not found" (docker's exit 127) from "cannot be run" (126); corral's
    # CLI matches it, so keep the two forms in step with corral/cli/attach.py
    if "/" in name:
        if not os.path.exists(name):
            raise RuntimeFailure(f"executable {name} not found in the container: check process.args[0]")
        why = "is a directory" if os.path.isdir(name) else "is not executable (permission denied)"
        raise RuntimeFailure(f"executable {name} in the container {why}: check process.args[0]")
    raise RuntimeFailure(f"executable {name!r} not found in the container's $PATH: check process.args[0]")


def _console(setup, process):
    from corral.oci import console

    if setup.console_sock is None:
        raise RuntimeFailure("process.terminal is true but no --console-socket was given")
    master, slave, name = console.open_pty()
    console.set_size(master, process.get("consoleSize"))
    console.send_fd(setup.console_sock, master, name)
    os.close(master)
    setup.console_sock.close()
    setup.console_sock = None
    console.make_controlling(slave)


def exec_stage1(sock, opened, process, linux, console_sock, preserve_fds, cgroup_join=()):
    """`exec`: join the container's cgroups and namespaces, fork the process (in its pid
    namespace). cgroup_join: the files of cgroups.fork_into()."""
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        keep = [0, 1, 2, sock.fileno(), *range(3, 3 + preserve_fds), *(fd for _, fd in opened)]
        if console_sock is not None:
            keep.append(console_sock.fileno())
        close_fds_except(keep)
        from corral.oci.linux import cgroups
        cgroups.join(cgroup_join)  # before the namespaces: the host's cgroupfs is in reach here
        reply = recv(sock)
        if not reply or reply.get("t") != "go":
            os._exit(1)
        namespaces.join(opened)
        namespaces.close_all(opened)
        # the process speaks ("ready" or an error) only after our "pid" message, or the parent
        # would read its word as the pid's and wait for pid 0: it waits for this pipe's EOF
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.read(r, 1)
                os.close(r)
                _exec_child(sock, process, linux, console_sock, preserve_fds)
            except BaseException as e:
                _report_and_exit(sock, e)
            os._exit(1)
        send(sock, t="pid", pid=pid)
        os._exit(0)
    except BaseException as e:
        _report_and_exit(sock, e)


def _exec_child(sock, process, linux, console_sock, preserve_fds):
    from corral.oci.linux import security

    security.apply_rlimits(process)
    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except OSError as e:
        raise RuntimeFailure(f"cannot enter the exec cwd {cwd} in the container: {e.strerror}") from None
    env = list(process.get("env") or [])
    process["env"] = env
    if process.get("terminal"):
        setup = Setup(None, None, None, None, None, None, console_sock, False, 0, None)
        _console(setup, process)
    exe = find_executable(process["args"][0], env)
    last_step = security.finalize(process, linux)
    send(sock, t="ready")
    exec_process(exe, process["args"], env, preserve_fds, last_step)
