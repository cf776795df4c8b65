"""Snapshots: namespaced views of the snapshotters and the gRPC service
containerd.services.snapshots.v1.Snapshots.

As in containerd, each namespace has its own keys: the metadata DB maps (namespace,
snapshotter, key) to the backend's name "ns/<random>/key", which is unique even when a key is
reused, and keeps the namespace's labels (the GC reads its references there)."""

import secrets

from google.protobuf import empty_pb2

from corral.api.containerd.events import snapshot_pb2 as snapshot_events
from corral.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from corral.api.containerd.types import mount_pb2
from corral.metadata.types import Resource, SnapshotRef

from . import filters
from .errors import AlreadyExists, InvalidArgument, NotFound
from .fieldpaths import check_labels
from .grpcutil import lease, namespace, rpc, ts

LIST_BATCH = 100
DEFAULT_SNAPSHOTTER = "overlayfs"
_KINDS = {"view": snapshots_pb2.VIEW, "active": snapshots_pb2.ACTIVE, "committed": snapshots_pb2.COMMITTED}


def _kind_name(kind):
    return str(getattr(kind, "name", kind)).lower()


class SnapInfo:
    def __init__(self, name, parent, kind, labels, created, updated):
        self.name, self.parent, self.kind, self.labels = name, parent, kind, labels
        self.created, self.updated = created, updated


class Snapshots:
    def __init__(self, snapshotters, db, publish=None):
        self.snapshotters = snapshotters  # name -> snapshotter
        self.db = db
        self.publish = publish or (lambda ns, topic, msg: None)

    def get(self, name):
        name = name or DEFAULT_SNAPSHOTTER
        try:
            return self.snapshotters[name]
        except KeyError:
            raise InvalidArgument(f"snapshotter {name!r} is not available; use one of "
                                  f"{', '.join(sorted(self.snapshotters)) or 'none'}") from None

    @staticmethod
    def _backend_name(ns, key):
        return f"{ns}/{secrets.token_hex(4)}/{key}"

    def _create(self, view, ns, sn, key, parent, labels, lease_id):
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        check_labels(labels)
        sn = sn or DEFAULT_SNAPSHOTTER
        backend = self.get(sn)
        try:
            self.db.get_snapshot(ns, sn, key)
            raise AlreadyExists(f"snapshot {key}: already exists in namespace {ns}")
        except NotFound:
            pass
        bparent = self.db.get_snapshot(ns, sn, parent).name if parent else ""
        bname = self._backend_name(ns, key)
        mounts = (backend.view if view else backend.prepare)(bname, bparent, labels=labels)
        try:
            with self.db.transaction():
                self.db.add_snapshot(ns, SnapshotRef(sn, key, bname, parent, labels))
                if lease_id:
                    self.db.add_lease_resource(ns, lease_id, Resource(key, f"snapshots/{sn}"))
        except BaseException:
            backend.remove(bname)
            raise
        return mounts

    def prepare(self, ns, sn, key, parent, labels, lease_id=None):
        mounts = self._create(False, ns, sn, key, parent, labels, lease_id)
        self.publish(ns, "/snapshot/prepare", snapshot_events.SnapshotPrepare(key=key, parent=parent, snapshotter=sn))
        return mounts

    def view(self, ns, sn, key, parent, labels, lease_id=None):
        return self._create(True, ns, sn, key, parent, labels, lease_id)

    def mounts(self, ns, sn, key):
        sn = sn or DEFAULT_SNAPSHOTTER
        return self.get(sn).mounts(self.db.get_snapshot(ns, sn, key).name)

    def commit(self, ns, sn, name, key, labels, lease_id=None):
        if not name:
            raise InvalidArgument("committed snapshot name must not be empty")
        check_labels(labels)
        sn = sn or DEFAULT_SNAPSHOTTER
        backend = self.get(sn)
        ref = self.db.get_snapshot(ns, sn, key)
        bname = self._backend_name(ns, name)
        with self.db.transaction():
            self.db.add_snapshot(ns, SnapshotRef(sn, name, bname, ref.parent, labels or ref.labels))
            self.db.delete_snapshot(ns, sn, key)
            if lease_id:
                self.db.add_lease_resource(ns, lease_id, Resource(name, f"snapshots/{sn}"))
            backend.commit(bname, ref.name, labels=labels or ref.labels)
        self.publish(ns, "/snapshot/commit", snapshot_events.SnapshotCommit(key=key, name=name, snapshotter=sn))

    def remove(self, ns, sn, key):
        sn = sn or DEFAULT_SNAPSHOTTER
        backend = self.get(sn)
        ref = self.db.get_snapshot(ns, sn, key)
        with self.db.transaction():
            self.db.delete_snapshot(ns, sn, key)
            try:
                backend.remove(ref.name)
            except NotFound:
                pass  # the backend lost it already; dropping the reference is what is left
        self.publish(ns, "/snapshot/remove", snapshot_events.SnapshotRemove(key=key, snapshotter=sn))

    def _info(self, backend, ref):
        try:
            kind = backend.stat(ref.name).kind
        except NotFound:
            kind = "unknown"
        return SnapInfo(ref.key, ref.parent, kind, ref.labels, ref.created_at, ref.updated_at)

    def stat(self, ns, sn, key):
        sn = sn or DEFAULT_SNAPSHOTTER
        return self._info(self.get(sn), self.db.get_snapshot(ns, sn, key))

    def update(self, ns, sn, name, labels, fieldpaths):
        sn = sn or DEFAULT_SNAPSHOTTER
        check_labels(labels)
        for p in fieldpaths or []:
            if p != "labels" and not p.startswith("labels."):
                raise InvalidArgument(f"snapshot {name}: only labels can be updated, not {p!r}")
        ref = self.db.update_snapshot(ns, sn, name, labels, fieldpaths or None)
        return self._info(self.get(sn), ref)

    def list(self, ns, sn, filter_strings=()):
        sn = sn or DEFAULT_SNAPSHOTTER
        backend = self.get(sn)
        match = filters.parse(filter_strings)
        out = []
        for ref in self.db.list_snapshots(ns, sn):
            info = self._info(backend, ref)
            fields = {"name": info.name, "parent": info.parent, "kind": _kind_name(info.kind)}
            if match(filters.getter(fields, info.labels)):
                out.append(info)
        return out

    def usage(self, ns, sn, key):
        sn = sn or DEFAULT_SNAPSHOTTER
        return self.get(sn).usage(self.db.get_snapshot(ns, sn, key).name)


