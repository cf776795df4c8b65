"""The shim on its own: `start`, the Task API over our ttrpc client, events to a stand-in
daemon endpoint (our ttrpc server), `delete` after a killed shim. The runtime is runc."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.empty_pb2 import Empty

from corral.api.containerd.runc.options.oci_pb2 import Options
from corral.api.containerd.runtime.v2.task import shim_pb2 as pb
from corral.api.containerd.services.events.ttrpc.v1.events_pb2 import ForwardRequest
from corral.api.containerd.types.mount_pb2 import Mount
from corral.api.containerd.types.task_pb2 import RUNNING, STOPPED
from corral.busybox import make_bundle, make_rootfs
from corral.shim.mounts import is_mount_point
from corral.ttrpc.client import Client
from corral.ttrpc.errors import FAILED_PRECONDITION, NOT_FOUND, TtrpcError
from corral.ttrpc.server import Server
from tests.conftest import venv_tool

TASK = "containerd.task.v2.Task"
pytestmark = pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")


class Shim:
    """One shim started with `start` in a bundle, plus the events it forwards."""

    def __init__(self, root, cid, args):
        self.root, self.cid = root, cid
        self.bundle = os.path.join(root, "bundle")
        self.runc_root = os.path.join(root, "runc")
        self.namespace = "corral-test"
        self.address = os.path.join(root, "daemon.sock")  # only names the shim's socket
        self.events_sock = os.path.join(root, "events.sock")
        self.events = []
        make_bundle(self.bundle, args=args)
        self.opts = Any(type_url="containerd.runc.v1.Options",
                        value=Options(binary_name="runc", root=self.runc_root).SerializeToString())

    @property
    def state_root(self):
        """Where the runtime keeps its state: the options' root, then the namespace."""
        return os.path.join(self.runc_root, self.namespace)

    def argv(self, *args):
        return [venv_tool("containerd-shim-corral-v2"), "-namespace", self.namespace, "-address", self.address,
                "-publish-binary", "/bin/false", "-id", self.cid, *args]

    async def serve_events(self):
        server = Server()

        async def forward(ctx, req):
            assert req.envelope.namespace == self.namespace
            self.events.append((req.envelope.topic, req.envelope.event))
            return Empty()
        server.register("containerd.services.events.ttrpc.v1.Events", {"Forward": (ForwardRequest, forward)})
        await server.serve(self.events_sock)
        self.events_server = server

    async def start(self, events=True, env=None):
        self.events_server = None
        if events:
            await self.serve_events()
        res = subprocess.run(self.argv("start"), cwd=self.bundle, input=self.opts.SerializeToString(),
                             capture_output=True, timeout=30,
                             env=dict(os.environ, TTRPC_ADDRESS=self.events_sock, **(env or {})))
        assert res.returncode == 0, res.stderr
        self.socket = res.stdout.decode()
        assert self.socket.startswith("unix:///run/containerd/s/")
        assert open(os.path.join(self.bundle, "address")).read() == self.socket
        self.pid = int(open(os.path.join(self.bundle, "shim.pid")).read())
        self.client = await Client.connect(self.socket)

    def call(self, method, req, resp_cls=Empty, timeout=30):
        return self.client.call(TASK, method, req, resp_cls, timeout=timeout)

    async def kill_and_shutdown(self, all_=False):
        """The end of a test's running task: SIGKILL, its exit, Delete, then Shutdown."""
        await self.call("Kill", pb.KillRequest(id=self.cid, signal=9, all=all_))
        await self.call("Wait", pb.WaitRequest(id=self.cid), pb.WaitResponse)
        await self.call("Delete", pb.DeleteRequest(id=self.cid), pb.DeleteResponse)
        await self.call("Shutdown", pb.ShutdownRequest(id=self.cid))

    async def close(self):
        await self.client.close()
        if self.events_server:
            await self.events_server.close()

    def topics(self):
        return [t for t, _ in self.events]


def cleanup(shim):
    try:
        os.kill(shim.pid, signal.SIGKILL)
    except (ProcessLookupError, AttributeError):
        pass
    subprocess.run(["runc", "--root", shim.state_root, "delete", "--force", shim.cid], capture_output=True)
    subprocess.run(["umount", "-l", os.path.join(shim.bundle, "rootfs")], capture_output=True)


