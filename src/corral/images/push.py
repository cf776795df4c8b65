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


def push(reference, desc, store, registry, chunk_size=0, mount_from=None, workers=4):
    """Push the image `desc` (a root descriptor in `store`) as `reference`. Returns a dict of
    what happened to each blob ('exists', 'mounted' or 'uploaded')."""
    ref = parse(reference) if isinstance(reference, str) else reference
    from corral.remotes.registry import RegistryError
    blobs, manifests = walk(store, desc)
    mount_path = parse(mount_from).path if mount_from and "/" in mount_from and "." in mount_from.split("/")[0] \
        else mount_from
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(blobs)))) as pool:
            futs = {b["digest"]: pool.submit(registry.push_blob, ref, b,
                                             lambda d=b["digest"]: store.open(d), chunk_size, mount_path)
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
