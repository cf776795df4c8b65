"""Import and export: OCI image layouts (a directory or a tar of one: oci-layout, index.json,
blobs/<alg>/<hex>) and docker-archive (`docker save`: manifest.json, repositories, config
<hex>.json and <id>/layer.tar).

Import copies every blob into the content store through verified ingests and returns the
images found as [(name, root descriptor)]; the caller records and unpacks them. Export reads
from the content store only.
"""

import hashlib
import io
import json
import os
import re
import tarfile

from corral.archive.compression import decompressor, detect
from corral.images import mediatypes
from corral.images.errors import ImageError
from corral.images.reference import parse

_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


# --- sources: a directory or a tar file, read the same way ---------------------------------

class _Source:
    def __init__(self, path):
        self.path = path
        self.tar = None
        self.members = {}
        if os.path.isfile(path):
            try:
                self.tar = tarfile.open(path, "r:*")
            except tarfile.TarError as e:
                raise ImageError(f"import {path}: not a tar archive ({e})") from None
            for m in self.tar.getmembers():
                self.members[os.path.normpath(m.name).lstrip("/")] = m
        elif not os.path.isdir(path):
            raise ImageError(f"import {path}: no such file or directory")

    def open(self, name):
        name = os.path.normpath(name).lstrip("/")
        if name.startswith(".."):
            raise ImageError(f"import {self.path}: entry {name!r} points outside the archive")
        if self.tar is None:
            full = os.path.join(self.path, name)
            if os.path.islink(full) and not os.path.realpath(full).startswith(os.path.realpath(self.path) + "/"):
                raise ImageError(f"import {self.path}: {name} is a symlink out of the layout")
            try:
                return open(full, "rb")
            except FileNotFoundError:
                raise ImageError(f"import {self.path}: {name} is missing") from None
        m = self.members.get(name)
        while m is not None and m.issym():         # docker save links identical layers
            m = self.members.get(os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname)))
        if m is None or not m.isfile():
            raise ImageError(f"import {self.path}: {name} is missing from the archive")
        return self.tar.extractfile(m)

    def read(self, name, limit=16 << 20):
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"import {self.path}: {name} is larger than {limit} bytes")
        return data

    def exists(self, name):
        name = os.path.normpath(name).lstrip("/")
        if self.tar is None:
            return os.path.exists(os.path.join(self.path, name))
        return name in self.members

    def close(self):
        if self.tar:
            self.tar.close()


def _ingest(store, f, digest=None, size=None):
    """Copy a file object into the store; verify `digest` if given. Returns (digest, size)."""
    if digest and store.exists(digest):
        return digest, store.info(digest).size
    h = hashlib.sha256()
    w = store.writer(f"import-{digest or os.urandom(8).hex()}", total=size, expected=digest)
    try:
        w.truncate(0)
        n = 0
        while buf := f.read(CHUNK):
            w.write(buf)
            h.update(buf)
            n += len(buf)
        got = "sha256:" + h.hexdigest()
        try:
            w.commit(n, digest or got)
        except Exception as e:
            if type(e).__name__ != "AlreadyExists":
                raise ImageError(f"import: blob {digest or got}: {e}") from None
        return got, n
    finally:
        w.close()


# --- OCI layout -------------------------------------------------------------------------

def _children(doc, mt):
    if mediatypes.is_index(mt):
        return list(doc.get("manifests", []))
    if mediatypes.is_manifest(mt):
        return [doc["config"]] + list(doc.get("layers", []))
    return []


def import_oci(path, store, base_name=None):
    """Import an OCI layout dir or archive. Image names come from io.containerd.image.name,
    else from org.opencontainers.image.ref.name (a full reference, or a tag put on
    `base_name`). Returns [(name, descriptor)] (name "" when the entry has none)."""
    src = _Source(path)
    try:
        if not src.exists("index.json"):
            raise ImageError(f"import {path}: no index.json: not an OCI image layout")
        index = json.loads(src.read("index.json"))
        out = []

        def copy(desc, depth=0):
            if not _DIGEST.match(desc.get("digest", "")):
                raise ImageError(f"import {path}: bad digest {desc.get('digest')!r} in the layout")
            alg, _, hexd = desc["digest"].partition(":")
            with src.open(f"blobs/{alg}/{hexd}") as f:
                _ingest(store, f, desc["digest"], desc.get("size"))
            mt = desc.get("mediaType", "")
            if mediatypes.is_index(mt) or mediatypes.is_manifest(mt):
                with store.open(desc["digest"]) as f:
                    doc = json.loads(f.read())
                for child in _children(doc, mt):
                    if mediatypes.is_index(mt) and not src.exists(
                            "blobs/" + child["digest"].replace(":", "/")):
                        continue        # a platform the layout does not carry
                    copy(child, depth + 1)

        for desc in index.get("manifests", []):
            copy(desc)
            ann = desc.get("annotations") or {}
            name = ann.get(NAME_ANNOTATION, "")
            ref_name = ann.get(REF_NAME_ANNOTATION, "")
            if not name and ref_name:
                if "/" in ref_name or "@" in ref_name or (":" in ref_name and not base_name):
                    name = ref_name
                elif base_name:
                    name = f"{base_name}:{ref_name}"
            if name:
                try:
                    name = str(parse(name))
                except ValueError:
                    pass
            out.append((name, {k: desc[k] for k in ("mediaType", "digest", "size")}))
        return out
    finally:
        src.close()


