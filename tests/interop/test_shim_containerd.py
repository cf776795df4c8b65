"""Real containerd 1.6 runs containers through containerd-shim-corral-v2, driven by real `ctr`.

The runtime binary is runc by default here (chosen through `--runtime-config-path`, the way
ctr passes runtime options to shims other than runc's); set CORRAL_SHIM_TEST_BINARY to test
another runc-compatible binary (corral-runc, crun). The tests at the end run the shim's default
(corral-runc, no runtime options) and crun by name. CORRAL_SHIM_LOOP sets the load loop's size
(default 50).
"""

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from corral.shim.start import socket_path
from tests.helpers.containerd import Containerd, runtime_config
from tests.helpers.images import import_busybox

RUNTIME = "io.containerd.corral.v2"
SHIM = "containerd-shim-corral-v2"

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not shutil.which("containerd") or not shutil.which(SHIM),
                                 reason="containerd or the corral shim is not installed (scripts/setup.sh)")]


@pytest.fixture(scope="module")
def ctrd():
    c = Containerd()
    try:
        c.start()
        c.image = import_busybox(c)
        c.runtime_config = runtime_config(c.dir, os.environ.get("CORRAL_SHIM_TEST_BINARY", "runc"))
        yield c
    finally:
        c.cleanup()
        for pid in shim_pids(c):  # a test that failed half-way may leave its shim
            os.kill(pid, signal.SIGKILL)


