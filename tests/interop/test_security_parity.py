"""Process security through the real command line: corral-runc and runc on one bundle with
the default seccomp profile, a non-root user, groups, umask and ambient caps."""

import os
import shutil
import subprocess

import pytest

from corral.busybox import make_bundle
from corral.oci.linux.seccomp_default import default_profile
from corral.oci.specgen import DEFAULT_CAPS
from tests.conftest import venv_tool

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")]

PROBE = ("grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups)' /proc/self/status; ulimit -n; umask; "
         "echo HOME=$HOME; mkdir /tmp/x && echo mkdir-ok; unshare -m true 2>&1 || echo unshare-refused")


def _secure(spec):
    spec["linux"]["seccomp"] = default_profile(DEFAULT_CAPS)
    p = spec["process"]
    p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5], "umask": 0o027}
    p["capabilities"]["inheritable"] = ["CAP_KILL"]
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 300, "hard": 400}]
    p["env"] = ["PATH=/bin:/usr/bin"]


def _cli(binary, root, *args, timeout=60, **kw):
    return subprocess.run([binary, "--root", root, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def _run(binary, bundle, root, cid):
    try:
        res = _cli(binary, root, "run", cid, cwd=bundle)
    finally:
        _cli(binary, root, "delete", "--force", cid)
        shutil.rmtree(os.path.join(bundle, "rootfs/tmp/x"), ignore_errors=True)
    assert res.returncode == 0, f"{binary}: {res.stderr}"
    return res.stdout


def test_run_shows_the_same_process_security(tmpdir_root, cid):
    bundle = os.path.join(tmpdir_root, "bundle")
    make_bundle(bundle, args=["sh", "-c", PROBE], spec_changes=_secure)
    ours = _run(venv_tool("corral-runc"), bundle, os.path.join(tmpdir_root, "ours"), cid)
    theirs = _run("runc", bundle, os.path.join(tmpdir_root, "runc"), cid)
    assert "Seccomp:\t2" in theirs and "unshare-refused" in theirs and "mkdir-ok" in theirs
    assert ours == theirs


def _exec_view(binary, bundle, root, cid):
    try:
        # the container keeps create's stdio: a file, not a pipe we would wait on
        err_path = os.path.join(os.path.dirname(root), os.path.basename(root) + ".stderr")
        with open(err_path, "w+") as err:
            created = subprocess.run([binary, "--root", root, "create", "--bundle", bundle, cid],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err, timeout=60)
            err.seek(0)
            assert created.returncode == 0, f"{binary} create: {err.read()}"
        res = _cli(binary, root, "exec", cid, "sh", "-c", PROBE.replace("/tmp/x", "/tmp/y"))
        assert res.returncode == 0, f"{binary} exec: {res.stderr}"
        return res.stdout
    finally:
        _cli(binary, root, "delete", "--force", cid)
        shutil.rmtree(os.path.join(bundle, "rootfs/tmp/y"), ignore_errors=True)


def test_exec_gets_the_containers_seccomp_and_user(tmpdir_root, cid):
    bundle = os.path.join(tmpdir_root, "bundle")
    make_bundle(bundle, args=["sleep", "60"], spec_changes=_secure)
    ours = _exec_view(venv_tool("corral-runc"), bundle, os.path.join(tmpdir_root, "ours"), cid)
    theirs = _exec_view("runc", bundle, os.path.join(tmpdir_root, "runc"), cid)
    assert "Seccomp:\t2" in theirs and "Uid:\t1000" in theirs
    # runc 1.1 leaves an exec process with its own umask (0022) instead of process.user.umask;
    # corral applies the umask the config asks for
    assert "\n0027\n" in ours and "\n0022\n" in theirs
    assert ours.replace("\n0027\n", "\n0022\n") == theirs
