"""The `start` and `delete` subcommands (short-lived; no asyncio).

Both run once per container on containerd's critical path, so they import as little as they
can: `_socket` rather than `socket` (whose enums cost more than the rest), the builtin sha256,
JSON only when a grouping annotation may be present.

start: one shim server per group (the pod's `io.kubernetes.cri.sandbox-id` annotation, or
`io.corral.shim.group`, or the namespace with CORRAL_SHIM_GROUP=namespace in the daemon's
environment, else the container itself). Its socket is
/run/containerd/s/<sha256(daemon address, namespace, group)>; if a live server already listens
there, its address is reused.
"""

import os
import sys

SOCKET_DIR = "/run/containerd/s"
GROUP_ANNOTATIONS = ("io.kubernetes.cri.sandbox-id", "io.corral.shim.group")


def group_of(bundle, cid, namespace=""):
    """The group a container's shim serves: its pod or explicit group annotation; else, when
    the daemon runs with CORRAL_SHIM_GROUP=namespace, its whole namespace; else itself."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except OSError:
        raw = b""
    annotations = {}
    if any(key.encode() in raw for key in GROUP_ANNOTATIONS):
        import json

        try:
            annotations = json.loads(raw).get("annotations") or {}
        except (ValueError, AttributeError):
            pass
    for key in GROUP_ANNOTATIONS:
        if annotations.get(key):
            return annotations[key]
    if os.environ.get("CORRAL_SHIM_GROUP") == "namespace" and namespace:
        return "namespace:" + namespace
    return cid


def sha256_hex(data):
    try:
        from _sha256 import sha256  # builtin: hashlib would load OpenSSL first
    except ImportError:
        from hashlib import sha256
    return sha256(data).hexdigest()


def socket_path(address, namespace, group):
    return os.path.join(SOCKET_DIR, sha256_hex(f"{address}\0{namespace}\0{group}".encode()))


def unix_socket():
    import _socket

    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)


def _alive(path):
    s = unix_socket()
    try:
        s.settimeout(2)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def start(flags):
    bundle = os.getcwd()
    if not flags.id:
        print("containerd-shim-corral-v2 start: -id is required", file=sys.stderr)
        return 1
    try:
        opts = sys.stdin.buffer.read()
    except (OSError, ValueError):
        opts = b""
    address = start_server(flags, bundle, opts, dict(os.environ))
    print(address, end="")
    return 0


def start_server(flags, bundle, opts, env, fork=True):
    """`start`'s work: save the options, then reuse the group's live server or have one started
    (by the zygote, else forked here when `fork`); its address, or None when the zygote could not
    start it and `fork` is false (a daemon calling this in-process then execs `start` instead)."""
    import fcntl

    from corral.shim.options import save_raw
    from corral.ttrpc.sockets import listen_private

    cid = flags.id
    save_raw(bundle, opts)
    group = group_of(bundle, cid, flags.namespace)
    path = socket_path(flags.address, flags.namespace, group)
    os.makedirs(SOCKET_DIR, mode=0o711, exist_ok=True)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if group != cid and _alive(path):
            _write_file(os.path.join(bundle, "address"), "unix://" + path)
            with open(path + ".pid") as f:
                _write_file(os.path.join(bundle, "shim.pid"), f.read())
            return "unix://" + path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = unix_socket()
        try:
            listen_private(sock, path, 128)
            pid = _via_zygote(flags, sock, path, group, bundle, env, reap=not fork)
            if pid is None:
                if not fork:
                    os.unlink(path)
                    return None
                pid = _spawn_server(flags, sock, path, group, bundle, lock)
        finally:
            sock.close()
        _write_file(path + ".pid", str(pid))
        _write_file(os.path.join(bundle, "shim.pid"), str(pid))
        _write_file(os.path.join(bundle, "address"), "unix://" + path)
    finally:
        os.close(lock)
    return "unix://" + path


class QuietStderr:
    """The server's stderr is the first container's `log` FIFO; once containerd stops reading
    it (that container is gone, the group lives on), writes go to /dev/null instead of failing."""

    def write(self, text):
        try:
            return os.write(2, text.encode(errors="replace"))
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
            return len(text)

    def flush(self):
        pass


def _open_log(bundle):
    """The bundle's `log` FIFO for the server's stderr, if containerd reads it; else /dev/null."""
    try:
        fd = os.open(os.path.join(bundle, "log"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(fd, True)
        return fd
    except OSError:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def _via_zygote(flags, sock, path, group, bundle, env, reap=False):
    """Have the address's zygote fork the server (see zygote.py); None if there is no zygote,
    in which case one is launched for the next container (reap: by a thread of ours, for a
    long-lived caller)."""
    if env.get("CORRAL_SHIM_ZYGOTE", "1") == "0":
        return None
    from corral.shim import zygote

    log = _open_log(bundle)
    try:
        params = {"flags": {k: v for k, v in vars(flags).items()}, "path": path, "group": group,
                  "env": env}
        pid = zygote.request(flags.address, sock, log, params)
        if pid is None and zygote.launch(flags.address, timeout=3.0, reap=reap):
            # the first container of this daemon waits for the zygote (it takes about as long
            # as a server of our own would to import), so that every server shares its pages
            pid = zygote.request(flags.address, sock, log, params)
    finally:
        os.close(log)
    return pid


def _spawn_server(flags, sock, path, group, bundle, lock):
    """Fork the long-lived server: its own session, stdio away from containerd's pipes (so
    `start`'s output ends when we exit), stderr to the bundle's `log` FIFO when containerd reads it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        os.read(r, 1)  # the child has set up its session and stdio
        os.close(r)
        return pid
    try:
        os.close(r)
        os.close(lock)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        log = _open_log(bundle)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = QuietStderr()
        os.write(w, b"1")
        os.close(w)
        import socket

        from corral.shim.server import serve

        code = serve(flags, socket.socket(fileno=sock.detach()), path, group)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    os._exit(code)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def delete_response(exit_status, exited_at_ns, pid=0):
    """containerd.task.v2.DeleteResponse, encoded by hand: `delete` is on containerd's path after
    every task, and importing protobuf would cost more than the rest of the command."""
    seconds, nanos = divmod(exited_at_ns, 1_000_000_000)
    ts = (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(nanos) if nanos else b"")
    out = b""
    if pid:
        out += b"\x08" + _varint(pid)
    if exit_status:
        out += b"\x10" + _varint(exit_status)
    return out + b"\x1a" + _varint(len(ts)) + ts


