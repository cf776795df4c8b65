"""The daemon's restart monitor: containers made with ctr carrying containerd's restart labels
on a test corrald (our shim); restarts on exit, on-failure counting, explicit stops, and
policies that survive a SIGKILL of the daemon."""

import json
import os
import signal
import time
import uuid

import pytest

from corral.client import Client, ClientError
from tests.helpers.corrald import Corrald
from tests.helpers.procs import process_ended

# the runtime state root is shared by every daemon here: names unique to this run
SUFFIX = uuid.uuid4().hex[:8]


def N(name):
    return f"{name}-{SUFFIX}"

IMAGE = "docker.io/library/busybox:latest"
RUNTIME = "io.containerd.corral.v2"
STOPPED = 3


@pytest.fixture
def daemon():
    from corral.busybox import make_oci_archive
    d = Corrald(log_level="info", config_text='version = 2\n[plugins."io.containerd.internal.v1.restart"]\ninterval = 1.0\n')
    try:
        d.start()
        archive = os.path.join(d.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        d.ctr("images", "import", "--snapshotter", "overlayfs", archive)
        yield d
    finally:
        _disarm(d)
        d.cleanup()


def _disarm(d):
    """Drop every restart policy, so the clean-up's kills are not undone by the monitor."""
    if d.proc is None or d.proc.poll() is not None:
        return
    try:
        with Client(d.sock) as c:
            for ns in c.namespaces():
                cn = c.with_namespace(ns.name)
                for rec in cn.list_containers():
                    if "containerd.io/restart.policy" in rec.labels:
                        cn.update_container_labels(rec.id, {"containerd.io/restart.policy": None})
    except ClientError:
        pass


def _run(d, name, policy, script, status="running"):
    log = os.path.join(d.dir, "logs", f"{name}-json.log")
    uri = f"jsonfile://{log}"
    labels = [f"containerd.io/restart.policy={policy}", f"containerd.io/restart.loguri={uri}"]
    if status:
        labels.append(f"containerd.io/restart.status={status}")
    args = ["run", "-d", "--snapshotter", "overlayfs", "--runtime", RUNTIME, "--log-uri", uri]
    for label in labels:
        args += ["--label", label]
    d.ctr(*args, IMAGE, name, "sh", "-c", script)
    return log


def _lines(log):
    try:
        with open(log) as f:
            return [json.loads(x)["log"] for x in f]
    except FileNotFoundError:
        return []


def _labels(d, name):
    with Client(d.sock) as c:
        return dict(c.container(name).labels)


def _task(d, name):
    with Client(d.sock) as c:
        try:
            return c.task(name)
        except ClientError:
            return None


def _status(d, name):
    t = _task(d, name)
    return t.status if t is not None else None


def _until(cond, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_always_restarts_a_container_that_exits(daemon):
    log = _run(daemon, N("r-always"), "always", "echo run; exit 0")
    _until(lambda: _lines(log).count("run\n") >= 4, what="four runs")
    assert int(_labels(daemon, N("r-always"))["containerd.io/restart.count"]) >= 3
    assert "restarted default/r-always" in daemon.log_text()


def test_on_failure_stops_after_n_restarts(daemon):
    log = _run(daemon, N("r-fail"), "on-failure:2", "echo run; exit 3")
    _until(lambda: _labels(daemon, N("r-fail")).get("containerd.io/restart.count") == "2", what="two restarts")
    _until(lambda: _status(daemon, N("r-fail")) == STOPPED, what="the last run to end")
    time.sleep(2.5)  # backoff and two periodic checks: no third restart
    assert _lines(log) == ["run\n"] * 3
    assert _labels(daemon, N("r-fail"))["containerd.io/restart.count"] == "2"
    assert _task(daemon, N("r-fail")).exit_status == 3


def test_on_failure_leaves_a_clean_exit_alone(daemon):
    log = _run(daemon, N("r-ok"), "on-failure", "echo run; exit 0")
    _until(lambda: _status(daemon, N("r-ok")) == STOPPED, what="the exit")
    time.sleep(2.5)
    assert _lines(log) == ["run\n"]
    assert "containerd.io/restart.count" not in _labels(daemon, N("r-ok"))


def test_explicit_stop_is_not_restarted(daemon):
    log = _run(daemon, N("r-stop"), "always", "echo run; exec sleep 60")
    _until(lambda: _lines(log) == ["run\n"], what="the first run")
    with Client(daemon.sock) as c:
        c.update_container_labels(N("r-stop"), {"containerd.io/restart.status": "stopped"})
        c.kill(N("r-stop"), signal.SIGKILL)
    _until(lambda: _status(daemon, N("r-stop")) == STOPPED, what="the kill")
    time.sleep(2.5)
    assert _task(daemon, N("r-stop")).status == STOPPED
    assert _lines(log) == ["run\n"]


def test_never_started_container_is_left_alone(daemon):
    daemon.ctr("containers", "create", "--snapshotter", "overlayfs", "--runtime", RUNTIME,
               "--label", "containerd.io/restart.policy=always", IMAGE, N("r-created"), "true")
    daemon.stop(signal.SIGKILL)
    daemon.start()
    time.sleep(2.5)
    assert _task(daemon, N("r-created")) is None


def test_policies_survive_a_daemon_sigkill(daemon):
    """The task exits while the daemon is dead; the restarted daemon starts it again. A stopped
    unless-stopped container stays stopped; a stopped `always` one is started (docker's rule
    for a daemon restart)."""
    log = _run(daemon, N("r-surv"), "always", "echo run; sleep 1; exit 1")
    keep = _run(daemon, N("r-kept"), "unless-stopped", "echo run; exit 0", status="stopped")
    back = _run(daemon, N("r-back"), "always", "echo run; exit 0", status="stopped")
    _until(lambda: _lines(log) and _lines(keep) and _lines(back), what="the first runs")
    daemon.stop(signal.SIGKILL)
    time.sleep(2.5)  # r-surv exits with no daemon to hear it
    n = len(_lines(log))
    daemon.start()
    _until(lambda: len(_lines(log)) > n, what="a run after the daemon came back")
    _until(lambda: len(_lines(back)) >= 2, what="the stopped `always` container to run again")
    assert _labels(daemon, N("r-back"))["containerd.io/restart.status"] == "running"
    time.sleep(1.5)
    assert _lines(keep) == ["run\n"]


def test_a_container_lost_with_its_shim_is_started_again(daemon):
    """Daemon, shim and container all killed with SIGKILL (as a crash would): the restarted
    daemon cleans up the dead shim and starts the container again from its record."""
    log = _run(daemon, N("r-lost"), "always", "echo run; exec sleep 60")
    _until(lambda: _lines(log) == ["run\n"], what="the first run")
    pid = _task(daemon, N("r-lost")).pid
    with open(f"/proc/{pid}/stat") as f:
        shim = int(f.read().rsplit(")", 1)[1].split()[1])
    daemon.stop(signal.SIGKILL)
    os.kill(shim, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    daemon.start()
    _until(lambda: _lines(log) == ["run\n", "run\n"], what="a run after the daemon came back")
    _until(lambda: _status(daemon, N("r-lost")) == 2, what="the new task running")
    assert _task(daemon, N("r-lost")).pid != pid


def _create_only(d, name):
    """A policy container whose task was created but never started (a start cut short)."""
    log = os.path.join(d.dir, "logs", f"{name}-json.log")
    uri = f"jsonfile://{log}"
    d.ctr("containers", "create", "--snapshotter", "overlayfs", "--runtime", RUNTIME,
          "--label", "containerd.io/restart.policy=always", "--label", "containerd.io/restart.status=running",
          "--label", f"containerd.io/restart.loguri={uri}", IMAGE, name, "sleep", "60")
    with Client(d.sock) as c:
        c.create_task(name, "", uri, uri)
    assert _status(d, name) == 1  # CREATED
    return log


def test_a_task_left_created_is_started_by_a_later_check(daemon):
    _create_only(daemon, N("r-half"))
    _until(lambda: _status(daemon, N("r-half")) == 2, timeout=10, what="the stale created task to be started")


def test_a_task_left_created_by_a_crash_is_started_at_start_up(daemon):
    _create_only(daemon, N("r-cut"))
    daemon.stop(signal.SIGKILL)
    daemon.start()
    _until(lambda: _status(daemon, N("r-cut")) == 2, timeout=10, what="the task started again")


def _taskless_shim_after_daemon_sigkill(daemon, name):
    """An `always` container's first run; then corrald SIGKILLed between its delete in the
    shim and the shim's shutdown (the container exited meanwhile): (its log, the shim's pid)."""
    log = _run(daemon, name, "always", "echo run; exec sleep 60")
    _until(lambda: _lines(log) == ["run\n"], what="the first run")
    pid = _task(daemon, name).pid
    with open(f"/proc/{pid}/stat") as f:
        shim = int(f.read().rsplit(")", 1)[1].split()[1])
    daemon.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    daemon.delete_in_shim(name)  # what the killed daemon's delete got done
    return log, shim


def test_a_shim_left_without_its_task_by_a_daemon_sigkill(daemon):
    """corrald answers a task delete once the shim has deleted the task; the shim's shutdown
    and the bundle's removal follow behind the answer. A SIGKILL in between (the monitor's
    delete before a restart) leaves a live shim that no longer holds the task: at start-up it
    is shut down and its bundle removed, and the task is made again (the monitor used to get
    ALREADY_EXISTS for ever)."""
    name = N("r-gap")
    log, shim = _taskless_shim_after_daemon_sigkill(daemon, name)
    daemon.start()
    _until(lambda: _lines(log) == ["run\n", "run\n"], what="a run after the daemon came back")
    _until(lambda: _status(daemon, N("r-gap")) == 2, what="the new task running")
    _until(lambda: process_ended(shim), timeout=10, what="the task-less shim to exit")
    assert "ALREADY_EXISTS" not in daemon.log_text()


def test_a_task_less_shim_settled_after_start_up_is_made_again(daemon):
    """The same, with the shim not answering during start-up (SIGSTOP): the task shows
    UNKNOWN, the shim is cleaned up once it answers, and the monitor then applies start-up
    rules to the container (a later check would otherwise leave a missing task alone)."""
    name = N("r-late")
    log, shim = _taskless_shim_after_daemon_sigkill(daemon, name)
    os.kill(shim, signal.SIGSTOP)
    try:
        daemon.start()
        assert _status(daemon, name) == 0  # UNKNOWN
    finally:
        os.kill(shim, signal.SIGCONT)
    _until(lambda: _lines(log) == ["run\n", "run\n"], what="a run once the shim was settled")
    _until(lambda: _status(daemon, name) == 2, what="the new task running")
    _until(lambda: process_ended(shim), timeout=10, what="the task-less shim to exit")
