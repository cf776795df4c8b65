"""Snapshotters on the real kernel: overlay and native chains mounted for real, 70 layers,
remove refusing parents, usage, and no mount left behind."""

import errno
import os

import pytest

from corral.metadata.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from corral.snapshots.base import Info, Kind, Mount
from corral.snapshots.mount import PAGE_SIZE, mount_all, unmount_all
from corral.snapshots.native import NativeSnapshotter
from corral.snapshots.overlay import OverlaySnapshotter

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for real mounts")


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


@pytest.fixture
def root(tmpdir_root):
    yield tmpdir_root
    assert mounts_under(tmpdir_root) == [], "a test left a mount behind"


class Mounted:
    """Mount specs on a fresh directory for the duration of a with block."""

    def __init__(self, mounts, target):
        self.mounts, self.target = mounts, target

    def __enter__(self):
        os.makedirs(self.target, exist_ok=True)
        mount_all(self.mounts, self.target)
        return self.target

    def __exit__(self, *exc):
        unmount_all(self.target)


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_chain(sn, mnt):
    """base (a, d/x, gone) <- l2 (a changed, gone deleted, b added)."""
    m = sn.prepare("base-active", "")
    with Mounted(m, mnt) as t:
        write(f"{t}/a", "one")
        write(f"{t}/d/x", "x")
        write(f"{t}/gone", "bye")
    sn.commit("base", "base-active", labels={"layer": "0"})
    m = sn.prepare("l2-active", "base")
    with Mounted(m, mnt) as t:
        assert read(f"{t}/a") == "one" and read(f"{t}/d/x") == "x"
        write(f"{t}/a", "two")
        os.unlink(f"{t}/gone")
        write(f"{t}/b", "new")
    sn.commit("l2", "l2-active")


@pytest.mark.parametrize("kind", ["overlay", "native"])
def test_chain_changes_visible(root, kind):
    cls = OverlaySnapshotter if kind == "overlay" else NativeSnapshotter
    sn = cls(os.path.join(root, "sn"))
    mnt = os.path.join(root, "mnt")
    try:
        make_chain(sn, mnt)
        m = sn.view("v", "l2")
        with Mounted(m, mnt) as t:
            assert read(f"{t}/a") == "two" and read(f"{t}/b") == "new"
            assert read(f"{t}/d/x") == "x" and not os.path.exists(f"{t}/gone")
            with pytest.raises(OSError) as e:
                write(f"{t}/c", "nope")
            assert e.value.errno == errno.EROFS
        m = sn.prepare("top", "l2")
        with Mounted(m, mnt) as t:
            write(f"{t}/top", "t")
            assert sorted(os.listdir(t)) == ["a", "b", "d", "top"]
        # The parent is untouched by its child's writes.
        with Mounted(sn.view("v1", "base"), mnt) as t:
            assert read(f"{t}/a") == "one" and os.path.exists(f"{t}/gone")
            assert not os.path.exists(f"{t}/top")

        assert sn.stat("base") == Info(Kind.COMMITTED, "base", "", {"layer": "0"},
                                       sn.stat("base").created, sn.stat("base").updated)
        assert sn.stat("top").kind == Kind.ACTIVE and sn.stat("top").parent == "l2"
        assert sn.stat("v").kind == Kind.VIEW
        assert {i.name for i in sn.list()} == {"base", "l2", "v", "top", "v1"}
        assert [i.name for i in sn.list(lambda i: i.kind == Kind.COMMITTED)] == ["base", "l2"]

        with pytest.raises(FailedPrecondition, match="child"):
            sn.remove("base")
        with pytest.raises(FailedPrecondition):
            sn.remove("l2")
        for key in ("v", "top", "v1", "l2", "base"):
            sn.remove(key)
        assert sn.list() == []
        assert os.listdir(os.path.join(sn.root, "snapshots")) == []
    finally:
        sn.close()


