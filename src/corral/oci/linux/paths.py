"""Open paths inside a root directory without ever leaving it.

Every lookup treats `root_fd` as "/": "..", absolute symlink targets and relative ones are
all resolved inside the root, the way a process chrooted there would see them. The kernel
does this itself with openat2(RESOLVE_IN_ROOT); older kernels get a walk, one component at
a time on O_PATH file descriptors, which follows symlinks by hand.

Callers mount onto fd_path(fd) (the /proc/self/fd/N link of the fd resolved here), so a
symlink swapped in after the lookup cannot redirect the mount.
"""

import errno
import os
import stat

from corral.oci.linux import syscalls

MAX_SYMLINKS = 40
_O_PATH = os.O_PATH | os.O_CLOEXEC
_openat2 = [True]  # becomes False when the kernel has no openat2


def split(path):
    """The components of `path`, without empty and "." ones ("/a/./b/" -> ["a", "b"])."""
    return [p for p in path.split("/") if p not in ("", ".")]


def fd_path(fd):
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd, path, create=None, nofollow=False, mode=0o755):
    """An O_PATH fd of `path` resolved inside `root_fd`; the caller closes it.

    create: None (missing -> FileNotFoundError), "dir" (make missing directories) or "file"
    (make missing parents, and the last component as an empty file).
    nofollow: the last component may not be a symlink (OSError ELOOP).
    """
    if create is None and not nofollow and _openat2[0]:
        # the kernel answers EAGAIN (or EXDEV) when a rename or mount anywhere raced a ".."
        # step: retry, and after a few tries walk by hand (which has no such limit)
        for _ in range(8):
            try:
                return syscalls.openat2(root_fd, path or "/", os.O_PATH,
                                        syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
            except OSError as e:
                if e.errno == errno.ENOSYS:
                    _openat2[0] = False
                    break
                if e.errno not in (errno.EAGAIN, errno.EXDEV):
                    raise
    return _walk(root_fd, path, create, nofollow, mode)


def _walk(root_fd, path, create, nofollow, mode):
    parts = split(path)
    stack = []  # fds of the directories from the root down to the current one
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if stack:
                    os.close(stack.pop())
                continue
            cur = stack[-1] if stack else root_fd
            last = not parts
            fd = _open_or_create(cur, name, create, last, mode)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                if last and nofollow:
                    os.close(fd)
                    raise OSError(errno.ELOOP, f"{path}: is a symlink")
                links += 1
                if links > MAX_SYMLINKS:
                    os.close(fd)
                    raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                parts = split(target) + parts
                continue
            if not last and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, f"{path}: a component is not a directory")
            stack.append(fd)
        if stack:
            return stack.pop()
        return os.open(".", _O_PATH, dir_fd=root_fd)
    finally:
        for fd in stack:
            os.close(fd)


def _open_or_create(dir_fd, name, create, last, mode):
    try:
        return os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        if create is None:
            raise
    try:
        if last and create == "file":
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=dir_fd))
        else:
            os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        pass  # made by someone else meanwhile: open what is there, checked like any other
    return os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)


def real_path(fd):
    """The path the kernel reports for `fd` (for messages and checks, not for lookups)."""
    return os.readlink(fd_path(fd))


def inside(path, root):
    """True if the absolute `path` is `root` or below it (lexically)."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"
