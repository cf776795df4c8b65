"""Import and export (OCI layout/archive, docker-archive), round trips and bad archives."""

import json
import os
import tarfile

import pytest

from corral.content.store import ContentStore
from corral.images.errors import ImageError
from corral.images.importexport import export_docker, export_oci, import_docker, import_oci, load
from corral.metadata.db import MetadataDB
from corral.images.unpack import unpack
from corral.snapshots.mount import mount_all, unmount_all
from corral.snapshots.overlay import OverlaySnapshotter
from tests.helpers.imagebuild import Image, layer, write_oci_layout

pytestmark = pytest.mark.timeout(60)


def small_image(**kw):
    return Image([layer([("dir", "etc"), ("file", "etc/a", b"a")]),
                  layer([("file", "etc/b", b"b"), ("whiteout", "etc/a")])], **kw)


@pytest.fixture
def stores(tmpdir_root):
    return [ContentStore(os.path.join(tmpdir_root, f"c{i}")) for i in range(3)]


def test_oci_round_trip(stores, tmpdir_root):
    img = small_image()
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, img, "v1")
    got = import_oci(layout, stores[0], base_name="docker.io/corral/small")
    assert got == [("docker.io/corral/small:v1", img.manifest_desc)]
    out = os.path.join(tmpdir_root, "out.tar")
    export_oci(got, stores[0], out)
    again = import_oci(out, stores[1])
    assert again == got
    for d, data in img.blobs.items():
        assert open(stores[1].path(d), "rb").read() == data


def test_docker_archive_round_trip_and_unpack(stores, tmpdir_root):
    img = small_image(docker=True)
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, img)
    [(_, desc)] = import_oci(layout, stores[0])
    out = os.path.join(tmpdir_root, "docker.tar")
    export_docker([("corral/small:v2", desc)], stores[0], out)
    with tarfile.open(out) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("manifest.json"))
        repos = json.load(t.extractfile("repositories"))
    assert manifest[0]["RepoTags"] == ["corral/small:v2"]
    assert manifest[0]["Config"] == img.config_desc["digest"].split(":")[1] + ".json"
    assert all(n in names for n in manifest[0]["Layers"])
    assert repos == {"corral/small": {"v2": manifest[0]["Layers"][-1].split("/")[0]}}
    [(name, mdesc)] = import_docker(out, stores[1])
    assert name == "docker.io/corral/small:v2"
    m = json.load(stores[1].open(mdesc["digest"]))
    assert m["config"]["digest"] == img.config_desc["digest"]
    assert [l["digest"] for l in m["layers"]] == img.config["rootfs"]["diff_ids"]   # uncompressed
    sn = OverlaySnapshotter(os.path.join(tmpdir_root, "ov"))
    mnt = os.path.join(tmpdir_root, "mnt")
    os.mkdir(mnt)
    try:
        chain = unpack(stores[1], sn, m["layers"], img.config["rootfs"]["diff_ids"])
        mount_all(sn.view("v", chain), mnt)
        try:
            assert os.listdir(f"{mnt}/etc") == ["b"]
        finally:
            unmount_all(mnt)
    finally:
        sn.close()


def test_tampered_and_missing_blobs(stores, tmpdir_root):
    img = small_image()
    layout = os.path.join(tmpdir_root, "layout")
    write_oci_layout(layout, img)
    victim = img.layer_descs[1]["digest"]
    path = os.path.join(layout, "blobs", "sha256", victim.split(":")[1])
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ImageError, match=victim):
        import_oci(layout, stores[0])
    assert not stores[0].exists(victim)
    os.unlink(path)
    with pytest.raises(ImageError, match="missing"):
        import_oci(layout, stores[0])
    # not a layout at all
    with pytest.raises(ImageError, match="index.json"):
        import_oci(tmpdir_root, stores[0])
    bogus = os.path.join(tmpdir_root, "bogus.tar")
    with open(bogus, "wb") as f:
        f.write(b"not a tar" * 100)
    with pytest.raises(ImageError, match="not a tar"):
        import_docker(bogus, stores[0])


def test_load_records_and_unpacks(stores, tmpdir_root):
    from corral.busybox import make_oci_archive
    archive = os.path.join(tmpdir_root, "busybox.tar")
    digest = make_oci_archive(archive, "docker.io/library/busybox:latest")
    db = MetadataDB(os.path.join(tmpdir_root, "meta.db"))
    sn = OverlaySnapshotter(os.path.join(tmpdir_root, "ov"))
    mnt = os.path.join(tmpdir_root, "mnt")
    os.mkdir(mnt)
    try:
        [(name, desc)] = load(archive, stores[0], sn, db)
        assert name == "docker.io/library/busybox:latest" and desc["digest"] == digest
        assert db.get_image("default", name).target.digest == digest
        [snap] = sn.list()
        mount_all(sn.view("v", snap.name), mnt)
        try:
            assert os.path.exists(f"{mnt}/bin/busybox")
        finally:
            unmount_all(mnt)
        # a docker-archive of it loads too
        out = os.path.join(tmpdir_root, "d.tar")
        export_docker([(name, desc)], stores[0], out)
        [(n2, _)] = load(out, stores[1], None, db, namespace="other")
        assert db.get_image("other", n2).name == "docker.io/library/busybox:latest"
    finally:
        sn.close()
        db.close()