@pytest.fixture
def shim_env(tmpdir_root):
    made = []

    def make(args):
        s = Shim(tmpdir_root, "s" + uuid.uuid4().hex[:10], args)
        made.append(s)
        return s
    yield make
    for s in made:
        cleanup(s)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_task_lifecycle_events_and_rootfs_mount(shim_env, tmpdir_root):
    shim = shim_env(["sh", "-c", "echo out; echo err >&2; exit 3"])
    lower = make_rootfs(os.path.join(tmpdir_root, "image"))
    shutil.rmtree(os.path.join(shim.bundle, "rootfs"))
    log = os.path.join(tmpdir_root, "out.log")

    async def body():
        await shim.start()
        try:
            create = pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle, stdout="file://" + log,
                                          stderr="file://" + log,
                                          rootfs=[Mount(type="bind", source=lower, options=["rbind", "rw"])])
            pid = (await shim.call("Create", create, pb.CreateTaskResponse)).pid
            assert pid > 0 and is_mount_point(os.path.join(shim.bundle, "rootfs"))
            state = await shim.call("State", pb.StateRequest(id=shim.cid), pb.StateResponse)
            assert state.pid == pid and state.bundle == shim.bundle
            with pytest.raises(TtrpcError) as e:
                await shim.call("Create", create, pb.CreateTaskResponse)
            assert e.value.code == 6  # AlreadyExists
            waiter = asyncio.ensure_future(shim.call("Wait", pb.WaitRequest(id=shim.cid), pb.WaitResponse))
            assert (await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)).pid == pid
            waited = await waiter
            assert waited.exit_status == 3 and waited.exited_at.ToNanoseconds() > 0
            state = await shim.call("State", pb.StateRequest(id=shim.cid), pb.StateResponse)
            assert state.status == STOPPED and state.exit_status == 3
            deleted = await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            assert (deleted.pid, deleted.exit_status) == (pid, 3)
            assert not is_mount_point(os.path.join(shim.bundle, "rootfs"))
            with pytest.raises(TtrpcError) as e:
                await shim.call("State", pb.StateRequest(id=shim.cid), pb.StateResponse)
            assert e.value.code == NOT_FOUND
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert sorted(open(log).read().split()) == ["err", "out"]
    assert shim.topics() == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert shim.events[2][1].type_url == "containerd.events.TaskExit"
    assert wait_gone(shim.pid), "the shim did not exit after Shutdown"
    assert not os.path.exists(shim.socket[len("unix://"):])


def test_exec_kill_and_reaping(shim_env):
    shim = shim_env(["sleep", "1000"])

    async def body():
        await shim.start()
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle), pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            spec = json.load(open(os.path.join(shim.bundle, "config.json")))["process"]
            for exec_id, args in (("e1", ["sh", "-c", "exit 5"]), ("e2", ["sh", "-c", "sleep 100 & exit 0"])):
                spec["args"] = args
                await shim.call("Exec", pb.ExecProcessRequest(
                    id=shim.cid, exec_id=exec_id, spec=Any(type_url="types.containerd.io/opencontainers/"
                                                           "runtime-spec/1/Process", value=json.dumps(spec).encode())))
                epid = (await shim.call("Start", pb.StartRequest(id=shim.cid, exec_id=exec_id), pb.StartResponse)).pid
                assert epid > 0
                waited = await shim.call("Wait", pb.WaitRequest(id=shim.cid, exec_id=exec_id), pb.WaitResponse)
                assert waited.exit_status == (5 if exec_id == "e1" else 0)
                deleted = await shim.call("Delete", pb.DeleteRequest(id=shim.cid, exec_id=exec_id), pb.DeleteResponse)
                assert deleted.pid == epid
            pids = await shim.call("Pids", pb.PidsRequest(id=shim.cid), pb.PidsResponse)
            assert len(pids.processes) == 2  # sleep 1000 and the orphaned sleep 100
            with pytest.raises(TtrpcError) as e:
                await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            assert e.value.code == FAILED_PRECONDITION
            await shim.call("Pause", pb.PauseRequest(id=shim.cid))
            await shim.call("Resume", pb.ResumeRequest(id=shim.cid))
            state = await shim.call("State", pb.StateRequest(id=shim.cid), pb.StateResponse)
            assert state.status == RUNNING
            await shim.call("Kill", pb.KillRequest(id=shim.cid, signal=9, all=True))
            waited = await shim.call("Wait", pb.WaitRequest(id=shim.cid), pb.WaitResponse)
            assert waited.exit_status == 137
            with pytest.raises(TtrpcError) as e:
                await shim.call("Kill", pb.KillRequest(id=shim.cid, signal=9))
            assert e.value.code == NOT_FOUND
            await asyncio.sleep(0.3)
            assert zombies_of(shim.pid) == []
            await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert shim.topics() == ["/tasks/create", "/tasks/start",
                             "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit",
                             "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit",
                             "/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"]
    assert wait_gone(shim.pid)


