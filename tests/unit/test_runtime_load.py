"""The runtime v2 manager's start-up (load) with fake shims: a dead shim's exit is kept as a
stopped task (across restarts) and published only once the API serves; a shim that does not
answer is neither waited for long nor deleted, and is reconnected when it answers."""

import os
import threading
import time

import pytest

from corral.api.containerd.runtime.v2.task import shim_pb2
from corral.api.containerd.types import task_pb2
from corral.daemon.runtime import ExitedTask, RuntimeV2, Shim, UnresponsiveTask
from corral.services.errors import FailedPrecondition, NotFound, Unavailable


class FakeClient:
    def __init__(self, shim):
        self.shim = shim
        self.closed = False

    def call(self, service, method, data, timeout):
        if not self.shim.answering.wait(timeout):
            raise Unavailable(f"shim {method}: no answer in {timeout}s")
        self.shim.calls.append(method)
        return shim_pb2.ConnectResponse(shim_pid=1, task_pid=self.shim.pid).SerializeToString()

    def close(self):
        self.closed = True


class FakeShim:
    def __init__(self, pid, answering=True):
        self.pid = pid
        self.answering = threading.Event()
        if answering:
            self.answering.set()
        self.calls = []


def make_runtime(tmp_path, shims, **kw):
    published = []

    def connector(address, ns, timeout):
        shim = shims.get(address)
        if shim is None:
            err = Unavailable(f"cannot connect to shim at {address}: refused")
            err.refused = True
            raise err
        return FakeClient(shim)

    rt = RuntimeV2(str(tmp_path / "root"), str(tmp_path / "state"), "/x.sock", "/x.sock.ttrpc", connector,
                   publish=lambda ns, topic, msg: published.append((ns, topic, msg)), **kw)
    rt.deleted = []

    def fake_delete(ns, cid, runtime, bundle):
        rt.deleted.append(cid)
        return shim_pb2.DeleteResponse(exit_status=137)
    rt._shim_delete = fake_delete
    return rt, published


def make_bundle(tmp_path, cid, address, pid=None):
    bundle = tmp_path / "state" / "default" / cid
    bundle.mkdir(parents=True)
    (bundle / "address").write_text(address)
    (bundle / "runtime").write_text("io.containerd.runc.v2")
    if pid is not None:
        (bundle / "init.pid").write_text(str(pid))
    return bundle


def test_dead_shim_exit_is_kept_and_published_once_serving(tmp_path):
    bundle = make_bundle(tmp_path, "dead", "unix:///gone", pid=42)
    rt, published = make_runtime(tmp_path, {})
    try:
        rt.load()
        task = rt.get("default", "dead")
        assert isinstance(task, ExitedTask) and rt.deleted == ["dead"]
        st = task.call("State", shim_pb2.StateRequest(id="dead"), shim_pb2.StateResponse)
        assert (st.status, st.exit_status, st.pid) == (task_pb2.STOPPED, 137, 42)
        assert st.exited_at.seconds > 0
        assert task.call("Wait", shim_pb2.WaitRequest(id="dead"), shim_pb2.WaitResponse).exit_status == 137
        with pytest.raises(NotFound):
            task.call("Kill", shim_pb2.KillRequest(id="dead", signal=9), None)
        with pytest.raises(FailedPrecondition):
            task.call("Exec", shim_pb2.ExecProcessRequest(id="dead", exec_id=""), None)
        assert published == []  # nobody could have listened yet
        rt.serve()
        assert [(ns, topic, m.exit_status) for ns, topic, m in published] == [("default", "/tasks/exit", 137)]
        assert sorted(os.listdir(bundle)) == ["exit"]
    finally:
        rt.close()

    # another start-up finds the record without probing anything
    rt2, published2 = make_runtime(tmp_path, {})
    try:
        rt2.load()
        rt2.serve()
        assert rt2.deleted == [] and published2 == []
        assert isinstance(rt2.get("default", "dead"), ExitedTask)
        resp = rt2.delete("default", "dead")
        assert (resp.exit_status, resp.pid) == (137, 42)
        assert [topic for _, topic, _ in published2] == ["/tasks/delete"]
        assert not bundle.exists()
        with pytest.raises(NotFound):
            rt2.get("default", "dead")
    finally:
        rt2.close()


def test_dead_shim_whose_task_was_never_created_leaves_nothing(tmp_path):
    bundle = make_bundle(tmp_path, "half", "unix:///gone")  # no init.pid
    rt, published = make_runtime(tmp_path, {})
    try:
        rt.load()
        rt.serve()
        with pytest.raises(NotFound):
            rt.get("default", "half")
        assert not bundle.exists() and published == []
    finally:
        rt.close()


def test_unresponsive_shim_is_not_waited_for_nor_deleted(tmp_path):
    make_bundle(tmp_path, "stuck", "unix:///stuck", pid=7)
    make_bundle(tmp_path, "fine", "unix:///fine", pid=8)
    stuck = FakeShim(7, answering=False)
    rt, published = make_runtime(tmp_path, {"unix:///stuck": stuck, "unix:///fine": FakeShim(8)},
                                 load_timeout=3, load_wait=0.5)
    try:
        t0 = time.monotonic()
        rt.load()
        assert time.monotonic() - t0 < 1.5
        assert isinstance(rt.get("default", "fine"), Shim)
        task = rt.get("default", "stuck")
        assert isinstance(task, UnresponsiveTask)
        st = task.call("State", shim_pb2.StateRequest(id="stuck"), shim_pb2.StateResponse)
        assert (st.status, st.pid) == (task_pb2.UNKNOWN, 7)
        with pytest.raises(Unavailable):
            task.call("Kill", shim_pb2.KillRequest(id="stuck", signal=9), None)
        with pytest.raises(Unavailable):
            rt.delete("default", "stuck")
        time.sleep(3.5)  # its first probe timed out: retried, never deleted
        assert rt.deleted == [] and isinstance(rt.get("default", "stuck"), UnresponsiveTask)
        stuck.answering.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not isinstance(rt.get("default", "stuck"), Shim):
            time.sleep(0.05)
        assert isinstance(rt.get("default", "stuck"), Shim)
        assert rt.deleted == [] and published == []
    finally:
        rt.close()


def test_unresponsive_shim_that_dies_is_reported_live(tmp_path):
    make_bundle(tmp_path, "stuck", "unix:///stuck", pid=7)
    shims = {"unix:///stuck": FakeShim(7, answering=False)}
    rt, published = make_runtime(tmp_path, shims, load_timeout=0.3, load_wait=0.2)
    try:
        rt.load()
        rt.serve()
        assert isinstance(rt.get("default", "stuck"), UnresponsiveTask)
        del shims["unix:///stuck"]  # its socket now refuses: the process is gone
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not published:
            time.sleep(0.05)
        assert [topic for _, topic, _ in published] == ["/tasks/exit"]
        assert isinstance(rt.get("default", "stuck"), ExitedTask) and rt.deleted == ["stuck"]
    finally:
        rt.close()
