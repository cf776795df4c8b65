"""Digest identity and rootfs identity with real tools: skopeo, umoci, containerd's ctr."""

import hashlib
import json
import os
import stat
import subprocess
import uuid

import pytest

from corral.content.store import ContentStore
from corral.images.importexport import export_docker, export_oci, import_docker, import_oci
from corral.images.pull import pull
from corral.images.push import push
from corral.remotes.registry import HostConfig, Registry
from corral.snapshots.mount import mount_all, unmount_all
from corral.snapshots.native import NativeSnapshotter
from corral.snapshots.overlay import OverlaySnapshotter
from tests.helpers.containerd import Containerd
from tests.helpers.imagebuild import Image, busybox_layer, layer, write_oci_layout
from tests.helpers.registry import LocalRegistry
from tests.integration.test_pull import LAYER2, LAYER3

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]


def run(*cmd, timeout=120):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def registry():
    reg = LocalRegistry().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def image():
    return Image([busybox_layer(), layer(LAYER2), layer(LAYER3)])


@pytest.fixture
def store(tmpdir_root):
    return ContentStore(os.path.join(tmpdir_root, "content"))


def client(host):
    return Registry(hosts={host: HostConfig(plain_http=True)}, credentials={})


def repo():
    return "interop/" + uuid.uuid4().hex[:10]


def test_corral_push_skopeo_pull(registry, image, store, tmpdir_root):
    layout = os.path.join(tmpdir_root, "src-layout")
    write_oci_layout(layout, image)
    [(_, desc)] = import_oci(layout, store)
    name = f"{registry.host}/{repo()}:v1"
    push(name, desc, store, client(registry.host), chunk_size=100000)
    out = os.path.join(tmpdir_root, "skopeo-out")
    run("skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{out}:v1")
    index = json.load(open(os.path.join(out, "index.json")))
    assert index["manifests"][0]["digest"] == image.digest
    for d, data in image.blobs.items():
        assert open(os.path.join(out, "blobs", "sha256", d.split(":")[1]), "rb").read() == data


def test_skopeo_push_corral_pull(registry, image, store, tmpdir_root):
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, image, "v1")
    name = f"{registry.host}/{repo()}:v1"
    digestfile = os.path.join(tmpdir_root, "digest")
    run("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "--digestfile", digestfile,
        f"oci:{layout}:v1", f"docker://{name}")
    want = open(digestfile).read().strip()
    r = pull(name, store, client(registry.host))
    assert r.target["digest"] == want
    assert r.config["digest"] == image.config_desc["digest"]


