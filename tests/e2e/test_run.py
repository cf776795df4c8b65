"""`corral run` as a user: output, exit codes, image config and options, --rm, detached."""

import json
import os
import shutil
import tempfile
import uuid

from tests.e2e.conftest import leftovers


def uname(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_run_prints_output_and_exits_with_status(corral, corrald):
    before = leftovers(corrald)
    res = corral("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                 check=False)
    assert res.returncode == 3, res.stderr
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"
    assert leftovers(corrald) == before


def test_run_command_not_found_is_127(corral, corrald):
    before = leftovers(corrald)
    res = corral("run", "--rm", "--network", "none", "busybox", "/no/such/thing", check=False)
    assert res.returncode == 127
    assert len(res.stderr.strip().splitlines()) == 1 and "not found" in res.stderr
    assert leftovers(corrald) == before


def test_run_command_not_executable_is_126(corral, corrald, cleanup):
    before = leftovers(corrald)
    for args in (["--rm"], ["-d", "--rm"]):
        for cmd, why in (("/etc/passwd", "is not executable (permission denied)"), ("/tmp", "is a directory")):
            res = corral("run", *args, "--network", "none", "busybox", cmd, check=False)
            assert res.returncode == 126, res.stderr
            assert res.stderr.count("\n") == 1 and f"executable {cmd} in the container {why}" in res.stderr
        res = corral("run", *args, "--network", "none", "busybox", "no-such-cmd", check=False)
        assert res.returncode == 127, res.stderr
        assert "executable 'no-such-cmd' not found in the container's $PATH" in res.stderr
    assert leftovers(corrald) == before
    # exec's codes are the same
    name = uname()
    cleanup.append(name)
    corral("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "60")
    for cmd, code in (("/etc/passwd", 126), ("/tmp", 126), ("/no/such", 127), ("no-such-cmd", 127)):
        res = corral("exec", name, cmd, check=False)
        assert res.returncode == code, (cmd, res.stderr)
        assert res.stderr.count("\n") == 1 and "cannot run the command in the container" in res.stderr
    assert corral("exec", name, "true").returncode == 0


def test_run_options_reach_the_process(corral, cleanup):
    name = uname()
    cleanup.append(name)
    env_file = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
    env_file.write("# comment\nFROM_FILE=yes\n")
    env_file.close()
    try:
        res = corral("run", "--name", name, "--network", "none", "-e", "A=1", "--env-file", env_file.name,
                     "-w", "/tmp", "-u", "nobody", "--hostname", "box1", "--label", "team=ops",
                     "busybox", "sh", "-c", 'echo "$A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname)"')
    finally:
        os.unlink(env_file.name)
    assert res.stdout == "1 yes /tmp 65534:65534 box1\n"
    info = json.loads(corral("inspect", name).stdout)[0]
    assert info["Name"] == "/" + name
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert info["Config"]["Labels"] == {"team": "ops"}
    assert info["Config"]["WorkingDir"] == "/tmp"
    assert info["Image"] == "docker.io/library/busybox:latest"


def test_entrypoint_override(corral):
    res = corral("run", "--rm", "--network", "none", "--entrypoint", "echo", "busybox", "a", "b")
    assert res.stdout == "a b\n"


def test_limits_and_security_options(corral, cleanup):
    name = uname()
    cleanup.append(name)
    corral("create", "--name", name, "--network", "none", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50",
           "--read-only", "busybox", "true")
    spec_host = json.loads(corral("inspect", name).stdout)[0]["HostConfig"]
    assert spec_host["Memory"] == 64 << 20
    assert spec_host["NanoCpus"] == 500000000
    assert spec_host["PidsLimit"] == 50
    assert spec_host["ReadonlyRootfs"] is True
    res = corral("run", "--rm", "--network", "none", "--read-only", "busybox", "touch", "/x", check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    res = corral("run", "--rm", "--network", "none", "--cap-drop", "CHOWN", "busybox", "chown", "1", "/tmp", check=False)
    assert res.returncode != 0 and "Operation not permitted" in res.stderr
    assert corral("run", "--rm", "--network", "none", "busybox", "chown", "1", "/tmp").returncode == 0
    # the memory limit is in the container's cgroup
    res = corral("run", "--rm", "--network", "none", "--memory", "64m", "busybox", "sh", "-c",
                 "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
    assert res.stdout.strip() == str(64 << 20)


def test_bind_volume_rw_and_ro(corral):
    host = tempfile.mkdtemp(prefix="corral-e2e-bind-")
    try:
        with open(os.path.join(host, "in"), "w") as f:
            f.write("from host\n")
        res = corral("run", "--rm", "--network", "none", "-v", f"{host}:/data", "busybox", "sh", "-c",
                     "cat /data/in; echo from container > /data/out")
        assert res.stdout == "from host\n"
        with open(os.path.join(host, "out")) as f:
            assert f.read() == "from container\n"
        res = corral("run", "--rm", "--network", "none", "-v", f"{host}:/data:ro", "busybox", "touch", "/data/x",
                     check=False)
        assert res.returncode != 0 and not os.path.exists(os.path.join(host, "x"))
    finally:
        shutil.rmtree(host)


def test_stdin_with_i(corral):
    res = corral("run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert res.stdout == "HELLO\n"


def test_detached_wait_and_status(corral, cleanup):
    name = uname()
    cleanup.append(name)
    cid = corral("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c", "sleep 0.3; exit 4").stdout.strip()
    assert len(cid) == 64 and all(ch in "0123456789abcdef" for ch in cid)
    assert corral("wait", name).stdout == "4\n"
    assert corral("wait", cid[:10]).stdout == "4\n"  # an id prefix works too
    ps = corral("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}").stdout
    assert f"{name} exited Exited (4)" in ps


def test_start_attach_and_restart(corral, cleanup):
    name = uname()
    cleanup.append(name)
    corral("create", "--name", name, "--network", "none", "busybox", "sh", "-c", "echo again; exit 2")
    assert corral("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.count(f"{name} created") == 1
    res = corral("start", "-a", name, check=False)
    assert res.returncode == 2 and res.stdout == "again\n"
    res = corral("start", "-a", name, check=False)  # an exited container starts again
    assert res.returncode == 2 and res.stdout == "again\n"
    corral("restart", "-t", "1", name)
    assert corral("wait", name).stdout == "2\n"


def test_detached_rm_removes_after_exit(corral, corrald):
    before = leftovers(corrald)
    name = uname()
    corral("run", "-d", "--rm", "--name", name, "--network", "none", "busybox", "sleep", "0.5")
    import time
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and name in corral("ps", "-a", "--format", "{{.Names}}").stdout.split():
        time.sleep(0.2)
    assert name not in corral("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert leftovers(corrald) == before


def test_detached_start_failure_leaves_nothing(corral, corrald):
    before = leftovers(corrald)
    res = corral("run", "-d", "--network", "none", "busybox", "/no/such/cmd", check=False)
    assert res.returncode == 127 and len(res.stderr.strip().splitlines()) == 1
    assert leftovers(corrald) == before
