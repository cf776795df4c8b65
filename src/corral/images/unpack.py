"""Unpack: apply layers onto snapshots keyed by chain ID, as containerd does.

For layer i: if a committed snapshot named chain_id[i] exists, skip; otherwise prepare an
active snapshot on chain_id[i-1], apply the layer into it (the overlay upper dir directly, or
the mounted view), check its diff ID against the config, and commit it as chain_id[i]. On any
failure the active snapshot is removed: nothing half-made stays.
"""

import hashlib
import os
import tempfile
import uuid

from corral.archive.apply import UnsafeLayerError, apply_tar
from corral.archive.compression import decompressor
from corral.images import mediatypes
from corral.images.errors import ImageError

READ_SIZE = 1 << 20


def chain_ids(diff_ids):
    out = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class HashingReader:
    """Reads through `f`, hashing everything read (the layer's diff ID)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def read(self, n=-1):
        b = self.f.read(n)
        self.h.update(b)
        self.size += len(b)
        return b

    def drain(self):
        while self.read(READ_SIZE):
            pass

    def digest(self):
        return "sha256:" + self.h.hexdigest()


def _field(m, name):
    return m.get(name) if isinstance(m, dict) else getattr(m, name)


def apply_plan(mounts):
    """How to apply onto `mounts`: ('dir', path, mode, lowers) or ('mount', mounts)."""
    if len(mounts) == 1:
        m = mounts[0]
        mtype, source, options = _field(m, "type"), _field(m, "source"), list(_field(m, "options") or [])
        if mtype == "bind" or "bind" in options or "rbind" in options:
            return ("dir", source, "native", [])
        if mtype == "overlay":
            opts = dict(o.split("=", 1) for o in options if "=" in o)
            if "upperdir" in opts and all(os.path.isabs(p) for p in opts.get("lowerdir", "").split(":") if p):
                lowers = [p for p in opts.get("lowerdir", "").split(":") if p]
                return ("dir", opts["upperdir"], "overlay", lowers)
    return ("mount", mounts)


def apply_layer(store, desc, target, mode="native", lowers=()):
    """Apply the layer blob `desc` from the content store onto a directory; returns its diff ID."""
    kind = mediatypes.compression(desc["mediaType"])
    with store.open(desc["digest"]) as raw:
        hashed = HashingReader(decompressor(kind, raw))
        try:
            apply_tar(hashed, target, mode, lowers)
            hashed.drain()
        except (EOFError, OSError, ValueError) as e:
            if isinstance(e, UnsafeLayerError):
                raise
            raise UnsafeLayerError(f"layer data is corrupt: {e}") from None
    return hashed.digest()


def _apply_to_mounts(store, desc, mounts):
    from corral.snapshots.mount import mount_all, unmount_all
    d = tempfile.mkdtemp(prefix="corral-apply-")
    try:
        mount_all(mounts, d)
        try:
            return apply_layer(store, desc, d, "native")
        finally:
            unmount_all(d)
    finally:
        os.rmdir(d)


def unpack_layer(store, snapshotter, desc, diff_id, chain, parent):
    """Make the committed snapshot `chain` from layer `desc` over `parent` (a chain ID or "")."""
    key = f"extract-{uuid.uuid4().hex[:12]} {chain}"
    mounts = snapshotter.prepare(key, parent or "", labels={"containerd.io/snapshot.ref": chain})
    try:
        plan = apply_plan(mounts)
        if plan[0] == "dir":
            got = apply_layer(store, desc, plan[1], plan[2], plan[3])
        else:
            got = _apply_to_mounts(store, desc, plan[1])
        if got != diff_id:
            raise ImageError(f"layer {desc['digest']}: its uncompressed content has digest {got} but the "
                             f"image config says {diff_id}; the image is corrupt")
        snapshotter.commit(chain, key)
    except UnsafeLayerError as e:
        _remove_quietly(snapshotter, key)
        raise ImageError(f"layer {desc['digest']}: {e}") from None
    except BaseException:
        _remove_quietly(snapshotter, key)
        raise


def _remove_quietly(snapshotter, key):
    try:
        snapshotter.remove(key)
    except Exception:
        pass


def snapshot_exists(snapshotter, name):
    try:
        snapshotter.stat(name)
        return True
    except Exception as e:
        if type(e).__name__ in ("NotFound", "KeyError", "FileNotFoundError"):
            return False
        raise


def unpack(store, snapshotter, layers, diff_ids, wait=None):
    """Unpack all layers; `wait(i)` (optional) blocks until layer i is in the content store.
    Returns the top chain ID."""
    if len(layers) != len(diff_ids):
        raise ImageError(f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff IDs")
    chains = chain_ids(diff_ids)
    parent = ""
    for i, (desc, diff_id, chain) in enumerate(zip(layers, diff_ids, chains)):
        if not snapshot_exists(snapshotter, chain):
            if wait:
                wait(i)
            unpack_layer(store, snapshotter, desc, diff_id, chain, parent)
        parent = chain
    return chains[-1] if chains else ""
