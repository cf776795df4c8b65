"""Real containerd 1.6 and its runc shim drive corral-runc as their runc binary (ctr --runc-binary)."""

import shutil
import time

import pytest

from tests.conftest import venv_tool
from tests.helpers.containerd import Containerd, import_busybox

pytestmark = pytest.mark.skipif(not shutil.which("containerd"), reason="containerd is not installed")


@pytest.fixture(scope="module")
def ctrd():
    c = Containerd()
    try:
        c.start()
        c.image = import_busybox(c)
        c.runc = venv_tool("corral-runc")
        yield c
    finally:
        c.cleanup()


def _task_status(ctrd, cid):
    for line in ctrd.ctr("tasks", "ls").stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == cid:
            return parts[2]
    return None


def _wait_status(ctrd, cid, want, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _task_status(ctrd, cid) == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"task {cid} did not reach {want}: {_task_status(ctrd, cid)}")


def test_run_rm_output_and_exit_codes(ctrd, cid):
    res = ctrd.ctr("run", "--rm", "--runc-binary", ctrd.runc, ctrd.image, cid, "echo", "hello from corral")
    assert res.stdout.strip() == "hello from corral"
    res = ctrd.ctr("run", "--rm", "--runc-binary", ctrd.runc, ctrd.image, cid + "x", "sh", "-c", "exit 7",
                   check=False)
    assert res.returncode == 7, res.stderr


def test_detached_lifecycle(ctrd, cid):
    ctrd.ctr("run", "-d", "--runc-binary", ctrd.runc, ctrd.image, cid, "sleep", "1000")
    try:
        _wait_status(ctrd, cid, "RUNNING")
        res = ctrd.ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo exec-ok; exit 3", check=False)
        assert res.stdout.strip() == "exec-ok" and res.returncode == 3, (res.stdout, res.stderr)
        ps = ctrd.ctr("tasks", "ps", cid).stdout.split()
        assert len(ps) >= 3 and ps[0] == "PID", ps
        ctrd.ctr("tasks", "pause", cid)
        _wait_status(ctrd, cid, "PAUSED")
        ctrd.ctr("tasks", "resume", cid)
        _wait_status(ctrd, cid, "RUNNING")
        ctrd.ctr("tasks", "kill", "--signal", "SIGKILL", cid)  # pid 1 ignores an unhandled TERM (runc too)
        _wait_status(ctrd, cid, "STOPPED")
    finally:
        ctrd.ctr("tasks", "delete", "--force", cid, check=False)
        ctrd.ctr("containers", "delete", cid, check=False)
    assert _task_status(ctrd, cid) is None
