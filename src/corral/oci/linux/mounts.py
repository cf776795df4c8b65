"""Spec mount options -> mount(2) flags, data, propagation and recursive attributes.

The option names are the ones mount(8) and runc accept. Anything this module does not know
is refused with one clear line instead of being passed on silently.
"""

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import syscalls as S

MS_I_VERSION = 1 << 23

# option -> (set the flag?, flag)
FLAGS = {
    "defaults": (True, 0),
    "ro": (True, S.MS_RDONLY), "rw": (False, S.MS_RDONLY),
    "nosuid": (True, S.MS_NOSUID), "suid": (False, S.MS_NOSUID),
    "nodev": (True, S.MS_NODEV), "dev": (False, S.MS_NODEV),
    "noexec": (True, S.MS_NOEXEC), "exec": (False, S.MS_NOEXEC),
    "sync": (True, S.MS_SYNCHRONOUS), "async": (False, S.MS_SYNCHRONOUS),
    "dirsync": (True, S.MS_DIRSYNC),
    "remount": (True, S.MS_REMOUNT),
    "mand": (True, S.MS_MANDLOCK), "nomand": (False, S.MS_MANDLOCK),
    "noatime": (True, S.MS_NOATIME), "atime": (False, S.MS_NOATIME),
    "nodiratime": (True, S.MS_NODIRATIME), "diratime": (False, S.MS_NODIRATIME),
    "relatime": (True, S.MS_RELATIME), "norelatime": (False, S.MS_RELATIME),
    "strictatime": (True, S.MS_STRICTATIME), "nostrictatime": (False, S.MS_STRICTATIME),
    "lazytime": (True, S.MS_LAZYTIME), "nolazytime": (False, S.MS_LAZYTIME),
    "silent": (True, S.MS_SILENT), "loud": (False, S.MS_SILENT),
    "iversion": (True, MS_I_VERSION), "noiversion": (False, MS_I_VERSION),
    "nosymfollow": (True, S.MS_NOSYMFOLLOW), "symfollow": (False, S.MS_NOSYMFOLLOW),
    "bind": (True, S.MS_BIND), "rbind": (True, S.MS_BIND | S.MS_REC),
}

PROPAGATION = {
    "private": S.MS_PRIVATE, "rprivate": S.MS_PRIVATE | S.MS_REC,
    "shared": S.MS_SHARED, "rshared": S.MS_SHARED | S.MS_REC,
    "slave": S.MS_SLAVE, "rslave": S.MS_SLAVE | S.MS_REC,
    "unbindable": S.MS_UNBINDABLE, "runbindable": S.MS_UNBINDABLE | S.MS_REC,
}

