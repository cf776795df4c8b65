"""Device nodes in the container's /dev: the default set, linux.devices, and the symlinks."""

import os
import posixpath
import stat

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import paths
from corral.oci.linux import syscalls as S


def _dev(name, major, minor):
    return {"path": "/dev/" + name, "type": "c", "major": major, "minor": minor,
            "fileMode": 0o666, "uid": 0, "gid": 0}


DEFAULT_DEVICES = [_dev("null", 1, 3), _dev("zero", 1, 5), _dev("full", 1, 7),
                   _dev("random", 1, 8), _dev("urandom", 1, 9), _dev("tty", 5, 0)]

SYMLINKS = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")]

_KINDS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _int(d, key, where, default=None):
    v = d.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise RuntimeFailure(f"{where}: {key} must be a non-negative integer, got {v!r}")
    return v


def check(d, where):
    """Refuse a bad linux.devices entry with one clear line."""
    if not isinstance(d, dict):
        raise RuntimeFailure(f"{where}: a device must be an object")
    path = d.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise RuntimeFailure(f"{where}: path must be an absolute path, got {path!r}")
    if posixpath.normpath(path) in ("/", "/dev"):
        raise RuntimeFailure(f"{where}: path {path!r} names no device file")
    if not isinstance(d.get("type"), str) or d["type"] not in _KINDS:
        raise RuntimeFailure(f"{where}: type must be one of c, u, b, p, got {d.get('type')!r}")
    if d["type"] != "p":
        _int(d, "major", where)
        _int(d, "minor", where)
    mode = _int(d, "fileMode", where, 0o666)
    if mode > 0o7777:
        raise RuntimeFailure(f"{where}: fileMode {mode:#o} has bits beyond permissions")
    _int(d, "uid", where, 0)
    _int(d, "gid", where, 0)


def device_list(spec):
    """The default devices, then linux.devices (an entry with the same path replaces a default)."""
    extra = (spec.get("linux") or {}).get("devices") or []
    given = {posixpath.normpath(d["path"]) for d in extra}
    return [d for d in DEFAULT_DEVICES if d["path"] not in given] + list(extra)


def create(root_fd, devices):
    """Make each device inside the root: mknod, or a bind of the host's node where mknod is
    not allowed (in a user namespace). Returns True if binds were used."""
    use_bind = False
    old = os.umask(0)
    try:
        for d in devices:
            path = posixpath.normpath(d["path"])
            if not use_bind:
                try:
                    _mknod(root_fd, path, d)
                    continue
                except PermissionError:
                    use_bind = True
            _bind(root_fd, path)
    finally:
        os.umask(old)
    return use_bind


def _mknod(root_fd, path, d):
    parent = paths.open_in_root(root_fd, posixpath.dirname(path), create="dir")
    name = posixpath.basename(path)
    try:
        kind = _KINDS[d["type"]]
        dev = 0 if d["type"] == "p" else os.makedev(d["major"], d["minor"])
        try:
            os.mknod(name, kind | d.get("fileMode", 0o666), dev, dir_fd=parent)
        except FileExistsError:
            return  # the image or a mount already has it
        os.chown(name, d.get("uid", 0), d.get("gid", 0), dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def _bind(root_fd, path):
    fd = paths.open_in_root(root_fd, path, create="file", nofollow=True)
    try:
        S.mount(path, paths.fd_path(fd), None, S.MS_BIND)
    finally:
        os.close(fd)


def symlinks(root_fd):
    """/dev/fd, stdin, stdout, stderr, core (when the host has /proc/kcore) and ptmx -> pts/ptmx."""
    dev = paths.open_in_root(root_fd, "/dev", create="dir")
    try:
        links = list(SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "core"))
        for target, name in links:
            try:
                os.symlink(target, name, dir_fd=dev)
            except FileExistsError:
                pass
        try:
            os.unlink("ptmx", dir_fd=dev)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
    finally:
        os.close(dev)
