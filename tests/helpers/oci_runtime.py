"""Drive corral-runc from tests with a private --root, and clean up whatever a test leaves."""

import glob
import json
import os
import subprocess
import tempfile
import time

import pytest

from corral.busybox import make_bundle


class Runtime:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.root = os.path.join(tmp, "state")

    def __call__(self, *args, timeout=60, input=None, stdin=None):
        """Run corral-runc --root <root> ARGS; returns the CompletedProcess (text)."""
        # global options (--log FILE ...) go before --root's verb, as runc wants them
        glob = []
        while args and args[0] in ("--log", "--log-format", "--debug"):
            n = 1 if args[0] == "--debug" else 2
            glob += args[:n]
            args = args[n:]
        # files, not pipes: a created container keeps its stdio open after corral-runc exits
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            res = subprocess.run([self.binary, "--root", self.root, *glob, *args], stdout=out, stderr=err,
                                 text=True, timeout=timeout, input=input,
                                 stdin=stdin if input is None else None)
            out.seek(0)
            err.seek(0)
            res.stdout, res.stderr = out.read(), err.read()
        return res

    def ok(self, *args, **kw):
        res = self(*args, **kw)
        assert res.returncode == 0, f"corral-runc {' '.join(args)} failed ({res.returncode}): {res.stderr}"
        return res

    def bundle(self, name="bundle", args=("sh",), changes=None, readonly=False):
        path = os.path.join(self.tmp, name)
        make_bundle(path, args=args, spec_changes=changes, rootfs_readonly=readonly)
        return path

    def state(self, cid):
        return json.loads(self.ok("state", cid).stdout)

    def wait_status(self, cid, want, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)["status"]
            if st == want or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def cleanup(self):
        if os.path.isdir(self.root):
            for cid in os.listdir(self.root):
                subprocess.run([self.binary, "--root", self.root, "delete", "--force", cid],
                               capture_output=True, timeout=30)


def leftovers(tmp, cid):
    """Mounts under tmp, and cgroup directories named after cid, still present."""
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if line.split()[4].startswith(tmp)]
    for depth in ("*", "*/*", "*/*/*"):
        found += glob.glob(f"/sys/fs/cgroup/{depth}/*{cid}*")
    return found


@pytest.fixture
def rt(tmpdir_root):
    """A Runtime with its own --root; every container left is deleted with --force."""
    from tests.conftest import venv_tool

    r = Runtime(venv_tool("corral-runc"), tmpdir_root)
    yield r
    r.cleanup()