def shim_pids(ctrd):
    """Our shim servers for this containerd: named corral-shim, with the daemon's address in
    their command line (forked by `start`, or by the zygote whose command line names it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "corral-shim":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if ctrd.sock.encode() in argv:
            pids.append(int(entry))
    return pids


def run(ctrd, *args, check=True, timeout=60):
    return ctrd.ctr("run", "--runtime", RUNTIME, "--runtime-config-path", ctrd.runtime_config, *args,
                    check=check, timeout=timeout)


def task_status(ctrd, cid, namespace="default"):
    for line in ctrd.ctr("tasks", "ls", namespace=namespace).stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == cid:
            return parts[2]
    return None


def wait_for(cond, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def remove(ctrd, cid):
    ctrd.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
    ctrd.ctr("tasks", "delete", "--force", cid, check=False)
    ctrd.ctr("containers", "delete", cid, check=False)


def mounts_below(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def test_run_rm_output_and_exit_code(ctrd, cid):
    res = run(ctrd, "--rm", ctrd.image, cid, "echo", "hello from the corral shim")
    assert res.stdout == "hello from the corral shim\n"
    res = run(ctrd, "--rm", ctrd.image, cid + "b", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert res.returncode == 7, res.stderr
    assert res.stdout == "out\n" and "err" in res.stderr
    assert ctrd.ctr("containers", "ls", "-q").stdout.split() == []
    wait_for(lambda: not shim_pids(ctrd), "the shims to exit")


def test_run_with_stdin(ctrd, cid):
    res = ctrd.ctr("run", "--rm", "--runtime", RUNTIME, "--runtime-config-path", ctrd.runtime_config,
                   ctrd.image, cid, "sh", "-c", "head -n1 | tr a-z A-Z", input="shout\nmore\n", timeout=60)
    assert res.stdout == "SHOUT\n", res.stderr


def test_detached_lifecycle(ctrd, cid):
    run(ctrd, "-d", ctrd.image, cid, "sleep", "1000")
    try:
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING")
        res = ctrd.ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo exec-ok; exit 3", check=False)
        assert (res.stdout, res.returncode) == ("exec-ok\n", 3), res.stderr
        ctrd.ctr("tasks", "exec", "-d", "--exec-id", "e2", cid, "sleep", "500")
        ps = ctrd.ctr("tasks", "ps", cid).stdout.splitlines()
        assert ps[0].split()[0] == "PID" and len(ps) == 3, ps
        assert any("e2" in line for line in ps), ps  # exec processes carry their exec id
        metrics = ctrd.ctr("tasks", "metrics", "--format", "json", cid).stdout
        assert '"pids"' in metrics and '"memory"' in metrics, metrics
        ctrd.ctr("tasks", "pause", cid)
        wait_for(lambda: task_status(ctrd, cid) == "PAUSED", "PAUSED")
        ctrd.ctr("tasks", "resume", cid)
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING again")
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", cid)  # sleep as pid 1 ignores SIGTERM
        wait_for(lambda: task_status(ctrd, cid) == "STOPPED", "STOPPED")
        ctrd.ctr("tasks", "delete", cid)
        assert task_status(ctrd, cid) is None
    finally:
        remove(ctrd, cid)
    wait_for(lambda: not shim_pids(ctrd), "the shim to exit")
    assert mounts_below(ctrd.dir) == []


def test_events_in_order(ctrd, cid):
    events = subprocess.Popen(["ctr", "--address", ctrd.sock, "events"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        run(ctrd, "-d", ctrd.image, cid, "sleep", "1000")
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING")
        ctrd.ctr("tasks", "exec", "--exec-id", "x1", cid, "true")
        ctrd.ctr("tasks", "pause", cid)
        ctrd.ctr("tasks", "resume", cid)
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_for(lambda: task_status(ctrd, cid) == "STOPPED", "STOPPED")
        ctrd.ctr("tasks", "delete", cid)
        time.sleep(0.5)
    finally:
        events.terminate()
        out = events.communicate(timeout=10)[0]
        remove(ctrd, cid)
    # lines: <date> <time> +0000 UTC <namespace> <topic> <event json>
    topics = [w for line in out.splitlines() if cid in line for w in line.split()[:6] if w.startswith("/tasks/")]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
                      "/tasks/exit", "/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"], out


def test_log_uris(ctrd, cid, tmpdir_root):
    log = os.path.join(tmpdir_root, "out.log")
    run(ctrd, "--rm", "--log-uri", "file://" + log, ctrd.image, cid, "sh", "-c", "echo to-file; echo e >&2")
    with open(log) as f:
        assert sorted(f.read().split()) == ["e", "to-file"]
    # binary://: the driver gets stdout on fd 3 and stderr on fd 4, closes fd 5 when ready
    driver = os.path.join(tmpdir_root, "driver.sh")
    out = os.path.join(tmpdir_root, "driver.out")
    with open(driver, "w") as f:
        f.write(f"#!/bin/sh\nexec 5>&-\ncat <&3 >{out}.1 & cat <&4 >{out}.2 & wait\n"
                f'echo "$CONTAINER_ID $CONTAINER_NAMESPACE $*" >{out}.env\n')
    os.chmod(driver, 0o755)
    run(ctrd, "--rm", "--log-uri", f"binary://{driver}?flag=v", ctrd.image, cid + "b", "sh", "-c",
        "echo to-driver; echo e2 >&2")
    wait_for(lambda: os.path.exists(out + ".env"), "the log driver to finish")
    assert open(out + ".1").read() == "to-driver\n" and open(out + ".2").read() == "e2\n"
    assert open(out + ".env").read().split() == [cid + "b", "default", "flag", "v"]


def test_terminal(ctrd, cid):
    """ctr run -t needs a terminal on its own stdin: give it a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # ctr sends it as ResizePty
    proc = subprocess.Popen(["ctr", "--address", ctrd.sock, "run", "--rm", "-t", "--runtime", RUNTIME,
                             "--runtime-config-path", ctrd.runtime_config, ctrd.image, cid,
                             "sh", "-c", "sleep 0.5; stty size; tty; exit 5"],  # ctr resizes after Start
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        assert proc.wait(timeout=10) == 5, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        remove(ctrd, cid)
    assert b"/dev/pts/" in out and b"30 100" in out, out


def test_grouping_by_sandbox_annotation(ctrd, cid):
    ids = [cid + "a", cid + "b"]
    try:
        for i in ids:
            run(ctrd, "-d", "--annotation", f"io.kubernetes.cri.sandbox-id={cid}", ctrd.image, i, "sleep", "1000")
        for i in ids:
            wait_for(lambda: task_status(ctrd, i) == "RUNNING", "RUNNING")
        assert len(shim_pids(ctrd)) == 1
        res = ctrd.ctr("tasks", "exec", "--exec-id", "g", ids[1], "echo", "grouped")
        assert res.stdout == "grouped\n"
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", ids[0])
        wait_for(lambda: task_status(ctrd, ids[0]) == "STOPPED", "STOPPED")
        ctrd.ctr("tasks", "delete", ids[0])
        assert task_status(ctrd, ids[1]) == "RUNNING" and len(shim_pids(ctrd)) == 1
    finally:
        for i in ids:
            remove(ctrd, i)
    wait_for(lambda: not shim_pids(ctrd), "the group's shim to exit")


def test_containerd_restart_keeps_containers(ctrd, cid):
    run(ctrd, "-d", ctrd.image, cid, "sleep", "1000")
    try:
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING")
        shims = shim_pids(ctrd)
        ctrd.stop()
        ctrd.start()
        assert shim_pids(ctrd) == shims
        assert task_status(ctrd, cid) == "RUNNING"
        res = ctrd.ctr("tasks", "exec", "--exec-id", "after", cid, "echo", "still-here")
        assert res.stdout == "still-here\n"
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_for(lambda: task_status(ctrd, cid) == "STOPPED", "STOPPED")
        ctrd.ctr("tasks", "delete", cid)
    finally:
        remove(ctrd, cid)
    wait_for(lambda: not shim_pids(ctrd), "the shim to exit")


def test_killed_shim_is_cleaned_by_delete(ctrd, cid):
    run(ctrd, "-d", ctrd.image, cid, "sleep", "1000")
    try:
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING")
        (shim,) = shim_pids(ctrd)
        os.kill(shim, signal.SIGKILL)
        # containerd notices the closed connection and runs `shim delete`
        wait_for(lambda: task_status(ctrd, cid) is None, "the task to be cleaned up")
    finally:
        remove(ctrd, cid)
    wait_for(lambda: mounts_below(ctrd.dir) == [], "the rootfs to be unmounted")
    wait_for(lambda: not os.path.exists(socket_path(ctrd.sock, "default", cid)), "`delete` to remove the socket")
    wait_for(lambda: not shim_pids(ctrd), "no shim")


def test_grouping_by_namespace(cid):
    """containerd run with CORRAL_SHIM_GROUP=namespace: plain `ctr run` containers of one
    namespace share one shim, another namespace gets its own. The shared shim is one failure
    domain: once it is killed, containerd cleans up every container in it, and nothing (task,
    mount, socket, shim) is left behind."""
    c = Containerd(env={"CORRAL_SHIM_GROUP": "namespace"})
    ids = [cid + "a", cid + "b"]
    try:
        c.start()
        image = import_busybox(c)
        for i in ids:
            c.ctr("run", "-d", "--runtime", RUNTIME, image, i, "sleep", "1000")
        import_busybox(c, namespace="other")
        c.ctr("run", "-d", "--runtime", RUNTIME, image, cid + "o", "sleep", "1000", namespace="other")
        for i in ids:
            wait_for(lambda: task_status(c, i) == "RUNNING", "RUNNING")
        assert len(shim_pids(c)) == 2
        group = socket_path(c.sock, "default", "namespace:default")
        assert os.path.exists(group)
        res = c.ctr("tasks", "exec", "--exec-id", "g", ids[1], "echo", "grouped")
        assert res.stdout == "grouped\n"
        assert c.ctr("tasks", "ls", "-q", namespace="other").stdout.split() == [cid + "o"]

        c.ctr("tasks", "kill", "-s", "SIGKILL", cid + "o", namespace="other")
        wait_for(lambda: task_status(c, cid + "o", "other") == "STOPPED", "STOPPED")
        c.ctr("tasks", "delete", cid + "o", namespace="other")
        wait_for(lambda: len(shim_pids(c)) == 1, "the other namespace's shim to exit")

        (shim,) = shim_pids(c)
        os.kill(shim, signal.SIGKILL)
        for i in ids:
            wait_for(lambda: task_status(c, i) is None, "the task to be cleaned up")
        wait_for(lambda: mounts_below(c.dir) == [], "the rootfs mounts to be gone")
        wait_for(lambda: not os.path.exists(group), "`delete` to remove the group's socket")
        assert shim_pids(c) == []
    finally:
        c.cleanup()
        for pid in shim_pids(c):
            os.kill(pid, signal.SIGKILL)


KSM = "/sys/kernel/mm/ksm"


def mergeable_mappings(pid):
    """Names of the mappings of `pid` offered to KSM (VmFlags `mg` in smaps)."""
    names, name = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if fields[0] == "VmFlags:":
                if "mg" in fields[1:]:
                    names.append(name)
            elif not fields[0].endswith(":"):
                name = fields[5] if len(fields) > 5 else ""
    return names


def ksm_merging_pages(pid):
    with open(f"/proc/{pid}/ksm_merging_pages") as f:
        return int(f.read())


def set_ksm(settings):
    """Write {file: value} under /sys/kernel/mm/ksm; the values before, or None where writing
    failed (a read-only sysfs)."""
    before = {}
    for name, value in settings.items():
        path = os.path.join(KSM, name)
        with open(path) as f:
            before[name] = f.read().strip()
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            set_ksm(before)
            return None
    return before


@pytest.mark.skipif(not os.path.exists(KSM), reason="a kernel without KSM")
def test_shim_memory_is_offered_to_ksm(ctrd, cid):
    """Shim servers forked from the zygote offer their memory to the kernel's same-page merging,
    and with ksmd running they share pages; the containers they start never carry the mark (it
    stays on the shims' mappings: no exec inherits it)."""
    ids = [cid + "a", cid + "b"]
    # ksmd on, at a quick pace for the test; put back as it was afterwards
    before = set_ksm({"sleep_millisecs": "10", "run": "1"})
    try:
        for i in ids:
            run(ctrd, "-d", ctrd.image, i, "sleep", "1000")
        for i in ids:
            wait_for(lambda: task_status(ctrd, i) == "RUNNING", "RUNNING")
        servers = shim_pids(ctrd)
        assert len(servers) == 2
        for pid in servers:
            assert "[heap]" in mergeable_mappings(pid)
        tasks = [line.split()[1] for line in ctrd.ctr("tasks", "ls").stdout.splitlines()[1:]]
        assert len(tasks) == 2
        for pid in tasks:
            assert mergeable_mappings(pid) == []
        if before is not None:
            wait_for(lambda: all(ksm_merging_pages(pid) > 0 for pid in servers), "ksmd to merge pages",
                     timeout=120)
    finally:
        for i in ids:
            remove(ctrd, i)
        if before is not None:
            set_ksm(before)
    wait_for(lambda: not shim_pids(ctrd), "the shims to exit")


def zombies_under(parents):
    """Zombie processes whose parent is one of `parents`."""
    zombies = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) in parents:
            zombies.append((int(entry), int(fields[1])))
    return zombies


