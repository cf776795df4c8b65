"""Thin ctypes wrappers over the Linux system calls the runtime needs.

Every wrapper raises OSError(errno, message) on failure, like the os module does.
Only the stdlib is imported so the runtime's start path stays cheap.
"""

import os

from corral.oci.linux import cabi as ctypes  # the pieces of ctypes we use, without its import cost

_libc = ctypes.CDLL(None, use_errno=True)

# clone/unshare/setns flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# prctl options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.madvise.argtypes = [ctypes.c_ulong, ctypes.c_size_t, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

SYS_pivot_root = 155  # x86_64
SYS_capget = 125
SYS_capset = 126
SYS_openat2 = 437
SYS_pidfd_open = 434
SYS_pidfd_send_signal = 424


def _fs(value):
    if value is None:
        return None
    return os.fsencode(value)


def _check(ret, what):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def mount(source, target, fstype, flags=0, data=None):
    _check(_libc.mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data)),
           f"mount {source} on {target} ({fstype or 'bind'})")


def umount2(target, flags=0):
    _check(_libc.umount2(_fs(target), flags), f"umount {target}")


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def setns(fd, nstype=0):
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name):
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


def setdomainname(name):
    b = name.encode()
    _check(_libc.setdomainname(b, len(b)), "setdomainname")


def pivot_root(new_root, put_old):
    _check(_libc.syscall(SYS_pivot_root, _fs(new_root), _fs(put_old)), f"pivot_root {new_root}")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


MADV_MERGEABLE = 12


def madvise(address, length, advice):
    _check(_libc.madvise(address, length, advice), f"madvise({advice})")


def syscall(number, *args, what="syscall"):
    return _check(_libc.syscall(number, *args), what)


def pidfd_open(pid, flags=0):
    return _check(_libc.syscall(SYS_pidfd_open, ctypes.c_int(pid), ctypes.c_uint(flags)), f"pidfd_open {pid}")


def libc():
    """The loaded libc, for modules that wrap further calls (capabilities, user ids)."""
    return _libc


# openat2(2) and mount_setattr(2), for resolving paths inside a root and recursive mount flags
SYS_mount_setattr = 442  # x86_64
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def openat2(dirfd, path, flags, resolve, mode=0):
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(_libc.syscall(SYS_openat2, ctypes.c_int(dirfd), _fs(path), ctypes.byref(how),
                                ctypes.c_size_t(ctypes.sizeof(how))), f"openat2 {path}")


def mount_setattr(dirfd, path, flags, attr_set=0, attr_clr=0, propagation=0):
    attr = _MountAttr(attr_set, attr_clr, propagation, 0)
    _check(_libc.syscall(SYS_mount_setattr, ctypes.c_int(dirfd), _fs(path), ctypes.c_uint(flags),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), f"mount_setattr {path}")


# clone3(2) with CLONE_INTO_CGROUP: a child that starts inside a cgroup2 directory, so no
# write to cgroup.procs (which waits for an RCU grace period, 5-15 ms) has to move it there
SYS_clone3 = 435  # x86_64
CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


def fork_into_cgroup(cgroup_fd, ns_flags=0):
    """os.fork(), but the child starts in the cgroup2 directory open as cgroup_fd (and in new
    namespaces: ns_flags, CLONE_NEW* bits). Returns 0 in the child and the child's pid in the
    parent; raises OSError where the kernel cannot.

    The raw syscall skips glibc's fork(): call it only from a single-threaded process (no other
    thread may hold a libc lock). Python's own fork hooks run as os.fork runs them."""
    if len(os.listdir("/proc/self/task")) != 1:
        raise OSError(0, "clone3 into a cgroup needs a single-threaded process")
    args = _CloneArgs(flags=CLONE_INTO_CGROUP | ns_flags, exit_signal=_SIGCHLD, cgroup=cgroup_fd)
    api = _pythonapi()
    api.PyOS_BeforeFork()
    # through PyDLL: the GIL stays held across the call, as in os.fork
    pid = _pylibc.syscall(SYS_clone3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3 into a cgroup: {os.strerror(err)}")
    return pid


_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long


def _pythonapi():
    return ctypes.PyDLL(None)
