"""containerd.task.v2.Task: the shim's API, for every container of its group."""

import asyncio
import os

from corral.api.containerd.events import task_pb2 as ev
from corral.api.containerd.runtime.v2.task import shim_pb2 as pb
from corral.api.containerd.types import task_pb2 as types
from google.protobuf.empty_pb2 import Empty
from corral.shim import mounts, options
from corral.shim.runtime import Runtime
from corral.shim.stdio import ProcessIO
from corral.ttrpc.errors import (ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND,
                                 UNIMPLEMENTED, TtrpcError)

SERVICE = "containerd.task.v2.Task"
CREATED, RUNNING, STOPPED, PAUSED = (types.CREATED, types.RUNNING, types.STOPPED, types.PAUSED)


class Process:
    def __init__(self, exec_id, stdin, stdout, stderr, terminal, spec=None):
        self.exec_id = exec_id
        self.stdin, self.stdout, self.stderr, self.terminal = stdin, stdout, stderr, terminal
        self.spec = spec  # exec processes: the OCI process JSON
        self.pid = 0
        self.status = CREATED
        self.exit_status = 0
        self.exited_at = 0
        self.io = None
        self.exited = asyncio.Event()  # set once the exit is recorded and its output drained
        self.started = asyncio.Event()  # set once the start event is queued
        self.starting = False  # the runtime's start is under way


class Container:
    def __init__(self, cid, bundle, runtime, init):
        self.id = cid
        self.bundle = bundle
        self.runtime = runtime
        self.init = init
        self.execs = {}
        self.rootfs_mounted = False
        self.poststop_hooks = True  # until Create has read the config

    def process(self, exec_id):
        if not exec_id:
            return self.init
        proc = self.execs.get(exec_id)
        if proc is None:
            raise TtrpcError(NOT_FOUND, f"process {exec_id} does not exist in container {self.id}")
        return proc


def _ts(msg, ns):
    if ns:
        msg.FromNanoseconds(ns)


