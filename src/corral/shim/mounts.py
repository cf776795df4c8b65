"""The container's rootfs: mount what Create gives us on <bundle>/rootfs, unmount on Delete."""

import errno
import os

# Mounting goes through the snapshots' mount helper (corral.snapshots.mount), the one place that
# knows the mount options (and overlay's long lowerdir lists, over the kernel's one page of
# mount data, which images of many layers need). It and syscalls (ctypes) are imported only by
# the functions that mount: `delete` checks mountinfo first and usually has nothing to unmount.


def parse_options(options):
    """(flags, data) of mount options, as the mount helper splits them."""
    from corral.snapshots.mount import parse_options as parse

    return parse(options)


def mount_rootfs(mounts, rootfs):
    """Mount each of `mounts` (containerd.types.Mount) on rootfs, undoing all on failure."""
    from corral.metadata.errors import InvalidArgument, StorageError
    from corral.snapshots.mount import mount_all

    os.makedirs(rootfs, exist_ok=True)
    try:
        mount_all(mounts, rootfs)
    except StorageError as e:
        code = errno.EINVAL if isinstance(e, InvalidArgument) else errno.EIO
        raise OSError(code, f"mount rootfs for {rootfs}: {e}") from None


def is_mount_point(path):
    """True if something is mounted on path (os.path.ismount misses binds within one filesystem)."""
    path = os.path.realpath(path)
    escaped = path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ", 5)[4] == escaped for line in f)


def unmount_rootfs(rootfs):
    """Unmount everything stacked on rootfs (nothing if it is not a mount point); True if
    nothing is mounted there any more."""
    for _ in range(16):
        if not is_mount_point(rootfs):
            return True
        from corral.oci.linux import syscalls as sc

        try:
            sc.umount2(rootfs, 0)
        except OSError:
            try:
                sc.umount2(rootfs, sc.MNT_DETACH)
            except OSError:
                return False
    return not is_mount_point(rootfs)
