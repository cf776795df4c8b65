"""paths.open_in_root: the kernel's openat2 and the hand walk give the same in-root answers."""

import os

import pytest

from corral.oci.linux import paths


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    if request.param == "walk":
        monkeypatch.setattr(paths, "_openat2", [False])
    return request.param


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "a" / "b").mkdir(parents=True)
    (r / "a" / "b" / "file").write_text("x")
    os.symlink("/a/b", r / "abs")
    os.symlink("../../../../..", r / "a" / "up")
    os.symlink("b/file", r / "a" / "flink")
    os.symlink(str(tmp_path / "outside"), r / "host")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    yield str(r), fd
    os.close(fd)


def where(root, fd):
    real = paths.real_path(fd)
    os.close(fd)
    return "/" if real == root[0] else "/" + os.path.relpath(real, root[0])


@pytest.mark.parametrize("path, expect", [
    ("/", "/"), ("", "/"), ("/../..", "/"), ("a/b", "/a/b"), ("/abs/file", "/a/b/file"),
    ("/a/up/a", "/a"), ("/a/up/../../abs", "/a/b"), ("/a/flink", "/a/b/file"),
])
def test_resolves_inside(root, resolver, path, expect):
    assert where(root, paths.open_in_root(root[1], path)) == expect


def test_missing_and_loops(root, resolver):
    with pytest.raises(FileNotFoundError):
        paths.open_in_root(root[1], "/host/x")
    with pytest.raises(OSError):
        paths.open_in_root(root[1], "/loop1")
    with pytest.raises(NotADirectoryError):
        paths.open_in_root(root[1], "/a/b/file/x")


def test_create_follows_symlinks_inside(root, tmp_path):
    fd = paths.open_in_root(root[1], "/host/new/dir", create="dir")
    assert paths.real_path(fd) == os.path.join(root[0], str(tmp_path / "outside" / "new" / "dir").lstrip("/"))
    os.close(fd)
    assert not (tmp_path / "outside").exists()
    fd = paths.open_in_root(root[1], "/a/up/f", create="file")
    assert paths.real_path(fd) == os.path.join(root[0], "f") and os.path.isfile(os.path.join(root[0], "f"))
    os.close(fd)


def test_nofollow_last(root):
    with pytest.raises(OSError, match="symlink"):
        paths.open_in_root(root[1], "/abs", nofollow=True)
    os.close(paths.open_in_root(root[1], "/abs/file", nofollow=True))


def test_inside():
    assert paths.inside("/a/b", "/a") and paths.inside("/a", "/a") and paths.inside("/x", "/")
    assert not paths.inside("/ab", "/a")
