"""Container lifecycle on the runtime side: create, start, kill, delete."""

import os
import time

from corral.oci import state as statelib
from corral.oci.errors import RuntimeFailure

SIGKILL = 9


def remove_state_dir(path):
    """Remove a container's state directory (flat: state.json, the FIFO, temp files)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except IsADirectoryError:
            import shutil
            shutil.rmtree(os.path.join(path, name), ignore_errors=True)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _now_rfc3339():
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + ".%09dZ" % (t % 10**9)


class failing_as(object):
    """`with failing_as("creating container X"):` turns an unexpected OSError into the one-line
    RuntimeFailure the CLI prints (after the code inside has cleaned up)."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, OSError):
            detail = exc.args[-1] if len(exc.args) > 1 else str(exc)
            raise RuntimeFailure(f"{self.what} failed: {detail}") from None
        return False


def fast_exit(code):
    """Exit at once, skipping the interpreter's teardown (several ms on the lifecycle's hot
    path). Only for the end of a command, when the state is saved and nothing is pending."""
    import sys
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def warn(ctx, msg):
    """A warning goes to the log; with no log file (text format) to stderr too, as runc does."""
    ctx.log.warning(msg)
    if ctx.log_path is None and ctx.log_format != "json":
        import sys
        sys.stderr.write(f"corral-runc: warning: {msg}\n")


# seccomp programs built for earlier containers, by their full config (security.validate):
# a name no container ID can take
SECCOMP_CACHE = "@seccomp-cache"


def seccomp_cache(root):
    """The runtime root's cache of seccomp programs, or None before the root exists (the
    cache is not what should make it, with other permissions than create's)."""
    return os.path.join(root, SECCOMP_CACHE) if os.path.isdir(root) else None


def _validate_parts(spec, bundle, cache_dir=None):
    from corral.oci.linux import security
    security.validate(spec, cache_dir)
    from corral.oci.linux import cgroups, rootfs
    rootfs.validate(spec, bundle)
    cgroups.validate((spec.get("linux") or {}).get("resources") or {})