def test_overlay_mount_specs(root):
    sn = OverlaySnapshotter(os.path.join(root, "sn"))
    try:
        d = os.path.join(sn.root, "snapshots")
        idx = ["index=off"] if os.path.exists("/sys/module/overlay/parameters/index") else []
        assert sn.prepare("a", "") == [Mount("bind", f"{d}/1/fs", ["rw", "rbind"])]
        sn.commit("A", "a")
        assert sn.view("va", "A") == [Mount("bind", f"{d}/1/fs", ["ro", "rbind"])]
        assert sn.prepare("b", "A") == [Mount("overlay", "overlay", idx + [
            f"workdir={d}/3/work", f"upperdir={d}/3/fs", f"lowerdir={d}/1/fs"])]
        sn.commit("B", "b")
        assert sn.view("vb", "B") == [Mount("overlay", "overlay", idx + [f"lowerdir={d}/3/fs:{d}/1/fs"])]
        assert sn.mounts("vb") == sn.view("vb2", "B")
        assert sn.view("empty", "") == [Mount("bind", f"{d}/6/fs", ["ro", "rbind"])]
    finally:
        sn.close()


def test_errors_and_labels(root):
    sn = OverlaySnapshotter(os.path.join(root, "sn"))
    try:
        sn.prepare("a", "")
        with pytest.raises(AlreadyExists):
            sn.prepare("a", "")
        with pytest.raises(InvalidArgument, match="not committed"):
            sn.prepare("b", "a")
        with pytest.raises(NotFound):
            sn.prepare("b", "missing")
        with pytest.raises(NotFound):
            sn.stat("missing")
        sn.commit("A", "a", labels={"x": "1"})
        with pytest.raises(FailedPrecondition):
            sn.commit("A2", "A")
        with pytest.raises(FailedPrecondition):
            sn.mounts("A")
        info = sn.update(Info(Kind.COMMITTED, "A", labels={"y": "2"}), ["labels.y"])
        assert info.labels == {"x": "1", "y": "2"}
        assert sn.update(Info(Kind.COMMITTED, "A", labels={"z": "3"})).labels == {"z": "3"}
        # Failed creates leave nothing behind.
        assert sorted(os.listdir(os.path.join(sn.root, "snapshots"))) == ["1"]
    finally:
        sn.close()


@pytest.mark.parametrize("kind", ["overlay", "native"])
def test_usage(root, kind):
    cls = OverlaySnapshotter if kind == "overlay" else NativeSnapshotter
    sn = cls(os.path.join(root, "sn"))
    mnt = os.path.join(root, "mnt")
    try:
        with Mounted(sn.prepare("a", ""), mnt) as t:
            with open(f"{t}/big", "wb") as f:
                f.write(b"\1" * (1 << 20))
            os.mkdir(f"{t}/dir")
            write(f"{t}/dir/small", "s")
            os.link(f"{t}/big", f"{t}/big-link")
        u = sn.usage("a")
        assert u.inodes == 4  # root, big (+ its hardlink), dir, small
        assert (1 << 20) <= u.size < (1 << 20) + 64 * 1024
        sn.commit("A", "a")
        assert sn.usage("A") == u
        with Mounted(sn.prepare("b", "A"), mnt) as t:
            write(f"{t}/only-in-b", "b")
        ub = sn.usage("b")
        if kind == "overlay":
            assert ub.inodes == 2 and ub.size < 64 * 1024  # only the upper's own changes
        else:
            assert ub.inodes == 5 and ub.size > (1 << 20)  # a full copy
    finally:
        sn.close()


def test_overlay_70_layers(root):
    # A long root path makes the absolute lowerdir list exceed one page.
    sn = OverlaySnapshotter(os.path.join(root, "a-rather-long-snapshotter-root-directory-name", "overlayfs"))
    mnt = os.path.join(root, "mnt")
    try:
        parent = ""
        for i in range(70):
            m = sn.prepare(f"active-{i}", parent)
            upper = m[0].source if m[0].type == "bind" else \
                next(o for o in m[0].options if o.startswith("upperdir="))[len("upperdir="):]
            write(f"{upper}/layer-{i}", str(i))
            write(f"{upper}/top", str(i))
            sn.commit(f"layer-{i}", f"active-{i}")
            parent = f"layer-{i}"
        m = sn.prepare("container", parent)
        lower = next(o for o in m[0].options if o.startswith("lowerdir="))
        assert lower.count(":") == 69
        assert len(",".join(m[0].options)) + 1 > PAGE_SIZE
        with Mounted(m, mnt) as t:
            names = set(os.listdir(t))
            assert {f"layer-{i}" for i in range(70)} <= names
            assert read(f"{t}/top") == "69" and read(f"{t}/layer-0") == "0"
            write(f"{t}/written", "w")
        assert os.path.exists(os.path.join(sn.root, "snapshots", "71", "fs", "written"))
        # A read-only view of the whole chain mounts too.
        with Mounted(sn.view("view", parent), mnt) as t:
            assert read(f"{t}/top") == "69"
    finally:
        sn.close()


