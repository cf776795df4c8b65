"""Pull: resolve a reference, fetch its manifests, config and layers into the content store
(layers in parallel, each resumable from a partial ingest), unpack into snapshots (layer i is
applied as soon as it and the layers below are in), and record the image.

Ingest refs are deterministic ("layer-<digest>", ...) so a pull that was killed resumes where
its downloads stopped.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from corral.images import mediatypes
from corral.images.errors import ImageError
from corral.images.reference import parse

DEFAULT_WORKERS = 4
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"


@dataclass
class PullResult:
    name: str
    target: dict                 # the descriptor the name points to (index or manifest)
    manifest: dict               # the platform's manifest descriptor
    config: dict                 # the config descriptor
    layers: list
    diff_ids: list
    chain_id: str = ""
    labels: dict = field(default_factory=dict)


def _exists_error(e):
    return type(e).__name__ == "AlreadyExists"


class _Stopped(Exception):
    pass


class _StopSink:
    """Passes writes on until `stop` is set, then aborts the download (the partial ingest stays
    for a later pull to resume)."""

    def __init__(self, sink, stop):
        self.sink, self.stop = sink, stop

    @property
    def offset(self):
        return self.sink.offset

    def write(self, data):
        if self.stop.is_set():
            raise _Stopped()
        self.sink.write(data)

    def truncate(self, size):
        self.sink.truncate(size)


def fetch_into_store(registry, ref, store, desc, kind, labels=None, progress=None, stream=None, stop=None,
                     events=None):
    """Make sure blob `desc` is in the content store (resuming a partial ingest). A fresh
    download also feeds `stream` (a LayerStream), which is closed or broken at the end.
    events(kind, desc, status, offset), if given, hears "exists", "downloading" (with the bytes
    written so far, often) and "downloaded"."""
    digest = desc["digest"]
    if store.exists(digest):
        if stream:
            stream.fail()
        if events:
            events(kind, desc, "exists", desc.get("size") or 0)
        return
    try:
        w = store.writer(f"{kind}-{digest}", total=desc.get("size") or None, expected=digest)
    except Exception as e:
        if stream:
            stream.fail()
        if _exists_error(e):
            return
        raise
    try:
        sink = w
        if stream is not None:
            if w.offset == 0:
                from corral.images.stream import TeeSink
                sink = TeeSink(w, stream)
            else:
                stream.fail()       # resuming: the unpacker reads the finished blob instead
        if stop is not None:
            sink = _StopSink(sink, stop)
        if events:
            events(kind, desc, "downloading", w.offset)
            inner = progress

            def progress(n):
                if inner:
                    inner(n)
                events(kind, desc, "downloading", w.offset)
        try:
            registry.fetch_blob(ref, desc, sink, progress) if kind not in ("manifest", "index") else \
                _write_manifest(registry, ref, digest, w)
        except BaseException:
            if stream:
                stream.fail()
            raise
        if stream:
            stream.close()
        try:
            w.commit(desc.get("size") or None, digest, labels)
        except Exception as e:
            if not _exists_error(e):
                raise
        if events:
            events(kind, desc, "downloaded", desc.get("size") or 0)
    finally:
        w.close()


def _write_manifest(registry, ref, digest, w):
    data, _, _ = registry.fetch_manifest(ref, digest)
    w.truncate(0)
    w.write(data)


def _read_json(store, digest, what):
    with store.open(digest) as f:
        data = f.read()
    try:
        return json.loads(data)
    except ValueError:
        raise ImageError(f"{what} {digest} is not valid JSON") from None


def resolve_manifest(store, registry, ref, root, platform, fetch=True, events=None):
    """Walk from the root descriptor down to the platform's manifest; returns its descriptor."""
    desc = root
    for _ in range(3):
        mt = desc["mediaType"]
        if mediatypes.is_manifest(mt):
            return desc
        if not mediatypes.is_index(mt):
            raise ImageError(f"{ref}: {desc['digest']} has media type {mt!r}, not an image manifest or index")
        if fetch:
            fetch_into_store(registry, ref, store, desc, "index", events=events)
        index = _read_json(store, desc["digest"], "index")
        child = mediatypes.select_manifest(index, platform)
        if child is None:
            plats = ", ".join("/".join(filter(None, (m.get("platform", {}).get("os"),
                                                     m.get("platform", {}).get("architecture"),
                                                     m.get("platform", {}).get("variant"))))
                              for m in index.get("manifests", []))
            want = "/".join(filter(None, (platform.get("os"), platform.get("architecture"),
                                          platform.get("variant"))))
            raise ImageError(f"{ref}: no manifest for platform {want} (it has: {plats or 'none'})")
        desc = {k: child[k] for k in ("mediaType", "digest", "size") if k in child}
        desc.setdefault("mediaType", mediatypes.OCI_MANIFEST)
    raise ImageError(f"{ref}: indexes nested too deep")


