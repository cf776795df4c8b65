"""Namespaces: which to create, which to join by path, user id maps and time offsets."""

import os

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import syscalls as sc

FLAGS = {
    "pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS, "mount": sc.CLONE_NEWNS, "user": sc.CLONE_NEWUSER,
    "cgroup": sc.CLONE_NEWCGROUP, "time": sc.CLONE_NEWTIME,
}
PROC_NAMES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
              "user": "user", "cgroup": "cgroup", "time": "time"}
# setns order: the user namespace first (it grants the rights for the others), mount last
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def creates_network(namespaces):
    return any(ns.get("type") == "network" and not ns.get("path") for ns in namespaces or [])


def loopback_up():
    """Set lo up in this task's network namespace, as runc and crun do in each one they
    create (the CNI loopback plugin does the same)."""
    import fcntl
    import sys
    from _socket import AF_INET, SOCK_DGRAM, socket

    s = socket(AF_INET, SOCK_DGRAM)
    try:
        name = b"lo".ljust(16, b"\0")  # struct ifreq: the name, then ifr_flags (a short)
        flags = int.from_bytes(fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, name + bytes(24))[16:18], sys.byteorder)
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, name + (flags | IFF_UP).to_bytes(2, sys.byteorder) + bytes(22))
    except OSError as e:
        raise RuntimeFailure(f"cannot set the loopback interface up: {e.strerror}") from None
    finally:
        s.close()


def new_flags(namespaces, skip=()):
    """The CLONE_NEW* flags of the namespaces the spec creates (no path), without `skip`."""
    flags = 0
    for ns in namespaces or []:
        if not ns.get("path") and ns["type"] not in skip:
            flags |= FLAGS[ns["type"]]
    return flags


def open_paths(namespaces):
    """Open the namespaces the spec joins by path: [(type, fd)] in join order (close them after)."""
    paths = {ns["type"]: ns["path"] for ns in namespaces or [] if ns.get("path")}
    opened = []
    try:
        for kind in JOIN_ORDER:
            if kind in paths:
                try:
                    fd = os.open(paths[kind], os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise RuntimeFailure(f"cannot open the {kind} namespace {paths[kind]}: {e.strerror}") from None
                opened.append((kind, fd))
    except BaseException:
        close_all(opened)
        raise
    return opened


def open_process(pid, kinds):
    """Open /proc/<pid>/ns/* for the given kinds, in join order; skip those we already share."""
    opened = []
    try:
        for kind in JOIN_ORDER:
            if kind not in kinds:
                continue
            name = PROC_NAMES[kind]
            path = f"/proc/{pid}/ns/{name}"
            try:
                if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                    continue
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise RuntimeFailure(f"cannot open the {kind} namespace of pid {pid}: {e.strerror}") from None
            opened.append((kind, fd))
    except BaseException:
        close_all(opened)
        raise
    return opened


def join(opened):
    for kind, fd in opened:
        try:
            sc.setns(fd, FLAGS[kind])
        except OSError as e:
            raise RuntimeFailure(f"joining the {kind} namespace failed: {e.strerror}") from None


def close_all(opened):
    for _, fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


def unshare(flags):
    if not flags:
        return
    try:
        sc.unshare(flags)
    except OSError as e:
        names = [k for k, v in FLAGS.items() if flags & v]
        raise RuntimeFailure(f"creating the {', '.join(names)} namespaces failed: {e.strerror}") from None


def write_id_maps(pid, uid_maps, gid_maps):
    """Write /proc/<pid>/uid_map and gid_map (from the parent, which holds the rights)."""
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps or [])
        if not text:
            continue
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as e:
            raise RuntimeFailure(f"writing the user namespace {name} ({text.strip()!r}) failed: "
                                 f"{e.strerror}; check linux.uidMappings/gidMappings") from None


def write_time_offsets(offsets):
    """Set the clock offsets of a fresh time namespace (before any process enters it)."""
    if not offsets:
        return
    lines = "".join(f"{clock} {off.get('secs', 0)} {off.get('nanosecs', 0)}\n" for clock, off in offsets.items())
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(lines)
    except OSError as e:
        raise RuntimeFailure(f"setting the time namespace offsets failed: {e.strerror}") from None
