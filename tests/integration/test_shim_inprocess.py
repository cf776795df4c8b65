"""The shim running corral-runc in-process (forked from the shim, no new interpreter): the
container sees only its stdio, exit codes and output arrive, runtime errors reach the caller,
and CORRAL_SHIM_INPROCESS=0 execs the binary with the same results."""

import os
import subprocess

import pytest
from google.protobuf.any_pb2 import Any

from corral.api.containerd.runc.options.oci_pb2 import Options
from corral.api.containerd.runtime.v2.task import shim_pb2 as pb
from corral.shim import inproc
from corral.ttrpc.errors import TtrpcError
from tests.conftest import venv_tool
from tests.integration.test_shim import Shim, run, wait_gone


def test_enabled_only_for_corral_runc(monkeypatch):
    monkeypatch.delenv("CORRAL_SHIM_INPROCESS", raising=False)
    assert inproc.enabled("corral-runc")
    assert inproc.enabled("/usr/local/bin/corral-runc")
    assert not inproc.enabled("runc")
    assert not inproc.enabled("/usr/bin/crun")
    monkeypatch.setenv("CORRAL_SHIM_INPROCESS", "0")
    assert not inproc.enabled("corral-runc")


@pytest.fixture
def corral_shim(tmpdir_root):
    venv_tool("corral-runc")
    made = []

    def make(args, cid):
        s = Shim(tmpdir_root, cid, args)
        s.opts = Any(type_url="containerd.runc.v1.Options",
                     value=Options(binary_name="corral-runc", root=s.runc_root).SerializeToString())
        made.append(s)
        return s
    yield make
    for s in made:
        try:
            os.kill(s.pid, 9)
        except (ProcessLookupError, AttributeError):
            pass
        subprocess.run([venv_tool("corral-runc"), "--root", s.state_root, "delete", "--force", s.cid],
                       capture_output=True)
        subprocess.run(["umount", "-l", os.path.join(s.bundle, "rootfs")], capture_output=True)


def _lifecycle(shim, log):
    async def body():
        await shim.start()
        try:
            create = pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle, stdout="file://" + log,
                                          stderr="file://" + log)
            await shim.call("Create", create, pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            waited = await shim.call("Wait", pb.WaitRequest(id=shim.cid), pb.WaitResponse)
            await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            # a runtime error comes back as the call's error (from the runtime's JSON log)
            bad = os.path.join(shim.root, "bad-bundle")
            os.makedirs(os.path.join(bad, "rootfs"))
            with open(os.path.join(bad, "config.json"), "w") as f:
                f.write("{not json")
            with pytest.raises(TtrpcError) as e:
                await shim.call("Create", pb.CreateTaskRequest(id=shim.cid + "-bad", bundle=bad),
                                pb.CreateTaskResponse)
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
            return waited.exit_status, e.value.message
        finally:
            await shim.close()
    return run(body())


@pytest.mark.parametrize("in_process", ["1", "0"])
def test_container_sees_only_its_stdio(corral_shim, tmpdir_root, monkeypatch, in_process):
    monkeypatch.setenv("CORRAL_SHIM_INPROCESS", in_process)
    shim = corral_shim(["sh", "-c", "ls /proc/self/fd; echo to-stderr >&2; exit 7"], "inproc-" + in_process)
    log = os.path.join(tmpdir_root, "out.log")
    status, error = _lifecycle(shim, log)
    assert status == 7
    assert "OCI runtime create failed" in error
    lines = open(log).read().split()
    assert "to-stderr" in lines
    # 0-2, and the directory ls has open while it lists: nothing of the shim's
    assert sorted(int(x) for x in lines if x.isdigit()) == [0, 1, 2, 3]
    assert wait_gone(shim.pid)