def test_long_overlay_mount_from_a_threaded_process_keeps_its_cwd(root):
    # The relative-lowerdir mount chdirs in a thread of its own (unshare(CLONE_FS)): the
    # process's working directory and its other threads are untouched, and a containerd.types
    # style object (attributes, type "overlay") mounts as a Mount does.
    import threading
    sn = OverlaySnapshotter(os.path.join(root, "x" * 60, "overlayfs"))
    mnt = os.path.join(root, "mnt")
    stop = threading.Event()
    seen = set()
    busy = threading.Thread(target=lambda: [seen.add(os.getcwd()) for _ in iter(lambda: stop.wait(0.001), True)])
    busy.start()
    cwd = os.getcwd()
    try:
        parent = ""
        for i in range(40):
            sn.prepare(f"a-{i}", parent)
            sn.commit(f"l-{i}", f"a-{i}")
            parent = f"l-{i}"
        m = sn.prepare("c", parent)
        assert len(",".join(m[0].options)) + 1 > PAGE_SIZE

        class Proto:  # what the shim gets in Create
            type, source, options = m[0].type, m[0].source, tuple(m[0].options)
        with Mounted([Proto()], mnt) as t:
            assert os.path.isdir(t) and os.getcwd() == cwd
    finally:
        stop.set()
        busy.join()
        sn.close()
    assert seen == {cwd}
    assert mounts_under(root) == []


def test_mount_all_cleans_up_on_failure(root):
    src = os.path.join(root, "src")
    os.makedirs(src)
    target = os.path.join(root, "target")
    os.makedirs(target)
    bad = Mount("overlay", "overlay", [f"lowerdir={root}/missing1:{root}/missing2"])
    with pytest.raises(Exception, match="mounting on"):
        mount_all([Mount("bind", src, ["rbind", "rw"]), bad], target)
    assert mounts_under(root) == []
    unmount_all(target)  # nothing mounted: no error


def test_stale_directory_from_a_crash_is_replaced(root):
    sn = OverlaySnapshotter(os.path.join(root, "sn"))
    try:
        # A crash between the rename and the commit leaves snapshots/1 with no row.
        os.makedirs(os.path.join(sn.root, "snapshots", "1", "fs", "junk"))
        m = sn.prepare("a", "")
        assert m[0].source.endswith("/snapshots/1/fs")
        assert os.listdir(m[0].source) == []
        os.makedirs(os.path.join(sn.root, "snapshots", "rm-9"))
        sn.cleanup()
        assert os.listdir(os.path.join(sn.root, "snapshots")) == ["1"]
    finally:
        sn.close()


def test_snapshots_dir_spreads_its_subdirs(root):
    # chattr +T on snapshots/ (where the filesystem has the flag): each snapshot is placed as
    # the top of a hierarchy; the snapshot's own tree does not inherit the flag
    import fcntl
    import struct
    from corral.snapshots.base import FS_IOC_GETFLAGS, FS_TOPDIR_FL

    def flags(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0]
        finally:
            os.close(fd)

    sn = OverlaySnapshotter(os.path.join(root, "sn"))
    try:
        try:
            top = flags(os.path.join(sn.root, "snapshots"))
        except OSError:
            pytest.skip("no inode flags on this filesystem")
        if not top & FS_TOPDIR_FL:
            pytest.skip("this filesystem does not keep the top-dir flag")
        m = sn.prepare("a", "")
        upper = next(o for o in m[0].options if o.startswith("upperdir="))[len("upperdir="):] \
            if m[0].type == "overlay" else m[0].source
        assert not flags(upper) & FS_TOPDIR_FL
    finally:
        sn.close()