def _reachable(store, desc, platform=None, all_platforms=True):
    """Descriptors reachable from `desc` that the store holds (index children missing from the
    store are skipped; anything a present manifest needs must be there)."""
    out = [desc]
    mt = desc["mediaType"]
    if mediatypes.is_index(mt) or mediatypes.is_manifest(mt):
        with store.open(desc["digest"]) as f:
            doc = json.loads(f.read())
        for child in _children(doc, mt):
            if mediatypes.is_index(mt) and not store.exists(child["digest"]):
                continue
            if not store.exists(child["digest"]):
                raise ImageError(f"export: {child['digest']} (needed by {desc['digest']}) is not in the "
                                 "content store; pull the image again")
            out += _reachable(store, {k: child[k] for k in ("mediaType", "digest", "size")})
    return out


def _tar_add_file(tar, name, f, size):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    tar.addfile(info, f)


def _tar_add_bytes(tar, name, data):
    _tar_add_file(tar, name, io.BytesIO(data), len(data))


class _TarSink:
    def __init__(self, out):
        self.tmp = out + ".tmp"
        self.out = out
        self.tar = tarfile.open(self.tmp, "w", format=tarfile.PAX_FORMAT)

    def put(self, name, f, size):
        _tar_add_file(self.tar, name, f, size)

    def finish(self):
        self.tar.close()
        os.replace(self.tmp, self.out)

    def abort(self):
        self.tar.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


class _DirSink:
    def __init__(self, out):
        if os.path.exists(os.path.join(out, "index.json")):
            raise ImageError(f"export: {out} already holds an image layout; choose an empty directory")
        os.makedirs(out, exist_ok=True)
        self.out = out
        self.made = []

    def put(self, name, f, size):
        path = os.path.join(self.out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as w:
            while buf := f.read(CHUNK):
                w.write(buf)
        self.made.append(path)

    def finish(self):
        pass

    def abort(self):
        for p in self.made:
            os.unlink(p)


def export_oci(images, store, out, layout_dir=False):
    """Write [(name, descriptor)] as an OCI image archive (a tar) at `out`, or as an OCI image
    layout directory when layout_dir is true."""
    seen = set()
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}
    sink = _DirSink(out) if layout_dir else _TarSink(out)
    try:
        layout = b'{"imageLayoutVersion":"1.0.0"}'
        sink.put("oci-layout", io.BytesIO(layout), len(layout))
        for name, desc in images:
            for d in _reachable(store, desc):
                if d["digest"] in seen:
                    continue
                seen.add(d["digest"])
                alg, _, hexd = d["digest"].partition(":")
                with store.open(d["digest"]) as f:
                    sink.put(f"blobs/{alg}/{hexd}", f, store.info(d["digest"]).size)
            ann = {}
            if name:
                ref = parse(name)
                ann = {NAME_ANNOTATION: str(ref), REF_NAME_ANNOTATION: ref.tag or ref.digest}
            index["manifests"].append({**{k: desc[k] for k in ("mediaType", "digest", "size")},
                                       "annotations": ann})
        data = json.dumps(index).encode()
        sink.put("index.json", io.BytesIO(data), len(data))
        sink.finish()
    except BaseException:
        sink.abort()
        raise


# --- docker-archive ---------------------------------------------------------------------

def import_docker(path, store):
    """Import a `docker save` archive: each image gets a Docker schema2 manifest made here
    (layers keep their compression). Returns [(name, manifest descriptor)] per RepoTag."""
    src = _Source(path)
    try:
        if not src.exists("manifest.json"):
            raise ImageError(f"import {path}: no manifest.json: not a docker-archive")
        entries = json.loads(src.read("manifest.json"))
        out = []
        for e in entries:
            with src.open(e["Config"]) as f:
                cdigest, csize = _ingest(store, f)
            layers = []
            for lname in e["Layers"]:
                with src.open(lname) as f:
                    head = f.read(4)
                with src.open(lname) as f:
                    ldigest, lsize = _ingest(store, f)
                kind = detect(head)
                mt = {"gzip": mediatypes.DOCKER_LAYER_GZIP, "zstd": mediatypes.OCI_LAYER_ZSTD,
                      "": mediatypes.DOCKER_LAYER}[kind]
                layers.append({"mediaType": mt, "digest": ldigest, "size": lsize})
            manifest = {"schemaVersion": 2, "mediaType": mediatypes.DOCKER_MANIFEST,
                        "config": {"mediaType": mediatypes.DOCKER_CONFIG, "digest": cdigest, "size": csize},
                        "layers": layers}
            data = json.dumps(manifest, indent=3).encode()
            mdigest, msize = _ingest(store, io.BytesIO(data))
            desc = {"mediaType": mediatypes.DOCKER_MANIFEST, "digest": mdigest, "size": msize}
            for tag in e.get("RepoTags") or [""]:
                out.append((str(parse(tag)) if tag else "", desc))
        return out
    finally:
        src.close()


