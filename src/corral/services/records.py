"""Conversions between the metadata DB's records (corral.metadata.types) and API messages."""

from google.protobuf import any_pb2

from corral.api.containerd.services.containers.v1 import containers_pb2
from corral.api.containerd.services.images.v1 import images_pb2
from corral.api.containerd.services.leases.v1 import leases_pb2
from corral.api.containerd.types import descriptor_pb2
from corral.metadata import types as t

from .grpcutil import ts


def nts(ns):
    """Timestamp from integer nanoseconds (0: unset)."""
    return ts(ns / 1e9) if ns else ts(None)


def _any_msg(a):
    return any_pb2.Any(type_url=a.type_url, value=a.value) if a is not None else None


def _any_rec(m, present=True):
    return t.Any(m.type_url, m.value) if present and m.type_url else None


def container_msg(c):
    m = containers_pb2.Container(id=c.id, labels=c.labels, image=c.image, snapshotter=c.snapshotter,
                                 snapshot_key=c.snapshot_key, created_at=nts(c.created_at),
                                 updated_at=nts(c.updated_at))
    m.runtime.name = c.runtime.name
    if c.runtime.options is not None:
        m.runtime.options.CopyFrom(_any_msg(c.runtime.options))
    if c.spec is not None:
        m.spec.CopyFrom(_any_msg(c.spec))
    for k, v in c.extensions.items():
        m.extensions[k].CopyFrom(_any_msg(v))
    return m


def container_rec(m):
    return t.Container(id=m.id, labels=dict(m.labels), image=m.image,
                       runtime=t.Runtime(m.runtime.name, _any_rec(m.runtime.options, m.runtime.HasField("options"))),
                       spec=_any_rec(m.spec, m.HasField("spec")), snapshotter=m.snapshotter,
                       snapshot_key=m.snapshot_key,
                       extensions={k: t.Any(v.type_url, v.value) for k, v in m.extensions.items()})


def image_msg(i):
    d = i.target
    return images_pb2.Image(name=i.name, labels=i.labels,
                            target=descriptor_pb2.Descriptor(media_type=d.media_type, digest=d.digest,
                                                             size=d.size, annotations=d.annotations),
                            created_at=nts(i.created_at), updated_at=nts(i.updated_at))


def image_rec(m):
    d = m.target
    return t.Image(name=m.name, labels=dict(m.labels),
                   target=t.Descriptor(d.media_type, d.digest, d.size, dict(d.annotations)))


def lease_msg(l):
    return leases_pb2.Lease(id=l.id, labels=l.labels, created_at=nts(l.created_at))