def wait_gone(pid, start_time, timeout=10.0):
    """Wait until the process (pid + start time) no longer runs; False on timeout."""
    if start_time is None:
        return True  # it was gone before we could read its start time
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while statelib.proc_start_time(pid) == start_time:
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def write_pid_file(path, pid):
    """Write the pid file atomically (a temp file beside it, then rename), as runc does."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        raise RuntimeFailure(f"cannot write the pid file {path}: {e.strerror}") from None


def create(ctx, container_id, bundle, pid_file=None, console_socket=None, no_pivot=False,
           preserve_fds=0, console_sock=None):
    """Create the container and leave its init waiting on the exec FIFO. Returns the Container.

    console_sock: an already connected socket to send the pty master to (used by `run`)."""
    statelib.check_id(container_id)
    return _create(ctx, container_id, bundle, pid_file, console_socket, no_pivot, preserve_fds,
                   console_sock)


def _create(ctx, container_id, bundle, pid_file, console_socket, no_pivot, preserve_fds, console_sock):
    from corral.oci import spec as speclib
    from corral.oci.init import Setup, direct_init, preload, recv, send, stage1
    from corral.oci.linux import cgroups, namespaces
    import _socket  # the C module: `socket` costs milliseconds of enum set-up

    spec, bundle, rootfs = speclib.load(bundle)
    _validate_parts(spec, bundle, seccomp_cache(ctx.root) if (spec.get("linux") or {}).get("seccomp") else None)
    process = spec["process"]
    linux = spec["linux"]
    if process.get("terminal") and console_socket is None and console_sock is None:
        raise RuntimeFailure("process.terminal is true but no --console-socket was given: "
                             "pass one, or set terminal to false")
    os.makedirs(ctx.root, 0o711, exist_ok=True)
    cdir = os.path.join(ctx.root, container_id)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise RuntimeFailure(f"container {container_id} already exists") from None
    except OSError as e:
        raise RuntimeFailure(f"cannot create the state directory {cdir}: {e.strerror}") from None

    c = statelib.Container(ctx.root, container_id, {
        "bundle": bundle, "rootfs": rootfs, "pid": 0, "config": spec, "created": _now_rfc3339(),
        "owner": ""})
    manager = None
    stage1_pid = 0
    child_pid = 0  # init, when it is our own child (cloned straight into its namespaces)
    opened = []
    own_console = None
    parent_sock = child_sock = None
    fifo_fd = -1
    try:
        os.mkfifo(c.fifo_path, 0o622)
        os.chmod(c.fifo_path, 0o622)  # mkfifo applies the umask; a user namespace's root needs o+w
        fifo_fd = os.open(c.fifo_path, os.O_PATH | os.O_CLOEXEC)
        manager = cgroups.open_manager(linux.get("cgroupsPath"), container_id, systemd=ctx.systemd_cgroup)
        manager.create()
        c.set_cgroup_manager(manager)
        # limits and device rules are in place before any process of the container joins
        manager.set(linux.get("resources") or {}, linux.get("devices") or ())
        c.save()
        opened = namespaces.open_paths(linux.get("namespaces"))
        if process.get("terminal") and console_sock is None:
            from corral.oci import console
            console_sock = own_console = console.connect(console_socket)
        preload(process, spec)
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        setup = Setup(spec, bundle, rootfs, container_id, opened, fifo_fd,
                      console_sock if process.get("terminal") else None, no_pivot, preserve_fds,
                      manager.paths() if manager is not None else {})
        nss = linux.get("namespaces")
        direct = None
        if not opened and not linux.get("timeOffsets") and not (
                namespaces.new_flags(nss) & (namespaces.FLAGS["user"] | namespaces.FLAGS["time"])):
            direct = cgroups.clone_into(manager, namespaces.new_flags(nss, skip=("cgroup",)))
        if direct is not None:
            child_pid, setup.cgroup_join = direct
            if child_pid == 0:
                parent_sock.close()
                direct_init(child_sock, setup, namespaces.new_flags(nss) & namespaces.FLAGS["cgroup"])
                os._exit(1)
        else:
            stage1_pid, setup.cgroup_join = cgroups.fork_into(manager)
            if stage1_pid == 0:
                parent_sock.close()
                stage1(child_sock, setup)
                os._exit(1)
        child_sock.close()
        child_sock = None
        namespaces.close_all(opened)
        opened = []
        if own_console is not None:
            own_console.close()
            own_console = None

        if child_pid:
            c.pid = child_pid
        else:
            msg = _expect(recv(parent_sock), "hello", stage1_pid)  # it has joined its cgroups
            if namespaces.new_flags(nss) & namespaces.FLAGS["user"]:
                namespaces.write_id_maps(stage1_pid, linux.get("uidMappings"), linux.get("gidMappings"))
            send(parent_sock, t="go")
            msg = _expect(recv(parent_sock), "pid", stage1_pid)
            c.pid = msg["pid"]
        c.start_time = statelib.proc_start_time(c.pid)
        c.save()
        from corral.oci.linux import security
        security.set_oom_score_adj(c.pid, process.get("oomScoreAdj"))
        while True:
            msg = recv(parent_sock)
            if msg is None:
                raise RuntimeFailure(f"container {container_id}: its init exited during set-up")
            if msg["t"] == "error":
                raise RuntimeFailure(msg["msg"])
            if msg["t"] == "hooks":
                from corral.oci import hooks
                st = c.hook_state("creating")
                hooks.run_hooks(spec, "prestart", st)
                hooks.run_hooks(spec, "createRuntime", st)
                send(parent_sock, t="ok", state=c.hook_state("creating"))
            elif msg["t"] == "ready":
                break
        if stage1_pid:
            # stage1 exited after its "pid" message; reaped only now, so its exit overlapped init's work
            os.waitpid(stage1_pid, 0)
            stage1_pid = 0
        if pid_file:
            write_pid_file(pid_file, c.pid)
        return c  # state.json has been complete since the pid was known
    except BaseException:
        if stage1_pid:
            _kill_and_reap(stage1_pid)
        if child_pid:
            _kill_and_reap(child_pid)
        elif c.pid:
            try:
                os.kill(c.pid, SIGKILL)
            except OSError:
                pass
            wait_gone(c.pid, c.start_time)
        if manager is not None:
            try:
                _kill_leftovers(manager)
                manager.destroy()
            except (OSError, RuntimeFailure):
                pass
        remove_state_dir(cdir)
        raise
    finally:
        namespaces.close_all(opened)
        for s in (parent_sock, child_sock, own_console):
            if s is not None:
                s.close()
        if fifo_fd >= 0:
            os.close(fifo_fd)


def _expect(msg, kind, pid):
    if msg is None:
        raise RuntimeFailure("container set-up failed: the runtime's child exited without a word")
    if msg["t"] == "error":
        raise RuntimeFailure(msg["msg"])
    if msg["t"] != kind:
        raise RuntimeFailure(f"container set-up failed: unexpected message {msg['t']!r}")
    return msg


def start(ctx, container_id, c=None):
    """c: the Container as create() returned it (`run`), instead of reading its state again."""
    if c is None:
        c = statelib.load(ctx, container_id)
    status = c.status()
    if status != "created":
        raise RuntimeFailure(f"cannot start container {container_id}: it is {status}, not created")
    try:
        fd = os.open(c.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RuntimeFailure(f"cannot start container {container_id}: it was already started") from None
    try:
        import select  # after the open, which lets init go on: its import overlaps init's exec
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(50):
            if not c.alive():
                raise RuntimeFailure(f"cannot start container {container_id}: its init has exited")
        if not os.read(fd, 1):
            why = "it was started by another caller" if c.alive() else "its init has exited"
            raise RuntimeFailure(f"cannot start container {container_id}: {why}")
    finally:
        os.close(fd)
    try:
        os.unlink(c.fifo_path)
    except FileNotFoundError:
        pass
    if (c.config.get("hooks") or {}).get("poststart"):
        from corral.oci import hooks
        try:
            hooks.run_hooks(c.config, "poststart", c.hook_state("running"))
        except RuntimeFailure as e:
            warn(ctx, str(e))
    return c


def parse_signal(text):
    """A signal from a name (KILL, SIGKILL, kill) or a number."""
    import _signal  # the C module: `signal` builds enums (milliseconds per call)

    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < 65:
            return n
    else:
        if not t.startswith("SIG"):
            t = "SIG" + t
        sig = getattr(_signal, t, None) if t[3:].isalnum() else None
        if isinstance(sig, int) and sig in _signal.valid_signals():
            return sig
        if t.startswith("SIGRTMIN") or t.startswith("SIGRTMAX"):
            base = _signal.SIGRTMIN if t.startswith("SIGRTMIN") else _signal.SIGRTMAX
            off = t[8:]
            try:
                return base + (int(off) if off else 0)
            except ValueError:
                pass
    raise RuntimeFailure(f"unknown signal {text!r}: use a name like TERM or SIGKILL, or a number")


def kill(ctx, container_id, sig, all_processes=False):
    c = statelib.load(ctx, container_id)
    status = c.status()
    if status in ("stopped", "creating"):
        raise RuntimeFailure(f"cannot kill container {container_id}: it is {status}")
    mgr = c.cgroup_manager()
    if all_processes and mgr is not None:
        pids = mgr.pids()
        if sig == SIGKILL and status == "paused":
            _signal_all(pids, sig)
            mgr.thaw()
            return
        _signal_all(pids, sig)
        return
    try:
        os.kill(c.pid, sig)
    except ProcessLookupError:
        raise RuntimeFailure(f"cannot kill container {container_id}: it is not running") from None


def _signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def delete(ctx, container_id, force=False, c=None):
    """c: the Container as this process created it (`run`), instead of reading its state again."""
    if c is None:
        try:
            c = statelib.load(ctx, container_id)
        except RuntimeFailure:
            cdir = os.path.join(ctx.root, container_id)
            if force and os.path.isdir(cdir) and container_id not in (".", ".."):
                remove_state_dir(cdir)  # a state dir left without state.json
                return
            raise
    status = c.status()
    if status in ("running", "paused") and not force:
        raise RuntimeFailure(f"cannot delete container {container_id}: it is {status}; stop it "
                             "first or use delete --force")
    mgr = c.cgroup_manager()
    if status in ("created", "running", "paused"):
        pids = []
        if mgr is not None:
            try:
                pids = mgr.pids()
            except Exception:
                pids = []
        _signal_all([p for p in pids if p != c.pid] + [c.pid], SIGKILL)
        if status == "paused" and mgr is not None:
            mgr.thaw()
        if not wait_gone(c.pid, c.start_time):
            raise RuntimeFailure(f"cannot delete container {container_id}: its init (pid {c.pid}) "
                                 "did not die after SIGKILL")
    if (c.config.get("hooks") or {}).get("poststop"):
        from corral.oci import hooks
        try:
            hooks.run_hooks(c.config, "poststop", c.hook_state("stopped"))
        except RuntimeFailure as e:
            warn(ctx, str(e))
    if mgr is not None:
        _kill_leftovers(mgr)
        mgr.destroy()
    remove_state_dir(c.dir)


def _kill_and_reap(pid):
    """End a child of ours that is part of a failed create, and reap it."""
    try:
        os.kill(pid, SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)


def _kill_leftovers(mgr):
    """SIGKILL what is left in the cgroup once init is gone (processes of a container that
    shares the host's pid namespace, or exec'd ones not yet reaped), so it can be removed."""
    try:
        pids = mgr.pids()
    except (OSError, RuntimeFailure):
        return
    if not pids:
        return
    _signal_all(pids, SIGKILL)
    try:
        if mgr.frozen():
            mgr.thaw()
    except (OSError, RuntimeFailure):
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if not mgr.pids():
                return
        except (OSError, RuntimeFailure):
            return
        time.sleep(0.01)
