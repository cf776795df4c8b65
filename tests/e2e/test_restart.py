"""Restart policies as a user: `corral run --restart ...`, carried out by corrald."""

import os
import signal
import time
import uuid

import pytest

from tests.e2e.conftest import IMAGE, Runner, leftovers
from tests.helpers.corrald import Corrald
from tests.helpers.procs import process_ended


def uname(prefix="r"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _runs(corral, name):
    return corral("logs", name).stdout.count("run\n")


def _state(corral, name):
    return corral("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def _until(cond, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_always_restarts_and_stop_ends_it(corral, cleanup):
    name = uname()
    cleanup.append(name)
    corral("run", "-d", "--network", "none", "--restart", "always", "--name", name, "busybox",
           "sh", "-c", "echo run; sleep 0.2")
    _until(lambda: _runs(corral, name) >= 3, what="three runs")
    corral("stop", "-t", "1", name)
    assert _state(corral, name) == "exited"
    n = _runs(corral, name)
    time.sleep(2)
    assert _state(corral, name) == "exited" and _runs(corral, name) == n
    # start brings the policy back
    corral("start", name)
    _until(lambda: _runs(corral, name) >= n + 2, what="runs after start")


def test_on_failure_gives_up_after_n(corral, cleanup):
    name = uname()
    cleanup.append(name)
    corral("run", "-d", "--network", "none", "--restart", "on-failure:2", "--name", name, "busybox",
           "sh", "-c", "echo run; exit 4")
    _until(lambda: _runs(corral, name) == 3 and _state(corral, name) == "exited", what="three runs")
    time.sleep(2)
    assert _runs(corral, name) == 3
    assert corral("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "4"


def test_rm_force_is_not_undone(corral, corrald):
    before = leftovers(corrald)
    name = uname()
    corral("run", "-d", "--network", "none", "--restart", "always", "--name", name, "busybox", "sleep", "60")
    corral("rm", "-f", name)
    time.sleep(1.5)
    assert leftovers(corrald) == before
    assert name not in corral("ps", "-a").stdout


def test_bad_restart_policy(corral, corrald):
    before = leftovers(corrald)
    res = corral("run", "-d", "--restart", "sometimes", "busybox", "true", check=False)
    assert res.returncode == 125 and len(res.stderr.strip().splitlines()) == 1
    assert leftovers(corrald) == before


@pytest.fixture
def own_daemon():
    """A daemon of this test's own, so it can be killed without disturbing the session's."""
    from corral.busybox import make_oci_archive
    d = Corrald(log_level="debug")
    try:
        d.start()
        archive = os.path.join(d.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        d.ctr("images", "import", "--snapshotter", "overlayfs", archive)
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            r = Runner(d)
            for name in r("ps", "-a", "-q", check=False).stdout.split():
                r("rm", "-f", name, check=False)
        d.cleanup()


def test_policies_survive_a_daemon_sigkill(own_daemon):
    corral = Runner(own_daemon)
    crash = uname("crash")
    quiet = uname("quiet")
    corral("run", "-d", "--network", "none", "--restart", "always", "--name", crash, "busybox",
           "sh", "-c", "echo run; sleep 1; exit 1")
    corral("run", "-d", "--network", "none", "--restart", "unless-stopped", "--name", quiet, "busybox",
           "sh", "-c", "echo run; exec sleep 60")
    corral("stop", "-t", "1", quiet)
    _until(lambda: _runs(corral, crash) >= 1, what="the first run")
    cid = corral("inspect", "-f", "{{.Id}}", crash).stdout.strip()
    log = os.path.join(own_daemon.root, "containers", "default", cid, f"{cid}-json.log")
    own_daemon.stop(signal.SIGKILL)
    time.sleep(2.5)  # the crashing container exits while nobody listens
    from corral import logs
    n = len(logs.read(log))
    own_daemon.start()
    try:
        _until(lambda: _runs(corral, crash) > n, what="a run after the daemon came back")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- corrald log:\n{own_daemon.log_text()}") from None
    assert _state(corral, quiet) == "exited"
    assert _runs(corral, quiet) == 1


def test_exits_while_the_daemon_was_down_show_in_ps(own_daemon):
    """A container that exits while corrald is down (its shim keeps the status), and one
    whose shim is killed too (the clean-up at start-up tells 137): after the restart, ps,
    inspect and wait report both exits, and rm removes them."""
    corral = Runner(own_daemon)
    quits = uname("quits")
    lost = uname("lost")
    corral("run", "-d", "--network", "none", "--name", quits, "busybox", "sh", "-c", "sleep 1; exit 3")
    corral("run", "-d", "--network", "none", "--name", lost, "busybox", "sleep", "1000")
    pid = int(corral("inspect", "-f", "{{.State.Pid}}", lost).stdout)
    # the container's parent is its shim (corral's shims are forked by a zygote whose command
    # line they keep; it names the daemon's socket)
    shim = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    assert own_daemon.sock in open(f"/proc/{shim}/cmdline").read().split("\0")
    own_daemon.stop(signal.SIGKILL)
    os.kill(shim, signal.SIGKILL)
    time.sleep(1.5)
    own_daemon.start()
    try:
        _until(lambda: _state(corral, lost) == "exited", timeout=10, what=f"{lost} exited")
        _until(lambda: _state(corral, quits) == "exited", timeout=10, what=f"{quits} exited")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- corrald log:\n{own_daemon.log_text()}") from None
    assert corral("inspect", "-f", "{{.State.ExitCode}}", quits).stdout.strip() == "3"
    assert corral("inspect", "-f", "{{.State.ExitCode}}", lost).stdout.strip() == "137"
    ps = corral("ps", "-a").stdout
    line = {n: l for l in ps.splitlines() for n in (quits, lost) if n in l}
    assert "Exited (3)" in line[quits] and "Exited (137)" in line[lost], ps
    assert corral("wait", lost).stdout.strip() == "137"
    _until(lambda: process_ended(pid), timeout=10, what="the orphaned container to be killed by the clean-up")
    corral("rm", quits, lost)
    assert corral("ps", "-a", "-q").stdout.split() == []
