"""The generated protobuf modules import, and a few messages match containerd 1.6's wire facts
(full names, field numbers and types, service method paths)."""

import importlib
import os

import pytest

import corral.api

API_ROOT = os.path.dirname(corral.api.__file__)


def generated_modules():
    names = []
    for dirpath, _dirs, files in os.walk(API_ROOT):
        for f in files:
            if f.endswith("_pb2.py") or f.endswith("_pb2_grpc.py"):
                rel = os.path.relpath(os.path.join(dirpath, f[:-3]), os.path.dirname(API_ROOT))
                names.append("corral.api." + rel.replace(os.sep, ".").split(".", 1)[1])
    return sorted(names)


def test_generated_modules_exist():
    # `make proto` must have run (scripts/setup.sh does it)
    assert len(generated_modules()) >= 50


@pytest.mark.parametrize("name", generated_modules())
def test_module_imports(name):
    importlib.import_module(name)


def fields(msg):
    return {f.name: (f.number, f.type) for f in msg.DESCRIPTOR.fields}


T = __import__("google.protobuf.descriptor", fromlist=["FieldDescriptor"]).FieldDescriptor


def test_shim_create_task_request():
    from corral.api.containerd.runtime.v2.task import shim_pb2
    m = shim_pb2.CreateTaskRequest
    assert m.DESCRIPTOR.full_name == "containerd.task.v2.CreateTaskRequest"
    f = fields(m)
    assert f["id"] == (1, T.TYPE_STRING)
    assert f["rootfs"] == (3, T.TYPE_MESSAGE)
    assert f["terminal"] == (4, T.TYPE_BOOL)
    assert f["options"] == (10, T.TYPE_MESSAGE)
    assert m.DESCRIPTOR.fields_by_name["rootfs"].message_type.full_name == "containerd.types.Mount"
    assert fields(shim_pb2.StateResponse)["exec_id"] == (11, T.TYPE_STRING)
    assert fields(shim_pb2.StateResponse)["status"] == (4, T.TYPE_ENUM)
    assert fields(shim_pb2.ConnectResponse)["task_pid"] == (2, T.TYPE_UINT32)
    svc = shim_pb2.DESCRIPTOR.services_by_name["Task"]
    assert svc.full_name == "containerd.task.v2.Task"
    assert {m.name for m in svc.methods} == {
        "State", "Create", "Start", "Delete", "Pids", "Pause", "Resume", "Checkpoint", "Kill",
        "Exec", "ResizePty", "CloseIO", "Update", "Wait", "Stats", "Connect", "Shutdown"}


def test_task_status_enum():
    from corral.api.containerd.types import task_pb2
    assert task_pb2.Status.DESCRIPTOR.full_name == "containerd.v1.types.Status"
    assert [task_pb2.Status.Value(n) for n in ("UNKNOWN", "CREATED", "RUNNING", "STOPPED", "PAUSED", "PAUSING")] \
        == [0, 1, 2, 3, 4, 5]


def test_events():
    from corral.api.containerd.events import task_pb2, image_pb2
    assert task_pb2.TaskExit.DESCRIPTOR.full_name == "containerd.events.TaskExit"
    assert fields(task_pb2.TaskExit)["exited_at"] == (5, T.TYPE_MESSAGE)
    assert fields(task_pb2.TaskDelete)["id"] == (5, T.TYPE_STRING)
    assert fields(task_pb2.TaskCreate)["pid"] == (6, T.TYPE_UINT32)
    # image events live in the images service package, as containerd's type URLs say
    assert image_pb2.ImageCreate.DESCRIPTOR.full_name == "containerd.services.images.v1.ImageCreate"
    from corral.api.containerd.services.events.ttrpc.v1 import events_pb2
    assert events_pb2.DESCRIPTOR.services_by_name["Events"].full_name == \
        "containerd.services.events.ttrpc.v1.Events"
    assert fields(events_pb2.Envelope)["event"] == (4, T.TYPE_MESSAGE)


def test_grpc_services():
    from corral.api.containerd.services.containers.v1 import containers_pb2
    from corral.api.containerd.services.content.v1 import content_pb2
    from corral.api.containerd.services.tasks.v1 import tasks_pb2
    from corral.api.containerd.services.images.v1 import images_pb2
    from corral.api.containerd.services.introspection.v1 import introspection_pb2
    c = fields(containers_pb2.Container)
    assert c["snapshot_key"] == (7, T.TYPE_STRING) and c["extensions"] == (10, T.TYPE_MESSAGE)
    assert fields(content_pb2.WriteContentRequest)["labels"] == (7, T.TYPE_MESSAGE)
    assert fields(content_pb2.WriteContentRequest)["data"] == (6, T.TYPE_BYTES)
    assert fields(tasks_pb2.CreateTaskRequest)["options"] == (9, T.TYPE_MESSAGE)
    assert fields(tasks_pb2.ExecProcessRequest)["exec_id"] == (7, T.TYPE_STRING)
    assert fields(images_pb2.Image)["created_at"] == (7, T.TYPE_MESSAGE)
    assert fields(introspection_pb2.Plugin)["init_err"] == (7, T.TYPE_MESSAGE)
    assert content_pb2.DESCRIPTOR.services_by_name["Content"].methods_by_name["Write"].client_streaming


def test_runc_options():
    from corral.api.containerd.runc.options import oci_pb2
    assert oci_pb2.Options.DESCRIPTOR.full_name == "containerd.runc.v1.Options"
    assert fields(oci_pb2.Options)["binary_name"] == (6, T.TYPE_STRING)
    assert fields(oci_pb2.Options)["systemd_cgroup"] == (9, T.TYPE_BOOL)


def test_google_rpc_status_roundtrip():
    from corral.api.google.rpc import status_pb2
    s = status_pb2.Status(code=5, message="not found")
    assert status_pb2.Status.FromString(s.SerializeToString()).message == "not found"