def no_zombies_under(parents, settle=2.0):
    """[] once no zombie is left under `parents` (a child that exits this very moment may be a
    zombie for an instant: only one that stays for `settle` seconds counts)."""
    deadline = time.monotonic() + settle
    while True:
        found = zombies_under(parents)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_many_containers_leave_nothing_behind(ctrd, cid):
    """Containers started and stopped in a loop: half with their own shim (which must exit),
    half in the group of a long-running container, whose shim must reap every one of them and
    of the execs run beside them; then no zombie under containerd or any shim, no shim, no
    mount, no socket is left."""
    count = int(os.environ.get("CORRAL_SHIM_LOOP", "50"))
    group = f"io.corral.shim.group={cid}-g"
    keeper = f"{cid}-keep"
    names = [keeper] + [f"{cid}-{i}" for i in range(count)]
    try:
        run(ctrd, "-d", "--annotation", group, ctrd.image, keeper, "sleep", "1000")
        wait_for(lambda: task_status(ctrd, keeper) == "RUNNING", "RUNNING")
        (group_shim,) = shim_pids(ctrd)
        for i in range(count):
            extra = ("--annotation", group) if i % 2 else ()
            res = run(ctrd, "--rm", *extra, ctrd.image, f"{cid}-{i}", "sh", "-c", f"echo {i}")
            assert res.stdout == f"{i}\n"
            if i % 5 == 0:
                res = ctrd.ctr("tasks", "exec", "--exec-id", f"x{i}", keeper, "sh", "-c", f"echo x{i}; exit 2",
                               check=False)
                assert (res.returncode, res.stdout) == (2, f"x{i}\n"), res.stderr
        # the group's shim lived through it all: each of its children was reaped
        wait_for(lambda: shim_pids(ctrd) == [group_shim], "only the group's shim to remain")
        assert no_zombies_under({ctrd.proc.pid, group_shim}) == []
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", keeper)
        wait_for(lambda: task_status(ctrd, keeper) == "STOPPED", "STOPPED")
        assert no_zombies_under({ctrd.proc.pid, group_shim}) == []
        ctrd.ctr("tasks", "delete", keeper)
        ctrd.ctr("containers", "delete", keeper)
    finally:
        if task_status(ctrd, keeper) is not None:
            remove(ctrd, keeper)
    wait_for(lambda: not shim_pids(ctrd), "every shim to exit")
    assert mounts_below(ctrd.dir) == []
    leftovers = [p for name in names for p in [socket_path(ctrd.sock, "default", name)]
                 if os.path.exists(p) or os.path.exists(p + ".lock")]
    leftovers += [p for p in [socket_path(ctrd.sock, "default", f"{cid}-g")]
                  if os.path.exists(p) or os.path.exists(p + ".lock")]
    assert leftovers == []
    assert ctrd.ctr("containers", "ls", "-q").stdout.split() == []
    assert no_zombies_under({ctrd.proc.pid}) == []


