"""Containers run through corrald with the real ctr 1.6: ctr run, tasks commands, events,
and containers surviving a daemon restart or kill -9. Shim: containerd-shim-runc-v2."""

import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager

import pytest

from tests.helpers.corrald import Corrald
from tests.helpers.procs import process_ended

IMAGE = "docker.io/library/busybox:latest"

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("ctr") is None or shutil.which("containerd-shim-runc-v2") is None,
                                 reason="ctr and containerd-shim-runc-v2 (containerd package) are needed")]


@pytest.fixture(scope="module")
def daemon():
    from corral.busybox import make_oci_archive
    d = Corrald()
    try:
        d.start()
        path = os.path.join(d.dir, "busybox.tar")
        make_oci_archive(path, IMAGE)
        d.ctr("images", "import", path)
        yield d
    finally:
        d.cleanup()


@pytest.fixture(autouse=True)
def daemon_up_after(daemon):
    """A test that failed while it had the daemon down leaves it up for the next ones."""
    yield
    if daemon.proc is None:
        daemon.start()


# corral's own shim drives corral-runc, whose state changes with the runtime's work; opt in
# with CORRAL_TEST_CORRAL_SHIM=1 (its own interop tests run it under containerd)
RUNTIMES = ["io.containerd.runc.v2"] + (
    ["io.containerd.corral.v2"] if os.environ.get("CORRAL_TEST_CORRAL_SHIM") == "1"
    and shutil.which("containerd-shim-corral-v2") else [])


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_status(d, cid, status, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in d.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid and parts[-1] == status:
                return
        time.sleep(0.1)
    raise AssertionError(f"task {cid} did not reach {status}: {d.ctr('tasks', 'ls').stdout}")


def _remove(d, *cids):
    """Kill, delete and remove each container, whatever state a failed test left it in."""
    for cid in cids:
        d.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        d.ctr("tasks", "delete", "-f", cid, check=False)
        d.ctr("containers", "rm", cid, check=False)


@contextmanager
def _sleeping(d, prefix, runtime=None):
    """A detached `sleep 1000` container, running: yields its id and its task's pid, and
    removes it afterwards."""
    cid = uid(prefix)
    d.ctr("run", "-d", *(["--runtime", runtime] if runtime else []), IMAGE, cid, "sleep", "1000")
    try:
        wait_status(d, cid, "RUNNING")
        yield cid, _task_pid(d, cid)
    finally:
        _remove(d, cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_output_and_exit_code(daemon, runtime):
    cid = uid("rm")
    res = daemon.ctr("run", "--rm", "--runtime", runtime, IMAGE, cid, "sh", "-c", "echo hello from corrald; exit 3", check=False)
    assert res.stdout == "hello from corrald\n", res.stderr
    assert res.returncode == 3
    assert cid not in daemon.ctr("containers", "ls", "-q").stdout.split()
    assert cid not in daemon.ctr("tasks", "ls", "-q").stdout.split()


# corral's shim is covered by its own interop tests under containerd; here the daemon side
@pytest.mark.parametrize("runtime", ["io.containerd.runc.v2"])
def test_run_detached_and_task_commands(daemon, runtime):
    with _sleeping(daemon, "d", runtime) as (cid, pid):
        assert os.path.exists(f"/proc/{pid}")
        assert str(pid) in daemon.ctr("tasks", "ps", cid).stdout
        ex = daemon.ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo in-container; exit 4", check=False)
        assert ex.stdout == "in-container\n" and ex.returncode == 4
        daemon.ctr("tasks", "pause", cid)
        wait_status(daemon, cid, "PAUSED")
        daemon.ctr("tasks", "resume", cid)
        wait_status(daemon, cid, "RUNNING")
        metrics = daemon.ctr("tasks", "metrics", cid).stdout
        assert cid in metrics
        busy = daemon.ctr("tasks", "delete", cid, check=False)
        assert busy.returncode != 0 and "stopped" in busy.stderr
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_status(daemon, cid, "STOPPED")
        daemon.ctr("tasks", "delete", cid)
        assert not os.path.exists(f"/proc/{pid}")
        assert cid not in daemon.ctr("tasks", "ls", "-q").stdout.split()
    assert not any(cid in l for l in open("/proc/self/mountinfo"))


def test_task_events(daemon, tmp_path):
    cid = uid("ev")
    out = open(tmp_path / "events.txt", "w+")
    proc = subprocess.Popen(["ctr", "--address", daemon.sock, "events"], stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        daemon.ctr("run", "--rm", IMAGE, cid, "true")
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            out.seek(0)
            text = out.read()
            if "/tasks/delete" in text and "/containers/delete" in text:
                break
            time.sleep(0.1)
        # "<date> <time> +0000 UTC <namespace> <topic> <event>"
        topics = [line.split()[5] for line in text.splitlines() if cid in line and len(line.split()) > 5]
        for t in ("/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete",
                  "/containers/delete"):
            assert t in topics, text
        assert topics.index("/tasks/create") < topics.index("/tasks/start") < topics.index("/tasks/exit")
    finally:
        proc.kill()
        proc.wait(5)
        out.close()


def _task_pid(d, cid):
    return int([l.split()[1] for l in d.ctr("tasks", "ls").stdout.splitlines() if l.split()[:1] == [cid]][0])


def _shim_of(d, pid):
    shims = [p for p in d.shim_pids() if str(pid) in open(f"/proc/{p}/task/{p}/children").read().split()]
    assert len(shims) == 1, shims
    return shims[0]


def _stored_state(d, cid, lease):
    """What must survive a daemon kill: images, snapshots, leases, labels, content."""
    def lines(*args):
        return sorted(d.ctr(*args).stdout.splitlines()[1:])

    def labelled(*args, keep):
        # ctr prints labels in Go map order (random) and ages that move: compare what is stored
        out = []
        for line in lines(*args):
            parts = line.split()
            out.append(tuple(parts[:keep]) + (tuple(sorted(parts[-1].split(","))),))
        return sorted(out)
    images = labelled("images", "ls", keep=6)  # REF TYPE DIGEST SIZE (2 words) PLATFORMS
    content = labelled("content", "ls", keep=2)  # DIGEST SIZE
    # content nothing references (the index blob `ctr images import` leaves) is garbage the
    # collector may take at any time, a restart included: compare what the images reach
    refs = {c[0]: [label.split("=", 1)[1] for label in c[2] if label.startswith("containerd.io/gc.ref.content")]
            for c in content}
    reached, todo = set(), [image[2] for image in images]
    while todo:
        digest = todo.pop()
        if digest not in reached:
            reached.add(digest)
            todo.extend(refs.get(digest, []))
    return {
        "images": images,
        "snapshots": lines("snapshots", "ls"),
        "content": [c for c in content if c[0] in reached],
        "leases": [l for l in lines("leases", "ls") if l.startswith(lease)],
        "container info": d.ctr("containers", "info", cid).stdout,  # labels, spec, snapshot key
    }


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_containers_survive_daemon_restart(daemon, how):
    cid = uid("keep")
    quick = uid("quick")
    lease = uid("lease")
    daemon.ctr("run", "-d", IMAGE, cid, "sleep", "1000")
    daemon.ctr("run", "-d", IMAGE, quick, "sh", "-c", "sleep 1; exit 5")
    try:
        wait_status(daemon, cid, "RUNNING")
        pid = _task_pid(daemon, cid)
        daemon.ctr("containers", "label", cid, f"test.restart={how}")
        daemon.ctr("images", "label", IMAGE, f"test.restart.{cid}=kept")
        daemon.ctr("leases", "create", "--id", lease, "--expires", "0", f"test.lease={how}")
        before = _stored_state(daemon, cid, lease)
        assert before["leases"] and f'"test.restart": "{how}"' in before["container info"]
        assert len(before["content"]) >= 3  # the image's manifest, config and layer at least
        assert any(f"test.restart.{cid}=kept" in image[-1] for image in before["images"])
        daemon.stop(getattr(signal, how))
        time.sleep(1.5)  # `quick` exits while the daemon is down (its shim keeps the status)
        assert os.path.exists(f"/proc/{pid}"), "the container must outlive the daemon"
        daemon.start()
        assert _stored_state(daemon, cid, lease) == before
        wait_status(daemon, cid, "RUNNING")
        assert _task_pid(daemon, cid) == pid
        ex = daemon.ctr("tasks", "exec", "--exec-id", "after", cid, "echo", "still here")
        assert ex.stdout == "still here\n"
        wait_status(daemon, quick, "STOPPED")
        # ctr tasks delete exits 0 and tells a non-zero status only in a warning
        res = daemon.ctr("tasks", "delete", quick)
        assert f"task {quick} exit with non-zero exit code 5" in res.stderr, res.stderr
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_status(daemon, cid, "STOPPED")
        res = daemon.ctr("tasks", "delete", cid)
        assert f"task {cid} exit with non-zero exit code 137" in res.stderr, res.stderr
    finally:
        _remove(daemon, cid, quick)
        daemon.ctr("images", "label", IMAGE, f"test.restart.{cid}=", check=False)
        daemon.ctr("leases", "rm", lease, check=False)


def test_exit_of_a_shim_dead_while_daemon_down_is_reported(daemon, tmp_path):
    """containerd 1.6 forgets such a task (its exit events go out before anyone can listen);
    corrald keeps it as stopped with the status `<shim> delete` gives (137 for runc's shim),
    across restarts, until it is deleted."""
    events = None
    with _sleeping(daemon, "lost") as (cid, pid):
        try:
            shim = _shim_of(daemon, pid)
            daemon.stop(signal.SIGKILL)
            os.kill(shim, signal.SIGKILL)
            daemon.start()
            # the orphaned container was killed by the clean-up, the task is reported as stopped
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                time.sleep(0.1)
            assert not os.path.exists(f"/proc/{pid}")
            wait_status(daemon, cid, "STOPPED")
            assert _task_pid(daemon, cid) == pid
            busy = daemon.ctr("tasks", "exec", "--exec-id", "x", cid, "true", check=False)
            assert busy.returncode != 0
            # kept across another restart
            daemon.stop(signal.SIGKILL)
            daemon.start()
            wait_status(daemon, cid, "STOPPED")
            out = open(tmp_path / "events.txt", "w+")
            events = subprocess.Popen(["ctr", "--address", daemon.sock, "events"], stdout=out, stderr=subprocess.STDOUT)
            time.sleep(0.5)
            res = daemon.ctr("tasks", "delete", cid)
            assert f"task {cid} exit with non-zero exit code 137" in res.stderr, res.stderr
            assert cid not in daemon.ctr("tasks", "ls", "-q").stdout.split()
            assert daemon.ctr("tasks", "delete", cid, check=False).returncode != 0
            deadline = time.monotonic() + 10
            text = ""
            while time.monotonic() < deadline and "/tasks/delete" not in text:
                time.sleep(0.1)
                out.seek(0)
                text = out.read()
            line = [l for l in text.splitlines() if "/tasks/delete" in l and cid in l]
            assert line and '"exit_status":137' in line[0], text
            assert not os.path.exists(os.path.join(daemon.state, "io.containerd.runtime.v2.task", "default", cid))
            # the container can run again
            daemon.ctr("tasks", "start", "-d", cid)
            wait_status(daemon, cid, "RUNNING")
        finally:
            if events is not None:
                events.kill()
                events.wait(5)


def test_stopped_shim_does_not_stall_start_up(daemon):
    """A shim that is there but does not answer (SIGSTOP) costs start-up at most a couple of
    seconds, is not force-deleted, shows as UNKNOWN, and is reconnected once it answers."""
    stuck = uid("stuck")
    other = uid("other")
    shim = None
    daemon.ctr("run", "-d", IMAGE, stuck, "sleep", "1000")
    daemon.ctr("run", "-d", IMAGE, other, "sleep", "1000")
    try:
        wait_status(daemon, stuck, "RUNNING")
        wait_status(daemon, other, "RUNNING")
        pid = _task_pid(daemon, stuck)
        shim = _shim_of(daemon, pid)
        daemon.stop(signal.SIGKILL)
        os.kill(shim, signal.SIGSTOP)
        t0 = time.monotonic()
        daemon.start()
        took = time.monotonic() - t0
        print(f"start-up with a stopped shim: {took:.2f}s")
        assert took < 6, f"start-up took {took:.1f}s with one stopped shim"
        t0 = time.monotonic()
        tasks = {l.split()[0]: l.split()[-1] for l in daemon.ctr("tasks", "ls").stdout.splitlines()[1:]}
        assert time.monotonic() - t0 < 3
        assert tasks.get(other) == "RUNNING" and tasks.get(stuck) == "UNKNOWN", tasks
        # the others are controllable; calls to the stuck one fail at once instead of hanging
        assert daemon.ctr("tasks", "exec", "--exec-id", "e", other, "echo", "ok").stdout == "ok\n"
        t0 = time.monotonic()
        res = daemon.ctr("tasks", "kill", stuck, check=False)
        assert res.returncode != 0 and time.monotonic() - t0 < 3, res.stderr
        assert daemon.ctr("tasks", "delete", stuck, check=False).returncode != 0
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", other)
        wait_status(daemon, other, "STOPPED")
        daemon.ctr("tasks", "delete", other)
        time.sleep(2)
        assert os.path.exists(f"/proc/{pid}"), "an unresponsive shim's container must not be killed"
        os.kill(shim, signal.SIGCONT)
        wait_status(daemon, stuck, "RUNNING", timeout=30)
        assert _task_pid(daemon, stuck) == pid
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", stuck)
        wait_status(daemon, stuck, "STOPPED")
        res = daemon.ctr("tasks", "delete", stuck)
        assert "exit code 137" in res.stderr, res.stderr
    finally:
        if shim is not None:
            try:
                os.kill(shim, signal.SIGCONT)
            except ProcessLookupError:
                pass
        _remove(daemon, stuck, other)


def test_killed_shim_is_cleaned_up(daemon):
    with _sleeping(daemon, "shimkill") as (cid, pid):
        os.kill(_shim_of(daemon, pid), signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and cid in daemon.ctr("tasks", "ls", "-q").stdout.split():
            time.sleep(0.2)
        assert cid not in daemon.ctr("tasks", "ls", "-q").stdout.split()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}"), "the orphaned container must be killed by the clean-up"
        assert not any(cid in l for l in open("/proc/self/mountinfo"))
        daemon.ctr("containers", "rm", cid)


def _until_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_ended(pid):
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} is still there")


def _gone_and_startable_again(daemon, cid, shim, bundle):
    """The shim that held the task has exited, the bundle is removed, the id can run again."""
    _until_gone(shim)
    assert not os.path.exists(bundle)
    daemon.ctr("tasks", "start", "-d", cid)
    wait_status(daemon, cid, "RUNNING")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_shim_left_without_its_task_by_a_daemon_sigkill(daemon, runtime):
    """corrald answers a task delete once the shim has deleted the task, its shutdown and the
    bundle's removal follow: a SIGKILL in between leaves a live shim without the task. At
    start-up that shim is shut down and its bundle removed; the id can be started again."""
    with _sleeping(daemon, "taskless", runtime) as (cid, pid):
        shim = _shim_of(daemon, pid)
        daemon.stop(signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        bundle = daemon.delete_in_shim(cid)
        daemon.start()
        assert cid not in daemon.ctr("tasks", "ls", "-q").stdout.split()
        _gone_and_startable_again(daemon, cid, shim, bundle)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_delete_of_a_task_its_shim_no_longer_holds(daemon, runtime):
    """A shim that answers Delete with NOT_FOUND no longer holds the task: corrald says so and,
    as containerd does, drops the task, shuts the shim down and removes the bundle, so that
    the id can be started again."""
    with _sleeping(daemon, "lost", runtime) as (cid, pid):
        shim = _shim_of(daemon, pid)
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_status(daemon, cid, "STOPPED")
        bundle = daemon.delete_in_shim(cid)
        from corral.client import Client, ClientError
        with Client(daemon.sock) as c:  # (ctr's delete stops at its Get, which finds no task)
            with pytest.raises(ClientError) as e:
                c.delete_task(cid)
        assert e.value.code == "NOT_FOUND"
        _gone_and_startable_again(daemon, cid, shim, bundle)


def test_snapshots_diff_of_a_container(daemon):
    import gzip
    import io
    import tarfile
    cid = uid("diff")
    try:
        daemon.ctr("run", IMAGE, cid, "sh", "-c", "echo changed > /newfile; rm /etc/group")
        blob = subprocess.run(["ctr", "--address", daemon.sock, "snapshots", "diff", cid], capture_output=True,
                              timeout=60, check=True).stdout
        names = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))).getnames()
        assert "newfile" in names and "etc/.wh.group" in names
    finally:
        daemon.ctr("tasks", "delete", cid, check=False)
        daemon.ctr("containers", "rm", cid, check=False)


@pytest.mark.skipif(shutil.which("script") is None, reason="script (util-linux) gives ctr a terminal")
def test_run_with_terminal(daemon):
    cid = uid("tty")
    cmd = f"ctr --address {daemon.sock} run -t --rm {IMAGE} {cid} sh -c 'tty; exit 6'"
    res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert "/dev/pts/" in res.stdout, res.stdout + res.stderr
    assert res.returncode == 6
    assert cid not in daemon.ctr("containers", "ls", "-q").stdout.split()
