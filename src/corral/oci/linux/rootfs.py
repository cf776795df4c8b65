"""The container's root filesystem: spec mounts, /dev, pivot_root, masked and read-only paths.

validate() runs in the parent before anything exists; setup() runs in the container's init
process, already in its own mount (and pid) namespace, so nothing here needs undoing: the
mounts die with the namespace.

Every destination is resolved inside the rootfs (paths.open_in_root) and mounted onto the
/proc/self/fd link of the resolved fd, so neither a config path nor a symlink in the image can
make a mount land outside the rootfs.
"""

import errno
import os
import posixpath
import stat

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import devices, lsm, mounts, paths
from corral.oci.linux import syscalls as S

CGROUP_ROOT = "/sys/fs/cgroup"
_DEFAULT_MOUNT_FLAGS = S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC


def rootfs_path(spec, bundle):
    root = (spec.get("root") or {}).get("path")
    if not isinstance(root, str) or not root:
        raise RuntimeFailure("config.json: root.path is missing; set it to the rootfs directory")
    return os.path.join(bundle, root)


# ---- validate (in the parent) ------------------------------------------------------------

def validate(spec, bundle):
    """Refuse a config this module could not set up, with one clear line."""
    if not isinstance(spec, dict):
        raise RuntimeFailure("config.json: not a JSON object")
    rootfs = rootfs_path(spec, bundle)
    if not os.path.isdir(rootfs):
        raise RuntimeFailure(f"rootfs {rootfs} is not a directory; check root.path in config.json")
    ms = spec.get("mounts") or []
    if not isinstance(ms, list):
        raise RuntimeFailure("config.json: mounts must be a list")
    for i, m in enumerate(ms):
        _check_mount(m, i, bundle)
    linux = spec.get("linux") or {}
    prop = linux.get("rootfsPropagation")
    if prop is not None and prop not in mounts.PROPAGATION:
        raise RuntimeFailure(f"config.json: linux.rootfsPropagation {prop!r} is not one of "
                             + ", ".join(sorted(mounts.PROPAGATION)))
    devs = linux.get("devices") or []
    if not isinstance(devs, list):
        raise RuntimeFailure("config.json: linux.devices must be a list")
    for i, d in enumerate(devs):
        devices.check(d, f"config.json: linux.devices[{i}]")
    for key in ("maskedPaths", "readonlyPaths"):
        lst = linux.get(key) or []
        if not isinstance(lst, list):
            raise RuntimeFailure(f"config.json: linux.{key} must be a list")
        for p in lst:
            if not isinstance(p, str) or not p.startswith("/"):
                raise RuntimeFailure(f"config.json: linux.{key} entry {p!r} is not an absolute path")
    if not isinstance((spec.get("root") or {}).get("readonly", False), bool):
        raise RuntimeFailure("config.json: root.readonly must be true or false")


