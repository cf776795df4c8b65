"""A warm parent for shim servers: one per containerd address, with the server's modules already
imported. `start` hands it the bound shim socket and the `log` FIFO (SCM_RIGHTS) and it forks
the new server, which then skips ~100 ms of imports and shares the imported pages
copy-on-write with its siblings (lower PSS per container).

`start` falls back to forking the server itself when no zygote answers, and launches one for
the next container. The zygote exits after CORRAL_SHIM_ZYGOTE_IDLE seconds (default 60)
without a request, or as soon as the daemon's socket is gone.

    python -m corral.shim.zygote <containerd address>
"""

import os
import sys

IDLE = float(os.environ.get("CORRAL_SHIM_ZYGOTE_IDLE", "60"))
# a spare server (see server.serve_spare) is forked once no request came for this long, so that
# it does not compete for the CPU with the container just started; the next request then gets
# a server whose loop is already made (~4 ms less for `start`). CORRAL_SHIM_SPARE=0: none.
SPARE_DELAY = 0.2


def zygote_path(address):
    from corral.shim.start import SOCKET_DIR, sha256_hex

    return os.path.join(SOCKET_DIR, "zygote-" + sha256_hex(address.encode())[:32])


def request(address, sock, log_fd, params, timeout=2.0):
    """Ask the zygote for a server on `sock`: its pid, or None when no zygote answers.
    (marshal, _socket and struct: this runs in `start`, where every import counts.)"""
    import _socket
    import marshal
    import struct

    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect(zygote_path(address))
        conn.sendmsg([marshal.dumps(params)],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("2i", sock.fileno(), log_fd))])
        conn.shutdown(_socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n") and (chunk := conn.recv(4096)):
            reply += chunk  # the pid and a newline: no need to wait for the zygote to close
        return int(reply)
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def launch(address, timeout, reap=False):
    """Start a zygote for `address` (it exits at once if one runs already); True once its
    socket accepts connections, False if that takes longer than timeout seconds. reap: a
    thread waits for it (the caller lives on, the zygote must not stay a zombie of it)."""
    import socket
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "corral.shim.zygote", address], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                     cwd="/")
    if reap:
        import threading

        threading.Thread(target=proc.wait, name="zygote-reaper", daemon=True).start()
    path = zygote_path(address)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return True
        except OSError:
            time.sleep(0.01)
        finally:
            probe.close()
    return False


def _preload():
    sys.modules.setdefault("ssl", None)
    import asyncio  # noqa: F401
    import subprocess  # noqa: F401
    import tomllib  # noqa: F401

    import corral.api.cgroups.v1.metrics_pb2  # noqa: F401
    import corral.api.containerd.runc.options.oci_pb2  # noqa: F401
    import corral.api.containerd.services.events.ttrpc.v1.events_pb2  # noqa: F401
    import corral.api.runtimeoptions.v1.api_pb2  # noqa: F401
    import corral.shim.events  # noqa: F401
    import corral.shim.loop  # noqa: F401
    import corral.shim.main  # noqa: F401
    import corral.shim.oom  # noqa: F401
    import corral.shim.reaper  # noqa: F401
    import corral.shim.server  # noqa: F401
    import corral.shim.service  # noqa: F401
    import corral.shim.stats  # noqa: F401
    import corral.snapshots.mount  # noqa: F401 (the rootfs mount on Create)
    import corral.ttrpc.client  # noqa: F401
    import corral.ttrpc.server  # noqa: F401
    from corral.api.containerd.events import task_pb2 as events
    from corral.api.containerd.runtime.v2.task import shim_pb2
    from corral.api.ttrpc import ttrpc_pb2
    from corral.shim import inproc

    inproc.preload()  # corral-runc's modules, for the runtime calls forked by the servers

    # protobuf builds its message classes' runtime state on first use: do it here, once,
    # rather than in every server
    for module in (shim_pb2, events, ttrpc_pb2):
        for name in module.DESCRIPTOR.message_types_by_name:
            msg = getattr(module, name)()
            type(msg).FromString(msg.SerializeToString())
    _warm()


WARM_ROUNDS = 10  # more than the interpreter's warm-up count (8 calls) before it specializes code


