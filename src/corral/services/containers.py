"""Containers: metadata records of containers (the local object validates, applies field
masks and publishes events) and the gRPC service containerd.services.containers.v1.Containers.

The local object works on the API's Container messages; `db` stores them per namespace."""

from google.protobuf import empty_pb2

from corral.api.containerd.events import container_pb2 as container_events
from corral.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc

from . import filters
from .errors import FailedPrecondition, InvalidArgument
from .fieldpaths import check_labels, update_labels
from .grpcutil import namespace, rpc, validate_name
from .records import container_msg, container_rec

LIST_BATCH = 100


def _getter(c):
    fields = {"id": c.id, "image": c.image, "runtime.name": c.runtime.name, "snapshotter": c.snapshotter,
              "snapshot_key": c.snapshot_key, "snapshotkey": c.snapshot_key}
    return filters.getter(fields, dict(c.labels))


def validate(c):
    validate_name("container", c.id)
    if not c.runtime.name:
        raise InvalidArgument(f"container {c.id}: runtime name must be set")
    if not c.HasField("spec") or not c.spec.type_url:
        raise InvalidArgument(f"container {c.id}: spec must be set")
    check_labels(dict(c.labels))
    for k in c.extensions:
        if not k:
            raise InvalidArgument(f"container {c.id}: extension key must not be empty")


class Containers:
    def __init__(self, db, publish=None, changed=None):
        self.db = db
        self.publish = publish or (lambda ns, topic, msg: None)
        self.changed = changed or (lambda: None)

    def get(self, ns, cid):
        return container_msg(self.db.get_container(ns, cid))

    def list(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        return [c for c in map(container_msg, self.db.list_containers(ns)) if match(_getter(c))]

    def create(self, ns, c):
        validate(c)
        c = container_msg(self.db.create_container(ns, container_rec(c)))
        self.publish(ns, "/containers/create", container_events.ContainerCreate(
            id=c.id, image=c.image,
            runtime=container_events.ContainerCreate.Runtime(name=c.runtime.name, options=c.runtime.options)))
        return c

    def update(self, ns, c, paths):
        if not c.id:
            raise InvalidArgument("container id must be set for an update")
        cur = self.get(ns, c.id)
        new = containers_pb2.Container.FromString(cur.SerializeToString())
        if not paths:
            if c.runtime.name and c.runtime.name != cur.runtime.name:
                raise FailedPrecondition(f"container {c.id}: runtime is immutable")
            if c.snapshotter and c.snapshotter != cur.snapshotter:
                raise FailedPrecondition(f"container {c.id}: snapshotter is immutable")
            paths = ["labels", "spec", "extensions", "image", "snapshot_key"]
        label_paths = [p for p in paths if p == "labels" or p.startswith("labels.")]
        if label_paths:
            labels = update_labels(dict(cur.labels), dict(c.labels), label_paths)
            new.labels.clear()
            new.labels.update(labels)
        for p in paths:
            if p in label_paths:
                continue
            elif p == "extensions":
                new.extensions.clear()
                for k, v in c.extensions.items():
                    new.extensions[k].CopyFrom(v)
            elif p.startswith("extensions."):
                key = p[len("extensions."):]
                if key in c.extensions:
                    new.extensions[key].CopyFrom(c.extensions[key])
                else:
                    new.extensions.pop(key, None)
            elif p == "spec":
                new.spec.CopyFrom(c.spec)
            elif p == "image":
                new.image = c.image
            elif p in ("snapshot_key", "snapshotkey"):
                new.snapshot_key = c.snapshot_key
            elif p in ("runtime", "snapshotter", "id", "created_at"):
                raise FailedPrecondition(f"container {c.id}: field {p} is immutable")
            else:
                raise InvalidArgument(f"container {c.id}: cannot update unknown field {p!r}")
        validate(new)
        new = container_msg(self.db.update_container(ns, container_rec(new)))
        self.publish(ns, "/containers/update", container_events.ContainerUpdate(
            id=new.id, image=new.image, labels=dict(new.labels), snapshot_key=new.snapshot_key))
        return new

    def delete(self, ns, cid):
        self.db.delete_container(ns, cid)
        self.publish(ns, "/containers/delete", container_events.ContainerDelete(id=cid))
        self.changed()


class ContainersService(containers_pb2_grpc.ContainersServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Get(self, request, context):
        return containers_pb2.GetContainerResponse(container=self.local.get(namespace(context), request.id))

    @rpc
    def List(self, request, context):
        return containers_pb2.ListContainersResponse(
            containers=self.local.list(namespace(context), list(request.filters)))

    @rpc
    def ListStream(self, request, context):
        for c in self.local.list(namespace(context), list(request.filters)):
            yield containers_pb2.ListContainerMessage(container=c)

    @rpc
    def Create(self, request, context):
        return containers_pb2.CreateContainerResponse(
            container=self.local.create(namespace(context), request.container))

    @rpc
    def Update(self, request, context):
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        return containers_pb2.UpdateContainerResponse(
            container=self.local.update(namespace(context), request.container, paths))

    @rpc
    def Delete(self, request, context):
        self.local.delete(namespace(context), request.id)
        return empty_pb2.Empty()

    def add_to_server(self, server):
        containers_pb2_grpc.add_ContainersServicer_to_server(self, server)