def _check_mount(m, i, bundle):
    where = f"config.json: mounts[{i}]"
    if not isinstance(m, dict):
        raise RuntimeFailure(f"{where}: a mount must be an object")
    dest = m.get("destination")
    if not isinstance(dest, str) or not dest:
        raise RuntimeFailure(f"{where}: destination is missing")
    if "\0" in dest:
        raise RuntimeFailure(f"{where}: destination holds a NUL character")
    where = f"{where} ({dest})"
    if not dest.startswith("/"):
        raise RuntimeFailure(f"{where}: destination must be an absolute path")
    if m.get("uidMappings") or m.get("gidMappings"):
        raise RuntimeFailure(f"{where}: uidMappings/gidMappings (id-mapped mounts) are not supported; "
                             "remove them")
    for key in ("type", "source"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise RuntimeFailure(f"{where}: {key} must be a string")
        if "\0" in (m.get(key) or ""):
            raise RuntimeFailure(f"{where}: {key} holds a NUL character")
    mounts.check_type(m, where)
    opts = mounts.parse(m, where)
    if opts.bind:
        src = m.get("source")
        if not isinstance(src, str) or not src:
            raise RuntimeFailure(f"{where}: a bind mount needs a source")
        if not os.path.exists(os.path.join(bundle, src)):
            raise RuntimeFailure(f"{where}: bind source {src} does not exist")


# ---- setup (in the container's init) -----------------------------------------------------

def setup(spec, bundle, cgroup_paths, no_pivot=False, before_pivot=None):
    """Build the container's root filesystem and enter it (see the module docstring)."""
    rootfs = os.path.realpath(rootfs_path(spec, bundle))
    linux = spec.get("linux") or {}
    prop = mounts.PROPAGATION[linux.get("rootfsPropagation") or "rprivate"]
    try:
        S.mount(None, "/", None, prop)
        _make_parent_private(rootfs)
        S.mount(rootfs, rootfs, None, S.MS_BIND | S.MS_REC)
    except OSError as e:
        raise RuntimeFailure(f"preparing the rootfs {rootfs} failed: {e}") from e
    cgroupns = any(n.get("type") == "cgroup" for n in linux.get("namespaces") or [])
    label = linux.get("mountLabel") or None  # validate() let it through only with SELinux on
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        setup_dev = True
        for i, m in enumerate(spec.get("mounts") or []):
            try:
                _mount(root_fd, rootfs, bundle, m, cgroup_paths or {}, cgroupns, label)
            except OSError as e:
                why = os.strerror(e.errno) if e.errno else str(e)
                raise RuntimeFailure(f"mounts[{i}]: mounting {m.get('type') or 'bind'} {m.get('source') or ''} "
                                     f"on {m['destination']} failed: {why}; check its source, type and "
                                     "options") from e
            if posixpath.normpath(m["destination"]) == "/dev" and mounts.mount_type(m) == "bind":
                setup_dev = False
        if setup_dev:
            try:
                devices.create(root_fd, devices.device_list(spec))
                devices.symlinks(root_fd)
            except OSError as e:
                raise RuntimeFailure(f"creating devices in {rootfs}/dev failed: {e}") from e
    finally:
        os.close(root_fd)
    if before_pivot is not None:
        before_pivot()
    try:
        if no_pivot:
            _move_root(rootfs)
        else:
            _pivot_root(rootfs)
    except OSError as e:
        raise RuntimeFailure(f"entering rootfs {rootfs} failed: {e}") from e
    if linux.get("rootfsPropagation"):
        # the new root came from a private bind: give it the asked propagation now
        try:
            S.mount(None, "/", None, prop)
        except OSError as e:
            raise RuntimeFailure(f"setting rootfsPropagation on the new root failed: {e}") from e
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for key, apply in (("readonlyPaths", _readonly_path), ("maskedPaths", _mask_path)):
            for p in linux.get(key) or []:
                try:
                    apply(root_fd, p)
                except OSError as e:
                    raise RuntimeFailure(f"linux.{key}: {p} failed: {e}") from e
    finally:
        os.close(root_fd)
    if (spec.get("root") or {}).get("readonly"):
        flags = mounts.current_flags("/") | S.MS_RDONLY
        try:
            S.mount(None, "/", None, S.MS_BIND | S.MS_REMOUNT | flags)
        except OSError as e:
            raise RuntimeFailure(f"making the root read-only (root.readonly) failed: {e}") from e
    os.chdir("/")


def _mountinfo():
    """(mount point, root, fstype, super options) of every mount this process sees."""
    out = []
    for line in _read_lines("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        fields, rfields = left.split(), right.split()
        out.append((_unescape(fields[4]), _unescape(fields[3]), rfields[0],
                    rfields[2].split(",") if len(rfields) > 2 else []))
    return out


def _read_lines(path):
    # binary read and a utf-8 decode: a text-mode open costs a codec lookup (~4 ms here)
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape").splitlines()


def _unescape(s):
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes
    if "\\" not in s:
        return s
    for code in ("\\040", "\\011", "\\012", "\\134"):
        s = s.replace(code, chr(int(code[1:], 8)))
    return s


def _make_parent_private(rootfs):
    # pivot_root refuses a new root whose parent mount is shared
    best = "/"
    for mp, _root, _t, _o in _mountinfo():
        if paths.inside(rootfs, mp) and len(mp) > len(best):
            best = mp
    S.mount(None, best, None, S.MS_PRIVATE)


def _reopen(root_fd, dest):
    """The destination again, now that a mount covers it (its fd from before points under it)."""
    return paths.open_in_root(root_fd, dest)


def _finish(root_fd, dest, opts):
    """Propagation and recursive attributes of a mount just made at `dest`."""
    if not opts.propagation and not (opts.rec_set or opts.rec_clr):
        return
    fd = _reopen(root_fd, dest)
    try:
        for p in opts.propagation:
            S.mount(None, paths.fd_path(fd), None, p)
        if opts.rec_set or opts.rec_clr:
            S.mount_setattr(fd, "", 0x1000 | S.AT_RECURSIVE, opts.rec_set, opts.rec_clr)  # AT_EMPTY_PATH
    finally:
        os.close(fd)


# types that keep their own SELinux labels (linux.mountLabel is not put on them), as in runc;
# mqueue takes no context= option: its root is labelled after the mount
_UNLABELLED = {"bind", "proc", "sysfs", "mqueue", "cgroup", "cgroup2"}


def labelled_data(typ, data, label):
    """Mount data for a mount of `typ` with linux.mountLabel applied (the SELinux context=
    option on tmpfs, devpts and other filesystems; not on the types in _UNLABELLED)."""
    if not label or typ in _UNLABELLED:
        return data
    return lsm.mount_data(data, label)


def _mount(root_fd, rootfs, bundle, m, cgroup_paths, cgroupns, label=None):
    dest = m["destination"]
    typ = mounts.mount_type(m)
    opts = mounts.parse(m)
    data = labelled_data(typ, opts.data_str, label)
    if typ == "bind":
        _bind(root_fd, rootfs, bundle, m, opts)
    elif typ == "cgroup":
        _mount_cgroup(root_fd, dest, opts, cgroup_paths, cgroupns, label)
    elif typ == "cgroup2":
        _mount_cgroup2(root_fd, dest, opts, cgroup_paths, cgroupns)
    else:
        # proc and sysfs must land on a real directory, never through a symlink
        nofollow = typ in ("proc", "sysfs")
        try:
            fd = paths.open_in_root(root_fd, dest, create="dir", nofollow=nofollow)
        except OSError as e:
            if nofollow and e.errno == errno.ELOOP:
                raise RuntimeFailure(f"{typ} must be mounted on a real directory, but {dest} is a "
                                     "symlink in the rootfs") from None
            raise
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise RuntimeFailure(f"mount {dest}: destination is not a directory")
            _check_proc_dest(rootfs, fd, dest, typ)
            if opts.copyup:
                _mount_copyup(fd, m, opts, data)
                if opts.flags & S.MS_RDONLY:
                    nfd = _reopen(root_fd, dest)
                    try:
                        S.mount(None, paths.fd_path(nfd), None, S.MS_REMOUNT | opts.flags)
                    finally:
                        os.close(nfd)
            else:
                try:
                    S.mount(m.get("source") or typ, paths.fd_path(fd), typ, opts.flags, data)
                except PermissionError:
                    if typ != "sysfs":
                        raise
                    # no sysfs of our own (not owning the network namespace): the host's, read-only
                    S.mount("/sys", paths.fd_path(fd), None, S.MS_BIND | S.MS_REC)
                    nfd = _reopen(root_fd, dest)
                    try:
                        mounts.remount(paths.fd_path(nfd), opts.flags | S.MS_RDONLY)
                    finally:
                        os.close(nfd)
        finally:
            os.close(fd)
        if label and typ == "mqueue":
            _label_root(root_fd, dest, label)
    _finish(root_fd, dest, opts)


def _label_root(root_fd, dest, label):
    """Give the root of the mount at dest the SELinux label (for types without context=)."""
    fd = _reopen(root_fd, dest)
    try:
        os.setxattr(paths.fd_path(fd), "security.selinux", label.encode())
    finally:
        os.close(fd)


# files under /proc that a bind may replace (what lxcfs emulates); runc allows the same
PROC_BIND_OK = {"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                "/proc/sys/kernel/ns_last_pid"}


def _check_proc_dest(rootfs, fd, dest, typ):
    # a mount over something inside the container's /proc could hide or redirect what the
    # kernel exposes there: only proc itself goes on /proc, and a few known files under it
    real = paths.real_path(fd)
    inner = "/" + real[len(rootfs):].lstrip("/") if paths.inside(real, rootfs) else real
    if not paths.inside(inner, "/proc"):
        return
    if inner == "/proc" and typ == "proc":
        return
    if inner in PROC_BIND_OK:
        return
    raise RuntimeFailure(f"mount {dest}: the destination resolves to {inner}, inside /proc, "
                         "where only proc itself may be mounted")


def _bind(root_fd, rootfs, bundle, m, opts):
    src = os.path.join(bundle, m["source"])
    dest = m["destination"]
    kind = "dir" if os.path.isdir(src) else "file"
    fd = paths.open_in_root(root_fd, dest, create=kind)
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if is_dir != (kind == "dir"):
            what = "directory" if kind == "dir" else "file"
            raise RuntimeFailure(f"mount {dest}: the source {src} is a {what} but the destination is not")
        _check_proc_dest(rootfs, fd, dest, "bind")
        S.mount(src, paths.fd_path(fd), None, S.MS_BIND | (opts.flags & S.MS_REC))
    finally:
        os.close(fd)
    # the kernel ignores flags on the first bind: they take a remount (of the top mount only)
    if opts.flags & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT):
        fd = _reopen(root_fd, dest)
        try:
            mounts.remount(paths.fd_path(fd), opts.flags)
        finally:
            os.close(fd)


def _mount_copyup(fd, m, opts, data):
    """tmpcopyup: a tmpfs that starts with a copy of what the destination held."""
    import shutil
    import tempfile

    stage = tempfile.mkdtemp(prefix="corral-copyup-")
    try:
        S.mount(m.get("source") or "tmpfs", stage, "tmpfs", opts.flags & ~S.MS_RDONLY, data)
        try:
            shutil.copytree(paths.fd_path(fd), stage, symlinks=True, dirs_exist_ok=True)
            S.mount(stage, paths.fd_path(fd), None, S.MS_MOVE)
        except BaseException:
            S.umount2(stage, S.MNT_DETACH)
            raise
    finally:
        os.rmdir(stage)


# ---- cgroups -----------------------------------------------------------------------------

def _host_cgroup_layout():
    """("v2", [mount]) on a unified host, else ("v1", [v1 hierarchies]); a mount is
    (mount point, root, controllers and name= options)."""
    v1, v2 = [], None
    controllers = _v1_controller_names()
    for mp, root, fstype, sopts in _mountinfo():
        if not paths.inside(mp, CGROUP_ROOT):
            continue
        if fstype == "cgroup2" and mp == CGROUP_ROOT:
            v2 = (mp, root, [])
        elif fstype == "cgroup":
            v1.append((mp, root, [o for o in sopts if o in controllers or o.startswith("name=")]))
    if v2 and not v1:
        return "v2", [v2]
    return "v1", v1


def _v1_controller_names():
    try:
        return {line.split()[0] for line in _read_lines("/proc/cgroups") if line and line[0] != "#"}
    except OSError:
        return set()


def _own_cgroup(hierarchy):
    """This process's cgroup in a hierarchy, from /proc/self/cgroup ("" for v2)."""
    for line in _read_lines("/proc/self/cgroup"):
        _id, ctrls, path = line.split(":", 2)
        if set(ctrls.split(",")) == set(hierarchy) or (not hierarchy and ctrls == ""):
            return path
    return None


def _host_dir(mp, root, ctrls, cgroup_paths):
    for key in ctrls + [c.split("=", 1)[1] for c in ctrls if "=" in c] + [posixpath.basename(mp)]:
        if key in cgroup_paths:
            return cgroup_paths[key]
    own = _own_cgroup(ctrls)
    if own is None:
        return mp
    rel = posixpath.relpath(own, root) if paths.inside(own, root) else own.lstrip("/")
    return posixpath.normpath(posixpath.join(mp, rel))


def _mount_cgroup(root_fd, dest, opts, cgroup_paths, cgroupns, label=None):
    kind, hierarchies = _host_cgroup_layout()
    if kind == "v2":
        return _mount_cgroup2(root_fd, dest, opts, cgroup_paths, cgroupns)
    fd = paths.open_in_root(root_fd, dest, create="dir")
    try:
        S.mount("tmpfs", paths.fd_path(fd), "tmpfs", _DEFAULT_MOUNT_FLAGS,
                labelled_data("tmpfs", "mode=755", label))
    finally:
        os.close(fd)
    flags = _DEFAULT_MOUNT_FLAGS | (opts.flags & (S.MS_RDONLY | S.MS_RELATIME | S.MS_NOATIME))
    base = paths.open_in_root(root_fd, dest)
    try:
        for mp, root, ctrls in hierarchies:
            name = posixpath.basename(mp)
            sub = paths.open_in_root(base, name, create="dir")
            try:
                target = paths.fd_path(sub)
                if cgroupns:
                    # in its own cgroup namespace a fresh mount shows the container's cgroup as /
                    source = "systemd" if "name=systemd" in ctrls else "cgroup"
                    S.mount(source, target, "cgroup", flags, ",".join(ctrls))
                else:
                    S.mount(_host_dir(mp, root, ctrls, cgroup_paths), target, None, S.MS_BIND)
                    os.close(sub)
                    sub = paths.open_in_root(base, name)
                    mounts.remount(paths.fd_path(sub), flags)
            finally:
                os.close(sub)
            # co-mounted controllers ("cpu,cpuacct") get one link per controller, as on the host
            parts = name.split(",")
            if len(parts) > 1:
                for p in parts:
                    try:
                        os.symlink(name, p, dir_fd=base)
                    except FileExistsError:
                        pass
    finally:
        os.close(base)


def _own_v2_dir():
    """This process's cgroup2 directory on the host's cgroup2 mount (unified or hybrid)."""
    for mp, root, fstype, _o in _mountinfo():
        if fstype == "cgroup2":
            own = _own_cgroup([]) or "/"
            rel = posixpath.relpath(own, root) if paths.inside(own, root) else own.lstrip("/")
            return posixpath.normpath(posixpath.join(mp, rel))
    raise RuntimeFailure("a cgroup2 mount was asked for but the host has no cgroup2 hierarchy mounted")


def _mount_cgroup2(root_fd, dest, opts, cgroup_paths, cgroupns):
    fd = paths.open_in_root(root_fd, dest, create="dir")
    flags = _DEFAULT_MOUNT_FLAGS | opts.flags
    try:
        if cgroupns:
            try:
                S.mount("cgroup2", paths.fd_path(fd), "cgroup2", flags, opts.data_str)
                return
            except (PermissionError, OSError) as e:
                if e.errno not in (1, 16):  # EPERM, EBUSY: fall back to a bind
                    raise
        host = cgroup_paths.get("") or cgroup_paths.get("unified") or _own_v2_dir()
        S.mount(host, paths.fd_path(fd), None, S.MS_BIND)
    finally:
        os.close(fd)
    fd = _reopen(root_fd, dest)
    try:
        mounts.remount(paths.fd_path(fd), flags)
    finally:
        os.close(fd)


# ---- entering the root, then what is done from inside ------------------------------------

def _pivot_root(rootfs):
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        # pivot onto itself: the old root ends up stacked under "/", then is detached
        os.fchdir(new)
        S.pivot_root(".", ".")
        os.fchdir(old)
        S.mount(None, ".", None, S.MS_SLAVE | S.MS_REC)
        S.umount2(".", S.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def _move_root(rootfs):
    # without pivot_root the host's mounts stay below the chroot: detach the host's proc and
    # sysfs mounts at least (or cover them where that is refused) so no escape finds them
    for mp, _root, fstype, _o in _mountinfo():
        if fstype not in ("proc", "sysfs") or paths.inside(mp, rootfs):
            continue
        try:
            S.mount(None, mp, None, S.MS_SLAVE | S.MS_REC)
            S.umount2(mp, S.MNT_DETACH)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise
            S.mount("tmpfs", mp, "tmpfs", 0)
    os.chdir(rootfs)
    S.mount(rootfs, "/", None, S.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def _target(fd, p):
    # without a /proc in the container there is no fd link: use the path, which the new root
    # already confines
    return paths.fd_path(fd) if os.path.isdir("/proc/self/fd") else p


def _readonly_path(root_fd, p):
    try:
        fd = paths.open_in_root(root_fd, p)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        S.mount(_target(fd, p), _target(fd, p), None, S.MS_BIND | S.MS_REC)
    finally:
        os.close(fd)
    fd = paths.open_in_root(root_fd, p)
    try:
        mounts.remount(_target(fd, p), S.MS_RDONLY)
    finally:
        os.close(fd)


def _mask_path(root_fd, p):
    try:
        fd = paths.open_in_root(root_fd, p)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            S.mount("tmpfs", _target(fd, p), "tmpfs", S.MS_RDONLY)
        else:
            S.mount("/dev/null", _target(fd, p), None, S.MS_BIND)
    finally:
        os.close(fd)


def mount_console(slave_path):
    """Bind the terminal's pty slave onto the container's /dev/console, as runc does when
    process.terminal is set. Call it after setup(), inside the new root."""
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = paths.open_in_root(root_fd, "/dev/console", create="file", nofollow=True)
        try:
            S.mount(slave_path, _target(fd, "/dev/console"), None, S.MS_BIND)
        finally:
            os.close(fd)
    except OSError as e:
        raise RuntimeFailure(f"binding the terminal {slave_path} on /dev/console failed: {e}") from e
    finally:
        os.close(root_fd)
