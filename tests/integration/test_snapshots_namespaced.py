"""A snapshotter seen through namespaces: separate keys over one backend, real mounts."""

import os

import pytest

from corral.metadata.db import MetadataDB
from corral.metadata.errors import AlreadyExists, FailedPrecondition, NotFound
from corral.metadata.snapshots import NamespacedSnapshotter
from corral.snapshots.base import Info, Kind
from corral.snapshots.mount import mount_all, unmount_all
from corral.snapshots.overlay import OverlaySnapshotter

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for real mounts")


def test_namespaced_keys_over_one_backend(tmpdir_root):
    db = MetadataDB(os.path.join(tmpdir_root, "meta.db"))
    backend = OverlaySnapshotter(os.path.join(tmpdir_root, "ov"))
    sn = NamespacedSnapshotter(db, "overlayfs", backend)
    mnt = os.path.join(tmpdir_root, "mnt")
    os.makedirs(mnt)
    try:
        for ns in ("a", "b"):
            m = sn.prepare(ns, "layer", "", labels={"ns": ns})
            mount_all(m, mnt)
            try:
                with open(f"{mnt}/who", "w") as f:
                    f.write(ns)
            finally:
                unmount_all(mnt)
            sn.commit(ns, "base", "layer")
        with pytest.raises(AlreadyExists):
            sn.prepare("a", "base", "")
        m = sn.prepare("a", "rootfs", "base")
        mount_all(m, mnt)
        try:
            with open(f"{mnt}/who") as f:
                assert f.read() == "a"
        finally:
            unmount_all(mnt)
        st = sn.stat("a", "rootfs")
        assert (st.kind, st.name, st.parent) == (Kind.ACTIVE, "rootfs", "base")
        assert sn.stat("b", "base").labels == {"ns": "b"}
        assert sn.update("b", Info(Kind.COMMITTED, "base", labels={"k": "v"}), ["labels.k"]).labels == \
            {"ns": "b", "k": "v"}
        with pytest.raises(NotFound):
            sn.stat("b", "rootfs")
        assert sn.usage("a", "base").inodes == 2
        assert len(backend.list()) == 3
        assert all(i.name.split("/")[0] in ("a", "b") for i in backend.list())
        with pytest.raises(FailedPrecondition):
            sn.remove("a", "base")
        sn.remove("a", "rootfs")
        sn.remove("a", "base")
        assert [i.name for i in sn.list("b")] == ["base"] and len(backend.list()) == 1
        sn.remove("b", "base")
        assert backend.list() == []
    finally:
        backend.close()
        db.close()
