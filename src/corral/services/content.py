"""Content: the local object over corral.content.store (with namespace references from the
metadata DB when one is given) and the gRPC service containerd.services.content.v1.Content."""

import logging

import grpc
from google.protobuf import empty_pb2

from corral.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from corral.api.containerd.events import content_pb2 as content_events

from . import filters
from .errors import InvalidArgument, NotFound
from .grpcutil import Abort, lease, namespace, rpc, ts

log = logging.getLogger("corrald")

READ_CHUNK = 1 << 20
LIST_BATCH = 100


def _ns_ts(ns):
    return ts(ns / 1e9 if ns else None)


class Content:
    """The content service's logic over the storage library's namespaced content store
    (corral.metadata.content.NamespacedContentStore): filters, events, collection."""

    def __init__(self, nscs, publish=None, changed=None):
        self.nscs = nscs
        self.publish = publish or (lambda ns, topic, msg: None)
        self.changed = changed or (lambda: None)  # tells the GC something was dropped

    def info(self, ns, digest):
        return self.nscs.info(ns, digest)

    def list(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        return self.nscs.list(ns, lambda i: match(filters.getter({"digest": i.digest, "size": i.size}, i.labels)))

    def update(self, ns, digest, labels, fieldpaths):
        return self.nscs.update(ns, digest, labels, fieldpaths or None)

    def delete(self, ns, digest):
        self.nscs.delete(ns, digest)
        self.publish(ns, "/content/delete", content_events.ContentDelete(digest=digest))
        self.changed()

    def reader(self, ns, digest):
        return self.nscs.reader_at(ns, digest)

    def open_writer(self, ns, ref, total, expected, lease_id=None):
        """A writer; AlreadyExists when the namespace already has `expected`."""
        return self.nscs.writer(ns, ref, total=total or None, expected=expected or None, lease=lease_id)

    def status(self, ns, ref):
        return self.nscs.status(ns, ref)

    def list_statuses(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        return self.nscs.list_statuses(ns, lambda st: match(filters.getter({"ref": st.ref, "expected": st.expected})))

    def abort(self, ns, ref):
        self.nscs.abort(ns, ref)


def info_msg(info):
    return content_pb2.Info(digest=info.digest, size=info.size, created_at=_ns_ts(info.created_at),
                            updated_at=_ns_ts(info.updated_at), labels=info.labels)


def status_msg(st):
    return content_pb2.Status(ref=st.ref, offset=st.offset, total=st.total, expected=st.expected,
                              started_at=_ns_ts(st.started_at), updated_at=_ns_ts(st.updated_at))


class ContentService(content_pb2_grpc.ContentServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Info(self, request, context):
        return content_pb2.InfoResponse(info=info_msg(self.local.info(namespace(context), request.digest)))

    @rpc
    def Update(self, request, context):
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        info = self.local.update(namespace(context), request.info.digest, dict(request.info.labels), paths)
        return content_pb2.UpdateResponse(info=info_msg(info))

    @rpc
    def List(self, request, context):
        infos = self.local.list(namespace(context), list(request.filters))
        for i in range(0, len(infos), LIST_BATCH):
            yield content_pb2.ListContentResponse(info=[info_msg(x) for x in infos[i:i + LIST_BATCH]])

    @rpc
    def Delete(self, request, context):
        self.local.delete(namespace(context), request.digest)
        return empty_pb2.Empty()

    @rpc
    def Read(self, request, context):
        if request.offset < 0 or request.size < 0:
            raise InvalidArgument("read offset and size must not be negative")
        with self.local.reader(namespace(context), request.digest) as r:
            offset = request.offset
            end = r.size if request.size == 0 else min(r.size, offset + request.size)
            if offset > r.size:
                raise Abort(grpc.StatusCode.OUT_OF_RANGE, f"read offset {offset} is past the end of {request.digest} ({r.size} bytes)")
            while offset < end:
                data = r.read_at(min(READ_CHUNK, end - offset), offset)
                if not data:
                    break
                yield content_pb2.ReadContentResponse(offset=offset, data=data)
                offset += len(data)

    @rpc
    def Status(self, request, context):
        return content_pb2.StatusResponse(status=status_msg(self.local.status(namespace(context), request.ref)))

    @rpc
    def ListStatuses(self, request, context):
        sts = self.local.list_statuses(namespace(context), list(request.filters))
        return content_pb2.ListStatusesResponse(statuses=[status_msg(s) for s in sts])

    @rpc
    def Abort(self, request, context):
        self.local.abort(namespace(context), request.ref)
        return empty_pb2.Empty()

    @rpc
    def Write(self, request_iterator, context):
        ns = namespace(context)
        lease_id = lease(context)
        try:
            req = next(request_iterator)
        except StopIteration:
            return
        if not req.ref:
            raise InvalidArgument("the first write message must carry a ref")
        ref = req.ref
        w = self.local.open_writer(ns, ref, req.total, req.expected, lease_id)
        try:
            total, expected = w.total, w.expected
            while True:
                if req.ref and req.ref != ref:
                    raise InvalidArgument(f"write stream for ref {ref!r} got a message for {req.ref!r}")
                if req.total > 0:
                    total = req.total
                if req.expected:
                    expected = req.expected
                resp = content_pb2.WriteContentResponse(action=req.action)
                if req.action in (content_pb2.WRITE, content_pb2.COMMIT):
                    if req.offset > 0 and req.offset != w.offset:
                        raise Abort(grpc.StatusCode.OUT_OF_RANGE,
                                    f"write of {ref!r} at offset {req.offset} must happen at the current offset {w.offset}")
                    if req.offset == 0 and w.offset > 0 and req.data:
                        w.truncate(0)
                    if req.data:
                        w.write(req.data)
                elif req.action != content_pb2.STAT:
                    raise InvalidArgument(f"unknown write action {req.action}")
                resp.offset = w.offset
                resp.total = total
                if req.action == content_pb2.COMMIT:
                    labels = dict(req.labels)
                    resp.digest = w.commit(size=total or None, expected=expected or None, labels=labels or None)
                else:
                    st = _writer_status(w)
                    if st is not None:
                        resp.started_at.CopyFrom(_ns_ts(st.started_at))
                        resp.updated_at.CopyFrom(_ns_ts(st.updated_at))
                    resp.digest = w.digest()
                yield resp
                if req.action == content_pb2.COMMIT:
                    return
                try:
                    req = next(request_iterator)
                except StopIteration:
                    return
        finally:
            w.close()

    def add_to_server(self, server):
        content_pb2_grpc.add_ContentServicer_to_server(self, server)


def _writer_status(w):
    try:
        return w.status()
    except NotFound:
        return None
