"""The same bundle under corral-runc and under real runc gives the same observable result."""

import os
import shutil
import subprocess

import pytest

from corral.busybox import make_bundle
from tests.conftest import venv_tool

PROBE = ("hostname; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; echo ---; "
         "cut -d' ' -f5,6 /proc/self/mountinfo; echo ---; "
         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
         "/sys/fs/cgroup/cpu/cpu.shares 2>&1; echo ---; ls -l /dev | awk '{print $1, $NF}'; "
         "echo ---; ulimit -n; id")

pytestmark = pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")


def _limits(spec):
    spec["hostname"] = "parity"
    spec["linux"]["resources"].update({
        "memory": {"limit": 64 * 1024 * 1024},
        "pids": {"limit": 50},
        "cpu": {"shares": 512},
    })


def _run(binary, bundle, root, cid):
    try:
        res = subprocess.run([binary, "--root", root, "run", cid], cwd=bundle, capture_output=True,
                             text=True, timeout=60)
    finally:
        subprocess.run([binary, "--root", root, "delete", "--force", cid], capture_output=True)
    assert res.returncode == 0, f"{binary} failed: {res.stderr}"
    return res.stdout.split("---\n")


def test_same_bundle_same_view(tmpdir_root, cid):
    bundle = os.path.join(tmpdir_root, "bundle")
    make_bundle(bundle, args=["sh", "-c", PROBE], spec_changes=_limits)
    ours = _run(venv_tool("corral-runc"), bundle, os.path.join(tmpdir_root, "ours"), cid)
    theirs = _run("runc", bundle, os.path.join(tmpdir_root, "runc"), cid)
    names = ["hostname and capabilities", "mounts", "cgroup limits", "/dev", "rlimit and user"]
    for name, a, b in zip(names, ours, theirs):
        if name == "mounts":
            a, b = sorted(a.splitlines()), sorted(b.splitlines())
        assert a == b, f"{name} differ:\ncorral-runc:\n{a}\nrunc:\n{b}"
