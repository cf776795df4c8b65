"""The container's rootfs: mount what Create gives us on <bundle>/rootfs, unmount on Delete."""

import os

# syscalls (ctypes) is imported only by the functions that mount: `delete` checks mountinfo
# first and usually has nothing to unmount


def _flags():
    from corral.oci.linux import syscalls as sc

    return {
        "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False),
        "nosuid": (sc.MS_NOSUID, True), "suid": (sc.MS_NOSUID, False),
        "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
        "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False),
        "sync": (sc.MS_SYNCHRONOUS, True), "async": (sc.MS_SYNCHRONOUS, False),
        "dirsync": (sc.MS_DIRSYNC, True), "remount": (sc.MS_REMOUNT, True),
        "noatime": (sc.MS_NOATIME, True), "atime": (sc.MS_NOATIME, False),
        "nodiratime": (sc.MS_NODIRATIME, True), "diratime": (sc.MS_NODIRATIME, False),
        "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
        "strictatime": (sc.MS_STRICTATIME, True),
        "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
        "defaults": (0, False),
    }


def parse_options(options):
    table = _flags()
    flags, data = 0, []
    for opt in options:
        entry = table.get(opt)
        if entry is None:
            data.append(opt)
        elif entry[1]:
            flags |= entry[0]
        else:
            flags &= ~entry[0]
    return flags, ",".join(data)


def mount_rootfs(mounts, rootfs):
    """Mount each of `mounts` (containerd.types.Mount) on rootfs, undoing all on failure."""
    from corral.oci.linux import syscalls as sc

    os.makedirs(rootfs, exist_ok=True)
    done = 0
    try:
        for m in mounts:
            flags, data = parse_options(m.options)
            fstype = m.type if m.type not in ("bind", "rbind") else None
            if m.type in ("bind", "rbind"):
                flags |= sc.MS_BIND | (sc.MS_REC if m.type == "rbind" else 0)
            sc.mount(m.source, rootfs, fstype, flags & ~sc.MS_RDONLY if flags & sc.MS_BIND else flags,
                     data or None)
            done += 1
            if flags & sc.MS_BIND and flags & sc.MS_RDONLY:
                # a bind mount takes its read-only flag only on a remount
                sc.mount(None, rootfs, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
    except OSError as e:
        for _ in range(done):
            unmount_rootfs(rootfs)
        raise OSError(e.errno, f"mount rootfs for {rootfs}: {e.strerror or e}") from None


def is_mount_point(path):
    """True if something is mounted on path (os.path.ismount misses binds within one filesystem)."""
    path = os.path.realpath(path)
    escaped = path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ", 5)[4] == escaped for line in f)


def unmount_rootfs(rootfs):
    """Unmount everything stacked on rootfs (nothing if it is not a mount point)."""
    for _ in range(16):
        if not is_mount_point(rootfs):
            return
        from corral.oci.linux import syscalls as sc

        try:
            sc.umount2(rootfs, 0)
        except OSError:
            try:
                sc.umount2(rootfs, sc.MNT_DETACH)
            except OSError:
                return