def zombies_of(ppid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == ppid:
            found.append(int(entry))
    return found


def test_delete_after_a_killed_shim(shim_env):
    shim = shim_env(["sleep", "1000"])

    async def body():
        await shim.start()
        try:
            pid = (await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle),
                                   pb.CreateTaskResponse)).pid
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            return pid
        finally:
            await shim.close()
    pid = run(body())
    os.kill(shim.pid, signal.SIGKILL)
    assert wait_gone(shim.pid)
    res = subprocess.run(shim.argv("-bundle", shim.bundle, "delete"), cwd=shim.bundle, capture_output=True,
                         timeout=60, input=b"")
    assert res.returncode == 0, res.stderr
    resp = pb.DeleteResponse.FromString(res.stdout)
    assert resp.exit_status == 137 and resp.exited_at.ToNanoseconds() > 0
    assert wait_gone(pid), "the container's process survived delete"
    assert not os.path.exists(os.path.join(shim.state_root, shim.cid))


def test_command_line_errors():
    shim = venv_tool("containerd-shim-corral-v2")
    res = subprocess.run([shim, "-v"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "io.containerd.corral.v2" in res.stdout
    res = subprocess.run([shim, "-bogus", "start"], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "not defined: -bogus" in res.stderr
    res = subprocess.run([shim, "-id", "x", "start"], capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if k != "NAMESPACE"})
    assert res.returncode == 1 and "-namespace is required" in res.stderr


def test_stdin_fifo_close_io_and_update(shim_env, tmpdir_root):
    """stdin and stdout as FIFOs (the way containerd's clients make them); CloseIO gives EOF."""
    shim = shim_env(["sleep", "1000"])
    fifo_in, fifo_out = os.path.join(tmpdir_root, "in"), os.path.join(tmpdir_root, "out")
    os.mkfifo(fifo_in)
    os.mkfifo(fifo_out)

    async def body():
        await shim.start()
        w = os.open(fifo_in, os.O_RDWR)
        r = os.open(fifo_out, os.O_RDONLY | os.O_NONBLOCK)
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle), pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            await shim.call("Update", pb.UpdateTaskRequest(id=shim.cid, resources=Any(
                type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                value=json.dumps({"pids": {"limit": 50}}).encode())))
            spec = json.load(open(os.path.join(shim.bundle, "config.json")))["process"]
            spec["args"] = ["sh", "-c", "tr a-z A-Z; echo done"]
            await shim.call("Exec", pb.ExecProcessRequest(id=shim.cid, exec_id="cat", stdin=fifo_in, stdout=fifo_out,
                                                          stderr=fifo_out, spec=Any(value=json.dumps(spec).encode())))
            await shim.call("Start", pb.StartRequest(id=shim.cid, exec_id="cat"), pb.StartResponse)
            os.write(w, b"hello fifo\n")
            waiter = asyncio.ensure_future(shim.call("Wait", pb.WaitRequest(id=shim.cid, exec_id="cat"),
                                                     pb.WaitResponse))
            await asyncio.sleep(0.3)
            assert not waiter.done()
            await shim.call("CloseIO", pb.CloseIORequest(id=shim.cid, exec_id="cat", stdin=True))
            assert (await waiter).exit_status == 0
            out = b""
            for _ in range(50):
                try:
                    chunk = os.read(r, 4096)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    break
                out += chunk or b""
                await asyncio.sleep(0.05)
            assert out == b"HELLO FIFO\ndone\n"
            await shim.kill_and_shutdown()
        finally:
            os.close(w)
            os.close(r)
            await shim.close()
    run(body())
    assert wait_gone(shim.pid)


def test_delete_a_created_task(shim_env):
    """A task deleted before Start: the runtime kills its init, Delete reports 137 at once."""
    shim = shim_env(["sleep", "1000"])

    async def body():
        await shim.start()
        try:
            pid = (await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle),
                                   pb.CreateTaskResponse)).pid
            t = time.monotonic()
            deleted = await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            assert time.monotonic() - t < 3
            assert (deleted.pid, deleted.exit_status) == (pid, 137)
            assert wait_gone(pid)
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert shim.topics() == ["/tasks/create", "/tasks/exit", "/tasks/delete"]


