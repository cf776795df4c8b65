"""Snapshots: the gRPC service containerd.services.snapshots.v1.Snapshots over namespaced
snapshotters (each namespace has its own keys; the storage library maps them to unique
backend names and keeps the namespace's labels in the metadata DB)."""

from google.protobuf import empty_pb2

from corral.api.containerd.events import snapshot_pb2 as snapshot_events
from corral.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from corral.api.containerd.types import mount_pb2

from . import filters
from .errors import InvalidArgument
from .fieldpaths import check_labels
from .grpcutil import lease, namespace, rpc, ts

LIST_BATCH = 100
DEFAULT_SNAPSHOTTER = "overlayfs"
_KINDS = {"view": snapshots_pb2.VIEW, "active": snapshots_pb2.ACTIVE, "committed": snapshots_pb2.COMMITTED}


def _kind_name(kind):
    return str(getattr(kind, "name", kind)).lower()


class Snapshots:
    """The snapshots service's logic over the storage library's namespaced snapshotters
    (corral.metadata.snapshots.NamespacedSnapshotter, one per backend): defaults, label
    checks, filters, events, collection."""

    def __init__(self, snapshotters, publish=None, changed=None):
        self.snapshotters = snapshotters  # name -> NamespacedSnapshotter
        self.publish = publish or (lambda ns, topic, msg: None)
        self.changed = changed or (lambda: None)

    def get(self, name):
        name = name or DEFAULT_SNAPSHOTTER
        try:
            return self.snapshotters[name]
        except KeyError:
            raise InvalidArgument(f"snapshotter {name!r} is not available; use one of "
                                  f"{', '.join(sorted(self.snapshotters)) or 'none'}") from None

    def prepare(self, ns, sn, key, parent, labels, lease_id=None):
        _check_key(key)
        check_labels(labels)
        mounts = self.get(sn).prepare(ns, key, parent, labels, lease_id)
        self.publish(ns, "/snapshot/prepare", snapshot_events.SnapshotPrepare(
            key=key, parent=parent, snapshotter=sn or DEFAULT_SNAPSHOTTER))
        return mounts

    def view(self, ns, sn, key, parent, labels, lease_id=None):
        _check_key(key)
        check_labels(labels)
        return self.get(sn).view(ns, key, parent, labels, lease_id)

    def mounts(self, ns, sn, key):
        return self.get(sn).mounts(ns, key)

    def commit(self, ns, sn, name, key, labels, lease_id=None):
        _check_key(name)
        check_labels(labels)
        self.get(sn).commit(ns, name, key, labels or None, lease_id)
        self.publish(ns, "/snapshot/commit", snapshot_events.SnapshotCommit(
            key=key, name=name, snapshotter=sn or DEFAULT_SNAPSHOTTER))

    def remove(self, ns, sn, key):
        self.get(sn).remove(ns, key)
        self.publish(ns, "/snapshot/remove", snapshot_events.SnapshotRemove(key=key, snapshotter=sn or DEFAULT_SNAPSHOTTER))
        self.changed()

    def stat(self, ns, sn, key):
        return self.get(sn).stat(ns, key)

    def update(self, ns, sn, name, labels, fieldpaths):
        check_labels(labels)
        for p in fieldpaths or []:
            if p != "labels" and not p.startswith("labels."):
                raise InvalidArgument(f"snapshot {name}: only labels can be updated, not {p!r}")
        s = self.get(sn)
        info = s.stat(ns, name)
        info.labels = dict(labels)
        return s.update(ns, info, fieldpaths or None)

    def list(self, ns, sn, filter_strings=()):
        match = filters.parse(filter_strings)

        def keep(info):
            fields = {"name": info.name, "parent": info.parent, "kind": _kind_name(info.kind)}
            return match(filters.getter(fields, info.labels))
        return self.get(sn).list(ns, keep)

    def usage(self, ns, sn, key):
        return self.get(sn).usage(ns, key)


def _check_key(key):
    if not key:
        raise InvalidArgument("snapshot key must not be empty")


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
        s = self.local.get(request.snapshotter).backend
        cleanup = getattr(s, "cleanup", None)
        if cleanup is not None:
            cleanup()
        return empty_pb2.Empty()

    def add_to_server(self, server):
        snapshots_pb2_grpc.add_SnapshotsServicer_to_server(self, server)