# recursive attributes (mount_setattr with AT_RECURSIVE): option -> (set?, attribute)
RECURSIVE = {
    "rro": (True, S.MOUNT_ATTR_RDONLY), "rrw": (False, S.MOUNT_ATTR_RDONLY),
    "rnosuid": (True, S.MOUNT_ATTR_NOSUID), "rsuid": (False, S.MOUNT_ATTR_NOSUID),
    "rnodev": (True, S.MOUNT_ATTR_NODEV), "rdev": (False, S.MOUNT_ATTR_NODEV),
    "rnoexec": (True, S.MOUNT_ATTR_NOEXEC), "rexec": (False, S.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (True, S.MOUNT_ATTR_NODIRATIME), "rdiratime": (False, S.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (True, S.MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (False, S.MOUNT_ATTR_NOSYMFOLLOW),
}
# the atime mode is one field: setting one clears the others
RECURSIVE_ATIME = {
    "rrelatime": S.MOUNT_ATTR_RELATIME, "rnoatime": S.MOUNT_ATTR_NOATIME,
    "rstrictatime": S.MOUNT_ATTR_STRICTATIME,
}

# filesystem options without "=" that the kernel understands, for the types we know; other
# types pass their words through and the kernel judges them at mount time
DATA_WORDS = {
    "tmpfs": {"inode64", "inode32", "noswap", "quota", "usrquota", "grpquota"},
    "devpts": {"newinstance"},
    "proc": set(),
    "sysfs": set(),
    "mqueue": set(),
    "cgroup": set(),
    "cgroup2": {"nsdelegate", "memory_recursiveprot", "favordynmods", "memory_localevents"},
    "overlay": {"userxattr", "volatile"},
}

# types a spec may name even when the kernel has not loaded them yet (modules load on mount)
COMMON_TYPES = {"bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2",
                "overlay", "ramfs", "ext4", "xfs", "btrfs", "squashfs", "fuse", "nfs", "nfs4",
                "securityfs", "debugfs", "tracefs", "hugetlbfs", "configfs", "bpf", "vfat",
                "iso9660", "binfmt_misc", "fusectl", "pstore", "efivarfs", "autofs"}


class Options:
    """One spec mount's options, parsed."""

    __slots__ = ("flags", "propagation", "rec_set", "rec_clr", "data", "bind", "copyup")

    def __init__(self):
        self.flags = 0
        self.propagation = []
        self.rec_set = 0
        self.rec_clr = 0
        self.data = []
        self.bind = False
        self.copyup = False

    @property
    def data_str(self):
        return ",".join(self.data) or None


def _kernel_types():
    try:
        with open("/proc/filesystems", "rb") as f:
            return {line.split()[-1].decode() for line in f if line.strip()}
    except OSError:
        return set()


def mount_type(m):
    """The effective type: "bind" for a bind mount, whatever its spelled type."""
    opts = m.get("options") or []
    if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
        return "bind"
    return m.get("type") or ""


def parse(m, where="mount"):
    """Parse the options of spec mount `m`; raise RuntimeFailure for anything unknown."""
    opts = m.get("options") or []
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise RuntimeFailure(f"{where}: options must be a list of strings")
    typ = mount_type(m)
    o = Options()
    for opt in opts:
        if opt in FLAGS:
            on, flag = FLAGS[opt]
            o.flags = (o.flags | flag) if on else (o.flags & ~flag)
        elif opt in PROPAGATION:
            o.propagation.append(PROPAGATION[opt])
        elif opt in RECURSIVE:
            on, attr = RECURSIVE[opt]
            if on:
                o.rec_set |= attr
                o.rec_clr &= ~attr
            else:
                o.rec_clr |= attr
                o.rec_set &= ~attr
        elif opt in RECURSIVE_ATIME:
            o.rec_clr |= S.MOUNT_ATTR__ATIME
            o.rec_set = (o.rec_set & ~S.MOUNT_ATTR__ATIME) | RECURSIVE_ATIME[opt]
        elif opt == "tmpcopyup":
            if typ != "tmpfs":
                raise RuntimeFailure(f"{where}: option tmpcopyup is only for tmpfs mounts")
            o.copyup = True
        elif opt in ("idmap", "ridmap"):
            raise RuntimeFailure(f"{where}: option {opt!r} (id-mapped mounts) is not supported; remove it")
        elif "=" in opt and typ != "bind":
            o.data.append(opt)
        elif typ != "bind" and (opt in DATA_WORDS.get(typ, ()) or (typ not in DATA_WORDS and opt)):
            o.data.append(opt)
        elif typ == "cgroup" and opt.isidentifier():
            o.data.append(opt)  # a v1 controller name
        else:
            raise RuntimeFailure(f"{where}: unknown mount option {opt!r} for type {typ or 'none'}; "
                                 "fix or remove it")
    o.bind = typ == "bind"
    return o


def check_type(m, where="mount"):
    typ = mount_type(m)
    if not typ:
        raise RuntimeFailure(f"{where}: no type and no bind option; set \"type\"")
    if typ not in COMMON_TYPES and typ not in _kernel_types():
        raise RuntimeFailure(f"{where}: unknown mount type {typ!r} (not in /proc/filesystems)")


# statvfs f_flag bits -> mount flags that a remount must keep when they are locked
_ST_RELATIME = 4096
_LOCKED = S.MS_RDONLY | S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC | S.MS_NOATIME | S.MS_NODIRATIME


def current_flags(path):
    """The flags `path`'s mount has now, as mount(2) flags."""
    import os

    f = os.statvfs(path).f_flag
    flags = f & _LOCKED
    if f & _ST_RELATIME:
        flags |= S.MS_RELATIME
    return flags


def remount(target, flags):
    """Bind-remount `target` with `flags`; if the kernel refuses (locked flags in a user
    namespace) retry keeping the flags the mount has now."""
    flags = (flags | S.MS_REMOUNT | S.MS_BIND) & ~S.MS_REC
    try:
        S.mount(None, target, None, flags)
    except PermissionError:
        S.mount(None, target, None, flags | (current_flags(target) & ~S.MS_RDONLY))
