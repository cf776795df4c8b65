"""Namespaces: the local object over the metadata DB and the gRPC service
containerd.services.namespaces.v1.Namespaces (which needs no namespace header itself)."""

from google.protobuf import empty_pb2

from corral.api.containerd.events import namespace_pb2 as ns_events
from corral.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc

from . import filters
from .errors import InvalidArgument
from .fieldpaths import check_labels
from .grpcutil import rpc, validate_name

PUBLISH_NS = "default"  # namespace events are published in the namespace they concern


class Namespaces:
    def __init__(self, db, publish=None):
        self.db = db
        self.publish = publish or (lambda ns, topic, msg: None)

    def get(self, name):
        n = self.db.get_namespace(name)
        return n.name, n.labels

    def list(self, filter_string=""):
        match = filters.parse([filter_string] if filter_string else [])
        return [(n.name, n.labels) for n in self.db.list_namespaces()
                if match(filters.getter({"name": n.name}, n.labels))]

    def create(self, name, labels):
        validate_name("namespace", name)
        check_labels(labels)
        self.db.create_namespace(name, labels)
        self.publish(name, "/namespaces/create", ns_events.NamespaceCreate(name=name, labels=labels))
        return name, labels

    def update(self, name, labels, paths):
        validate_name("namespace", name)
        for p in paths or []:
            if p != "labels" and not p.startswith("labels."):
                raise InvalidArgument(f"cannot update namespace field {p!r}: only labels are mutable")
        check_labels(labels)
        n = self.db.update_namespace(name, labels, paths or None)
        self.publish(name, "/namespaces/update", ns_events.NamespaceUpdate(name=name, labels=n.labels))
        return name, n.labels

    def delete(self, name):
        self.db.delete_namespace(name)
        self.publish(name, "/namespaces/delete", ns_events.NamespaceDelete(name=name))


def _msg(item):
    name, labels = item
    return namespace_pb2.Namespace(name=name, labels=labels or {})


class NamespacesService(namespace_pb2_grpc.NamespacesServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Get(self, request, context):
        return namespace_pb2.GetNamespaceResponse(namespace=_msg(self.local.get(request.name)))

    @rpc
    def List(self, request, context):
        return namespace_pb2.ListNamespacesResponse(namespaces=[_msg(x) for x in self.local.list(request.filter)])

    @rpc
    def Create(self, request, context):
        ns = request.namespace
        return namespace_pb2.CreateNamespaceResponse(namespace=_msg(self.local.create(ns.name, dict(ns.labels))))

    @rpc
    def Update(self, request, context):
        ns = request.namespace
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        return namespace_pb2.UpdateNamespaceResponse(
            namespace=_msg(self.local.update(ns.name, dict(ns.labels), paths)))

    @rpc
    def Delete(self, request, context):
        self.local.delete(request.name)
        return empty_pb2.Empty()

    def add_to_server(self, server):
        namespace_pb2_grpc.add_NamespacesServicer_to_server(self, server)
