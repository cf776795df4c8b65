"""Plugins over the storage libraries: content store, metadata DB, snapshotters, and the gRPC
services in front of them."""

from .builtins import EVENT, GRPC
from .plugin import Registration, SkipPlugin

CONTENT = "io.containerd.content.v1"
METADATA = "io.containerd.metadata.v1"
SNAPSHOTTER = "io.containerd.snapshotter.v1"


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


def _content_service(ic):
    from corral.services.content import Content, ContentService
    return ContentService(Content(ic.get(CONTENT), refs=_metadata(ic), publish=_publisher(ic)))


def registrations():
    return [
        Registration(CONTENT, "content", _content_store),
        Registration(GRPC, "content", _content_service, requires=[CONTENT, EVENT]),
    ]