DELETED = "corral-deleted"


def note_clean_delete(bundle):
    """The server deleted this container completely (runtime state, rootfs): leave `delete`'s
    answer in the bundle, so the launcher can print it without starting Python (containerd runs
    `delete` after every task and waits for it)."""
    import time

    path = os.path.join(bundle, DELETED)
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(delete_response(128 + 9, time.time_ns()))  # what `delete` itself answers
        os.rename(path + ".tmp", path)
    except OSError:
        pass  # the ordinary `delete` does the same work


def delete(flags):
    """Clean up a container whose shim is gone (containerd also runs this after every normal
    task delete): force-delete it in the runtime if the runtime still has it, unmount its rootfs,
    and print a DeleteResponse (killed by SIGKILL, now)."""
    import time

    from corral.shim.options import load_resolved

    bundle = flags.bundle or os.getcwd()
    binary, root = load_resolved(bundle, flags.namespace)
    if flags.id and os.path.exists(os.path.join(root, flags.id)):
        import subprocess

        argv = [binary, "--root", root, "--log", os.path.join(bundle, "log.json"),
                "--log-format", "json", "delete", "--force", flags.id]
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"warning: {argv[0]} delete {flags.id}: {e}", file=sys.stderr)
    from corral.shim import mounts

    mounts.unmount_rootfs(os.path.join(bundle, "rootfs"))
    # a shim that was killed could not remove its socket files
    path = socket_path(flags.address, flags.namespace, group_of(bundle, flags.id, flags.namespace))
    if os.path.exists(path) and not _alive(path):
        for p in (path, path + ".pid", path + ".lock"):
            try:
                os.unlink(p)
            except OSError:
                pass
    sys.stdout.buffer.write(delete_response(128 + 9, time.time_ns()))
    sys.stdout.flush()
    return 0
