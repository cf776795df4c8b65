"""Our overlay and native snapshotters' mount specs against real containerd's for the same chain of
operations (ctr snapshots prepare/commit/view/mounts on a private containerd)."""

import os
import shutil

import pytest

from corral.snapshots.native import NativeSnapshotter
from corral.snapshots.overlay import OverlaySnapshotter

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"),
                       reason="needs root, containerd and ctr"),
]


@pytest.fixture
def ctrd():
    from tests.helpers.containerd import Containerd
    c = Containerd()
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


def ours_as_command(mounts, target):
    return "\n".join(f"mount -t {m.type} {m.source} {target} -o {','.join(m.options)}" for m in mounts)


@pytest.mark.parametrize("name", ["overlayfs", "native"])
def test_same_mounts_as_containerd(ctrd, tmpdir_root, name):
    sn = (OverlaySnapshotter if name == "overlayfs" else NativeSnapshotter)(os.path.join(tmpdir_root, "sn"))
    theirs_root = os.path.join(ctrd.dir, "root", f"io.containerd.snapshotter.v1.{name}")
    target = "/target"
    steps = [("prepare", "a", ""), ("commit", "A", "a"), ("prepare", "b", "A"), ("commit", "B", "b"),
             ("prepare", "c", "B"), ("view", "v1", "A"), ("view", "v2", "B"), ("view", "v0", "")]
    try:
        for op, key, arg in steps:
            if op == "commit":
                ctrd.ctr("snapshots", "--snapshotter", name, "commit", key, arg)
                sn.commit(key, arg)
                continue
            args = [key] + ([arg] if arg else [])
            ctrd.ctr("snapshots", "--snapshotter", name, op, *args)
            (sn.prepare if op == "prepare" else sn.view)(key, arg)
            theirs = ctrd.ctr("snapshots", "--snapshotter", name, "mounts", target, key).stdout.strip()
            ours = ours_as_command(sn.mounts(key), target)
            assert ours.replace(sn.root, "<root>") == theirs.replace(theirs_root, "<root>"), (op, key)
    finally:
        sn.close()


def test_same_usage_as_containerd(ctrd, tmpdir_root):
    sn = OverlaySnapshotter(os.path.join(tmpdir_root, "sn"))
    theirs_root = os.path.join(ctrd.dir, "root", "io.containerd.snapshotter.v1.overlayfs")
    try:
        ctrd.ctr("snapshots", "prepare", "a")
        ours = sn.prepare("a", "")[0].source
        theirs = os.path.join(theirs_root, "snapshots", "1", "fs")
        for upper in (ours, theirs):
            os.makedirs(f"{upper}/d/e")
            with open(f"{upper}/d/big", "wb") as f:
                f.write(b"z" * 300_000)
            with open(f"{upper}/small", "w") as f:
                f.write("s")
            os.link(f"{upper}/small", f"{upper}/d/small-link")
        for stage in ("active", "committed"):
            key = "a" if stage == "active" else "A"
            out = ctrd.ctr("snapshots", "usage", key).stdout.splitlines()[1].split()
            u = sn.usage(key)
            assert int(out[-1]) == u.inodes, stage
            size, unit = float(out[1]), out[2]
            scale = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2}[unit]
            assert abs(size * scale - u.size) <= 0.05 * scale + 1, (stage, out, u)
            if stage == "active":
                ctrd.ctr("snapshots", "commit", "A", "a")
                sn.commit("A", "a")
    finally:
        sn.close()