def test_oom_event(ctrd, cid):
    events = subprocess.Popen(["ctr", "--address", ctrd.sock, "events"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        res = run(ctrd, "--rm", "--memory-limit", str(32 << 20), ctrd.image, cid, "tail", "/dev/zero",
                  check=False, timeout=120)
        assert res.returncode == 137, res.stderr
        time.sleep(0.5)
    finally:
        events.terminate()
        out = events.communicate(timeout=10)[0]
        remove(ctrd, cid)
    topics = [w for line in out.splitlines() if cid in line for w in line.split()[:6] if w.startswith("/tasks/")]
    assert "/tasks/oom" in topics, out
    assert topics.index("/tasks/oom") < topics.index("/tasks/delete")


def test_default_runtime_is_corral_runc(ctrd, cid):
    """No runtime options: the shim runs corral-runc."""
    if not shutil.which("corral-runc"):
        pytest.skip("corral-runc is not on PATH (scripts/setup.sh)")
    res = ctrd.ctr("run", "--rm", "--runtime", RUNTIME, ctrd.image, cid, "sh", "-c", "echo via-default; exit 4",
                   check=False)
    assert (res.returncode, res.stdout) == (4, "via-default\n"), res.stderr


def runtime_root_of_running(ctrd, cid, name):
    """The runtime root the shim resolved for a running container (from its bundle), after
    checking that the runtime binary it resolved is `name` and says the container runs."""
    bundle = os.path.join(ctrd.dir, "state", "io.containerd.runtime.v2.task", "default", cid)
    with open(os.path.join(bundle, "corral-runtime")) as f:
        binary, root = f.read().split("\n")[:2]
    assert os.path.basename(binary) == name
    state = subprocess.run([binary, "--root", root, "state", cid], capture_output=True, text=True, timeout=30)
    assert state.returncode == 0 and '"running"' in state.stdout, state.stderr
    return root


def test_default_corral_runc_detached_lifecycle(ctrd, cid):
    """No runtime options (corral-runc): run -d, then exec, ps, pause, resume, kill, delete."""
    if not shutil.which("corral-runc"):
        pytest.skip("corral-runc is not on PATH (scripts/setup.sh)")
    ctrd.ctr("run", "-d", "--runtime", RUNTIME, ctrd.image, cid, "sleep", "1000")
    try:
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING")
        root = runtime_root_of_running(ctrd, cid, "corral-runc")
        res = ctrd.ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo exec-ok; exit 3", check=False)
        assert (res.stdout, res.returncode) == ("exec-ok\n", 3), res.stderr
        ctrd.ctr("tasks", "exec", "-d", "--exec-id", "e2", cid, "sleep", "500")
        ps = ctrd.ctr("tasks", "ps", cid).stdout.splitlines()
        assert ps[0].split()[0] == "PID" and len(ps) == 3, ps
        assert any("e2" in line for line in ps), ps
        ctrd.ctr("tasks", "pause", cid)
        wait_for(lambda: task_status(ctrd, cid) == "PAUSED", "PAUSED")
        ctrd.ctr("tasks", "resume", cid)
        wait_for(lambda: task_status(ctrd, cid) == "RUNNING", "RUNNING again")
        res = ctrd.ctr("tasks", "exec", "--exec-id", "e3", cid, "echo", "after-resume")
        assert res.stdout == "after-resume\n"
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_for(lambda: task_status(ctrd, cid) == "STOPPED", "STOPPED")
        ctrd.ctr("tasks", "delete", cid)
        assert task_status(ctrd, cid) is None
        assert not os.path.exists(os.path.join(root, cid))
    finally:
        remove(ctrd, cid)
    wait_for(lambda: not shim_pids(ctrd), "the shim to exit")
    assert mounts_below(ctrd.dir) == []


def crun_binary(tmpdir):
    """crun refuses a hybrid cgroup layout whose v2 hierarchy has controllers (as on this
    machine kind); there it runs through a wrapper, in a mount namespace without that hierarchy
    (it then sees plain cgroup v1). Elsewhere: crun itself."""
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            hybrid_with_controllers = bool(f.read().split())
    except OSError:
        hybrid_with_controllers = False
    if not hybrid_with_controllers:
        return "crun"
    wrapper = os.path.join(tmpdir, "crun")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec unshare -m sh -c 'umount -l /sys/fs/cgroup/unified && exec crun \"$@\"' crun \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper


@pytest.mark.skipif(not shutil.which("crun"), reason="crun is not installed")
def test_crun_as_binary_name(ctrd, cid, tmpdir_root):
    """BinaryName = crun: a real run with output and exit code, and a detached one driven by ctr."""
    config = runtime_config(tmpdir_root, crun_binary(tmpdir_root), "crun.toml")

    def crun_run(*args, check=True):
        return ctrd.ctr("run", "--runtime", RUNTIME, "--runtime-config-path", config, *args, check=check)

    res = crun_run("--rm", ctrd.image, cid, "sh", "-c", "echo via-crun; echo err >&2; exit 9", check=False)
    assert (res.returncode, res.stdout) == (9, "via-crun\n"), res.stderr
    assert "err" in res.stderr
    name = cid + "d"
    crun_run("-d", ctrd.image, name, "sleep", "1000")
    try:
        wait_for(lambda: task_status(ctrd, name) == "RUNNING", "RUNNING")
        runtime_root_of_running(ctrd, name, "crun")
        res = ctrd.ctr("tasks", "exec", "--exec-id", "c1", name, "sh", "-c", "echo in-crun; exit 4", check=False)
        assert (res.stdout, res.returncode) == ("in-crun\n", 4), res.stderr
        ctrd.ctr("tasks", "kill", "-s", "SIGKILL", name)
        wait_for(lambda: task_status(ctrd, name) == "STOPPED", "STOPPED")
        ctrd.ctr("tasks", "delete", name)
    finally:
        remove(ctrd, name)
        remove(ctrd, cid)
    wait_for(lambda: not shim_pids(ctrd), "the shims to exit")
    assert mounts_below(ctrd.dir) == []


FD_RECORDER = """#!{python} -S
import os, sys
fds = os.listdir("/proc/self/fd")  # its own fd is gone once the list is made
with open({record!r}, "a") as out:
    for fd in fds:
        try:
            out.write(fd + " " + os.readlink("/proc/self/fd/" + fd) + "\\n")
        except OSError:
            pass
os.execvp("runc", ["runc"] + sys.argv[1:])
"""


def test_runtime_gets_only_its_stdio(ctrd, cid, tmpdir_root):
    """The runtime binary starts with fds 0-2 only: none of the shim's own (its ttrpc socket,
    the daemon connection, other containers' pipes) leaks into runc and so towards containers."""
    record = os.path.join(tmpdir_root, "fds")
    wrapper = os.path.join(tmpdir_root, "runc-fds")
    with open(wrapper, "w") as f:
        f.write(FD_RECORDER.format(python=sys.executable, record=record))
    os.chmod(wrapper, 0o755)
    config = runtime_config(tmpdir_root, wrapper, "fds.toml")
    res = ctrd.ctr("run", "--rm", "--runtime", RUNTIME, "--runtime-config-path", config, ctrd.image, cid,
                   "echo", "fds", check=False)
    assert (res.returncode, res.stdout) == (0, "fds\n"), res.stderr
    with open(record) as f:
        fds = [line.split(" ", 1) for line in f.read().splitlines()]
    assert fds, "the wrapper did not run"
    leaked = [(fd, target) for fd, target in fds if int(fd) > 2 and target != record]
    assert leaked == [], leaked
    wait_for(lambda: not shim_pids(ctrd), "the shim to exit")
