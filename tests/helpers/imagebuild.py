"""Build test images in memory: layers from tar entry lists or directory trees (busybox),
then write them as an OCI layout or push them to a registry with plain HTTP.

    img = Image([busybox_layer(), layer([("file", "etc/motd", b"hi")])])
    img.push("127.0.0.1:5000", "test/app", "v1")          # returns the manifest digest
"""

import hashlib
import http.client
import io
import json
import os
import tarfile
import tempfile
import urllib.parse

from corral.archive.compression import compress
from corral.archive.create import write_tree
from corral.busybox import make_rootfs
from corral.images import mediatypes as mt


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(entries, mtime=1700000000):
    """A layer tar from entries: ("dir", name[, mode]), ("file", name, data[, mode[, uid, gid]]),
    ("symlink", name, target), ("hardlink", name, target), ("fifo", name),
    ("chardev", name, major, minor), ("whiteout", "dir/name"), ("opaque", "dir"),
    ("xattr-file", name, data, {xattr: value})."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            kind, name = e[0], e[1]
            if kind == "whiteout":
                d, _, base = name.rpartition("/")
                name = (d + "/" if d else "") + ".wh." + base
                kind = "file"
                e = (kind, name, b"")
            elif kind == "opaque":
                name = name.rstrip("/") + "/.wh..wh..opq"
                e = ("file", name, b"")
                kind = "file"
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            data = None
            if kind in ("file", "xattr-file"):
                data = e[2]
                info.size = len(data)
                info.mode = e[3] if len(e) > 3 and kind == "file" else 0o644
                if len(e) > 5 and kind == "file":
                    info.uid, info.gid = e[4], e[5]
                if kind == "xattr-file":
                    info.pax_headers = {"SCHILY.xattr." + k: v for k, v in e[3].items()}
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = e[2] if len(e) > 2 else 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = e[2]
                info.mode = 0o777
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = e[2]
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                info.mode = 0o600
            elif kind == "chardev":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = e[2], e[3]
                info.mode = 0o666
            else:
                raise ValueError(kind)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tree_layer(root):
    buf = io.BytesIO()
    write_tree(root, buf, fixed_mtime=1700000000)
    return buf.getvalue()


def busybox_layer():
    with tempfile.TemporaryDirectory() as tmp:
        make_rootfs(tmp)
        return tree_layer(tmp)


class Image:
    def __init__(self, layers, compression="gzip", docker=False, arch=None, os_name="linux",
                 variant=None):
        self.raw_layers = list(layers)
        self.compression = compression
        self.docker = docker
        plat = mt.host_platform()
        self.platform = {"os": os_name, "architecture": arch or plat["architecture"]}
        if variant:
            self.platform["variant"] = variant
        self.blobs = {}
        self.layer_descs = []
        for raw in self.raw_layers:
            blob = compress(compression, raw)
            if docker:
                media = mt.DOCKER_LAYER_GZIP if compression == "gzip" else mt.DOCKER_LAYER
            else:
                media = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "": mt.OCI_LAYER}[compression]
            self.layer_descs.append(self._add(blob, media))
        self.config = {
            **self.platform,
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(r) for r in self.raw_layers]},
        }
        cfg = json.dumps(self.config, sort_keys=True).encode()
        self.config_desc = self._add(cfg, mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
        self.manifest = {"schemaVersion": 2,
                         "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
                         "config": self.config_desc, "layers": self.layer_descs}
        self.manifest_bytes = json.dumps(self.manifest, indent=2).encode()
        self.manifest_desc = {"mediaType": self.manifest["mediaType"], "digest": sha(self.manifest_bytes),
                              "size": len(self.manifest_bytes)}
        self.digest = self.manifest_desc["digest"]

    def _add(self, data, media):
        d = sha(data)
        self.blobs[d] = data
        return {"mediaType": media, "digest": d, "size": len(data)}

    def push(self, host, repo, tag, skip_blobs=(), ssl_context=None):
        for d, data in self.blobs.items():
            if d not in skip_blobs:
                push_blob(host, repo, d, data, ssl_context)
        put_manifest(host, repo, tag, self.manifest_bytes, self.manifest["mediaType"], ssl_context)
        return self.digest


def index_of(images, docker=False):
    """An index (or Docker manifest list) over several images (one per platform)."""
    doc = {"schemaVersion": 2, "mediaType": mt.DOCKER_LIST if docker else mt.OCI_INDEX,
           "manifests": [{**img.manifest_desc, "platform": img.platform} for img in images]}
    return json.dumps(doc, indent=2).encode(), doc["mediaType"]


def push_index(host, repo, tag, images, docker=False):
    for img in images:
        img.push(host, repo, img.digest)
    data, media = index_of(images, docker)
    put_manifest(host, repo, tag, data, media)
    return sha(data)


def _req(host, method, path, body=b"", headers=None, ssl_context=None):
    if ssl_context is not None:
        c = http.client.HTTPSConnection(host, timeout=60, context=ssl_context)
    else:
        c = http.client.HTTPConnection(host, timeout=60)
    c.request(method, path, body=body, headers={"Content-Length": str(len(body)), **(headers or {})})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def push_blob(host, repo, digest, data, ssl_context=None):
    r, _ = _req(host, "POST", f"/v2/{repo}/blobs/uploads/", ssl_context=ssl_context)
    assert r.status == 202, r.status
    loc = r.getheader("Location")
    u = urllib.parse.urlsplit(loc)
    q = (u.query + "&" if u.query else "") + "digest=" + digest
    r, body = _req(host, "PUT", f"{u.path}?{q}", data, {"Content-Type": "application/octet-stream"},
                   ssl_context)
    assert r.status == 201, (r.status, body)


def put_manifest(host, repo, tag, data, media, ssl_context=None):
    r, body = _req(host, "PUT", f"/v2/{repo}/manifests/{tag}", data, {"Content-Type": media}, ssl_context)
    assert r.status == 201, (r.status, body)


def write_oci_layout(path, image, tag="latest"):
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    blobs = dict(image.blobs)
    blobs[image.digest] = image.manifest_bytes
    for d, data in blobs.items():
        with open(os.path.join(path, "blobs", "sha256", d.split(":")[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {**image.manifest_desc, "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
