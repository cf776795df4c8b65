"""Plugins over the storage libraries: content store, metadata DB, snapshotters, and the gRPC
services in front of them."""

from .builtins import EVENT, GRPC, RUNTIME
from .plugin import Registration, SkipPlugin

CONTENT = "io.containerd.content.v1"
METADATA = "io.containerd.metadata.v1"
SNAPSHOTTER = "io.containerd.snapshotter.v1"
SERVICE = "io.containerd.service.v1"


def _publisher(ic):
    try:
        exchange = ic.get(EVENT)
    except LookupError:
        return None
    return exchange.publish


def _content_store(ic):
    import os
    from corral.content.store import ContentStore
    os.makedirs(ic.root, mode=0o711, exist_ok=True)
    ic.exports["root"] = ic.root
    return ContentStore(ic.root)


GC = "io.containerd.gc.v1"


def _gc(ic):
    from .gcsched import Collector
    return Collector(ic.get(METADATA), ic.get(CONTENT), ic.get_by_type(SNAPSHOTTER),
                     delay=float(ic.config.get("delay", 1.0)))


def _changed(ic):
    try:
        return ic.get(GC).schedule
    except LookupError:
        return None


def _collect(ic):
    try:
        return ic.get(GC).collect
    except LookupError:
        return None


def _content_local(ic):
    from corral.metadata.content import NamespacedContentStore
    from corral.services.content import Content
    return Content(NamespacedContentStore(ic.get(METADATA), ic.get(CONTENT)), publish=_publisher(ic),
                   changed=_changed(ic))


def _service(ic, name):
    """A local object registered under the service type, by id."""
    svc = ic.get_by_type(SERVICE).get(name)
    if svc is None:
        raise LookupError(f"{SERVICE}.{name} is not available")
    return svc


def _content_grpc(ic):
    from corral.services.content import ContentService
    return ContentService(_service(ic, "content-service"))


def _diff_grpc(ic):
    from corral.services.diff import Differ, DiffService
    return DiffService(Differ(_service(ic, "content-service")))


def _overlayfs(ic):
    import os
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            raise SkipPlugin("overlay filesystem is not supported by this kernel")
    from corral.snapshots.overlay import OverlaySnapshotter
    os.makedirs(ic.root, mode=0o711, exist_ok=True)
    ic.exports["root"] = ic.root
    return OverlaySnapshotter(ic.root)


def _native(ic):
    import os
    from corral.snapshots.native import NativeSnapshotter
    os.makedirs(ic.root, mode=0o711, exist_ok=True)
    ic.exports["root"] = ic.root
    return NativeSnapshotter(ic.root)


def _snapshots_local(ic):
    from corral.metadata.snapshots import NamespacedSnapshotter
    from corral.services.snapshots import Snapshots
    db = ic.get(METADATA)
    ns_snapshotters = {name: NamespacedSnapshotter(db, name, backend)
                       for name, backend in ic.get_by_type(SNAPSHOTTER).items()}
    return Snapshots(ns_snapshotters, _publisher(ic), _changed(ic))


def _metadata_db(ic):
    import os
    from corral.metadata.db import MetadataDB
    os.makedirs(ic.root, mode=0o711, exist_ok=True)
    path = os.path.join(ic.root, "meta.db")
    ic.exports["path"] = path
    return MetadataDB(path)


def _local(name):
    def init(ic):
        db = ic.get(METADATA)
        pub = _publisher(ic)
        if name == "namespaces":
            from corral.services.namespaces import Namespaces
            return Namespaces(db, pub)
        if name == "containers":
            from corral.services.containers import Containers
            return Containers(db, pub, _changed(ic))
        if name == "images":
            from corral.services.images import Images
            return Images(db, pub, _collect(ic), _changed(ic))
        if name == "leases":
            from corral.services.leases import Leases
            return Leases(db, _collect(ic), _changed(ic))
        raise ValueError(name)
    return init


def _grpc(local_id, module, cls):
    def init(ic):
        import importlib
        mod = importlib.import_module(f"corral.services.{module}")
        return getattr(mod, cls)(_service(ic, local_id))
    return init


def _tasks_grpc(ic):
    from corral.services.tasks import Tasks, TasksService
    return TasksService(Tasks(_service(ic, "containers-service"), ic.get(RUNTIME),
                              _service(ic, "snapshots-service")))


def _transfer_grpc(ic):
    import os
    from corral.remotes.registry import hosts_from_config
    from corral.services.transfer import Transfers, TransferService
    local = Transfers(ic.get(METADATA), _service(ic, "content-service"), _service(ic, "snapshots-service"),
                      _service(ic, "images-service"), os.path.join(ic.root, "tmp"),
                      hosts=hosts_from_config(ic.config.get("hosts")),
                      workers=int(ic.config.get("max_concurrent_downloads", 4)), changed=_changed(ic))
    return TransferService(local)


def registrations():
    return [
        Registration(CONTENT, "content", _content_store),
        Registration(SNAPSHOTTER, "overlayfs", _overlayfs),
        Registration(SNAPSHOTTER, "native", _native),
        Registration(METADATA, "sqlite", _metadata_db, requires=[CONTENT, SNAPSHOTTER]),
        Registration(SERVICE, "snapshots-service", _snapshots_local, requires=[SNAPSHOTTER, METADATA, EVENT, GC]),
        Registration(GRPC, "snapshots", _grpc("snapshots-service", "snapshots", "SnapshotsService"), requires=[SERVICE]),
        Registration(GC, "scheduler", _gc, requires=[METADATA, CONTENT, SNAPSHOTTER],
                     config={"delay": 1.0}),  # seconds after the last deletion before a GC pass
        Registration(SERVICE, "namespaces-service", _local("namespaces"), requires=[METADATA, EVENT]),
        Registration(SERVICE, "containers-service", _local("containers"), requires=[METADATA, EVENT, GC]),
        Registration(SERVICE, "images-service", _local("images"), requires=[METADATA, EVENT, GC]),
        Registration(SERVICE, "leases-service", _local("leases"), requires=[METADATA, GC]),
        Registration(GRPC, "namespaces", _grpc("namespaces-service", "namespaces", "NamespacesService"), requires=[SERVICE]),
        Registration(GRPC, "containers", _grpc("containers-service", "containers", "ContainersService"), requires=[SERVICE]),
        Registration(GRPC, "images", _grpc("images-service", "images", "ImagesService"), requires=[SERVICE]),
        Registration(GRPC, "leases", _grpc("leases-service", "leases", "LeasesService"), requires=[SERVICE]),
        Registration(SERVICE, "content-service", _content_local, requires=[CONTENT, METADATA, EVENT, GC]),
        Registration(GRPC, "content", _content_grpc, requires=[SERVICE]),
        Registration(GRPC, "diff", _diff_grpc, requires=[SERVICE]),
        Registration(GRPC, "tasks", _tasks_grpc, requires=[RUNTIME, SERVICE]),
        # corral's own: pulls, pushes, imports and exports inside the daemon
        Registration(GRPC, "transfer", _transfer_grpc, requires=[SERVICE, METADATA, GC],
                     config={"max_concurrent_downloads": 4,
                             "hosts": {}}),   # "host[:port]" = {plain_http, endpoint, skip_verify, ca_file}
    ]
