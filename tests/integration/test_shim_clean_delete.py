"""After the shim server deleted a task completely it leaves `delete`'s answer in the bundle, and
`containerd-shim-corral-v2 delete` prints it (the launcher does, without starting Python);
without it (a killed shim) `delete` does the clean-up itself."""

import os
import subprocess

from corral.api.containerd.runtime.v2.task import shim_pb2 as pb
from corral.shim.start import DELETED
from tests.integration.test_shim import run, shim_env, wait_gone  # noqa: F401 (fixture)


def test_delete_after_a_clean_task_delete(shim_env):
    shim = shim_env(["true"])

    async def body():
        await shim.start()
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle), pb.CreateTaskResponse)
            assert not os.path.exists(os.path.join(shim.bundle, DELETED))
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            await shim.call("Wait", pb.WaitRequest(id=shim.cid), pb.WaitResponse)
            await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert wait_gone(shim.pid)
    with open(os.path.join(shim.bundle, DELETED), "rb") as f:
        saved = f.read()
    assert pb.DeleteResponse.FromString(saved).exit_status == 137  # what `delete` answers for a gone shim
    # containerd runs it from the bundle, with -bundle; either finds the answer
    for cwd, extra in ((shim.bundle, []), ("/", ["-bundle", shim.bundle])):
        res = subprocess.run(shim.argv(*extra, "delete"), cwd=cwd, capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert res.stdout == saved


def test_delete_without_the_answer_cleans_up(shim_env):
    shim = shim_env(["sleep", "1000"])

    async def body():
        await shim.start()
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle), pb.CreateTaskResponse)
        finally:
            await shim.close()
    run(body())
    os.kill(shim.pid, 9)
    assert wait_gone(shim.pid)
    res = subprocess.run(shim.argv("delete"), cwd=shim.bundle, capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    resp = pb.DeleteResponse.FromString(res.stdout)
    assert resp.exit_status == 137 and resp.exited_at.seconds > 0
    assert not os.path.exists(os.path.join(shim.state_root, shim.cid))  # the runtime's state is gone
    assert not os.path.exists(os.path.join(shim.bundle, DELETED))