def _warm():
    """Run a server's loop here once, serving a few calls over a private socket: the code it
    runs is then specialized (3.11 rewrites a function's bytecode in place after its first
    calls) and its lazily made state (caches, loggers, enums) exists before the fork, so each
    server does not copy those pages to write them (measured: ~0.5 MB less private per server)."""
    import asyncio
    import shutil
    import signal
    import tempfile

    from corral.api.containerd.runtime.v2.task import shim_pb2 as pb
    from corral.shim.events import Publisher
    from corral.shim.loop import ShimLoop
    from corral.shim.reaper import Reaper
    from corral.shim.service import SERVICE, TaskService
    from corral.ttrpc.client import Client
    from corral.ttrpc.errors import TtrpcError
    from corral.ttrpc.server import Server
    from google.protobuf.empty_pb2 import Empty

    calls = (("State", pb.StateRequest(id="warm"), pb.StateResponse),
             ("Connect", pb.ConnectRequest(id="warm"), pb.ConnectResponse),
             ("Pids", pb.PidsRequest(id="warm"), pb.PidsResponse),
             ("Kill", pb.KillRequest(id="warm", signal=15), Empty),
             ("Wait", pb.WaitRequest(id="warm"), pb.WaitResponse))

    async def run(path):
        loop = asyncio.get_running_loop()
        reaper = Reaper(loop)
        service = TaskService(loop, reaper, Publisher("", ""), "", lambda: None)
        server = Server()
        server.register(SERVICE, service.methods())
        await server.serve(path=path)
        client = await Client.connect(path, timeout=2)
        try:
            for _ in range(WARM_ROUNDS):
                for method, req, resp in calls:
                    try:
                        await client.call(SERVICE, method, req, resp, timeout=2)
                    except TtrpcError:
                        pass
                try:
                    await asyncio.wait_for(asyncio.Event().wait(), 0)
                except asyncio.TimeoutError:
                    pass
        finally:
            await client.close()
            await server.close()
            loop.remove_signal_handler(signal.SIGCHLD)

    tmp = tempfile.mkdtemp(prefix="corral-zygote-")
    try:
        ShimLoop().run(asyncio.wait_for(run(os.path.join(tmp, "s")), 5))
    except Exception:
        pass  # only a warm-up: the servers do the same work cold
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _reap(*_):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv=None):
    import array
    import fcntl
    import gc
    import marshal
    import signal
    import socket
    import time

    from corral.ttrpc.sockets import listen_private

    argv = sys.argv[1:] if argv is None else argv
    address = argv[0]
    path = zygote_path(address)
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another zygote serves this address
    from corral.shim.server import merge_identical_pages, one_malloc_arena

    one_malloc_arena()
    _preload()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = listen_private(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, 64)
    signal.signal(signal.SIGCHLD, _reap)
    _ENVIRON.update(os.environ)
    merge_identical_pages()
    gc.freeze()  # keep the collector from writing to (and so copying) the shared pages
    last = time.monotonic()
    spares = os.environ.get("CORRAL_SHIM_SPARE", "1") != "0"
    spare = None  # (pid, our end of its channel)
    try:
        while time.monotonic() - last < IDLE and (not address or os.path.exists(address)):
            wait = 1.0
            if spares and spare is None:
                wait = last + SPARE_DELAY - time.monotonic()
                if wait <= 0:
                    spare = _fork_spare(listener, lock)
                    wait = 1.0
            listener.settimeout(min(wait, 1.0))
            try:
                conn, _ = listener.accept()
            except (socket.timeout, InterruptedError):
                continue
            last = time.monotonic()
            with conn:
                conn.settimeout(5)
                fds = array.array("i")
                try:
                    # close-on-exec: nothing a server runs may inherit its socket or log
                    data, ancdata, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(2 * fds.itemsize),
                                                       socket.MSG_CMSG_CLOEXEC)
                    while chunk := conn.recv(1 << 16):
                        data += chunk
                    for level, ctype, cdata in ancdata:
                        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                            fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
                    params = marshal.loads(data)
                    if not isinstance(params, dict):
                        raise ValueError("not a request")
                except (OSError, ValueError, EOFError, TypeError):
                    for fd in fds:
                        os.close(fd)
                    continue
                if len(fds) != 2:
                    continue
                pid = None
                if spare is not None:
                    pid, spare = _hand_to_spare(spare, data, fds), None
                if pid is None:
                    pid = os.fork()
                    if pid == 0:
                        listener.close()
                        conn.close()
                        os.close(lock)
                        _child(params, fds[0], fds[1])
                for fd in fds:
                    os.close(fd)
                try:
                    conn.sendall(f"{pid}\n".encode())
                except OSError:
                    pass
    finally:
        if spare is not None:
            spare[1].close()  # it sees EOF and exits
        for p in (path, path + ".lock"):
            try:
                os.unlink(p)
            except OSError:
                pass
    return 0


def _fork_spare(listener, lock):
    """Fork a spare server; (pid, our end of its channel), or None if that failed."""
    import socket

    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        code = 1
        try:
            listener.close()
            ours.close()
            os.close(lock)
            _detach(os.open(os.devnull, os.O_WRONLY))
            from corral.shim.server import serve_spare

            code = serve_spare(theirs, _take_job)
        except BaseException:
            import traceback

            traceback.print_exc()
        os._exit(code)
    theirs.close()
    return pid, ours


def _hand_to_spare(spare, data, fds):
    """Send a request's parameters and fds to the spare: its pid, or None if it is gone."""
    import socket
    import struct

    pid, chan = spare
    try:
        chan.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("2i", *fds))])
        return pid
    except OSError:
        return None
    finally:
        chan.close()


def _take_job(data, fds):
    """In a spare server: a request's parameters applied as _child does; (flags, socket, path,
    group) for server._main."""
    import marshal
    import socket

    params = marshal.loads(data)
    os.dup2(fds[1], 2)
    os.close(fds[1])
    flags = _apply(params)
    return flags, socket.socket(fileno=fds[0]), params["path"], params["group"]


def _detach(log_fd):
    """A server's process set-up: default SIGCHLD, its own session, stdio away from the caller's,
    stderr to log_fd (the bundle's log FIFO)."""
    import _signal

    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)


def _apply(params):
    """The request's environment and flags; stderr through QuietStderr."""
    from corral.shim.main import Flags
    from corral.shim.start import QuietStderr

    _set_environ(params["env"])
    sys.stderr = QuietStderr()
    flags = Flags()
    for key, value in params["flags"].items():
        setattr(flags, key, value)
    return flags


def _child(params, sock_fd, log_fd):
    """The new server. Every object it touches costs it a copy of that object's page, so this
    path stays short: the C-level signal call, the environment rewritten only where it differs."""
    import socket

    code = 1
    try:
        _detach(log_fd)
        flags = _apply(params)
        from corral.shim.server import serve

        code = serve(flags, socket.socket(fileno=sock_fd), params["path"], params["group"])
    except BaseException:
        import traceback

        traceback.print_exc()
    os._exit(code)


_ENVIRON = {}  # the zygote's environment, as each `start` usually sends it again


def _set_environ(env):
    if env == _ENVIRON:
        return
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if _ENVIRON.get(key) != value:
            os.environ[key] = value


if __name__ == "__main__":
    sys.exit(main())
