"""Apply a layer tar onto a directory, safely.

Every path is resolved one component at a time with openat() and O_NOFOLLOW from a directory
fd of the target, so no entry name, symlink (from this layer or a lower one) or hardlink can
reach outside the target. An entry whose parent path goes through a symlink is refused: image
builders record real paths, so such an entry is either broken or an escape attempt.

Two modes, as containerd's appliers:
- native: the target holds the whole filesystem; whiteouts become real deletes.
- overlay: the target is a fresh overlay upper dir over `lowers` (top first); whiteouts become
  overlay whiteouts (char device 0/0) and opaque dirs get trusted.overlay.opaque=y.
"""

import errno
import os
import shutil
import stat

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeLayerError(Exception):
    """The layer is malformed or tries to reach outside the target; nothing of it may be kept."""


def split_name(name, what="entry"):
    """Tar name → list of components inside the root. Leading '/' and './' are dropped (as tar
    does); '..' anywhere is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayerError(f"layer {what} {name!r} has a '..' component: refusing to apply it")
    return parts


class Applier:
    def __init__(self, target, mode="native", lowers=()):
        if mode not in ("native", "overlay"):
            raise ValueError(f"unknown apply mode {mode!r}")
        self.target = target
        self.mode = mode
        # a callable is asked for the lower dirs only when first needed (parallel unpack)
        self.lowers = lowers if callable(lowers) else list(lowers)
        self.root_fd = os.open(target, _DIR_FLAGS)
        self._cache = None          # (tuple(parts), fd) of the last parent dir resolved
        self._dir_times = []        # (parts, mtime) set at the end: children change dir mtimes
        self._written = set()       # paths this layer wrote (a native opaque dir keeps them)
        self.is_root = os.geteuid() == 0
        self.count = 0
        self.root_entry = False     # the layer set the root directory's own metadata
        self._buf = None            # file data goes through this buffer (made when needed)

    def close(self):
        self._drop_cache()
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None

    # --- path resolution -------------------------------------------------------------------

    def _drop_cache(self):
        if self._cache:
            os.close(self._cache[1])
            self._cache = None

    def _lower_lookup(self, parts):
        """lstat of `parts` in the topmost lower that has it (stops at whiteouts), or None.
        Refuses a lower path that goes through a symlink."""
        if callable(self.lowers):
            self.lowers = list(self.lowers())
        for lower in self.lowers:
            path = lower
            for i, comp in enumerate(parts):
                path = os.path.join(path, comp)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    st = None
                if st is None:
                    break
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None         # whited out in this lower
                if i == len(parts) - 1:
                    return path, st
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafeLayerError(
                        f"layer entry under {'/'.join(parts)!r} goes through the symlink "
                        f"{'/'.join(parts[:i + 1])!r} of a lower layer: refusing to follow it")
                if not stat.S_ISDIR(st.st_mode):
                    return None
                try:
                    if os.getxattr(path, "trusted.overlay.opaque") == b"y":
                        # below this dir nothing from lower layers shows
                        rest = parts[i + 1:]
                        p2 = os.path.join(path, *rest)
                        try:
                            return (p2, os.lstat(p2)) if rest else (path, st)
                        except FileNotFoundError:
                            return None
                except OSError:
                    pass
            # not found in this lower: look further down
        return None

    def _parent_fd(self, parts, create=True):
        """An O_PATH fd of the directory `parts` inside the target (owned by the cache: do not
        close). Missing dirs are created (overlay: with the lower's mode and owner)."""
        key = tuple(parts)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    st = _lstat_at(fd, comp)
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        raise UnsafeLayerError(
                            f"layer entry under {'/'.join(parts)!r} goes through the symlink "
                            f"{'/'.join(parts[:i + 1])!r}: refusing to follow it") from None
                    if not create:
                        raise
                    if st is not None:
                        # a non-directory where a directory is needed: replace it (as tar does)
                        os.unlink(comp, dir_fd=fd)
                    self._make_implicit_dir(fd, comp, parts[:i + 1])
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._drop_cache()
        self._cache = (key, fd)
        return fd

    def _make_implicit_dir(self, pfd, name, parts):
        mode, uid, gid = 0o755, 0, 0
        if self.mode == "overlay":
            found = self._lower_lookup(parts)
            if found:
                st = found[1]
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafeLayerError(
                        f"layer entry under {'/'.join(parts)!r} goes through the symlink "
                        f"{'/'.join(parts)!r} of a lower layer: refusing to follow it")
                if stat.S_ISDIR(st.st_mode):
                    mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        os.mkdir(name, 0o700, dir_fd=pfd)
        if self.is_root:
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, mode, dir_fd=pfd)

    def _remove(self, pfd, name, rel):
        """Remove `name` (at path `rel`) in its parent pfd; no-op if missing."""
        st = _lstat_at(pfd, name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            # the cached fd may be inside the removed tree (pfd, its parent, is not)
            if self._cache and ("/".join(self._cache[0]) + "/").startswith(rel + "/"):
                self._drop_cache()
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    # --- entries ---------------------------------------------------------------------------

    def apply(self, tar):
        """Apply every member of a TarStream (or an open tarfile). Returns the count."""
        for member in tar:
            self._entry(tar, member)
            self.count += 1
        self._finish()
        return self.count

    def _entry(self, tar, m):
        parts = split_name(m.name)
        if not parts:
            if m.isdir():
                self._meta(self.root_fd, ".", m, is_root_entry=True)
                self.root_entry = True
            return
        base = parts[-1]
        parent = parts[:-1]
        if base == OPAQUE:
            self._opaque(parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return      # other .wh..wh. names are aufs metadata, not files (as docker does)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base[len(WHITEOUT_PREFIX):])
            return
        pfd = self._parent_fd(parent)
        rel = "/".join(parts)
        if m.isdir():
            st = _lstat_at(pfd, base)
            if st is None or not stat.S_ISDIR(st.st_mode):
                if st is not None:
                    os.unlink(base, dir_fd=pfd)
                os.mkdir(base, 0o700, dir_fd=pfd)
            self._meta(pfd, base, m)
            self._dir_times.append((parts, m.mtime))
        else:
            self._remove(pfd, base, rel)
            if m.isreg():
                self._file(tar, m, pfd, base)
            elif m.issym():
                os.symlink(m.linkname, base, dir_fd=pfd)
                self._meta(pfd, base, m, symlink=True)
            elif m.islnk():
                self._hardlink(m, pfd, base)
            elif m.ischr() or m.isblk():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
                self._meta(pfd, base, m)
            elif m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
                self._meta(pfd, base, m)
            else:
                raise UnsafeLayerError(f"layer entry {m.name!r} has an unsupported type {m.type!r}")
        for i in range(1, len(parts) + 1):
            self._written.add("/".join(parts[:i]))

    def _file(self, tar, m, pfd, base):
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(m)
            left = m.size
            readinto = getattr(src, "readinto", None)
            if readinto is not None:
                # one buffer per applier: a new 1 MiB object per chunk costs page faults
                if self._buf is None:
                    self._buf = memoryview(bytearray(CHUNK))
                buf = self._buf
                while left > 0:
                    n = readinto(buf[:min(CHUNK, left)])
                    if not n:
                        raise UnsafeLayerError(f"layer is truncated inside {m.name!r}")
                    _write_all(fd, buf[:n])
                    left -= n
            while left > 0:
                data = src.read(min(CHUNK, left))
                if not data:
                    raise UnsafeLayerError(f"layer is truncated inside {m.name!r}")
                _write_all(fd, data)
                left -= len(data)
        finally:
            os.close(fd)
        self._meta(pfd, base, m)

    def _hardlink(self, m, pfd, base):
        tparts = split_name(m.linkname, "hardlink target")
        if not tparts:
            raise UnsafeLayerError(f"layer hardlink {m.name!r} has an empty target")
        try:
            tpfd = os.dup(self._parent_fd(tparts[:-1], create=False))
        except (FileNotFoundError, NotADirectoryError):
            tpfd = None
        if tpfd is not None:
            try:
                pfd = self._parent_fd(split_name(m.name)[:-1])
                st = _lstat_at(tpfd, tparts[-1])
                if st is not None:
                    if stat.S_ISDIR(st.st_mode):
                        raise UnsafeLayerError(f"layer hardlink {m.name!r} points to a directory")
                    os.link(tparts[-1], base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
                    return
            finally:
                os.close(tpfd)
        pfd = self._parent_fd(split_name(m.name)[:-1])
        found = self._lower_lookup(tparts) if self.mode == "overlay" else None
        if not found or not stat.S_ISREG(found[1].st_mode):
            raise UnsafeLayerError(
                f"layer hardlink {m.name!r} points to {m.linkname!r}, which is not in the image")
        # the target lives in a lower layer: the upper dir gets a copy (overlay would copy up)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            with open(found[0], "rb") as src:
                while buf := src.read(CHUNK):
                    _write_all(fd, buf)
            st = found[1]
            if self.is_root:
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)

    def _meta(self, pfd, name, m, symlink=False, is_root_entry=False):
        if self.is_root:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                attr = key[len("SCHILY.xattr."):]
                if attr.startswith("trusted.overlay."):
                    continue        # the image may not steer overlayfs
                raw = value.encode("utf-8", "surrogateescape")
                try:
                    os.setxattr(f"/proc/self/fd/{pfd}/{name}" if name != "." else f"/proc/self/fd/{pfd}",
                                attr, raw, follow_symlinks=False)
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.EPERM):
                        raise
        if not symlink:
            os.chmod(name, stat.S_IMODE(m.mode), dir_fd=pfd)
        if not m.isdir() and not is_root_entry:
            os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, parent, name):
        if not name or name in (".", ".."):
            raise UnsafeLayerError(f"layer has a bad whiteout {WHITEOUT_PREFIX}{name!r}")
        rel = "/".join(parent + [name])
        if self.mode == "native":
            try:
                pfd = self._parent_fd(parent, create=False)
            except (FileNotFoundError, NotADirectoryError):
                return
            self._remove(pfd, name, rel)
        else:
            pfd = self._parent_fd(parent)
            self._remove(pfd, name, rel)
            os.mknod(name, stat.S_IFCHR | 0o000, 0, dir_fd=pfd)
        self._written.discard(rel)

    def _opaque(self, parts):
        rel = "/".join(parts)
        if self.mode == "overlay":
            if not parts:
                raise UnsafeLayerError("layer marks the root directory opaque")
            self._parent_fd(parts)     # make sure it exists in the upper dir
            pfd = self._parent_fd(parts[:-1])
            os.setxattr(f"/proc/self/fd/{pfd}/{parts[-1]}", "trusted.overlay.opaque", b"y",
                        follow_symlinks=False)
            return
        dfd = os.dup(self._parent_fd(parts))
        try:
            prefix = rel + "/" if rel else ""
            for n in _listdir_fd(dfd):
                if prefix + n not in self._written:
                    self._remove(dfd, n, prefix + n)
        finally:
            os.close(dfd)

    def _finish(self):
        self._drop_cache()
        for parts, mtime in reversed(self._dir_times):
            try:
                pfd = self._parent_fd(parts[:-1], create=False)
                os.utime(parts[-1], (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                pass
        self._drop_cache()


def _lstat_at(dfd, name):
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _listdir_fd(dfd):
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _write_all(fd, buf):
    view = memoryview(buf)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def apply_tar(fileobj, target, mode="native", lowers=()):
    """Apply the uncompressed tar stream `fileobj` onto `target`; returns the Applier (.count,
    .root_entry). Raises UnsafeLayerError for a hostile or broken layer (the caller discards
    the target)."""
    from corral.archive.tarstream import TarStream, TarStreamError
    applier = Applier(target, mode, lowers)
    try:
        applier.apply(TarStream(fileobj))
        return applier
    except (TarStreamError, EOFError) as e:
        raise UnsafeLayerError(f"layer is not a valid or complete tar: {e}") from None
    finally:
        applier.close()
