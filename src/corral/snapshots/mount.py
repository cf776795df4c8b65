"""Mounting the specs a snapshotter returns: mount_all(mounts, target), unmount_all(target).

This is the one place that mounts such specs: the daemon (unpack, diff apply), the CLI (cp into
a stopped container) and the shim (a container's rootfs from Create) all use it.

Overlay's options are passed to the kernel in one page (4096 bytes, NUL included). When a
long layer chain does not fit, the lowerdirs are made relative to their common directory and
the mount is made from that directory (the kernel resolves relative lowerdirs against the
caller's working directory), as containerd does. The chdir happens in a short-lived thread
that first unshares its filesystem attributes (unshare(CLONE_FS)), so the process's working
directory never changes and no fork is needed: a forked child of a process with gRPC's
threads can crash before it gets to mount.

The module imports only what mounting needs (the shim imports it on its create path); specs
are snapshots.base.Mount objects, containerd.types.Mount messages or dicts.
"""

import errno
import os
import threading
import time

from corral.metadata.errors import InvalidArgument, StorageError
from corral.oci.linux import syscalls as sc

CLONE_FS = 0x00000200

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


def _fields(m):
    """(type, source, options) of a Mount, a containerd.types.Mount or a dict."""
    if isinstance(m, dict):
        return m["type"], m["source"], list(m.get("options") or [])
    return m.type, m.source, list(m.options)


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
    """mount(2) with `cwd` as the working directory, from a thread with its own filesystem
    attributes (the thread ends afterwards, and its working directory with it)."""
    target = os.path.abspath(target)
    failure = []

    def run():
        try:
            sc.unshare(CLONE_FS)  # from here on, chdir changes only this thread's directory
            os.chdir(cwd)
            sc.mount(source, target, fstype, flags, data)
        except BaseException as e:
            failure.append(e)

    t = threading.Thread(target=run, name="corral-mount-in-dir", daemon=True)
    t.start()
    t.join()
    if failure:
        e = failure[0]
        code = getattr(e, "errno", None) or errno.EIO
        raise OSError(code, f"mount {fstype} on {target} (lowerdirs relative to {cwd}): "
                      f"{getattr(e, 'strerror', None) or e}")


def mount_one(m, target):
    mtype, source, options = _fields(m)
    flags, data = parse_options(options)
    if mtype == "rbind":
        flags |= sc.MS_BIND | sc.MS_REC
    if mtype == "bind" or flags & sc.MS_BIND:
        sc.mount(source, target, None, flags & ~sc.MS_RDONLY | sc.MS_BIND, None)
        if flags & sc.MS_RDONLY:
            try:
                sc.mount(None, target, None, flags | sc.MS_BIND | sc.MS_REMOUNT, None)
            except OSError:
                sc.umount2(target, sc.MNT_DETACH)
                raise
        return
    if len(data.encode()) + 1 > PAGE_SIZE and mtype == "overlay":
        compact = _compact_lowerdirs(data)
        if compact is None or len(compact[1].encode()) + 1 > PAGE_SIZE:
            raise InvalidArgument(f"overlay mount on {target}: options are {len(data)} bytes, over "
                                  f"the kernel's {PAGE_SIZE}, even with relative lowerdirs; use "
                                  "fewer layers or a shorter snapshotter root")
        _mount_in_dir(compact[0], source, target, mtype, flags, compact[1])
        return
    sc.mount(source, target, mtype, flags, data or None)


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
