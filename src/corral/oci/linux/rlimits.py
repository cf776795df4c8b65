"""process.rlimits: check them in the parent, set them in the container's init."""

import os

from corral.oci.errors import RuntimeFailure

# the resource numbers of <sys/resource.h> on Linux (x86, arm, riscv, ...), as the resource
# module has them: set through prlimit(2) in libc, so no extension module is loaded for it
TYPES = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

_UNLIMITED = 2 ** 64 - 1  # config.json's "unlimited", the kernel's RLIM_INFINITY


def validate(rlimits):
    if rlimits is not None and not isinstance(rlimits, list):
        raise RuntimeFailure("process.rlimits in config.json must be a list")
    seen = set()
    for rl in rlimits or ():
        if not isinstance(rl, dict):
            raise RuntimeFailure(f"bad process.rlimits entry {rl!r} in config.json: want "
                                 "{\"type\": ..., \"soft\": N, \"hard\": N}")
        kind = rl.get("type")
        if not isinstance(kind, str) or kind not in TYPES:
            raise RuntimeFailure(f"unknown rlimit type {kind!r} in config.json: use one of "
                                 f"{', '.join(sorted(TYPES))}")
        if kind in seen:
            raise RuntimeFailure(f"rlimit {kind} is given twice in config.json: give each type once")
        seen.add(kind)
        soft, hard = rl.get("soft"), rl.get("hard")
        for name, v in (("soft", soft), ("hard", hard)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _UNLIMITED:
                raise RuntimeFailure(f"rlimit {kind} has a bad {name} value {v!r} in config.json: "
                                     "want an unsigned 64-bit integer")
        if soft > hard:
            raise RuntimeFailure(f"rlimit {kind} has soft {soft} above hard {hard} in config.json: "
                                 "soft must not exceed hard")


_rlimit = []  # the struct rlimit type, made on first use


def _set(kind, soft, hard):
    """setrlimit(2) of this process, through prlimit(2); OSError on failure."""
    from corral.oci.linux import cabi as ctypes
    from corral.oci.linux import syscalls

    if not _rlimit:
        class Rlimit(ctypes.Structure):
            _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]
        _rlimit.append(Rlimit)
    if syscalls.libc().prlimit(0, kind, ctypes.byref(_rlimit[0](soft, hard)), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def apply(rlimits):
    for rl in rlimits or ():
        kind = rl["type"]
        try:
            _set(TYPES[kind], rl["soft"], rl["hard"])
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise RuntimeFailure(f"setting rlimit {kind} to soft {rl['soft']} hard {rl['hard']} "
                                 f"failed: {reason} (raising a hard limit needs CAP_SYS_RESOURCE)") from None
