"""`corral cp` both ways (running and stopped containers, symlink escapes refused), and bad
input: one clear line, exit 125, nothing left behind."""

import os
import shutil
import tempfile
import uuid

import pytest

from tests.e2e.conftest import leftovers


def uname(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hostdir():
    d = tempfile.mkdtemp(prefix="corral-e2e-cp-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


SETUP = ("mkdir -p /data/sub && echo inside > /data/f && echo deep > /data/sub/g && "
         "ln -s /etc/passwd /data/plink && ln -s {host} /data/dlink && ln -s / /data/rootlink && ")


def test_cp_both_ways_running_and_stopped(corral, cleanup, hostdir):
    name = uname()
    cleanup.append(name)
    corral("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
           SETUP.format(host=hostdir) + "sleep 1000")
    corral("exec", name, "test", "-f", "/data/sub/g")
    # out: a directory into an existing host directory
    corral("cp", f"{name}:/data", hostdir)
    with open(os.path.join(hostdir, "data", "sub", "g")) as f:
        assert f.read() == "deep\n"
    assert os.readlink(os.path.join(hostdir, "data", "plink")) == "/etc/passwd"  # copied as a link
    # in: a file to a new name, and a directory into an existing one
    src = os.path.join(hostdir, "h")
    with open(src, "w") as f:
        f.write("from host\n")
    os.chmod(src, 0o640)
    corral("cp", src, f"{name}:/data/h2")
    assert corral("exec", name, "sh", "-c", "cat /data/h2; stat -c %a /data/h2").stdout == "from host\n640\n"
    tree = os.path.join(hostdir, "tree")
    os.makedirs(os.path.join(tree, "x"))
    with open(os.path.join(tree, "x", "y"), "w") as f:
        f.write("y\n")
    corral("cp", tree, f"{name}:/tmp")
    assert corral("exec", name, "cat", "/tmp/tree/x/y").stdout == "y\n"
    # a stopped container: its snapshot is mounted for the copy, then unmounted
    corral("stop", "-t", "0", name)
    corral("cp", src, f"{name}:/data/h3")
    back = os.path.join(hostdir, "back")
    corral("cp", f"{name}:/data/h3", back)
    with open(back) as f:
        assert f.read() == "from host\n"
    with open("/proc/self/mountinfo") as f:
        assert "corral-cp-" not in f.read()


def test_cp_never_writes_outside_the_container(corral, cleanup, hostdir):
    name = uname()
    cleanup.append(name)
    victim = os.path.join(hostdir, "victim")
    with open(victim, "w") as f:
        f.write("untouched\n")
    corral("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
           SETUP.format(host=hostdir) + f"ln -s {victim} /data/vlink && sleep 1000")
    corral("exec", name, "test", "-L", "/data/vlink")
    src = os.path.join(hostdir, "payload")
    with open(src, "w") as f:
        f.write("payload\n")
    before = sorted(os.listdir(hostdir))
    # a symlink as the destination itself: refused
    res = corral("cp", src, f"{name}:/data/vlink", check=False)
    assert res.returncode == 1 and "symlink" in res.stderr
    # a symlink to a host directory on the way: resolved inside the container (where that
    # directory does not exist), so refused too
    res = corral("cp", src, f"{name}:/data/dlink/x", check=False)
    assert res.returncode == 1 and "no such directory in the container" in res.stderr
    # .. and absolute links are kept inside the root
    corral("cp", src, f"{name}:/data/rootlink/../../../../escaped")
    assert corral("exec", name, "cat", "/escaped").stdout == "payload\n"
    corral("cp", src, f"{name}:/..")  # the root's parent is the root
    assert corral("exec", name, "cat", "/payload").stdout == "payload\n"
    assert sorted(os.listdir(hostdir)) == before
    with open(victim) as f:
        assert f.read() == "untouched\n"
    assert not os.path.exists("/escaped")
    corral("cp", f"{name}:/../../../etc/passwd", os.path.join(hostdir, "passwd"))
    with open(os.path.join(hostdir, "passwd")) as f:
        assert f.read() == corral("exec", name, "cat", "/etc/passwd").stdout
    # copying out through a link to a host path reads the container's view, not the host's
    res = corral("cp", f"{name}:/data/vlink", os.path.join(hostdir, "out"), check=False)
    assert os.readlink(os.path.join(hostdir, "out")) == victim  # the link itself, not the host file


def one_clear_line(res):
    lines = res.stderr.strip().splitlines()
    return res.returncode == 125 and len(lines) == 1 and lines[0].startswith("corral: ") and "Traceback" not in res.stderr


def test_unknown_image(corral, corrald):
    before = leftovers(corrald)
    res = corral("run", "--rm", "nosuchimage:1.0", "true", check=False)
    assert one_clear_line(res), res.stderr
    assert "image nosuchimage:1.0 not found; pull it first (corral pull nosuchimage:1.0)" in res.stderr
    assert leftovers(corrald) == before


def test_name_conflict(corral, corrald, cleanup):
    name = uname()
    cleanup.append(name)
    corral("create", "--name", name, "--network", "none", "busybox", "true")
    before = leftovers(corrald)
    res = corral("run", "--name", name, "--network", "none", "busybox", "true", check=False)
    assert one_clear_line(res) and "already in use" in res.stderr, res.stderr
    assert leftovers(corrald) == before


@pytest.mark.parametrize("args, words", [
    (["--memory", "lots"], "invalid --memory value"),
    (["--memory", "1k"], "minimum"),
    (["--cpus", "-1"], "invalid --cpus"),
    (["--pids-limit", "x"], "invalid --pids-limit"),
    (["-v", "/no/such/host/dir:/data"], "bind source path does not exist: /no/such/host/dir"),
    (["-v", "relative:/data:zz"], "invalid volume mode"),
    (["--cap-add", "NOT_A_CAP"], "unknown capability"),
    (["--restart", "sometimes"], "invalid restart policy"),
    (["-u", "nosuchuser"], "no such user"),
    (["--log-opt", "max-file=0"], "max-file"),
])
def test_bad_options_leave_nothing(corral, corrald, args, words):
    before = leftovers(corrald)
    res = corral("run", "--rm", "--network", "none", *args, "busybox", "true", check=False)
    assert one_clear_line(res), res.stderr
    assert words in res.stderr
    assert leftovers(corrald) == before


def test_unknown_container_and_flags(corral):
    res = corral("stop", "no-such-container", check=False)
    assert res.returncode == 1 and "no such container: no-such-container" in res.stderr
    res = corral("run", "--no-such-flag", "busybox", check=False)
    assert one_clear_line(res)
