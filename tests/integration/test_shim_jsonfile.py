"""The shim's jsonfile:// log URI end to end: ctr runs busybox on a test corrald (our shim)
with --log-uri jsonfile://...; file:// still works beside it."""

import json
import os
import select
import time
import uuid

import pytest

from tests.helpers.corrald import Corrald

# the runtime state root is shared by every daemon here: names unique to this run
SUFFIX = uuid.uuid4().hex[:8]


def N(name):
    return f"{name}-{SUFFIX}"

IMAGE = "docker.io/library/busybox:latest"
RUNTIME = "io.containerd.corral.v2"


@pytest.fixture(scope="module")
def daemon():
    from corral.busybox import make_oci_archive
    d = Corrald(log_level="info")
    try:
        d.start()
        archive = os.path.join(d.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        d.ctr("images", "import", "--snapshotter", "overlayfs", archive)
        yield d
    finally:
        d.cleanup()


def _entries(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _run(daemon, name, uri, *cmd, extra=()):
    try:
        daemon.ctr("run", "--rm", "--snapshotter", "overlayfs", "--runtime", RUNTIME, "--log-uri", uri, *extra, IMAGE, name, *cmd)
    finally:
        daemon.ctr("tasks", "rm", "-f", name, check=False)
        daemon.ctr("containers", "rm", name, check=False)


def test_stdout_and_stderr_as_json_lines(daemon):
    path = os.path.join(daemon.dir, "logs", "a-json.log")
    _run(daemon, N("jf-a"), f"jsonfile://{path}", "sh", "-c", "echo out1; echo err1 >&2; printf 'tail'")
    entries = _entries(path)
    assert [(e["stream"], e["log"]) for e in entries if e["stream"] == "stdout"] == [("stdout", "out1\n"),
                                                                                     ("stdout", "tail")]
    assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["err1\n"]


def test_rotation_from_a_container(daemon):
    path = os.path.join(daemon.dir, "logs", "rot-json.log")
    _run(daemon, N("jf-rot"), f"jsonfile://{path}?max-size=4096&max-file=2",
         "sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done")
    names = sorted(n for n in os.listdir(os.path.dirname(path)) if n.startswith("rot-json.log"))
    assert names == ["rot-json.log", "rot-json.log.1"]
    logs = [e["log"] for e in _entries(path + ".1") + _entries(path)]
    assert logs[-1] == "line-499\n"
    assert logs == [f"line-{i}\n" for i in range(500 - len(logs), 500)]
    assert all(os.path.getsize(os.path.join(os.path.dirname(path), n)) <= 4096 for n in names)


def test_terminal_output_is_logged_as_stdout(daemon):
    from corral.client import Client
    path = os.path.join(daemon.dir, "logs", "tty-json.log")
    name = N("jf-tty")
    uri = f"jsonfile://{path}"
    try:
        daemon.ctr("containers", "create", "--snapshotter", "overlayfs", "--runtime", RUNTIME, "--tty",
                   IMAGE, name, "tty")
        with Client(daemon.sock) as c:
            c.create_task(name, stdout=uri, stderr=uri, terminal=True)
            fut = c.wait_task_future(name)
            c.start_task(name)
            assert fut.result(timeout=20).exit_status == 0
    finally:
        daemon.ctr("tasks", "rm", "-f", name, check=False)
        daemon.ctr("containers", "rm", name, check=False)
    entries = _entries(path)
    text = "".join(e["log"] for e in entries)
    assert {e["stream"] for e in entries} == {"stdout"}
    assert text.startswith("/dev/pts/") and text.endswith("\r\n")  # the terminal's line discipline


def test_exec_process_logs_too(daemon):
    path = os.path.join(daemon.dir, "logs", "exec-json.log")
    name = N("jf-exec")
    try:
        daemon.ctr("run", "-d", "--snapshotter", "overlayfs", "--runtime", RUNTIME, IMAGE, name, "sleep", "30")
        daemon.ctr("tasks", "exec", "--exec-id", "e1", "--log-uri", f"jsonfile://{path}", name,
                   "sh", "-c", "echo from-exec; echo exec-err >&2")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (os.path.exists(path) and len(_entries(path)) == 2):
            time.sleep(0.05)
    finally:
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", name, check=False)
        daemon.ctr("tasks", "rm", "-f", name, check=False)
        daemon.ctr("containers", "rm", name, check=False)
    assert sorted((e["stream"], e["log"]) for e in _entries(path)) == [("stderr", "exec-err\n"),
                                                                       ("stdout", "from-exec\n")]


def test_file_uri_still_plain_text(daemon):
    path = os.path.join(daemon.dir, "logs", "plain.log")
    _run(daemon, N("jf-plain"), f"file://{path}", "sh", "-c", "echo plain")
    with open(path) as f:
        assert f.read() == "plain\n"


def test_a_stalled_log_destination_stalls_only_that_container(daemon):
    """The log file stands for a disk that stops taking writes (a FIFO nobody reads): the
    container blocks once the pipe is full, the shim still answers at once, and when the
    destination drains every line arrives."""
    from corral.client import Client
    path = os.path.join(daemon.dir, "slow-json.log")
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    name = N("jf-slow")
    n = 200000  # 1 MB: far more than the pipe and the FIFO hold
    try:
        daemon.ctr("run", "-d", "--snapshotter", "overlayfs", "--runtime", RUNTIME, "--log-uri",
                   f"jsonfile://{path}", IMAGE, name, "sh", "-c", f"yes line | head -n {n}; echo done")
        time.sleep(1.5)
        with Client(daemon.sock) as c:
            for _ in range(5):
                t0 = time.monotonic()
                assert c.task(name).status == 2  # still RUNNING: stalled on its full pipe
                assert time.monotonic() - t0 < 1.0
        data = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(r, 1 << 20)
            except BlockingIOError:
                select.select([r], [], [], 1)
                continue
            if not chunk:
                break  # the writer closed the file: everything is written
            data += chunk
    finally:
        os.close(r)
        daemon.ctr("tasks", "rm", "-f", name, check=False)
        daemon.ctr("containers", "rm", name, check=False)
    logs = [json.loads(x)["log"] for x in data.decode().splitlines()]
    assert logs == ["line\n"] * n + ["done\n"]
