"""Layers made from snapshot changes (overlay and native) reproduce the changed tree."""

import os

import pytest

from corral.content.store import ContentStore
from corral.images.diff import create_layer
from corral.images.unpack import chain_ids, unpack
from corral.snapshots.mount import mount_all, unmount_all
from corral.snapshots.native import NativeSnapshotter
from corral.snapshots.overlay import OverlaySnapshotter
from tests.helpers.imagebuild import busybox_layer, layer
from tests.integration.test_unpack import put_layers
from tests.interop.test_images_tools import tree_facts

pytestmark = pytest.mark.timeout(120)


def change(root):
    with open(f"{root}/etc/new", "w") as f:
        f.write("new file")
    os.chmod(f"{root}/etc/passwd", 0o600)
    os.unlink(f"{root}/etc/hostname")
    import shutil
    shutil.rmtree(f"{root}/opt/app")
    os.makedirs(f"{root}/opt/app/fresh")
    os.symlink("../new", f"{root}/opt/app/fresh/link")
    os.link(f"{root}/etc/new", f"{root}/etc/new-hard")
    os.setxattr(f"{root}/etc/new", "user.k", b"v")


@pytest.mark.parametrize("kind,compression", [("overlay", "gzip"), ("native", "zstd"), ("native", "")])
def test_diff_round_trip(tmpdir_root, kind, compression):
    store = ContentStore(os.path.join(tmpdir_root, "content"))
    cls = OverlaySnapshotter if kind == "overlay" else NativeSnapshotter
    sn = cls(os.path.join(tmpdir_root, kind))
    mnts = []

    def mount(mounts, name):
        d = os.path.join(tmpdir_root, name)
        os.mkdir(d)
        mount_all(mounts, d)
        mnts.append(d)
        return d

    try:
        descs, diffs = put_layers(store, [busybox_layer(), layer([("dir", "opt"), ("dir", "opt/app"),
                                                                   ("file", "opt/app/x", b"x")])])
        base = unpack(store, sn, descs, diffs)
        work = mount(sn.prepare("work", base), "work")
        change(work)
        want = tree_facts(work)
        desc, diff_id = create_layer(store, sn, "work", compression)
        assert store.exists(desc["digest"]) and store.info(desc["digest"]).labels[
            "containerd.io/uncompressed"] == diff_id
        # the new layer on top of the base gives the changed tree
        other = cls(os.path.join(tmpdir_root, kind + "2"))
        try:
            top = unpack(store, other, descs + [desc], diffs + [diff_id])
            assert top == chain_ids(diffs + [diff_id])[-1]
            got = tree_facts(mount(other.view("v", top), "v"))
            # directory mtimes differ (the tar sets them), everything else must match
            assert {k: v for k, v in got.items()} == want
            assert os.getxattr(os.path.join(tmpdir_root, "v", "etc/new"), "user.k") == b"v"
        finally:
            for d in reversed(mnts):
                unmount_all(d)
            mnts.clear()
            other.close()
    finally:
        for d in reversed(mnts):
            unmount_all(d)
        sn.close()
