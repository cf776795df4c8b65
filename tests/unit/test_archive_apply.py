"""Layer apply: file kinds and metadata, whiteouts in both modes, and refused escapes."""

import io
import os
import stat
import subprocess

import pytest

from corral.archive.apply import UnsafeLayerError, apply_tar
from corral.archive.create import write_tree
from tests.helpers.imagebuild import layer


def apply(entries, target, mode="native", lowers=()):
    return apply_tar(io.BytesIO(layer(entries)), target, mode, lowers)


@pytest.fixture
def root(tmpdir_root):
    d = os.path.join(tmpdir_root, "root")
    os.mkdir(d)
    return d


def test_kinds_and_metadata(root):
    apply([("dir", "etc", 0o750), ("file", "etc/conf", b"x" * 5000, 0o4755, 12, 34),
           ("symlink", "etc/link", "/etc/conf"), ("hardlink", "etc/hard", "etc/conf"),
           ("fifo", "fifo"), ("chardev", "null", 1, 3),
           ("xattr-file", "attr", b"a", {"user.test": "hello"}),
           ("file", "deep/implicit/f", b"y")], root)
    st = os.lstat(f"{root}/etc/conf")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size) == (0o4755, 12, 34, 5000)
    assert st.st_mtime == 1700000000 and st.st_nlink == 2
    assert os.lstat(f"{root}/etc/hard").st_ino == st.st_ino
    assert os.readlink(f"{root}/etc/link") == "/etc/conf"
    assert stat.S_IMODE(os.stat(f"{root}/etc").st_mode) == 0o750
    assert os.stat(f"{root}/etc").st_mtime == 1700000000
    assert stat.S_ISFIFO(os.lstat(f"{root}/fifo").st_mode)
    assert os.lstat(f"{root}/null").st_rdev == os.makedev(1, 3)
    assert os.getxattr(f"{root}/attr", "user.test") == b"hello"
    assert open(f"{root}/deep/implicit/f", "rb").read() == b"y"


def test_native_whiteouts(root):
    apply([("dir", "a"), ("file", "a/keep", b"1"), ("file", "a/gone", b"2"), ("dir", "o"),
           ("file", "o/old", b"3"), ("dir", "o/sub"), ("file", "top", b"4")], root)
    apply([("whiteout", "a/gone"), ("whiteout", "top"), ("file", "o/new", b"5"), ("opaque", "o"),
           ("whiteout", "nothing-here")], root)
    assert sorted(os.listdir(f"{root}/a")) == ["keep"]
    assert not os.path.lexists(f"{root}/top")
    assert sorted(os.listdir(f"{root}/o")) == ["new"]


def test_replace_kinds(root):
    apply([("dir", "x"), ("file", "x/f", b"1"), ("file", "y", b"2"), ("symlink", "z", "/etc")], root)
    apply([("file", "x", b"now a file"), ("dir", "y"), ("file", "z", b"not a link")], root)
    assert open(f"{root}/x", "rb").read() == b"now a file"
    assert os.path.isdir(f"{root}/y")
    assert not os.path.islink(f"{root}/z")


