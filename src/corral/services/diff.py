"""Diff: apply a layer from the content store onto snapshot mounts (what `ctr images pull`
and unpack use), and the gRPC service containerd.services.diff.v1.Diff.

A single bind mount (a snapshot's first layer) is applied straight into its directory; any
other mount set (overlay with lowers) is mounted on a temporary directory and applied through
it, so the kernel writes the overlay whiteouts itself."""

import hashlib
import os
import tempfile

from corral.api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from corral.api.containerd.types import descriptor_pb2

from .errors import InvalidArgument, Unimplemented
from .grpcutil import lease, namespace, rpc

_CHUNK = 1 << 20


class _HashingReader:
    """A file object that hashes (and counts) what is read through it."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        self.size += len(data)
        return data

    def drain(self):
        while self.read(_CHUNK):
            pass


def _decompressor(media_type, f):
    from corral.archive.compression import decompressor
    from corral.images.mediatypes import compression
    try:
        return decompressor(compression(media_type), f)
    except ValueError as e:
        raise InvalidArgument(f"cannot apply {media_type!r}: {e}") from None


def _uncompressed(media_type):
    for suffix in ("+gzip", "+zstd", ".gzip", ".zstd"):
        if media_type.endswith(suffix):
            return media_type[: -len(suffix)]
    return media_type


def _bind_source(mounts):
    if len(mounts) == 1 and mounts[0].type == "bind" and "ro" not in mounts[0].options:
        return mounts[0].source
    return None


class Differ:
    def __init__(self, content):
        self.content = content  # services.content.Content

    def apply(self, ns, desc, mounts):
        from corral.archive.apply import UnsafeLayerError, apply_tar
        if not mounts:
            raise InvalidArgument("diff apply needs at least one mount")
        reader = self.content.reader(ns, desc.digest)
        try:
            raw = _RawReader(reader)
            stream = _decompressor(desc.media_type, raw)
            hashed = _HashingReader(stream)
            target = _bind_source(mounts)
            try:
                if target is not None:
                    apply_tar(hashed, target, mode="native")
                else:
                    self._apply_mounted(hashed, mounts, apply_tar)
                hashed.drain()
            except UnsafeLayerError as e:
                raise InvalidArgument(f"layer {desc.digest}: {e}") from None
            except (OSError, EOFError) as e:
                raise InvalidArgument(f"layer {desc.digest} could not be applied: {e}") from None
        finally:
            reader.close()
        return descriptor_pb2.Descriptor(media_type=_uncompressed(desc.media_type),
                                         digest="sha256:" + hashed.h.hexdigest(), size=hashed.size)

    def diff(self, ns, left, right, media_type, ref, labels, lease_id=None):
        """A layer of right's changes over left, written to the content store. Supported:
        an active overlay snapshot against its parent, and a first layer against nothing."""
        import uuid
        import zlib
        from corral.archive.create import write_tree
        from corral.images.mediatypes import OCI_LAYER_GZIP, compression
        src = _diff_source(left, right)
        if src is None:
            raise Unimplemented("corrald makes diffs only of an active snapshot against its parent "
                                "(right: an overlay with upperdir over left, or a first layer against nothing)")
        media_type = media_type or OCI_LAYER_GZIP
        try:
            kind = compression(media_type)
        except ValueError as e:
            raise InvalidArgument(f"cannot create a diff as {media_type!r}: {e}") from None
        with tempfile.TemporaryFile() as raw:
            write_tree(src[0], raw, upper=src[1])
            raw.seek(0)
            diff_id = hashlib.sha256()
            if kind == "gzip":
                comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            elif kind == "zstd":
                import zstandard
                comp = zstandard.ZstdCompressor().compressobj()
            else:
                comp = None
            w = self.content.open_writer(ns, ref or f"diff-{uuid.uuid4().hex}", 0, "", lease_id)
            try:
                while True:
                    chunk = raw.read(_CHUNK)
                    if not chunk:
                        break
                    diff_id.update(chunk)
                    w.write(comp.compress(chunk) if comp else chunk)
                if comp:
                    w.write(comp.flush())
                size = w.offset
                all_labels = dict(labels or {})
                all_labels["containerd.io/uncompressed"] = "sha256:" + diff_id.hexdigest()
                digest = w.commit(labels=all_labels)
            except BaseException:
                w.abort()
                raise
        return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=size)

    def _apply_mounted(self, stream, mounts, apply_tar):
        from corral.snapshots.mount import mount_all, unmount_all
        tmp = tempfile.mkdtemp(prefix="corral-apply-")
        try:
            mount_all([{"type": m.type, "source": m.source, "options": list(m.options)} for m in mounts], tmp)
            try:
                apply_tar(stream, tmp, mode="native")
            finally:
                unmount_all(tmp)
        finally:
            os.rmdir(tmp)


def _option(m, key):
    for o in m.options:
        if o.startswith(key + "="):
            return o[len(key) + 1:]
    return None


def _diff_source(left, right):
    """(directory, is_overlay_upper) holding exactly right's changes over left, or None."""
    if len(right) != 1:
        return None
    r = right[0]
    if r.type == "overlay":
        upper, lower = _option(r, "upperdir"), _option(r, "lowerdir")
        if not upper or not lower:
            return None
        lowers = lower.split(":")
        if len(left) == 1 and left[0].type == "bind" and left[0].source == lowers[0] and len(lowers) == 1:
            return upper, True
        if len(left) == 1 and left[0].type == "overlay" and _option(left[0], "lowerdir") == lower \
                and not _option(left[0], "upperdir"):
            return upper, True
        return None
    if r.type == "bind" and not left:
        return r.source, False
    return None


class _RawReader:
    """Sequential file interface over a content ReaderAt."""

    def __init__(self, r):
        self.r = r
        self.offset = 0

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.r.size - self.offset
        data = self.r.read_at(min(n, max(self.r.size - self.offset, 0)), self.offset)
        self.offset += len(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readable(self):
        return True


class DiffService(diff_pb2_grpc.DiffServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Apply(self, request, context):
        applied = self.local.apply(namespace(context), request.diff, list(request.mounts))
        return diff_pb2.ApplyResponse(applied=applied)

    @rpc
    def Diff(self, request, context):
        desc = self.local.diff(namespace(context), list(request.left), list(request.right), request.media_type,
                               request.ref, dict(request.labels), lease(context))
        return diff_pb2.DiffResponse(diff=desc)

    def add_to_server(self, server):
        diff_pb2_grpc.add_DiffServicer_to_server(self, server)
