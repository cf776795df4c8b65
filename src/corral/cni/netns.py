"""Pinning a container's network namespace to a file (`<data-root>/cni/netns/<id>`, a bind
mount of /proc/<pid>/ns/net, as `ip netns` does) so that it outlives the container's process:
CNI DEL then still finds the container's interface. The bridge plugin learns which masquerade
rules to remove from that interface's addresses, so without the pin a container that died
first would leave its NAT rules behind."""

import errno
import os

from corral.oci.linux import syscalls as sc


def netns_dir(data_root):
    return os.path.join(data_root, "cni", "netns")


def path_of(data_root, container_id):
    return os.path.join(netns_dir(data_root), container_id)


def is_pinned(path):
    """True when `path` is a mounted namespace file (not the empty placeholder)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def same_namespace(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _ensure_shared_dir(d):
    """The pin directory is a shared mount of its own, so that an unmount there reaches the
    copies that mount namespaces made in the meantime (else they keep the namespace alive)."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    if _is_mount_point(d):
        return
    sc.mount(d, d, None, sc.MS_BIND)
    sc.mount(None, d, None, sc.MS_SHARED)


def _is_mount_point(d):
    """From mountinfo: os.path.ismount misses a bind mount of a directory onto itself."""
    d = os.path.realpath(d)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ", 5)[4].replace("\\040", " ")
            if point == d:
                return True
    return False


def pin(data_root, container_id, pid):
    """Bind-mount the network namespace of `pid`; returns the pin's path. Idempotent."""
    source = f"/proc/{pid}/ns/net"
    path = path_of(data_root, container_id)
    if is_pinned(path):
        if same_namespace(path, source):
            return path
        unpin(data_root, container_id)
    _ensure_shared_dir(netns_dir(data_root))
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    try:
        sc.mount(source, path, None, sc.MS_BIND)
    except OSError:
        _unlink(path)
        raise
    return path


def unpin(data_root, container_id):
    """Release the pin (the namespace dies with its last user). Tolerant of a missing pin."""
    path = path_of(data_root, container_id)
    while is_pinned(path):
        try:
            sc.umount2(path, sc.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
            break
    _unlink(path)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