def test_events_wait_for_the_daemon(shim_env):
    """Events published while the daemon's endpoint is away are delivered, in order, once it is back."""
    shim = shim_env(["true"])

    async def body():
        await shim.start(events=False)
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle), pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            await shim.call("Wait", pb.WaitRequest(id=shim.cid), pb.WaitResponse)
            await asyncio.sleep(0.5)
            await shim.serve_events()
            for _ in range(100):
                if len(shim.events) == 3:
                    break
                await asyncio.sleep(0.1)
            await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert shim.topics() == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]


def test_failed_create_leaves_nothing(shim_env, tmpdir_root):
    shim = shim_env(["/no/such/program"])
    lower = make_rootfs(os.path.join(tmpdir_root, "image"))

    async def body():
        await shim.start()
        try:
            with pytest.raises(TtrpcError) as e:
                await shim.call("Create", pb.CreateTaskRequest(
                    id=shim.cid, bundle=shim.bundle, rootfs=[Mount(type="bind", source=lower, options=["rbind"])]),
                    pb.CreateTaskResponse)
            assert "OCI runtime create failed" in e.value.message and "/no/such/program" in e.value.message
            assert not is_mount_point(os.path.join(shim.bundle, "rootfs"))
            assert not os.path.exists(os.path.join(shim.state_root, shim.cid))
            with pytest.raises(TtrpcError) as e:
                await shim.call("State", pb.StateRequest(id=shim.cid), pb.StateResponse)
            assert e.value.code == NOT_FOUND
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert wait_gone(shim.pid)
    assert shim.topics() == []


def test_stdin_nobody_reads_does_not_stall_the_shim(shim_env, tmpdir_root):
    shim = shim_env(["sleep", "1000"])
    fifo_in = os.path.join(tmpdir_root, "in")
    os.mkfifo(fifo_in)

    async def body():
        await shim.start()
        w = os.open(fifo_in, os.O_RDWR | os.O_NONBLOCK)
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle, stdin=fifo_in),
                            pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            written = 0
            for _ in range(40):  # the FIFO and the pipe behind it fill up: the shim stops reading
                try:
                    written += os.write(w, b"x" * 65536)
                except BlockingIOError:
                    await asyncio.sleep(0.05)
            assert written >= 65536
            t = time.monotonic()
            state = await shim.call("State", pb.StateRequest(id=shim.cid), pb.StateResponse, timeout=5)
            assert state.status == RUNNING and time.monotonic() - t < 2
            await shim.kill_and_shutdown()
        finally:
            os.close(w)
            await shim.close()
    run(body())
    assert wait_gone(shim.pid)


def _wait_state(shim, status, exec_id="", timeout=10):
    async def poll():
        deadline = time.monotonic() + timeout
        while True:
            state = await shim.call("State", pb.StateRequest(id=shim.cid, exec_id=exec_id), pb.StateResponse)
            if state.status == status or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.02)
    return poll()


def test_delete_waits_for_the_exit_event(shim_env):
    """An init that dies before Start is STOPPED at once, but its exit event waits for a start
    event that will not come: a Delete then must still publish /tasks/exit before
    /tasks/delete (containerd needs that order)."""
    shim = shim_env(["sleep", "1000"])

    async def body():
        await shim.start()
        try:
            pid = (await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle),
                                   pb.CreateTaskResponse)).pid
            os.kill(pid, signal.SIGKILL)
            assert (await _wait_state(shim, STOPPED)).status == STOPPED
            assert "/tasks/exit" not in shim.topics()  # the window is open
            t = time.monotonic()
            deleted = await shim.call("Delete", pb.DeleteRequest(id=shim.cid), pb.DeleteResponse)
            assert (deleted.pid, deleted.exit_status) == (pid, 137)
            assert time.monotonic() - t < 5
            await shim.call("Shutdown", pb.ShutdownRequest(id=shim.cid))
        finally:
            await shim.close()
    run(body())
    assert shim.topics() == ["/tasks/create", "/tasks/exit", "/tasks/delete"]
    assert wait_gone(shim.pid)


