"""Terminals under corral-runc: the console-socket protocol (pty master over SCM_RIGHTS),
consoleSize, exec --tty, and run's own pty proxy."""

import os
import select
import socket
import time

from corral.oci import console
from tests.helpers.oci_runtime import rt  # noqa: F401


def _read_until(fd, marker, timeout=20):
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def _listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    s.settimeout(20)
    return s


def test_console_socket_gets_the_pty(rt, cid):
    sock_path = os.path.join(rt.tmp, "console.sock")
    listener = _listener(sock_path)

    def change(s):
        s["process"]["terminal"] = True
        s["process"]["consoleSize"] = {"height": 30, "width": 100}
    bundle = rt.bundle(args=["sh", "-c", "tty; stty size; read line; echo got-$line; sleep 1000"], changes=change)
    master = None
    try:
        rt.ok("create", "--bundle", bundle, "--console-socket", sock_path, cid)
        conn, _ = listener.accept()
        with conn:
            master, name = console.recv_fd(conn)
        assert name.startswith("/dev/pts/")
        rt.ok("start", cid)
        out = _read_until(master, b"30 100")
        assert "/dev/pts/0" in out and "30 100" in out, out
        os.write(master, b"hello\n")
        assert "got-hello" in _read_until(master, b"got-hello")

        # exec --tty with its own console socket: a second pty in the same devpts
        res = rt("exec", "--tty", "--detach", "--console-socket", sock_path, cid, "sh", "-c", "tty; sleep 1000")
        assert res.returncode == 0, res.stderr
        conn, _ = listener.accept()
        with conn:
            exec_master, _ = console.recv_fd(conn)
        try:
            assert "/dev/pts/1" in _read_until(exec_master, b"/dev/pts/1")
        finally:
            os.close(exec_master)
    finally:
        listener.close()
        if master is not None:
            os.close(master)


def test_run_terminal_without_console_socket(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "tty; echo hi; exit 3"],
                       changes=lambda s: s["process"].update(terminal=True))
    res = rt("run", "--bundle", bundle, cid, stdin=open(os.devnull))
    assert res.returncode == 3, res.stderr
    assert "/dev/pts/0" in res.stdout and "hi" in res.stdout


def test_exec_tty_foreground(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"])
    rt.ok("run", "-d", "--bundle", bundle, cid)
    res = rt("exec", "-t", cid, "sh", "-c", "tty; exit 4", stdin=open(os.devnull))
    assert res.returncode == 4, res.stderr
    assert "/dev/pts/0" in res.stdout