def tree_facts(root):
    """path -> (kind, mode, uid, gid, content digest / link target / rdev, mtime for non-dirs)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(open(full, "rb").read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            else:
                extra = None
            mtime = None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra, mtime)
    return out


@pytest.mark.parametrize("kind", ["overlay", "native"])
def test_rootfs_equals_umoci(image, store, tmpdir_root, kind):
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, image, "v1")
    bundle = os.path.join(tmpdir_root, "umoci-bundle")
    run("umoci", "unpack", "--image", f"{layout}:v1", bundle)
    [(_, desc)] = import_oci(layout, store)
    cls = OverlaySnapshotter if kind == "overlay" else NativeSnapshotter
    sn = cls(os.path.join(tmpdir_root, kind))
    mnt = os.path.join(tmpdir_root, "mnt")
    os.mkdir(mnt)
    try:
        from corral.images.unpack import unpack
        chain = unpack(store, sn, image.layer_descs, image.config["rootfs"]["diff_ids"])
        mount_all(sn.view("view", chain), mnt)
        try:
            ours, theirs = tree_facts(mnt), tree_facts(os.path.join(bundle, "rootfs"))
            assert sorted(ours) == sorted(theirs)
            diffs = {p: (ours[p], theirs[p]) for p in ours if ours[p] != theirs[p]}
            assert diffs == {}
            assert os.getxattr(f"{mnt}/etc/attr", "user.corral") == \
                os.getxattr(f"{bundle}/rootfs/etc/attr", "user.corral")
        finally:
            unmount_all(mnt)
    finally:
        sn.close()


@pytest.fixture
def containerd():
    c = Containerd().start()
    yield c
    c.cleanup()


def test_ctr_pulls_corral_push_and_imports_exports(registry, image, store, tmpdir_root, containerd):
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, image)
    [(_, desc)] = import_oci(layout, store)
    name = f"{registry.host}/{repo()}:v1"
    push(name, desc, store, client(registry.host))
    containerd.ctr("images", "pull", "--plain-http", name, timeout=120)
    listing = containerd.ctr("images", "ls").stdout
    assert image.digest in listing
    # corral's OCI archive and docker-archive load into containerd with the same config
    oci_tar = os.path.join(tmpdir_root, "img-oci.tar")
    export_oci([("docker.io/corral/oci:v1", desc)], store, oci_tar)
    containerd.ctr("images", "import", oci_tar)
    assert image.digest in containerd.ctr("images", "ls").stdout
    docker_tar = os.path.join(tmpdir_root, "img-docker.tar")
    export_docker([("docker.io/corral/docker:v1", desc)], store, docker_tar)
    containerd.ctr("images", "import", docker_tar)
    out = containerd.ctr("images", "ls").stdout
    assert "docker.io/corral/docker:v1" in out
    # and what ctr exports, corral imports with the same digests
    ctr_tar = os.path.join(tmpdir_root, "from-ctr.tar")
    containerd.ctr("images", "export", ctr_tar, name)
    other = ContentStore(os.path.join(tmpdir_root, "other"))
    imported = import_oci(ctr_tar, other)
    assert [d["digest"] for _, d in imported] == [image.digest]
    assert imported[0][0] == name
    # docker-archive round trip through skopeo: same config and diff IDs
    skopeo_tar = os.path.join(tmpdir_root, "skopeo-docker.tar")
    run("skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{name}",
        f"docker-archive:{skopeo_tar}:corral/test:v1")
    third = ContentStore(os.path.join(tmpdir_root, "third"))
    [(dname, ddesc)] = import_docker(skopeo_tar, third)
    assert dname == "docker.io/corral/test:v1"
    m = json.load(third.open(ddesc["digest"]))
    assert m["config"]["digest"] == image.config_desc["digest"]
    from corral.images.unpack import unpack
    sn = OverlaySnapshotter(os.path.join(tmpdir_root, "ov"))
    try:
        assert unpack(third, sn, m["layers"], image.config["rootfs"]["diff_ids"])
    finally:
        sn.close()


def test_ctr_push_corral_pull(registry, store, tmpdir_root, containerd):
    from corral.busybox import make_oci_archive
    archive = os.path.join(tmpdir_root, "busybox.tar")
    digest = make_oci_archive(archive, "docker.io/library/busybox:latest")
    containerd.ctr("images", "import", archive)
    name = f"{registry.host}/{repo()}:ctr"
    containerd.ctr("images", "tag", "docker.io/library/busybox:latest", name)
    containerd.ctr("images", "push", "--plain-http", name, timeout=120)
    sn = OverlaySnapshotter(os.path.join(tmpdir_root, "ov"))
    try:
        r = pull(name, store, client(registry.host), sn)
        assert r.target["digest"] == digest
        # containerd and corral agree on the chain ID (the snapshot key of the unpacked image)
        containerd.ctr("images", "pull", "--plain-http", name, timeout=120)
        snaps = containerd.ctr("snapshots", "ls").stdout
        assert r.chain_id in snaps
    finally:
        sn.close()


def test_umoci_unpacks_corral_export(image, store, tmpdir_root):
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, image)
    [(_, desc)] = import_oci(layout, store)
    out = os.path.join(tmpdir_root, "exported")
    export_oci([("docker.io/corral/exported:v3", desc)], store, out, layout_dir=True)
    run("umoci", "unpack", "--image", f"{out}:v3", os.path.join(tmpdir_root, "bundle"))
    rootfs = os.path.join(tmpdir_root, "bundle", "rootfs")
    assert open(f"{rootfs}/etc/motd").read() == "changed\n"
    assert json.loads(run("skopeo", "inspect", "--raw", f"oci:{out}:v3")) == image.manifest
