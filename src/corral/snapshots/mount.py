"""Mounting the specs a snapshotter returns: mount_all(mounts, target), unmount_all(target).

Overlay's options are passed to the kernel in one page (4096 bytes, NUL included). When a
long layer chain does not fit, the lowerdirs are made relative to their common directory and
the mount is made by a forked child that chdirs there first (the kernel resolves relative
lowerdirs against the caller's working directory), as containerd does; the parent's working
directory is never changed, so threads are unaffected.
"""

import errno
import os
import time

from corral.metadata.errors import InvalidArgument, StorageError
from corral.oci.linux import syscalls as sc
from corral.snapshots.base import Mount

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

_FLAGS = {
    "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False),
    "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
    "nosuid": (sc.MS_NOSUID, True), "suid": (sc.MS_NOSUID, False),
    "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False),
    "sync": (sc.MS_SYNCHRONOUS, True), "async": (sc.MS_SYNCHRONOUS, False),
    "dirsync": (sc.MS_DIRSYNC, True), "remount": (sc.MS_REMOUNT, True),
    "noatime": (sc.MS_NOATIME, True), "atime": (sc.MS_NOATIME, False),
    "nodiratime": (sc.MS_NODIRATIME, True), "diratime": (sc.MS_NODIRATIME, False),
    "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
    "strictatime": (sc.MS_STRICTATIME, True), "defaults": (0, False),
}


def parse_options(options):
    """Split mount options into (flags, data string)."""
    flags, data = 0, []
    for opt in options:
        if opt in _FLAGS:
            bit, on = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(opt)
    return flags, ",".join(data)


def _as_mount(m):
    return m if isinstance(m, Mount) else Mount(m["type"], m["source"], list(m.get("options", [])))


def _compact_lowerdirs(data):
    """(dir, data with lowerdirs relative to dir), or None when there is nothing to gain."""
    opts = data.split(",")
    idx = next((i for i, o in enumerate(opts) if o.startswith("lowerdir=")), None)
    if idx is None:
        return None
    lowers = opts[idx][len("lowerdir="):].split(":")
    common = os.path.commonpath(lowers) if all(p.startswith("/") for p in lowers) else ""
    if len(lowers) < 2 or common in ("", "/"):
        return None
    opts[idx] = "lowerdir=" + ":".join(os.path.relpath(p, common) for p in lowers)
    return common, ",".join(opts)


def _mount_in_dir(cwd, source, target, fstype, flags, data):
    """mount(2) from a forked child whose working directory is `cwd`."""
    target = os.path.abspath(target)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.chdir(cwd)
            sc.mount(source, target, fstype, flags, data)
        except OSError as e:
            code = e.errno or 1
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OSError(code, f"mount {fstype} on {target} (lowerdirs relative to {cwd}): "
                      f"{os.strerror(code) if code > 0 else 'killed'}")


def mount_one(m, target):
    m = _as_mount(m)
    flags, data = parse_options(m.options)
    if m.type == "bind" or flags & sc.MS_BIND:
        sc.mount(m.source, target, None, flags & ~sc.MS_RDONLY | sc.MS_BIND, None)
        if flags & sc.MS_RDONLY:
            try:
                sc.mount(None, target, None, flags | sc.MS_BIND | sc.MS_REMOUNT, None)
            except OSError:
                sc.umount2(target, sc.MNT_DETACH)
                raise
        return
    if len(data) + 1 > PAGE_SIZE and m.type == "overlay":
        compact = _compact_lowerdirs(data)
        if compact is None or len(compact[1]) + 1 > PAGE_SIZE:
            raise InvalidArgument(f"overlay mount on {target}: options are {len(data)} bytes, over "
                                  f"the kernel's {PAGE_SIZE}, even with relative lowerdirs; use "
                                  "fewer layers or a shorter snapshotter root")
        _mount_in_dir(compact[0], m.source, target, m.type, flags, compact[1])
        return
    sc.mount(m.source, target, m.type, flags, data or None)


def mount_all(mounts, target):
    """Mount each spec on `target` in order; on a failure, undo the ones made and raise."""
    done = 0
    try:
        for m in mounts:
            mount_one(m, target)
            done += 1
    except OSError as e:
        for _ in range(done):
            try:
                sc.umount2(target, sc.MNT_DETACH)
            except OSError:
                pass
        raise StorageError(f"mounting on {target} failed: {e}") from None
    except BaseException:
        for _ in range(done):
            try:
                sc.umount2(target, sc.MNT_DETACH)
            except OSError:
                pass
        raise


def unmount_all(target, timeout=10.0):
    """Unmount everything stacked on `target` (no error when nothing is mounted)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sc.umount2(target, sc.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return  # not a mount point (any more)
            if e.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise StorageError(f"unmounting {target} failed: {e}") from None
