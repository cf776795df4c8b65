"""Make a layer from an active snapshot's changes (containerd's diff "compare"): tar the
diff, compress it, and store it with its diff ID, in one streaming pass.

    desc, diff_id = create_layer(store, snapshotter, key)

An overlay upper dir is the diff itself; a native snapshot is compared with a view of its
parent; a snapshot with no parent is a whole tree.
"""

import hashlib
import os
import tempfile
import uuid

from corral.archive.create import write_tree
from corral.archive.diff import write_overlay_diff, write_tree_diff
from corral.images import mediatypes
from corral.images.errors import ImageError
from corral.images.unpack import apply_plan

UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
CHUNK = 1 << 20


class _HashWriter:
    def __init__(self, out):
        self.out = out
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b):
        self.h.update(b)
        self.size += len(b)
        self.out.write(b)
        return len(b)

    def flush(self):
        pass


def _compressor(kind, out):
    if kind == "gzip":
        try:
            from isal import igzip
            return igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)
        except ImportError:
            import gzip
            return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)
    if kind == "":
        return None
    raise ValueError(f"unsupported compression {kind!r}")


def create_layer(store, sn, key, compression="gzip"):
    """Returns (descriptor, diff_id) of a new layer blob in `store` holding the changes of the
    active snapshot `key` over its parent."""
    info = sn.stat(key)
    if info.kind.name != "ACTIVE":
        raise ImageError(f"diff of snapshot {key}: it is {info.kind.name.lower()}, not active; diff "
                         "the active snapshot before committing it")
    plan = apply_plan(sn.mounts(key))
    if plan[0] != "dir":
        raise ImageError(f"diff of snapshot {key}: its mounts are neither an overlay nor a bind mount")
    parent_view = None
    with tempfile.TemporaryFile() as tmp:
        blob_w = _HashWriter(tmp)
        comp = _compressor(compression, blob_w)
        diff_w = _HashWriter(comp if comp is not None else blob_w)
        try:
            if plan[2] == "overlay":
                write_overlay_diff(plan[1], diff_w)
            elif not info.parent:
                write_tree(plan[1], diff_w)
            else:
                parent_view = f"diff-parent-{uuid.uuid4().hex[:12]}"
                pplan = apply_plan(sn.view(parent_view, info.parent))
                if pplan[0] != "dir":
                    raise ImageError(f"diff of snapshot {key}: cannot read its parent {info.parent}")
                write_tree_diff(pplan[1], plan[1], diff_w)
            if comp is not None:
                comp.close()
        finally:
            if parent_view:
                try:
                    sn.remove(parent_view)
                except Exception:
                    pass
        diff_id = "sha256:" + diff_w.h.hexdigest()
        digest = "sha256:" + blob_w.h.hexdigest()
        size = blob_w.size
        if not store.exists(digest):
            tmp.seek(0)
            w = store.writer(f"diff-{digest}", total=size, expected=digest)
            try:
                w.truncate(0)
                while buf := tmp.read(CHUNK):
                    w.write(buf)
                w.commit(size, digest, {UNCOMPRESSED_LABEL: diff_id})
            except Exception as e:
                if type(e).__name__ != "AlreadyExists":
                    raise
            finally:
                w.close()
    mt = {"gzip": mediatypes.OCI_LAYER_GZIP, "zstd": mediatypes.OCI_LAYER_ZSTD, "": mediatypes.OCI_LAYER}[compression]
    return {"mediaType": mt, "digest": digest, "size": size}, diff_id
