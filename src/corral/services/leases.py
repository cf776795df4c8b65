"""Leases: the local object over the metadata DB and the gRPC service
containerd.services.leases.v1.Leases."""

import secrets
import time

from google.protobuf import empty_pb2

from corral.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc

from . import filters
from .errors import InvalidArgument
from .fieldpaths import check_labels
from corral.metadata.types import Resource

from .grpcutil import namespace, rpc
from .records import lease_msg

_RESOURCE_TYPES = ("content", "ingests", "snapshots/")


def _check_resource(r):
    if not r.id:
        raise InvalidArgument("lease resource id must not be empty")
    if not (r.type in ("content", "ingests") or r.type.startswith("snapshots/")):
        raise InvalidArgument(f"lease resource type {r.type!r} is not supported: use content, ingests or snapshots/<snapshotter>")


class Leases:
    def __init__(self, db, collect=None, changed=None):
        self.db = db
        self.collect = collect
        self.changed = changed or (lambda: None)

    def create(self, ns, lease_id, labels):
        lease_id = lease_id or f"{int(time.time())}-{secrets.token_hex(6)}"
        check_labels(labels)
        return lease_msg(self.db.create_lease(ns, lease_id, labels))

    def delete(self, ns, lease_id, sync=False):
        self.db.delete_lease(ns, lease_id)
        if sync and self.collect is not None:
            self.collect(ns)
        else:
            self.changed()

    def list(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        return [lease_msg(x) for x in self.db.list_leases(ns) if match(filters.getter({"id": x.id}, x.labels))]

    def add_resource(self, ns, lease_id, r):
        _check_resource(r)
        self.db.add_lease_resource(ns, lease_id, Resource(r.id, r.type))

    def delete_resource(self, ns, lease_id, r):
        _check_resource(r)
        self.db.delete_lease_resource(ns, lease_id, Resource(r.id, r.type))

    def list_resources(self, ns, lease_id):
        return [leases_pb2.Resource(id=r.id, type=r.type) for r in self.db.list_lease_resources(ns, lease_id)]


class LeasesService(leases_pb2_grpc.LeasesServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Create(self, request, context):
        return leases_pb2.CreateResponse(lease=self.local.create(namespace(context), request.id, dict(request.labels)))

    @rpc
    def Delete(self, request, context):
        self.local.delete(namespace(context), request.id, request.sync)
        return empty_pb2.Empty()

    @rpc
    def List(self, request, context):
        return leases_pb2.ListResponse(leases=self.local.list(namespace(context), list(request.filters)))

    @rpc
    def AddResource(self, request, context):
        self.local.add_resource(namespace(context), request.id, request.resource)
        return empty_pb2.Empty()

    @rpc
    def DeleteResource(self, request, context):
        self.local.delete_resource(namespace(context), request.id, request.resource)
        return empty_pb2.Empty()

    @rpc
    def ListResources(self, request, context):
        return leases_pb2.ListResourcesResponse(resources=self.local.list_resources(namespace(context), request.id))

    def add_to_server(self, server):
        leases_pb2_grpc.add_LeasesServicer_to_server(self, server)
