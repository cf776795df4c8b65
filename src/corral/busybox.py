"""Build small root filesystems from the host's static busybox (Debian `busybox-static`).

Tests, the set-up script and benchmarks use these trees so that nothing needs the network.
"""

import json
import os
import shutil
import subprocess

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def host_busybox():
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            return path
    raise FileNotFoundError("busybox not found: install the Debian package busybox-static")


def applets(busybox):
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_rootfs(root, busybox=None):
    """Lay out a minimal busybox root filesystem in `root` (created if missing)."""
    busybox = busybox or host_busybox()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "tmp", "root",
              "var", "run", "home"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    target = os.path.join(root, "bin", "busybox")
    shutil.copy2(busybox, target)
    os.chmod(target, 0o755)
    for applet in applets(busybox):
        link = os.path.join(root, applet.lstrip("/"))
        if os.path.lexists(link) or applet == "bin/busybox":
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
                      "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n",
        "etc/group": "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
        "etc/hostname": "busybox\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n",
    }
    for rel, text in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    return root


def make_bundle(bundle, args=("sh",), terminal=False, spec_changes=None, rootfs_readonly=False):
    """Create an OCI bundle (config.json + busybox rootfs) and return its config dict."""
    from corral.oci.specgen import default_spec

    os.makedirs(bundle, exist_ok=True)
    make_rootfs(os.path.join(bundle, "rootfs"))
    spec = default_spec(args=list(args), terminal=terminal)
    spec["root"]["readonly"] = rootfs_readonly
    if spec_changes:
        spec_changes(spec)
    write_spec(bundle, spec)
    return spec


def write_spec(bundle, spec):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)


def _tar_tree(root, out_fileobj):
    """Write `root` as a layer tar (sorted, owned by root, fixed mtime) to out_fileobj."""
    import tarfile

    with tarfile.open(fileobj=out_fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, root))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isfile():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def make_oci_archive(path, name="docker.io/library/busybox:latest", arch=None):
    """Write an OCI image archive (oci-layout, index.json, blobs/) of a one-layer busybox
    image to `path`, loadable by `ctr images import` and `corral load`. Returns the
    manifest digest."""
    import gzip
    import hashlib
    import io
    import platform
    import tarfile
    import tempfile

    arch = arch or {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    blobs = {}

    def add(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    with tempfile.TemporaryDirectory() as tmp:
        make_rootfs(tmp)
        raw = io.BytesIO()
        _tar_tree(tmp, raw)
    layer_tar = raw.getvalue()
    layer_gz = gzip.compress(layer_tar, compresslevel=6, mtime=0)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created_by": "corral busybox image from the host's busybox-static"}],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": add(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": add(layer_gz), "size": len(layer_gz)}],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = add(manifest_bytes)
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": manifest["mediaType"], "digest": manifest_digest,
                       "size": len(manifest_bytes),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": tag},
                       "platform": {"architecture": arch, "os": "linux"}}],
    }
    with tarfile.open(path, "w") as tar:
        def put(arcname, data):
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for digest, data in sorted(blobs.items()):
            put("blobs/sha256/" + digest.split(":", 1)[1], data)
    return manifest_digest