class TaskService:
    def __init__(self, loop, reaper, publisher, namespace, on_empty):
        self.loop = loop
        self.reaper = reaper
        self.publisher = publisher
        self.namespace = namespace
        self.on_empty = on_empty  # called when Shutdown finds no container left
        self.containers = {}
        from corral.shim.oom import OOMWatcher

        self.oom = OOMWatcher(loop, lambda cid: publisher.publish("/tasks/oom", ev.TaskOOM(container_id=cid)))

    def methods(self):
        m = {}
        for name, req in (("State", pb.StateRequest), ("Create", pb.CreateTaskRequest),
                          ("Start", pb.StartRequest), ("Delete", pb.DeleteRequest),
                          ("Pids", pb.PidsRequest), ("Pause", pb.PauseRequest),
                          ("Resume", pb.ResumeRequest), ("Checkpoint", pb.CheckpointTaskRequest),
                          ("Kill", pb.KillRequest), ("Exec", pb.ExecProcessRequest),
                          ("ResizePty", pb.ResizePtyRequest), ("CloseIO", pb.CloseIORequest),
                          ("Update", pb.UpdateTaskRequest), ("Wait", pb.WaitRequest),
                          ("Stats", pb.StatsRequest), ("Connect", pb.ConnectRequest),
                          ("Shutdown", pb.ShutdownRequest)):
            m[name] = (req, getattr(self, name.lower()))
        return m

    def _container(self, cid):
        c = self.containers.get(cid)
        if c is None:
            raise TtrpcError(NOT_FOUND, f"container {cid} not found in this shim")
        return c

    # --- lifecycle -----------------------------------------------------------------

    async def create(self, ctx, req):
        if not req.id or not req.bundle:
            raise TtrpcError(INVALID_ARGUMENT, "create: id and bundle are required")
        if req.id in self.containers:
            raise TtrpcError(ALREADY_EXISTS, f"container {req.id} already exists in this shim")
        if req.checkpoint:
            raise TtrpcError(UNIMPLEMENTED, "create from a checkpoint is not supported by corral's shim")
        try:
            opts = options.load(req.bundle, req.options if req.HasField("options") else None)
        except ValueError as e:
            raise TtrpcError(INVALID_ARGUMENT, str(e)) from None
        runtime = Runtime(self.reaper, opts["binary_name"] or options.DEFAULT_BINARY,
                          options.runtime_root(self.namespace, opts["root"]), req.bundle,
                          opts["systemd_cgroup"])
        options.save_resolved(req.bundle, runtime.binary, runtime.root)
        init = Process("", req.stdin, req.stdout, req.stderr, req.terminal)
        c = Container(req.id, req.bundle, runtime, init)
        try:
            with open(os.path.join(req.bundle, "config.json"), "rb") as f:
                c.poststop_hooks = b'"poststop"' in f.read()
        except OSError:
            pass
        self.containers[req.id] = c  # reserve the id while we await
        rootfs = os.path.join(req.bundle, "rootfs")
        try:
            if req.rootfs:
                try:
                    mounts.mount_rootfs(req.rootfs, rootfs)
                except OSError as e:
                    raise TtrpcError(FAILED_PRECONDITION, str(e)) from None
                c.rootfs_mounted = True
            pid = await self._run_process(c, init, lambda stdio, console, pid_file: runtime.create(
                c.id, pid_file, stdio, console), os.path.join(req.bundle, "init.pid"))
        except BaseException:
            del self.containers[req.id]
            try:  # the runtime may have created it before a later step failed
                await runtime.delete(c.id, force=True)
            except TtrpcError:
                pass
            if c.rootfs_mounted:
                mounts.unmount_rootfs(rootfs)
            raise
        # after the reply: the init waits for Start, nothing can run out of memory before it
        self.loop.call_soon(self.oom.watch, c.id, pid)
        event = ev.TaskCreate(container_id=c.id, bundle=c.bundle, rootfs=req.rootfs, pid=pid,
                              io=ev.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                                           terminal=req.terminal))
        self.publisher.publish("/tasks/create", event)
        return pb.CreateTaskResponse(pid=pid)

    async def _run_process(self, c, proc, run, pid_file):
        """Open the process's I/O, let the runtime start it, and watch its pid."""
        proc.io = ProcessIO(self.loop, self.reaper, proc.stdin, proc.stdout, proc.stderr, proc.terminal,
                            c.id, self.namespace)
        stdio, console = await proc.io.prepare()
        try:
            await run(stdio, console, pid_file)
            if console:
                await proc.io.receive_console()
            with open(pid_file) as f:
                proc.pid = int(f.read().strip())
        except BaseException:
            proc.io.close()
            raise
        finally:
            proc.io.after_runtime()
        self.reaper.watch(proc.pid, lambda status, at: self._exited(c, proc, status, at))
        return proc.pid

    def _exited(self, c, proc, status, at):
        proc.status = STOPPED
        proc.exit_status = status
        proc.exited_at = at
        self.loop.create_task(self._report_exit(c, proc))

    async def _report_exit(self, c, proc):
        if not proc.started.is_set():
            try:
                await asyncio.wait_for(proc.started.wait(), 30)
            except asyncio.TimeoutError:
                pass
        if proc.io is not None and not proc.io.done.is_set():
            try:
                await asyncio.wait_for(proc.io.done.wait(), 2)
            except asyncio.TimeoutError:
                pass
        if not proc.exec_id:
            self.oom.exited(c.id)
        event = ev.TaskExit(container_id=c.id, id=proc.exec_id or c.id, pid=proc.pid,
                            exit_status=proc.exit_status)
        _ts(event.exited_at, proc.exited_at)
        self.publisher.publish("/tasks/exit", event)
        proc.exited.set()

    async def _exit_reported(self, proc, timeout=10):
        if proc.exited.is_set():
            return
        if not proc.started.is_set() and not proc.starting:
            proc.started.set()  # it died before Start: no start event will come
        try:
            await asyncio.wait_for(proc.exited.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def start(self, ctx, req):
        c = self._container(req.id)
        proc = c.process(req.exec_id)
        if proc.status != CREATED or (proc.exec_id and proc.pid):
            raise TtrpcError(FAILED_PRECONDITION, f"process {req.exec_id or req.id} was already started")
        if not req.exec_id:
            proc.starting = True
            try:
                await c.runtime.start(c.id)
            finally:
                proc.starting = False
            if proc.status == CREATED:
                proc.status = RUNNING
            self.publisher.publish("/tasks/start", ev.TaskStart(container_id=c.id, pid=proc.pid))
            proc.started.set()
            return pb.StartResponse(pid=proc.pid)
        spec_file = os.path.join(c.bundle, f"exec-{proc.exec_id}.json")
        with open(spec_file, "wb") as f:
            f.write(proc.spec)
        proc.starting = True
        try:
            await self._run_process(c, proc, lambda stdio, console, pid_file: c.runtime.exec(
                c.id, spec_file, pid_file, stdio, console), os.path.join(c.bundle, f"exec-{proc.exec_id}.pid"))
        finally:
            proc.starting = False
            for path in (spec_file, os.path.join(c.bundle, f"exec-{proc.exec_id}.pid")):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if proc.status == CREATED:
            proc.status = RUNNING
        self.publisher.publish("/tasks/exec-started", ev.TaskExecStarted(
            container_id=c.id, exec_id=proc.exec_id, pid=proc.pid))
        proc.started.set()
        return pb.StartResponse(pid=proc.pid)

    async def delete(self, ctx, req):
        c = self._container(req.id)
        proc = c.process(req.exec_id)
        if proc.status in (RUNNING, PAUSED):
            raise TtrpcError(FAILED_PRECONDITION, f"cannot delete running process {req.exec_id or req.id}: "
                                                  "kill it first")
        if proc.status == STOPPED:
            # its exit may still wait for its output to drain: containerd needs /tasks/exit
            # published before /tasks/delete (and before the exit status is handed out here)
            await self._exit_reported(proc)
        if req.exec_id:
            if proc.io:
                proc.io.close()
            del c.execs[req.exec_id]
            resp = pb.DeleteResponse(pid=proc.pid, exit_status=proc.exit_status)
            _ts(resp.exited_at, proc.exited_at)
            return resp
        if proc.status == CREATED:
            proc.started.set()  # it never will be: let its exit be reported at once
        rootfs = os.path.join(c.bundle, "rootfs")
        deleting = c.runtime.delete(c.id, force=proc.status == CREATED)
        try:
            if proc.status == STOPPED and c.rootfs_mounted and not c.poststop_hooks:
                # the runtime's delete (a forked child, on another core) and the unmount of the
                # rootfs in our mount namespace (~2 ms) overlap; only poststop hooks, which run
                # in that delete, might still look at the rootfs
                deleting = self.loop.create_task(deleting)
                await asyncio.sleep(0)  # the task forks the runtime call
                mounts.unmount_rootfs(rootfs)
            await deleting
        except TtrpcError as e:
            if "not exist" not in e.message and "not found" not in e.message:
                raise
        if proc.status == CREATED:
            # the init never ran: the forced delete killed it
            try:
                await asyncio.wait_for(proc.exited.wait(), 5)
            except asyncio.TimeoutError:
                self.reaper.forget(proc.pid)
                proc.status, proc.exit_status = STOPPED, 137
        for e in c.execs.values():
            if e.io:
                e.io.close()
        if proc.io:
            proc.io.close()
        self.oom.remove(c.id)
        if not c.rootfs_mounted or mounts.unmount_rootfs(rootfs):
            from corral.shim.start import note_clean_delete

            note_clean_delete(c.bundle)
        del self.containers[c.id]
        event = ev.TaskDelete(container_id=c.id, pid=proc.pid, exit_status=proc.exit_status, id=c.id)
        _ts(event.exited_at, proc.exited_at)
        self.publisher.publish("/tasks/delete", event)
        resp = pb.DeleteResponse(pid=proc.pid, exit_status=proc.exit_status)
        _ts(resp.exited_at, proc.exited_at)
        return resp

    async def exec(self, ctx, req):
        c = self._container(req.id)
        if not req.exec_id:
            raise TtrpcError(INVALID_ARGUMENT, "exec: an exec id is required")
        if req.exec_id in c.execs:
            raise TtrpcError(ALREADY_EXISTS, f"exec process {req.exec_id} already exists in {c.id}")
        if c.init.status == STOPPED:
            raise TtrpcError(FAILED_PRECONDITION, f"container {c.id} is not running")
        c.execs[req.exec_id] = Process(req.exec_id, req.stdin, req.stdout, req.stderr, req.terminal,
                                       spec=req.spec.value)
        self.publisher.publish("/tasks/exec-added", ev.TaskExecAdded(container_id=c.id, exec_id=req.exec_id))
        return Empty()

    async def kill(self, ctx, req):
        c = self._container(req.id)
        proc = c.process(req.exec_id)
        if proc.status == STOPPED or (proc.exec_id and not proc.pid):
            raise TtrpcError(NOT_FOUND, f"process {req.exec_id or req.id} already finished")
        if req.exec_id:
            try:
                os.kill(proc.pid, req.signal)
            except ProcessLookupError:
                raise TtrpcError(NOT_FOUND, f"process {req.exec_id} already finished") from None
        else:
            await c.runtime.kill(c.id, req.signal, req.all)
        return Empty()

    async def wait(self, ctx, req):
        c = self._container(req.id)
        proc = c.process(req.exec_id)
        await proc.exited.wait()
        resp = pb.WaitResponse(exit_status=proc.exit_status)
        _ts(resp.exited_at, proc.exited_at)
        return resp

    # --- queries and control ---------------------------------------------------------

    async def state(self, ctx, req):
        c = self._container(req.id)
        proc = c.process(req.exec_id)
        resp = pb.StateResponse(id=req.exec_id or c.id, bundle=c.bundle, pid=proc.pid, status=proc.status,
                                stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr,
                                terminal=proc.terminal, exit_status=proc.exit_status, exec_id=req.exec_id)
        _ts(resp.exited_at, proc.exited_at)
        return resp

    async def pids(self, ctx, req):
        from google.protobuf.any_pb2 import Any
        from corral.api.containerd.runc.options.oci_pb2 import ProcessDetails

        c = self._container(req.id)
        by_pid = {p.pid: p.exec_id for p in c.execs.values() if p.pid}
        resp = pb.PidsResponse()
        for pid in await c.runtime.ps(c.id):
            info = types.ProcessInfo(pid=pid)
            if pid in by_pid:
                info.info.CopyFrom(Any(type_url="containerd.runc.v1.ProcessDetails",
                                       value=ProcessDetails(exec_id=by_pid[pid]).SerializeToString()))
            resp.processes.append(info)
        return resp

    async def pause(self, ctx, req):
        c = self._container(req.id)
        await c.runtime.pause(c.id)
        if c.init.status == RUNNING:
            c.init.status = PAUSED
        self.publisher.publish("/tasks/paused", ev.TaskPaused(container_id=c.id))
        return Empty()

    async def resume(self, ctx, req):
        c = self._container(req.id)
        await c.runtime.resume(c.id)
        if c.init.status == PAUSED:
            c.init.status = RUNNING
        self.publisher.publish("/tasks/resumed", ev.TaskResumed(container_id=c.id))
        return Empty()

    async def resizepty(self, ctx, req):
        proc = self._container(req.id).process(req.exec_id)
        if proc.io is not None:
            try:
                proc.io.resize(req.width, req.height)
            except OSError as e:
                raise TtrpcError(FAILED_PRECONDITION, f"resize terminal of {req.exec_id or req.id}: {e}") from None
        return Empty()

    async def closeio(self, ctx, req):
        proc = self._container(req.id).process(req.exec_id)
        if req.stdin and proc.io is not None:
            proc.io.close_stdin()
        return Empty()

    async def update(self, ctx, req):
        c = self._container(req.id)
        await c.runtime.update(c.id, req.resources.value)
        return Empty()

    async def stats(self, ctx, req):
        from corral.shim.stats import metrics

        c = self._container(req.id)
        if c.init.status == STOPPED or not c.init.pid:
            raise TtrpcError(FAILED_PRECONDITION, f"stats: container {c.id} is not running")
        try:
            return pb.StatsResponse(stats=metrics(c.init.pid))
        except OSError as e:
            raise TtrpcError(FAILED_PRECONDITION, f"stats of container {c.id}: {e}") from None

    async def checkpoint(self, ctx, req):
        raise TtrpcError(UNIMPLEMENTED, "checkpoint is not supported by corral's shim")

    async def connect(self, ctx, req):
        c = self.containers.get(req.id)
        return pb.ConnectResponse(shim_pid=os.getpid(), task_pid=c.init.pid if c else 0)

    async def shutdown(self, ctx, req):
        if not self.containers:
            self.loop.call_soon(self.on_empty)
        return Empty()