def pull(reference, store, registry, snapshotter=None, platform=None, db=None, namespace="default",
         workers=DEFAULT_WORKERS, progress=None, snapshotter_name="overlayfs", unpack_workers=2, events=None):
    """Pull `reference` into `store`; unpack into `snapshotter` if given; record it in `db`.
    Raises ImageError (or the registry's / store's own errors) with a one-line message.
    `progress(n)` hears every chunk of layer bytes; `events` per blob, see fetch_into_store."""
    ref = parse(reference) if isinstance(reference, str) else reference
    if isinstance(platform, str):
        platform = mediatypes.parse_platform(platform)
    platform = platform or mediatypes.host_platform()
    from corral.remotes.registry import RegistryError
    try:
        root = registry.resolve(ref)
        mdesc = resolve_manifest(store, registry, ref, root, platform, events=events)
        fetch_into_store(registry, ref, store, mdesc, "manifest", events=events)
        manifest = _read_json(store, mdesc["digest"], "manifest")
        cdesc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(cdesc, dict) or not isinstance(layers, list):
            raise ImageError(f"{ref}: manifest {mdesc['digest']} has no config or layers")
        for l in layers:
            mediatypes.compression(l.get("mediaType", ""))      # refuse unknown layer types early
        fetch_into_store(registry, ref, store, cdesc, "config", events=events)
        config = _read_json(store, cdesc["digest"], "config")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise ImageError(f"{ref}: the manifest has {len(layers)} layers but the config lists "
                             f"{len(diff_ids)} diff IDs")
        chain = _fetch_and_unpack(registry, ref, store, snapshotter, layers, diff_ids, workers, progress,
                                  unpack_workers, events)
    except RegistryError as e:
        raise ImageError(f"pull {ref}: {e}") from None
    except ValueError as e:
        raise ImageError(f"pull {ref}: {e}") from None
    result = PullResult(str(ref), root, mdesc, cdesc, layers, diff_ids, chain)
    _label_content(store, result, snapshotter_name)
    if db is not None:
        record_image(db, namespace, result)
    return result


def _fetch_and_unpack(registry, ref, store, snapshotter, layers, diff_ids, workers, progress,
                      unpack_workers, events=None):
    from corral.images.unpack import chain_ids, snapshot_exists, unpack
    chains = chain_ids(diff_ids)
    # with the whole chain already unpacked, only the blobs are needed (and maybe not even those)
    need = [i for i, l in enumerate(layers) if not store.exists(l["digest"])]
    if snapshotter is not None and chains and snapshot_exists(snapshotter, chains[-1]):
        need = []
    if events:
        for i, l in enumerate(layers):
            if i not in need:
                events("layer", l, "exists", l.get("size") or 0)
    futures = {}
    stop = threading.Event()
    streams = {}
    if getattr(snapshotter, "name", "") == "overlayfs" and unpack_workers > 1:
        from corral.images.stream import LayerStream
        streams = {i: LayerStream() for i in need}
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(need) or 1)))
    try:
        for i in need:
            futures[i] = pool.submit(_fetch_layer, registry, ref, store, layers[i], diff_ids[i], progress, stop,
                                     streams.get(i), events)

        def wait(i):
            if i in futures:
                futures[i].result()

        if snapshotter is not None:
            chain = unpack(store, snapshotter, layers, diff_ids, wait, unpack_workers, streams)
        else:
            chain = chains[-1] if chains else ""
        for f in futures.values():
            f.result()
        return chain
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fetch_layer(registry, ref, store, desc, diff_id, progress, stop, stream, events=None):
    if stop.is_set():
        if stream:
            stream.fail()
        return
    try:
        fetch_into_store(registry, ref, store, desc, "layer", {UNCOMPRESSED_LABEL: diff_id}, progress, stream,
                         stop, events)
    except _Stopped:
        pass


def _label_content(store, r, snapshotter_name):
    """containerd's GC references between blobs (and to the snapshot), on the shared store."""
    try:
        labels = {"containerd.io/gc.ref.content.config": r.config["digest"]}
        for i, l in enumerate(r.layers):
            labels[f"containerd.io/gc.ref.content.l.{i}"] = l["digest"]
        store.update(r.manifest["digest"], labels, [f"labels.{k}" for k in labels])
        if r.chain_id:
            k = f"containerd.io/gc.ref.snapshot.{snapshotter_name}"
            store.update(r.config["digest"], {k: r.chain_id}, [f"labels.{k}"])
        if r.target["digest"] != r.manifest["digest"]:
            k = "containerd.io/gc.ref.content.m.0"
            store.update(r.target["digest"], {k: r.manifest["digest"]}, [f"labels.{k}"])
    except Exception as e:
        if type(e).__name__ != "NotFound":
            raise


def record_image(db, namespace, r):
    from corral.metadata.types import Descriptor, Image
    target = Descriptor(r.target["mediaType"], r.target["digest"], r.target["size"])
    digests = [r.target["digest"], r.manifest["digest"], r.config["digest"]] + [l["digest"] for l in r.layers]
    for d in dict.fromkeys(digests):
        db.add_content(namespace, d, exist_ok=True)
    img = Image(r.name, target)
    try:
        db.create_image(namespace, img)
    except Exception as e:
        if not _exists_error(e):
            raise
        db.update_image(namespace, img, ["target"])
