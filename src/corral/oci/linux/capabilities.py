"""Linux capabilities: names and numbers, the bounding set, capset/capget and ambient caps.

Only the stdlib (_ctypes, through cabi) is used. Sets are handled as integer bit masks (bit n = cap n).
"""

import errno
import os

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import cabi as ctypes  # without ctypes' import cost
from corral.oci.linux import syscalls

# Every capability up to CAP_CHECKPOINT_RESTORE, in kernel number order.
NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = syscalls.libc()
_libc.capget.argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]
_libc.capset.argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]


def last_cap():
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        n = 0
        while n + 1 < 64 and _bounding_has(n + 1) is not None:
            n += 1
        return n


def _bounding_has(cap):
    try:
        return bool(syscalls.prctl(syscalls.PR_CAPBSET_READ, cap))
    except OSError:
        return None


def unknown_names(names):
    """The names in `names` that are no capability at all."""
    return [n for n in names or () if n not in NUMBERS]


def to_mask(names, limit=None):
    """Bit mask of the capability names; names above `limit` (caps this kernel lacks) are
    left out, as runc does. Unknown names raise RuntimeFailure."""
    mask = 0
    for name in names or ():
        num = NUMBERS.get(name)
        if num is None:
            raise RuntimeFailure(f"unknown capability {name!r} in config.json: use names like CAP_NET_ADMIN")
        if limit is None or num <= limit:
            mask |= 1 << num
    return mask


def to_names(mask):
    return [name for i, name in enumerate(NAMES) if mask >> i & 1]


def masks_from_spec(caps, limit=None):
    """{'bounding': mask, ...} for the process.capabilities object of config.json."""
    caps = caps or {}
    limit = last_cap() if limit is None else limit
    return {s: to_mask(caps.get(s), limit) for s in SETS}


def capget(pid=0):
    """(effective, permitted, inheritable) masks of a process (0: this thread)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_Data * 2)()
    if _libc.capget(ctypes.byref(hdr), data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    return tuple(getattr(data[0], f) | getattr(data[1], f) << 32
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective, permitted, inheritable):
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = effective >> shift & 0xFFFFFFFF
        data[i].permitted = permitted >> shift & 0xFFFFFFFF
        data[i].inheritable = inheritable >> shift & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(hdr), data) < 0:
        err = ctypes.get_errno()
        missing = to_names(permitted & ~capget()[1])
        hint = (f"; the runtime itself lacks {', '.join(missing)} (not granted by the host)"
                if missing else "")
        raise RuntimeFailure(f"setting capabilities failed: {os.strerror(err)}{hint}")


def drop_bounding(keep_mask, last=None):
    """Drop from the bounding set every capability not in keep_mask (up to `last`, the
    kernel's last cap: pass it when a seccomp filter may already forbid reading /proc)."""
    for cap in range((last_cap() if last is None else last) + 1):
        if keep_mask >> cap & 1:
            continue
        try:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno == errno.EINVAL:  # the kernel does not have this cap
                continue
            raise RuntimeFailure(f"dropping {NAMES[cap] if cap < len(NAMES) else cap} from the "
                                 f"bounding set failed: {e.strerror}") from None


def raise_ambient(ambient, permitted, inheritable):
    """Clear the ambient set, then raise the asked caps. As runc does, a cap that is not in
    both the permitted and the inheritable set is skipped (the kernel refuses it anyway)."""
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    usable = ambient & permitted & inheritable
    for cap in range(64):
        if usable >> cap & 1:
            try:
                syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, cap)
            except OSError as e:
                raise RuntimeFailure(f"raising ambient capability {NAMES[cap]} failed: "
                                     f"{e.strerror}") from None


def set_keepcaps(on):
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1 if on else 0)


def apply(masks):
    """capset effective/permitted/inheritable, then the ambient set (after the user switch)."""
    capset(masks["effective"], masks["permitted"], masks["inheritable"])
    raise_ambient(masks["ambient"], masks["permitted"], masks["inheritable"])