def mount_msgs(mounts):
    out = []
    for m in mounts:
        get = m.get if isinstance(m, dict) else (lambda k, d=None, m=m: getattr(m, k, d))
        out.append(mount_pb2.Mount(type=get("type", ""), source=get("source", ""),
                                   target=get("target", "") or "", options=list(get("options", []) or [])))
    return out


def info_msg(info):
    created = getattr(info, "created", None)
    updated = getattr(info, "updated", None)
    return snapshots_pb2.Info(name=info.name, parent=info.parent or "",
                              kind=_KINDS.get(_kind_name(info.kind), snapshots_pb2.UNKNOWN),
                              created_at=_time(created), updated_at=_time(updated), labels=dict(info.labels or {}))


def _time(v):
    if isinstance(v, int) and v > 10**12:  # nanoseconds
        return ts(v / 1e9)
    return ts(v)


def _usage(u):
    if isinstance(u, tuple):
        return u
    if isinstance(u, dict):
        return u.get("size", 0), u.get("inodes", 0)
    return u.size, u.inodes


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Prepare(self, request, context):
        m = self.local.prepare(namespace(context), request.snapshotter, request.key, request.parent,
                               dict(request.labels), lease(context))
        return snapshots_pb2.PrepareSnapshotResponse(mounts=mount_msgs(m))

    @rpc
    def View(self, request, context):
        m = self.local.view(namespace(context), request.snapshotter, request.key, request.parent,
                            dict(request.labels), lease(context))
        return snapshots_pb2.ViewSnapshotResponse(mounts=mount_msgs(m))

    @rpc
    def Mounts(self, request, context):
        m = self.local.mounts(namespace(context), request.snapshotter, request.key)
        return snapshots_pb2.MountsResponse(mounts=mount_msgs(m))

    @rpc
    def Commit(self, request, context):
        self.local.commit(namespace(context), request.snapshotter, request.name, request.key,
                          dict(request.labels), lease(context))
        return empty_pb2.Empty()

    @rpc
    def Remove(self, request, context):
        self.local.remove(namespace(context), request.snapshotter, request.key)
        return empty_pb2.Empty()

    @rpc
    def Stat(self, request, context):
        return snapshots_pb2.StatSnapshotResponse(
            info=info_msg(self.local.stat(namespace(context), request.snapshotter, request.key)))

    @rpc
    def Update(self, request, context):
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        info = self.local.update(namespace(context), request.snapshotter, request.info.name,
                                 dict(request.info.labels), paths)
        return snapshots_pb2.UpdateSnapshotResponse(info=info_msg(info))

    @rpc
    def List(self, request, context):
        infos = self.local.list(namespace(context), request.snapshotter, list(request.filters))
        for i in range(0, len(infos), LIST_BATCH):
            yield snapshots_pb2.ListSnapshotsResponse(info=[info_msg(x) for x in infos[i:i + LIST_BATCH]])

    @rpc
    def Usage(self, request, context):
        size, inodes = _usage(self.local.usage(namespace(context), request.snapshotter, request.key))
        return snapshots_pb2.UsageResponse(size=size, inodes=inodes)

    @rpc
    def Cleanup(self, request, context):
        namespace(context)
        s = self.local.get(request.snapshotter)
        cleanup = getattr(s, "cleanup", None)
        if cleanup is not None:
            cleanup()
        return empty_pb2.Empty()

    def add_to_server(self, server):
        snapshots_pb2_grpc.add_SnapshotsServicer_to_server(self, server)