def test_exec_delete_waits_for_the_exit_event(shim_env, tmpdir_root):
    """The same window for an exec process whose background child keeps its stdout open."""
    shim = shim_env(["sleep", "1000"])
    log = os.path.join(tmpdir_root, "exec.log")

    async def body():
        await shim.start()
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle), pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            spec = json.load(open(os.path.join(shim.bundle, "config.json")))["process"]
            spec["args"] = ["sh", "-c", "sleep 30 & exit 6"]
            await shim.call("Exec", pb.ExecProcessRequest(id=shim.cid, exec_id="bg", stdout="jsonfile://" + log,
                                                          spec=Any(value=json.dumps(spec).encode())))
            await shim.call("Start", pb.StartRequest(id=shim.cid, exec_id="bg"), pb.StartResponse)
            assert (await _wait_state(shim, STOPPED, "bg")).status == STOPPED
            assert shim.topics().count("/tasks/exit") == 0
            deleted = await shim.call("Delete", pb.DeleteRequest(id=shim.cid, exec_id="bg"), pb.DeleteResponse)
            assert deleted.exit_status == 6
            assert shim.topics().count("/tasks/exit") == 1  # published before Delete answered
            await shim.kill_and_shutdown(all_=True)
        finally:
            await shim.close()
    run(body())
    assert shim.topics() == ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
                             "/tasks/exit", "/tasks/exit", "/tasks/delete"]
    assert wait_gone(shim.pid)


async def read_until(fd, needles, timeout=10):
    """Read a non-blocking fd until every needle has appeared; returns what was read."""
    out = b""
    deadline = time.monotonic() + timeout
    while not all(n in out for n in needles) and time.monotonic() < deadline:
        try:
            out += os.read(fd, 4096)
        except BlockingIOError:
            await asyncio.sleep(0.05)
    return out


def test_terminal_resize_while_running_and_exec_with_a_terminal(shim_env, tmpdir_root):
    """ResizePty after Start reaches the running init's terminal; an exec gets a terminal of its
    own, resized on its own; output comes back through the shim's copy from the pty master."""
    shim = shim_env(["sh", "-c", "while read line; do stty size; done"])
    spec = json.load(open(os.path.join(shim.bundle, "config.json")))
    spec["process"]["terminal"] = True
    json.dump(spec, open(os.path.join(shim.bundle, "config.json"), "w"))
    fifos = {n: os.path.join(tmpdir_root, n) for n in ("in", "out", "ein", "eout")}
    for path in fifos.values():
        os.mkfifo(path)

    async def body():
        await shim.start()
        w = os.open(fifos["in"], os.O_RDWR)
        r = os.open(fifos["out"], os.O_RDONLY | os.O_NONBLOCK)
        ew = os.open(fifos["ein"], os.O_RDWR)
        er = os.open(fifos["eout"], os.O_RDONLY | os.O_NONBLOCK)
        try:
            await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle, terminal=True,
                                                           stdin=fifos["in"], stdout=fifos["out"]),
                            pb.CreateTaskResponse)
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            for width, height in ((100, 30), (132, 43)):
                await shim.call("ResizePty", pb.ResizePtyRequest(id=shim.cid, width=width, height=height))
                os.write(w, b"\n")
                out = await read_until(r, [f"{height} {width}".encode()])
                assert f"{height} {width}".encode() in out, out
            pspec = dict(spec["process"], args=["sh", "-c", "read line; tty; stty size; exit 7"], terminal=True)
            await shim.call("Exec", pb.ExecProcessRequest(id=shim.cid, exec_id="t", terminal=True, stdin=fifos["ein"],
                                                          stdout=fifos["eout"],
                                                          spec=Any(value=json.dumps(pspec).encode())))
            await shim.call("Start", pb.StartRequest(id=shim.cid, exec_id="t"), pb.StartResponse)
            await shim.call("ResizePty", pb.ResizePtyRequest(id=shim.cid, exec_id="t", width=80, height=20))
            os.write(ew, b"go\n")
            out = await read_until(er, [b"/dev/pts/", b"20 80"])
            assert b"/dev/pts/" in out and b"20 80" in out, out
            assert (await shim.call("Wait", pb.WaitRequest(id=shim.cid, exec_id="t"), pb.WaitResponse)).exit_status == 7
            await shim.call("Delete", pb.DeleteRequest(id=shim.cid, exec_id="t"), pb.DeleteResponse)
            # the init's terminal kept its own size
            os.write(w, b"\n")
            out = await read_until(r, [b"43 132"])
            assert b"43 132" in out, out
            await shim.kill_and_shutdown()
        finally:
            for fd in (w, r, ew, er):
                os.close(fd)
            await shim.close()
    run(body())
    assert wait_gone(shim.pid)


