"""Plugins over the storage libraries: content store, metadata DB, snapshotters, and the gRPC
services in front of them."""

from .builtins import EVENT, GRPC
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


def _metadata(ic):
    """The metadata DB, or None while the storage library lacks it."""
    try:
        return ic.get(METADATA)
    except LookupError:
        return None


def _content_store(ic):
    import os
    from corral.content.store import ContentStore
    os.makedirs(ic.root, mode=0o711, exist_ok=True)
    ic.exports["root"] = ic.root
    return ContentStore(ic.root)


def _content_local(ic):
    from corral.services.content import Content
    return Content(ic.get(CONTENT), refs=_metadata(ic), publish=_publisher(ic))


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


def registrations():
    return [
        Registration(CONTENT, "content", _content_store),
        Registration(SERVICE, "content-service", _content_local, requires=[CONTENT, EVENT]),
        Registration(GRPC, "content", _content_grpc, requires=[SERVICE]),
        Registration(GRPC, "diff", _diff_grpc, requires=[SERVICE]),
    ]
