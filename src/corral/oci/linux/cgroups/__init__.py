"""Cgroups for corral-runc: v1 (and the hybrid layout) and unified v2, chosen at run time.

The interface the runtime uses:
  validate(resources)                     refuse what is malformed or what the host lacks
  open_manager(cgroups_path, id, systemd) a manager for the container's cgroup
  load_manager(saved)                     the same manager again, from manager.saved()

A manager has create(), apply(pid), set(resources), paths(), freeze(), thaw(), frozen(),
pids(), stats(), destroy() and saved(). Only the stdlib is imported, and the v1/v2 modules
are imported only when a manager is made.
"""

import os
import posixpath

from corral.oci.errors import RuntimeFailure

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/corral"


class Layout:
    """What the host mounts: kind "v1" (with `unified` set on a hybrid host) or "v2".

    v1: hierarchies maps a hierarchy's mount point to (its root, its controller names,
    including "name=systemd" style names). v2: mount is the cgroup2 mount point."""

    def __init__(self, kind, hierarchies=None, unified=None, mount=None):
        self.kind = kind
        self.hierarchies = hierarchies or {}
        self.unified = unified
        self.mount = mount

    def controllers(self):
        """Every controller the host offers (v1: mounted ones; v2: the root's list)."""
        if self.kind == "v2":
            return set(_read(posixpath.join(self.mount, "cgroup.controllers")).split())
        return {c for _root, ctrls in self.hierarchies.values() for c in ctrls}


def _read(path):
    with open(path) as f:
        return f.read()


def _unescape(field):
    # mountinfo escapes space, tab, newline and backslash as octal
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def detect_layout(mountinfo="/proc/self/mountinfo"):
    hierarchies = {}
    unified = None
    v2_root = None
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            root, mp = _unescape(fields[3]), _unescape(fields[4])
            fstype, sopts = fields[dash + 1], fields[dash + 3]
            if not (mp == CGROUP_ROOT or mp.startswith(CGROUP_ROOT + "/")):
                continue
            if fstype == "cgroup2":
                if mp == CGROUP_ROOT:
                    v2_root = mp
                else:
                    unified = mp
            elif fstype == "cgroup":
                ctrls = [o for o in sopts.split(",") if o not in ("rw", "ro") and
                         (o.startswith("name=") or "=" not in o) and o not in _V1_MOUNT_OPTS]
                hierarchies[mp] = (root, ctrls)
    if v2_root and not hierarchies:
        return Layout("v2", mount=v2_root)
    if not hierarchies:
        raise RuntimeFailure(f"no cgroup hierarchy is mounted under {CGROUP_ROOT}: mount cgroup2 "
                             "or the v1 controllers there")
    return Layout("v1", hierarchies=hierarchies, unified=unified)


_V1_MOUNT_OPTS = {"noprefix", "clone_children", "xattr", "cpuset_v2_mode", "none",
                  "nosuid", "nodev", "noexec", "relatime", "favordynmods"}

_layout = None


def layout():
    global _layout
    if _layout is None:
        _layout = detect_layout()
    return _layout


def own_cgroup(controller):
    """This process's cgroup in the hierarchy holding `controller` ("" for cgroup2)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            if (controller == "" and ctrls == "") or (controller and controller in ctrls.split(",")):
                return path
    return "/"


def fork_into(manager):
    """Fork a child that is to run in the manager's cgroups; returns (pid, files): pid 0 in
    the child, which then calls join(files) itself.

    Where the kernel can, the child starts in the cgroup2 directory (clone3 with
    CLONE_INTO_CGROUP) and joins the v1 hierarchies through `tasks`: neither takes the
    kernel's global lock whose RCU grace period a move through cgroup.procs waits for (5-15
    ms). Elsewhere it is os.fork() and the files include cgroup.procs."""
    target = manager.clone_target() if manager is not None else None
    if target:
        from corral.oci.linux import syscalls
        try:
            fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                return syscalls.fork_into_cgroup(fd), manager.join_files(cloned=True)
            except OSError:
                pass  # an older kernel, or threads: fork and move through cgroup.procs
            finally:
                os.close(fd)
    return os.fork(), (manager.join_files(cloned=False) if manager is not None else [])


def clone_into(manager, ns_flags):
    """fork_into()'s clone3, with the child in new namespaces from its birth (ns_flags:
    CLONE_NEW* bits), so no intermediate process has to unshare them and fork again. Returns
    (pid, files) as fork_into does, or None where the kernel cannot (no cgroup2 directory to
    start in, an older kernel, threads, or a namespace the kernel refuses): the caller then
    takes the stage1 way, which reports any namespace error itself."""
    target = manager.clone_target() if manager is not None else None
    if not target:
        return None
    from corral.oci.linux import syscalls
    try:
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return syscalls.fork_into_cgroup(fd, ns_flags), manager.join_files(cloned=True)
    except OSError:
        return None
    finally:
        os.close(fd)


def join(files):
    """In the forked child: move this (single-threaded) process into the cgroups by writing 0
    to each of fork_into()'s files."""
    for path in files:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as e:
            raise RuntimeFailure(f"cannot move the container's process into the cgroup "
                                 f"{posixpath.dirname(path)}: {e.strerror}") from None


def inner_path(cgroups_path, container_id, controller=""):
    """The container's cgroup path inside a hierarchy, as runc reads cgroupsPath: absolute as
    given, relative under this process's own cgroup, or none: /corral/<id>."""
    if not cgroups_path:
        return posixpath.join(DEFAULT_PARENT, container_id)
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        raise RuntimeFailure(f"cgroupsPath {cgroups_path!r} is in the systemd form slice:prefix:name "
                             "but the systemd cgroup driver is off: pass --systemd-cgroup or use a path")
    if cgroups_path.startswith("/"):
        p = posixpath.normpath(cgroups_path)
    else:
        p = posixpath.normpath(posixpath.join(own_cgroup(controller), cgroups_path))
    p = "/" + p.lstrip("/")  # normpath has already folded any ".." at the root away
    if p == "/":
        raise RuntimeFailure(f"cgroupsPath {cgroups_path!r} names the hierarchy's root cgroup: "
                             "give a path below it")
    return p


def open_manager(cgroups_path, container_id, systemd=False):
    if systemd:
        _refuse_systemd(cgroups_path)
    lay = layout()
    if lay.kind == "v2":
        from corral.oci.linux.cgroups.v2 import Manager
        return Manager(lay.mount, inner_path(cgroups_path, container_id))
    from corral.oci.linux.cgroups.v1 import Manager
    return Manager.for_layout(lay, cgroups_path, container_id)


def load_manager(saved):
    if saved.get("kind") == "v2":
        from corral.oci.linux.cgroups.v2 import Manager
    else:
        from corral.oci.linux.cgroups.v1 import Manager
    return Manager.from_saved(saved)


def _refuse_systemd(cgroups_path):
    try:
        pid1 = _read("/proc/1/comm").strip()
    except OSError:
        pid1 = "unknown"
    if not os.path.isdir("/run/systemd/system"):
        raise RuntimeFailure(f"--systemd-cgroup: systemd is not running here (PID 1 is {pid1}); "
                             "drop --systemd-cgroup to use the cgroupfs driver")
    raise RuntimeFailure("--systemd-cgroup: the systemd cgroup driver is not supported by corral-runc "
                         f"yet (cgroupsPath {cgroups_path!r}); drop --systemd-cgroup")


def validate(resources):
    """Refuse, before anything is made, resources that are malformed or that this host lacks."""
    from corral.oci.linux.cgroups import values
    values.check(resources or {}, layout())
