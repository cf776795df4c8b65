"""Push: upload an image's blobs from the content store (skipping those the registry has,
mounting from another repository when told), then its manifests, the root one by tag."""

import json
from concurrent.futures import ThreadPoolExecutor

from corral.images import mediatypes
from corral.images.errors import ImageError
from corral.images.reference import parse


def walk(store, desc):
    """(blobs, manifests) reachable from `desc` in the store: blobs are layer and config
    descriptors, manifests are (desc, bytes) children first, the root last. Blobs that an
    index's other platforms need must be present too."""
    blobs, manifests = {}, []

    def visit(d):
        mt = d["mediaType"]
        try:
            with store.open(d["digest"]) as f:
                data = f.read()
        except Exception as e:
            raise ImageError(f"{d['digest']} ({mt}) is not in the content store: {e}") from None
        doc = json.loads(data)
        if mediatypes.is_index(mt):
            for child in doc.get("manifests", []):
                visit({k: child[k] for k in ("mediaType", "digest", "size")})
        elif mediatypes.is_manifest(mt):
            for b in [doc["config"]] + list(doc.get("layers", [])):
                blobs[b["digest"]] = b
        else:
            raise ImageError(f"{d['digest']}: cannot push media type {mt!r}")
        manifests.append((d, data))

    visit(desc)
    return list(blobs.values()), manifests


class _CountingReader:
    """A blob file that reports the bytes read so far (http.client reads the upload body)."""

    def __init__(self, f, report):
        self.f, self.report, self.done = f, report, 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.done += len(data)
        self.report(self.done)
        return data

    def seek(self, offset, whence=0):
        pos = self.f.seek(offset, whence)
        self.done = pos
        return pos

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _push_blob(registry, ref, store, b, chunk_size, mount_path, events):
    if events is None:
        return registry.push_blob(ref, b, lambda: store.open(b["digest"]), chunk_size, mount_path)
    kind = "config" if b.get("mediaType") in (mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG) else "layer"
    events(kind, b, "uploading", 0)
    got = registry.push_blob(ref, b, lambda: _CountingReader(store.open(b["digest"]),
                                                             lambda n: events(kind, b, "uploading", n)),
                             chunk_size, mount_path)
    events(kind, b, got, b.get("size") or 0)
    return got


def push(reference, desc, store, registry, chunk_size=0, mount_from=None, workers=4, events=None):
    """Push the image `desc` (a root descriptor in `store`) as `reference`. Returns a dict of
    what happened to each blob ('exists', 'mounted' or 'uploaded'). events(kind, desc, status,
    offset), if given, hears "uploading" (with the bytes sent so far) and that outcome."""
    ref = parse(reference) if isinstance(reference, str) else reference
    from corral.remotes.registry import RegistryError
    blobs, manifests = walk(store, desc)
    mount_path = parse(mount_from).path if mount_from and "/" in mount_from and "." in mount_from.split("/")[0] \
        else mount_from
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(blobs)))) as pool:
            futs = {b["digest"]: pool.submit(_push_blob, registry, ref, store, b, chunk_size, mount_path, events)
                    for b in blobs}
            result = {d: f.result() for d, f in futs.items()}
        for d, data in manifests[:-1]:
            registry.push_manifest(ref, d["digest"], data, d["mediaType"])
        root, data = manifests[-1]
        got = registry.push_manifest(ref, ref.tag or root["digest"], data, root["mediaType"])
    except RegistryError as e:
        raise ImageError(f"push {ref}: {e}") from None
    if got != root["digest"]:
        raise ImageError(f"push {ref}: the registry stored the manifest as {got}, not {root['digest']}")
    return result
