"""corral.oci.linux.rootfs on the real kernel: a child unshares mount+pid (+cgroup, ipc, net,
uts) namespaces, forks, runs setup() on a busybox bundle, then execs a shell probe whose
output the test checks. The namespaces die with the child; temp dirs are removed."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from corral.busybox import make_bundle
from corral.oci.errors import RuntimeFailure
from corral.oci.linux import rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DRIVER = r"""
import json, os, sys
from corral.oci.errors import RuntimeFailure
from corral.oci.linux import rootfs, syscalls as S
bundle, script, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(os.path.join(bundle, "config.json")) as f:
    spec = json.load(f)
S.unshare(S.CLONE_NEWNS | S.CLONE_NEWPID | S.CLONE_NEWCGROUP | S.CLONE_NEWIPC | S.CLONE_NEWNET
          | S.CLONE_NEWUTS)
pid = os.fork()
if pid == 0:
    try:
        before = None
        if opts.get("before_pivot"):
            before = lambda: open(os.path.join(bundle, "before-pivot-ran"), "w").close()
        rootfs.setup(spec, bundle, opts.get("cgroup_paths") or {}, no_pivot=opts.get("no_pivot", False),
                     before_pivot=before)
        os.execv("/bin/sh", ["sh", "-c", script])
    except RuntimeFailure as e:
        print("FAILURE:", e, file=sys.stderr)
    except BaseException as e:
        print("ERROR:", repr(e), file=sys.stderr)
    os._exit(3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_setup(bundle, script, **opts):
    """Run setup() on `bundle` in fresh namespaces, then `script` inside; (rc, out, err)."""
    res = subprocess.run([sys.executable, "-c", DRIVER, bundle, script, json.dumps(opts)],
                         capture_output=True, text=True, timeout=60)
    return res.returncode, res.stdout, res.stderr


def ok(bundle, script, **opts):
    rc, out, err = run_setup(bundle, script, **opts)
    assert rc == 0, f"rc={rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def mountinfo_lines(out):
    """mount point -> (mount options, fstype, source, super options) from mountinfo text."""
    res = {}
    for line in out.splitlines():
        if " - " not in line:
            continue
        left, right = line.split(" - ", 1)
        f, r = left.split(), right.split()
        res[f[4]] = (f[5], r[0], r[1], r[2] if len(r) > 2 else "")
    return res


@pytest.fixture
def bundle(tmpdir_root):
    path = os.path.join(tmpdir_root, "bundle")
    make_bundle(path, args=["true"])
    return path


def edit(bundle, change):
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    change(spec)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return spec


def test_default_mounts_and_devices(bundle):
    out = ok(bundle, "cat /proc/self/mountinfo; echo ---; ls -l /dev /dev/pts; echo ---; pwd")
    info, dev, cwd = out.split("---\n")
    m = mountinfo_lines(info)
    assert m["/"][0].startswith("rw")
    assert m["/proc"][1] == "proc"
    assert m["/dev"][:2] == ("rw,nosuid", "tmpfs") and "size=65536k" in m["/dev"][3]
    assert m["/dev/pts"][1] == "devpts" and "ptmxmode=666" in m["/dev/pts"][3]
    assert m["/dev/shm"][0] == "rw,nosuid,nodev,noexec,relatime"
    assert m["/dev/mqueue"][1] == "mqueue"
    assert m["/sys"][:2] == ("ro,nosuid,nodev,noexec,relatime", "sysfs")
    assert m["/sys/fs/cgroup"][1] in ("tmpfs", "cgroup2")
    assert m["/proc/sys"][0].startswith("ro")
    assert m["/proc/keys"][2] == "tmpfs"  # /dev/null of the container's /dev bound over it
    assert m["/sys/firmware"][:2] == ("ro,relatime", "tmpfs")
    for name, major_minor in [("null", "1,   3"), ("zero", "1,   5"), ("full", "1,   7"),
                              ("random", "1,   8"), ("urandom", "1,   9"), ("tty", "5,   0")]:
        line = next(l for l in dev.splitlines() if l.endswith(" " + name))
        assert line.startswith("crw-rw-rw-") and major_minor in line, line
    for link in ["fd -> /proc/self/fd", "stdin -> /proc/self/fd/0", "stdout -> /proc/self/fd/1",
                 "stderr -> /proc/self/fd/2", "ptmx -> pts/ptmx"]:
        assert link in dev
    assert cwd.strip() == "/"