def _platform_manifest(store, desc, platform=None):
    mt = desc["mediaType"]
    if mediatypes.is_manifest(mt):
        return desc
    with store.open(desc["digest"]) as f:
        index = json.loads(f.read())
    present = {"manifests": [m for m in index.get("manifests", []) if store.exists(m["digest"])]}
    child = mediatypes.select_manifest(present, platform)
    if child is None:
        raise ImageError(f"export: no manifest of {desc['digest']} for this platform is in the store")
    return _platform_manifest(store, {k: child[k] for k in ("mediaType", "digest", "size")}, platform)


def export_docker(images, store, out, platform=None):
    """Write a docker-archive of [(name, descriptor)]: uncompressed layer tars as `docker save`
    writes them, so `docker load` and `ctr import` read it."""
    entries, repos, written = [], {}, set()
    tmp = out + ".tmp"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, desc in images:
                mdesc = _platform_manifest(store, desc, platform)
                with store.open(mdesc["digest"]) as f:
                    manifest = json.loads(f.read())
                chex = manifest["config"]["digest"].split(":", 1)[1]
                with store.open(manifest["config"]["digest"]) as f:
                    config = json.loads(f.read())
                diff_ids = config.get("rootfs", {}).get("diff_ids", [])
                if f"{chex}.json" not in written:
                    with store.open(manifest["config"]["digest"]) as f:
                        _tar_add_file(tar, f"{chex}.json", f, manifest["config"]["size"])
                    written.add(f"{chex}.json")
                layer_names = []
                for l, diff in zip(manifest["layers"], diff_ids):
                    lname = f"{diff.split(':', 1)[1]}/layer.tar"
                    layer_names.append(lname)
                    if lname in written:
                        continue
                    written.add(lname)
                    _add_uncompressed_layer(tar, store, l, diff, lname)
                tags = []
                if name:
                    ref = parse(name)
                    if ref.tag:
                        tags.append(ref.familiar().split("@")[0])
                        repos.setdefault(ref.familiar().rsplit(":", 1)[0], {})[ref.tag] = \
                            layer_names[-1].split("/")[0] if layer_names else chex
                entries.append({"Config": f"{chex}.json", "RepoTags": tags, "Layers": layer_names})
            _tar_add_bytes(tar, "manifest.json", json.dumps(entries).encode())
            _tar_add_bytes(tar, "repositories", json.dumps(repos).encode())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _add_uncompressed_layer(tar, store, desc, diff_id, arcname):
    kind = mediatypes.compression(desc["mediaType"])
    if kind == "":
        with store.open(desc["digest"]) as f:
            _tar_add_file(tar, arcname, f, desc["size"])
        return
    # the uncompressed size is needed up front: inflate once to count and hash, then stream
    h, size = hashlib.sha256(), 0
    with store.open(desc["digest"]) as raw:
        d = decompressor(kind, raw)
        while buf := d.read(CHUNK):
            h.update(buf)
            size += len(buf)
    if "sha256:" + h.hexdigest() != diff_id:
        raise ImageError(f"export: layer {desc['digest']} does not match its diff ID {diff_id}")
    with store.open(desc["digest"]) as raw:
        _tar_add_file(tar, arcname, decompressor(kind, raw), size)


# --- load: detect the format, import, record, unpack -----------------------------------

def load(path, store, snapshotter=None, db=None, namespace="default", platform=None, base_name=None):
    """Import an OCI layout/archive or a docker-archive, record the named images in `db` and
    unpack each one's platform manifest into `snapshotter`. Returns [(name, descriptor)]."""
    src = _Source(path)
    try:
        is_oci = src.exists("index.json")
        is_docker = src.exists("manifest.json")
    finally:
        src.close()
    if is_oci:
        images = import_oci(path, store, base_name)
    elif is_docker:
        images = import_docker(path, store)
    else:
        raise ImageError(f"load {path}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)")
    from corral.images.pull import PullResult, record_image
    from corral.images.unpack import unpack
    for name, desc in images:
        if snapshotter is None and (db is None or not name):
            continue
        mdesc = _platform_manifest(store, desc, platform)
        with store.open(mdesc["digest"]) as f:
            manifest = json.loads(f.read())
        with store.open(manifest["config"]["digest"]) as f:
            diff_ids = json.loads(f.read()).get("rootfs", {}).get("diff_ids", [])
        chain = unpack(store, snapshotter, manifest["layers"], diff_ids) if snapshotter is not None else ""
        if db is not None and name:
            record_image(db, namespace, PullResult(name, desc, mdesc, manifest["config"],
                                                   manifest["layers"], diff_ids, chain))
    return images