def test_overlay_whiteouts_and_mount(tmpdir_root):
    lower, upper, work, merged = (os.path.join(tmpdir_root, n) for n in ("l", "u", "w", "m"))
    for d in (lower, upper, work, merged):
        os.mkdir(d)
    apply([("dir", "a"), ("file", "a/keep", b"1"), ("file", "a/gone", b"2"), ("dir", "o"),
           ("file", "o/old", b"3")], lower)
    apply([("whiteout", "a/gone"), ("opaque", "o"), ("file", "o/new", b"5")], upper, "overlay", [lower])
    st = os.lstat(f"{upper}/a/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(f"{upper}/o", "trusted.overlay.opaque") == b"y"
    # the implicit upper dir "a" copies the lower's mode
    assert stat.S_IMODE(os.stat(f"{upper}/a").st_mode) == 0o755
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", merged], check=True)
    try:
        assert sorted(os.listdir(f"{merged}/a")) == ["keep"]
        assert sorted(os.listdir(f"{merged}/o")) == ["new"]
    finally:
        subprocess.run(["umount", merged], check=True)
    # and a diff of the upper dir spells the whiteouts the OCI way again
    buf = io.BytesIO()
    write_tree(upper, buf, upper=True)
    import tarfile
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert "a/.wh.gone" in names and "o/.wh..wh..opq" in names and "o/new" in names


def test_overlay_hardlink_to_lower_copies(tmpdir_root):
    lower, upper = os.path.join(tmpdir_root, "l"), os.path.join(tmpdir_root, "u")
    os.mkdir(lower), os.mkdir(upper)
    apply([("file", "bin/tool", b"binary", 0o755)], lower)
    apply([("hardlink", "bin/alias", "bin/tool")], upper, "overlay", [lower])
    assert open(f"{upper}/bin/alias", "rb").read() == b"binary"


@pytest.fixture
def host_dir(tmpdir_root):
    d = os.path.join(tmpdir_root, "host")
    os.mkdir(d)
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("host data")
    return d


def host_untouched(host_dir):
    return os.listdir(host_dir) == ["secret"] and open(os.path.join(host_dir, "secret")).read() == "host data"


@pytest.mark.parametrize("mode", ["native", "overlay"])
def test_refuse_dotdot(root, host_dir, mode):
    rel = os.path.relpath(host_dir, root)
    with pytest.raises(UnsafeLayerError, match="'\\.\\.'"):
        apply([("file", rel + "/pwned", b"x")], root, mode)
    with pytest.raises(UnsafeLayerError, match="'\\.\\.'"):
        apply([("hardlink", "h", rel + "/secret")], root, mode)
    assert host_untouched(host_dir)


@pytest.mark.parametrize("target_kind", ["absolute", "relative"])
def test_refuse_symlink_escape_same_layer(root, host_dir, target_kind):
    target = host_dir if target_kind == "absolute" else os.path.relpath(host_dir, root)
    with pytest.raises(UnsafeLayerError, match="symlink"):
        apply([("symlink", "evil", target), ("file", "evil/pwned", b"x")], root)
    with pytest.raises(UnsafeLayerError, match="symlink"):
        apply([("symlink", "evil2", target), ("whiteout", "evil2/secret")], root)
    assert host_untouched(host_dir)


def test_refuse_symlink_escape_earlier_layer(tmpdir_root, host_dir):
    lower, upper = os.path.join(tmpdir_root, "l"), os.path.join(tmpdir_root, "u")
    os.mkdir(lower), os.mkdir(upper)
    apply([("symlink", "evil", host_dir)], lower)
    with pytest.raises(UnsafeLayerError, match="symlink"):
        apply([("file", "evil/pwned", b"x")], upper, "overlay", [lower])
    # native: the earlier layer is in the same tree
    apply([("symlink", "evil", host_dir)], upper)
    with pytest.raises(UnsafeLayerError, match="symlink"):
        apply([("file", "evil/pwned", b"x")], upper)
    assert host_untouched(host_dir)


def test_absolute_names_stay_inside(root, host_dir):
    apply([("file", host_dir + "/secret", b"inside")], root)
    assert open(root + host_dir + "/secret").read() == "inside"
    assert host_untouched(host_dir)


def test_hardlink_to_host_file(root, host_dir):
    with pytest.raises(UnsafeLayerError, match="not in the image"):
        apply([("hardlink", "h", host_dir + "/secret")], root)
    with pytest.raises(UnsafeLayerError, match="not in the image"):
        apply([("hardlink", "h", "/etc/passwd")], root)
    assert host_untouched(host_dir)


def test_symlink_then_replace_does_not_write_through(root, host_dir):
    apply([("symlink", "s", host_dir + "/secret"), ("file", "s", b"replaced")], root)
    assert open(f"{root}/s").read() == "replaced" and not os.path.islink(f"{root}/s")
    assert host_untouched(host_dir)


def test_truncated(root):
    data = layer([("file", "big", b"z" * 100000)])
    with pytest.raises(UnsafeLayerError):
        apply_tar(io.BytesIO(data[:50000]), root)
