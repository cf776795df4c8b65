"""Unpack: apply layers onto snapshots keyed by chain ID, as containerd does.

For layer i: if a committed snapshot named chain_id[i] exists, skip; otherwise prepare an
active snapshot on chain_id[i-1], apply the layer into it (the overlay upper dir directly, or
the mounted view), check its diff ID against the config, and commit it as chain_id[i]. On any
failure the active snapshot is removed: nothing half-made stays.
"""

import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

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


def _readinto(f, b):
    """f.readinto(b), or a read and a copy for readers without it."""
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        return readinto(b)
    data = f.read(len(b))
    b[:len(data)] = data
    return len(data)


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

    def readinto(self, b):
        n = _readinto(self.f, b)
        self.h.update(memoryview(b)[:n])
        self.size += n
        return n

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


def apply_layer(store, desc, target, mode="native", lowers=(), info=None, source=None):
    """Apply the layer blob `desc` from the content store (or the compressed stream `source`)
    onto a directory; returns its diff ID. `info` (a dict) receives root_entry: whether the
    layer set the root dir's metadata."""
    kind = mediatypes.compression(desc["mediaType"])
    with (source if source is not None else store.open(desc["digest"])) as raw:
        hashed = HashingReader(decompressor(kind, raw))
        try:
            applier = apply_tar(hashed, target, mode, lowers)
            hashed.drain()
            if info is not None:
                info["root_entry"] = applier.root_entry
        except (EOFError, OSError, ValueError) as e:
            if isinstance(e, UnsafeLayerError) or type(e).__name__ == "StreamBroken":
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


def unpack(store, snapshotter, layers, diff_ids, wait=None, workers=2, streams=None):
    """Unpack all layers; `wait(i)` (optional) blocks until layer i is in the content store.
    Returns the top chain ID."""
    if len(layers) != len(diff_ids):
        raise ImageError(f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff IDs")
    if getattr(snapshotter, "name", "") == "overlayfs" and workers > 1 and len(layers) > 1:
        return _unpack_overlay_parallel(store, snapshotter, layers, diff_ids, wait, workers, streams or {})
    chains = chain_ids(diff_ids)
    parent = ""
    for i, (desc, diff_id, chain) in enumerate(zip(layers, diff_ids, chains)):
        if not snapshot_exists(snapshotter, chain):
            if wait:
                wait(i)
            unpack_layer(store, snapshotter, desc, diff_id, chain, parent)
        parent = chain
    return chains[-1] if chains else ""


class _NoClose:
    def __init__(self, f):
        self.f = f

    def read(self, n=-1):
        return self.f.read(n)

    def readinto(self, b):
        return _readinto(self.f, b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _lower_dirs(snapshotter, chain):
    """The overlay lower dirs (top first) of committed snapshot `chain`."""
    key = f"lowers-{uuid.uuid4().hex[:12]}"
    mounts = snapshotter.view(key, chain)
    try:
        plan = apply_plan(mounts)
        if plan[0] == "dir":
            return [plan[1]]
        m = mounts[0]
        opts = dict(o.split("=", 1) for o in _field(m, "options") or [] if "=" in o)
        return [p for p in opts.get("lowerdir", "").split(":") if p]
    finally:
        _remove_quietly(snapshotter, key)


def _unpack_overlay_parallel(store, sn, layers, diff_ids, wait, workers, streams):
    """Overlay layers are independent upper dirs: apply several at once into staging dirs on
    the snapshotter's filesystem, then, in order, prepare each snapshot, move the staged tree
    in as its upper dir and commit. A layer that needs what lies below it (a parent dir it does
    not list, a hardlink into a lower layer) waits until those layers are committed."""
    chains = chain_ids(diff_ids)
    n = len(chains)
    k = 0
    while k < n and snapshot_exists(sn, chains[k]):
        k += 1
    if k == n:
        return chains[-1]
    base = _lower_dirs(sn, chains[k - 1]) if k else []
    uppers = {}
    done = [threading.Event() for _ in range(n)]
    failed = threading.Event()
    staging = tempfile.mkdtemp(prefix="corral-unpack-", dir=sn.root)
    from corral.snapshots.base import spread_subdirs
    spread_subdirs(staging)         # each staged layer becomes a snapshot: a hierarchy of its own

    def lowers_for(i):
        for j in range(k, i):
            done[j].wait()
            if failed.is_set():
                raise ImageError("unpack stopped: a lower layer failed")
        return [uppers[j] for j in reversed(range(k, i))] + base

    def stage(i):
        d = os.path.join(staging, str(i))
        got = None
        info = {}
        stream = streams.get(i)
        try:
            if stream is not None and stream.claim():
                # one pass: apply while downloading; the digest check below gates the commit
                from corral.images.stream import StreamBroken
                os.mkdir(d, 0o755)
                try:
                    got = apply_layer(store, layers[i], d, "overlay", lambda: lowers_for(i), info,
                                      source=_NoClose(stream))
                except StreamBroken:
                    shutil.rmtree(d)
                    got = None
                except BaseException:
                    stream.fail()       # the download must not wait for a reader that left
                    raise
            if got is None:
                if wait:
                    wait(i)     # the blob is in the store, its digest verified (or this raises)
                os.mkdir(d, 0o755)
                got = apply_layer(store, layers[i], d, "overlay", lambda: lowers_for(i), info)
        except UnsafeLayerError as e:
            if wait:
                wait(i)         # bytes that do not match the blob's digest: say that instead
            raise ImageError(f"layer {layers[i]['digest']}: {e}") from None
        if got != diff_ids[i]:
            if wait:
                wait(i)
            raise ImageError(f"layer {layers[i]['digest']}: its uncompressed content has digest {got} "
                             f"but the image config says {diff_ids[i]}; the image is corrupt")
        return d, info.get("root_entry", False)

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futs = [pool.submit(stage, i) for i in range(k, n)]
        parent = chains[k - 1] if k else ""
        for i in range(k, n):
            d, root_entry = futs[i - k].result()
            if wait:
                # a layer applied from the pipe is committed only once its download's digest
                # check has passed; the worker went on to the next layer meanwhile
                wait(i)
            key = f"extract-{uuid.uuid4().hex[:12]} {chains[i]}"
            mounts = sn.prepare(key, parent, labels={"containerd.io/snapshot.ref": chains[i]})
            try:
                plan = apply_plan(mounts)
                if plan[0] != "dir":
                    raise ImageError(f"overlay snapshot {key} has no upper dir to unpack into")
                upper = plan[1]
                if not root_entry:
                    st = os.stat(upper)
                    os.chown(d, st.st_uid, st.st_gid)
                    os.chmod(d, st.st_mode & 0o7777)
                os.rename(d, upper)         # replaces the fresh, empty upper dir
                sn.commit(chains[i], key)
            except BaseException:
                _remove_quietly(sn, key)
                raise
            uppers[i] = upper
            done[i].set()
            parent = chains[i]
        return chains[-1]
    except BaseException:
        failed.set()
        for e in done:
            e.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
