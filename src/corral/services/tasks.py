"""Tasks: the local object (containers' records + the runtime v2 manager) and the gRPC service
containerd.services.tasks.v1.Tasks. Process events (create, start, exit, delete, exec...) come
from the shims themselves and are forwarded by the daemon's ttrpc events endpoint."""

import time

from google.protobuf import empty_pb2

from corral.api.containerd.runtime.v2.task import shim_pb2
from corral.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from corral.api.containerd.types import metrics_pb2, task_pb2

from . import filters
from .errors import InvalidArgument, NotFound, Unimplemented
from .grpcutil import long_lived, namespace, rpc, ts
from corral.daemon.runtime import call_all

WAIT_FOREVER = None


def _process(cid, st):
    return task_pb2.Process(container_id=cid, id=st.id or st.exec_id or cid, pid=st.pid, status=st.status,
                            stdin=st.stdin, stdout=st.stdout, stderr=st.stderr, terminal=st.terminal,
                            exit_status=st.exit_status, exited_at=st.exited_at)


class Tasks:
    def __init__(self, containers, runtime, snapshots=None):
        self.containers = containers  # services.containers.Containers
        self.runtime = runtime        # daemon.runtime.RuntimeV2
        self.snapshots = snapshots    # services.snapshots.Snapshots (for rootfs mounts), optional

    def create(self, ns, req):
        c = self.containers.get(ns, req.container_id)
        rootfs = list(req.rootfs)
        if not rootfs and c.snapshot_key and self.snapshots is not None:
            from .snapshots import mount_msgs
            rootfs = mount_msgs(self.snapshots.mounts(ns, c.snapshotter, c.snapshot_key))
        if req.HasField("checkpoint") and req.checkpoint.digest:
            raise Unimplemented("restoring a task from a checkpoint is not supported by corrald")
        options = req.options if req.HasField("options") and req.options.type_url else (
            c.runtime.options if c.runtime.HasField("options") else None)
        shim, pid = self.runtime.create(ns, c.id, c.spec.value, c.runtime.name, options, rootfs,
                                        req.stdin, req.stdout, req.stderr, req.terminal)
        return pid

    def shim(self, ns, cid):
        return self.runtime.get(ns, cid)

    def state(self, ns, cid, exec_id=""):
        st = self.shim(ns, cid).call("State", shim_pb2.StateRequest(id=cid, exec_id=exec_id), shim_pb2.StateResponse)
        return _process(cid, st)

    def list(self, ns, filter_string=""):
        match = filters.parse([filter_string] if filter_string else [])
        out = []
        shims = self.runtime.list(ns)
        for shim, answer in call_all(shims, "State", [shim_pb2.StateRequest(id=s.id) for s in shims],
                                     shim_pb2.StateResponse):
            if isinstance(answer, BaseException):
                continue  # a shim that went away between list and state
            p = _process(shim.id, answer)
            status = task_pb2.Status.Name(p.status).lower()
            if match(filters.getter({"id": p.container_id, "container_id": p.container_id, "status": status,
                                     "pid": p.pid})):
                out.append(p)
        return out

    def start(self, ns, cid, exec_id=""):
        return self.shim(ns, cid).call("Start", shim_pb2.StartRequest(id=cid, exec_id=exec_id), shim_pb2.StartResponse).pid

    def delete(self, ns, cid):
        resp = self.runtime.delete(ns, cid)
        return tasks_pb2.DeleteResponse(id=cid, pid=resp.pid, exit_status=resp.exit_status, exited_at=resp.exited_at)

    def delete_process(self, ns, cid, exec_id):
        if not exec_id:
            raise InvalidArgument("exec id must be set to delete a process; delete the task instead")
        resp = self.shim(ns, cid).call("Delete", shim_pb2.DeleteRequest(id=cid, exec_id=exec_id), shim_pb2.DeleteResponse)
        return tasks_pb2.DeleteResponse(id=exec_id, pid=resp.pid, exit_status=resp.exit_status, exited_at=resp.exited_at)

    def kill(self, ns, cid, exec_id, signal, all_):
        self.shim(ns, cid).call("Kill", shim_pb2.KillRequest(id=cid, exec_id=exec_id, signal=signal, all=all_), empty_pb2.Empty)

    def exec(self, ns, req):
        if not req.exec_id:
            raise InvalidArgument("exec id must not be empty")
        self.shim(ns, req.container_id).call("Exec", shim_pb2.ExecProcessRequest(
            id=req.container_id, exec_id=req.exec_id, terminal=req.terminal, stdin=req.stdin,
            stdout=req.stdout, stderr=req.stderr, spec=req.spec), empty_pb2.Empty)

    def resize_pty(self, ns, cid, exec_id, width, height):
        self.shim(ns, cid).call("ResizePty", shim_pb2.ResizePtyRequest(id=cid, exec_id=exec_id, width=width, height=height),
                                empty_pb2.Empty)

    def close_io(self, ns, cid, exec_id, stdin):
        self.shim(ns, cid).call("CloseIO", shim_pb2.CloseIORequest(id=cid, exec_id=exec_id, stdin=stdin), empty_pb2.Empty)

    def pause(self, ns, cid):
        self.shim(ns, cid).call("Pause", shim_pb2.PauseRequest(id=cid), empty_pb2.Empty)

    def resume(self, ns, cid):
        self.shim(ns, cid).call("Resume", shim_pb2.ResumeRequest(id=cid), empty_pb2.Empty)

    def pids(self, ns, cid):
        return list(self.shim(ns, cid).call("Pids", shim_pb2.PidsRequest(id=cid), shim_pb2.PidsResponse).processes)

    def update(self, ns, req):
        self.shim(ns, req.container_id).call("Update", shim_pb2.UpdateTaskRequest(
            id=req.container_id, resources=req.resources, annotations=dict(req.annotations)), empty_pb2.Empty)

    def metrics(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        out = []
        shims = [s for s in self.runtime.list(ns) if match(filters.getter({"id": s.id, "container_id": s.id}))
                 and not getattr(s, "local", False)]  # exited, or a shim not answering: no stats
        pending = [(s, s.start("Stats", shim_pb2.StatsRequest(id=s.id))) for s in shims]
        for shim, call in pending:
            try:
                stats = shim.finish(call, shim_pb2.StatsResponse).stats
            except NotFound:
                continue
            out.append(metrics_pb2.Metric(timestamp=ts(time.time()), id=shim.id, data=stats))
        return out

    def wait(self, ns, cid, exec_id="", alive=None, cancel_with=None):
        """Block until the process exits; the wait is given up when the caller goes away:
        cancel_with(callback) registers a callback for that (no polling), or alive() says so."""
        shim = self.shim(ns, cid)
        pending = shim.start("Wait", shim_pb2.WaitRequest(id=cid, exec_id=exec_id), timeout=WAIT_FOREVER)
        resp = shim.finish(pending, shim_pb2.WaitResponse, alive, cancel_with)
        return tasks_pb2.WaitResponse(exit_status=resp.exit_status, exited_at=resp.exited_at)


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Create(self, request, context):
        pid = self.local.create(namespace(context), request)
        return tasks_pb2.CreateTaskResponse(container_id=request.container_id, pid=pid)

    @rpc
    def Start(self, request, context):
        return tasks_pb2.StartResponse(pid=self.local.start(namespace(context), request.container_id, request.exec_id))

    @rpc
    def Delete(self, request, context):
        return self.local.delete(namespace(context), request.container_id)

    @rpc
    def DeleteProcess(self, request, context):
        return self.local.delete_process(namespace(context), request.container_id, request.exec_id)

    @rpc
    def Get(self, request, context):
        return tasks_pb2.GetResponse(process=self.local.state(namespace(context), request.container_id, request.exec_id))

    @rpc
    def List(self, request, context):
        return tasks_pb2.ListTasksResponse(tasks=self.local.list(namespace(context), request.filter))

    @rpc
    def Kill(self, request, context):
        self.local.kill(namespace(context), request.container_id, request.exec_id, request.signal, request.all)
        return empty_pb2.Empty()

    @rpc
    def Exec(self, request, context):
        self.local.exec(namespace(context), request)
        return empty_pb2.Empty()

    @rpc
    def ResizePty(self, request, context):
        self.local.resize_pty(namespace(context), request.container_id, request.exec_id, request.width, request.height)
        return empty_pb2.Empty()

    @rpc
    def CloseIO(self, request, context):
        self.local.close_io(namespace(context), request.container_id, request.exec_id, request.stdin)
        return empty_pb2.Empty()

    @rpc
    def Pause(self, request, context):
        self.local.pause(namespace(context), request.container_id)
        return empty_pb2.Empty()

    @rpc
    def Resume(self, request, context):
        self.local.resume(namespace(context), request.container_id)
        return empty_pb2.Empty()

    @rpc
    def ListPids(self, request, context):
        return tasks_pb2.ListPidsResponse(processes=self.local.pids(namespace(context), request.container_id))

    @rpc
    def Checkpoint(self, request, context):
        raise Unimplemented("checkpointing tasks is not supported by corrald")

    @rpc
    def Update(self, request, context):
        self.local.update(namespace(context), request)
        return empty_pb2.Empty()

    @rpc
    def Metrics(self, request, context):
        return tasks_pb2.MetricsResponse(metrics=self.local.metrics(namespace(context), list(request.filters)))

    @long_lived
    @rpc
    def Wait(self, request, context):
        return self.local.wait(namespace(context), request.container_id, request.exec_id,
                               cancel_with=context.add_callback)

    def add_to_server(self, server):
        tasks_pb2_grpc.add_TasksServicer_to_server(self, server)
