"""Copy files between the host and a container's root filesystem without ever writing outside
it: container paths are resolved inside the root (corral.oci.linux.paths.open_in_root), every
file is made relative to a directory fd with O_NOFOLLOW, and a symlink as the last component
of a destination is refused.

The root is the running task's /proc/<pid>/root, or the container's snapshot mounted on a
temporary directory for the duration."""

import contextlib
import errno
import os
import stat
import tempfile

from corral.oci.linux.paths import fd_path, open_in_root

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class CopyError(Exception):
    pass


@contextlib.contextmanager
def container_root(container):
    """An O_PATH fd of the container's root directory."""
    pid = container.pid
    if pid:
        fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
        return
    from corral.snapshots.mount import mount_all, unmount_all
    mounts = [{"type": m.type, "source": m.source, "options": list(m.options)}
              for m in container.client.snapshot_mounts(container.id, container.record.snapshotter or "overlayfs")]
    tmp = tempfile.mkdtemp(prefix="corral-cp-")
    try:
        mount_all(mounts, tmp)
        try:
            fd = os.open(tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            unmount_all(tmp)
    finally:
        os.rmdir(tmp)


def _split(path):
    """(parent, last component); a last component of "." or ".." is folded into the parent
    (resolved inside the root), never used relative to a directory fd, where ".." of the
    root would lead out of it."""
    path = path.rstrip("/") or "/"
    parent, name = os.path.split(path)
    if name in (".", ".."):
        return path, ""
    return parent or "/", name


def copy_out(root_fd, src, dest):
    """Container path `src` -> host path `dest` (docker's rules: into dest if it is a dir)."""
    parent, last = _split(src)
    try:
        pfd = open_in_root(root_fd, parent)
        try:
            # a symlink named by the source is copied as the link (docker's rule)
            fd = os.open(last, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd) if last else os.dup(pfd)
        finally:
            os.close(pfd)
    except (FileNotFoundError, NotADirectoryError):
        raise CopyError(f"no such file or directory in the container: {src}") from None
    try:
        st = os.fstat(fd)
        name = _split(src)[1] or "root"
        if os.path.isdir(dest) and not (stat.S_ISDIR(st.st_mode) and src.endswith("/.")):
            dest = os.path.join(dest, name)
        elif not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
            raise CopyError(f"host directory does not exist: {os.path.dirname(os.path.abspath(dest))}")
        _out(fd, st, dest)
    finally:
        os.close(fd)


def _out(fd, st, dest):
    if stat.S_ISDIR(st.st_mode):
        os.makedirs(dest, exist_ok=True)
        dfd = os.open(fd_path(fd), _DIR)
        try:
            for entry in os.listdir(dfd):
                cfd = os.open(entry, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    _out(cfd, os.fstat(cfd), os.path.join(dest, entry))
                finally:
                    os.close(cfd)
        finally:
            os.close(dfd)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink("", dir_fd=fd)
        if os.path.lexists(dest):
            os.unlink(dest)
        os.symlink(target, dest)
    elif stat.S_ISREG(st.st_mode):
        rfd = os.open(fd_path(fd), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(dest, "wb") as out:
                while True:
                    data = os.read(rfd, 1 << 20)
                    if not data:
                        break
                    out.write(data)
        finally:
            os.close(rfd)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
    # devices, fifos, sockets: skipped


def copy_in(root_fd, src, dest):
    """Host path `src` -> container path `dest`."""
    if not os.path.lexists(src):
        raise CopyError(f"no such file or directory on the host: {src}")
    src = os.path.abspath(src)
    name = os.path.basename(src) or "root"
    try:
        dfd = open_in_root(root_fd, dest)
        if stat.S_ISDIR(os.fstat(dfd).st_mode):
            parent_fd, name = dfd, name
        else:
            os.close(dfd)
            dfd = None
    except FileNotFoundError:
        dfd = None
    if dfd is None:
        parent, name = _split(dest)
        if not name:
            raise CopyError(f"no such directory in the container: {dest}")
        try:
            parent_fd = open_in_root(root_fd, parent)
        except FileNotFoundError:
            raise CopyError(f"no such directory in the container: {parent}") from None
        if not stat.S_ISDIR(os.fstat(parent_fd).st_mode):
            os.close(parent_fd)
            raise CopyError(f"not a directory in the container: {parent}")
    try:
        pfd = os.open(fd_path(parent_fd), _DIR)
    finally:
        os.close(parent_fd)
    try:
        _in(src, pfd, name)
    finally:
        os.close(pfd)


def _in(src, dir_fd, name):
    st = os.lstat(src)
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISLNK(existing.st_mode):
        raise CopyError(f"refusing to write through a symlink in the container: {name}")
    if stat.S_ISDIR(st.st_mode):
        if existing is None:
            os.mkdir(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
        sub = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            for entry in sorted(os.listdir(src)):
                _in(os.path.join(src, entry), sub, entry)
        finally:
            os.close(sub)
    elif stat.S_ISLNK(st.st_mode):
        if existing is not None:
            os.unlink(name, dir_fd=dir_fd)
        os.symlink(os.readlink(src), name, dir_fd=dir_fd)
    elif stat.S_ISREG(st.st_mode):
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                          stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise CopyError(f"refusing to write through a symlink in the container: {name}") from None
            raise
        try:
            with open(src, "rb") as f:
                while True:
                    data = f.read(1 << 20)
                    if not data:
                        break
                    os.write(out, data)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
        finally:
            os.close(out)