def test_connect(shim_env):
    shim = shim_env(["sleep", "1000"])

    async def body():
        await shim.start()
        try:
            conn = await shim.call("Connect", pb.ConnectRequest(id=shim.cid), pb.ConnectResponse)
            assert (conn.shim_pid, conn.task_pid) == (shim.pid, 0)  # no task yet
            pid = (await shim.call("Create", pb.CreateTaskRequest(id=shim.cid, bundle=shim.bundle),
                                   pb.CreateTaskResponse)).pid
            await shim.call("Start", pb.StartRequest(id=shim.cid), pb.StartResponse)
            conn = await shim.call("Connect", pb.ConnectRequest(id=shim.cid), pb.ConnectResponse)
            assert (conn.shim_pid, conn.task_pid) == (shim.pid, pid)
            # a second connection (a restarted daemon) sees the same
            other = await Client.connect(shim.socket)
            try:
                conn = await other.call(TASK, "Connect", pb.ConnectRequest(id=shim.cid), pb.ConnectResponse)
                assert (conn.shim_pid, conn.task_pid) == (shim.pid, pid)
            finally:
                await other.close()
            await shim.kill_and_shutdown()
        finally:
            await shim.close()
    run(body())
    assert wait_gone(shim.pid)


def test_grouping_by_namespace(tmpdir_root):
    """With CORRAL_SHIM_GROUP=namespace, `start` for a second container of the namespace returns
    the running shim's address and that shim runs both; another namespace gets its own shim."""
    a = Shim(os.path.join(tmpdir_root, "a"), "ga" + uuid.uuid4().hex[:8], ["sleep", "1000"])
    b = Shim(os.path.join(tmpdir_root, "b"), "gb" + uuid.uuid4().hex[:8], ["sleep", "1000"])
    c = Shim(os.path.join(tmpdir_root, "c"), "gc" + uuid.uuid4().hex[:8], ["true"])
    for s in (b, c):
        s.address = a.address  # one daemon
    c.namespace = "corral-test-other"
    group = {"CORRAL_SHIM_GROUP": "namespace"}

    async def body():
        await a.start(env=group)
        await b.start(events=False, env=group)
        await c.start(events=False, env=group)
        try:
            assert b.socket == a.socket and b.pid == a.pid
            assert c.socket != a.socket and c.pid != a.pid
            pids = {}
            for s in (a, b):
                pids[s.cid] = (await a.call("Create", pb.CreateTaskRequest(id=s.cid, bundle=s.bundle),
                                            pb.CreateTaskResponse)).pid
                await b.call("Start", pb.StartRequest(id=s.cid), pb.StartResponse)  # either connection
            for s in (a, b):
                state = await a.call("State", pb.StateRequest(id=s.cid), pb.StateResponse)
                assert (state.status, state.pid) == (RUNNING, pids[s.cid])
                conn = await b.call("Connect", pb.ConnectRequest(id=s.cid), pb.ConnectResponse)
                assert (conn.shim_pid, conn.task_pid) == (a.pid, pids[s.cid])
            await a.kill_and_shutdown()  # b's container is still there
            await asyncio.sleep(0.3)
            state = await b.call("State", pb.StateRequest(id=b.cid), pb.StateResponse)
            assert state.status == RUNNING
            await b.kill_and_shutdown()
            await c.call("Shutdown", pb.ShutdownRequest(id=c.cid))
        finally:
            for s in (a, b, c):
                await s.close()
    try:
        run(body())
        assert wait_gone(a.pid) and wait_gone(c.pid)
        assert a.topics() == ["/tasks/create", "/tasks/start", "/tasks/create", "/tasks/start",
                              "/tasks/exit", "/tasks/delete", "/tasks/exit", "/tasks/delete"]
    finally:
        for s in (a, b, c):
            cleanup(s)
