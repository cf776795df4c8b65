"""Content: the local object over corral.content.store (with namespace references from the
metadata DB when one is given) and the gRPC service containerd.services.content.v1.Content."""

import logging

import grpc
from google.protobuf import empty_pb2

from corral.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from corral.api.containerd.events import content_pb2 as content_events

from . import filters
from corral.metadata.types import Resource

from .errors import AlreadyExists, InvalidArgument, NotFound
from .grpcutil import Abort, lease, namespace, rpc, ts

log = logging.getLogger("corrald")

READ_CHUNK = 1 << 20
LIST_BATCH = 100


def _ns_ts(ns):
    return ts(ns / 1e9 if ns else None)


class Content:
    """Blobs are shared by every namespace on disk; which namespace sees which blob, and with
    which labels, is kept in the metadata DB (`db`). Without a DB every namespace sees every
    blob with the store's own labels."""

    def __init__(self, store, db=None, publish=None):
        self.store = store
        self.db = db
        self.publish = publish or (lambda ns, topic, msg: None)

    def info(self, ns, digest):
        if self.db is not None:
            ref = self.db.get_content(ns, digest)  # NotFound when not in ns
            info = self.store.info(digest)
            info.labels = ref.labels
            info.created_at, info.updated_at = ref.created_at or info.created_at, ref.updated_at or info.updated_at
            return info
        return self.store.info(digest)

    def list(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        if self.db is not None:
            infos = []
            for ref in self.db.list_content(ns):
                try:
                    infos.append(self.info(ns, ref.digest))
                except NotFound:
                    continue  # deleted meanwhile
        else:
            infos = self.store.list()
        return [i for i in infos if match(filters.getter({"digest": i.digest, "size": i.size}, i.labels))]

    def update(self, ns, digest, labels, fieldpaths):
        if self.db is None:
            return self.store.update(digest, labels, fieldpaths)
        self.db.update_content(ns, digest, labels, fieldpaths or None)
        return self.info(ns, digest)

    def delete(self, ns, digest):
        if self.db is not None:
            self.db.delete_content(ns, digest)
            if not self.db.content_namespaces(digest):
                try:
                    self.store.delete(digest)
                except NotFound:
                    pass
        else:
            self.store.delete(digest)
        self.publish(ns, "/content/delete", content_events.ContentDelete(digest=digest))

    def reader(self, ns, digest):
        if self.db is not None:
            self.db.get_content(ns, digest)
        return self.store.reader_at(digest)

    def open_writer(self, ns, ref, total, expected, lease_id=None):
        """A writer; AlreadyExists when `expected` is committed (it is then also made visible
        in the namespace, as the client has that content)."""
        if lease_id and self.db is not None:
            self.db.add_lease_resource(ns, lease_id, Resource(ref, "ingests"))
        try:
            return self.store.writer(_ns_ref(ns, ref), total=total or None, expected=expected or None)
        except AlreadyExists:
            self.committed(ns, expected, {}, lease_id)
            raise

    def committed(self, ns, digest, labels, lease_id=None):
        """Make a committed blob visible in the namespace (and held by the lease)."""
        if self.db is None:
            return
        with self.db.transaction():
            self.db.add_content(ns, digest, labels or {}, exist_ok=True)
            if labels:
                self.db.update_content(ns, digest, labels, [f"labels.{k}" for k in labels])
            if lease_id:
                self.db.add_lease_resource(ns, lease_id, Resource(digest, "content"))

    def status(self, ns, ref):
        st = self.store.status(_ns_ref(ns, ref))
        st.ref = ref
        return st

    def list_statuses(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        prefix = _ns_ref(ns, "")
        out = []
        for st in self.store.list_statuses():
            if not st.ref.startswith(prefix):
                continue
            st.ref = st.ref[len(prefix):]
            if match(filters.getter({"ref": st.ref, "expected": st.expected})):
                out.append(st)
        return out

    def abort(self, ns, ref):
        self.store.abort(_ns_ref(ns, ref))


def _ns_ref(ns, ref):
    # ingests are per namespace, as in containerd's metadata store
    return f"{ns}/{ref}" if ref else f"{ns}/"


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
                    try:
                        digest = w.commit(size=total or None, expected=expected or None, labels=labels or None)
                    except AlreadyExists:
                        self.local.committed(ns, expected or w.digest(), labels, lease_id)
                        raise
                    self.local.committed(ns, digest, labels, lease_id)
                    resp.digest = digest
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
