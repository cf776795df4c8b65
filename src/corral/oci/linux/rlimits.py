"""process.rlimits: check them in the parent, set them in the container's init."""

import resource

from corral.oci.errors import RuntimeFailure

TYPES = {
    "RLIMIT_CPU": resource.RLIMIT_CPU,
    "RLIMIT_FSIZE": resource.RLIMIT_FSIZE,
    "RLIMIT_DATA": resource.RLIMIT_DATA,
    "RLIMIT_STACK": resource.RLIMIT_STACK,
    "RLIMIT_CORE": resource.RLIMIT_CORE,
    "RLIMIT_RSS": resource.RLIMIT_RSS,
    "RLIMIT_NPROC": resource.RLIMIT_NPROC,
    "RLIMIT_NOFILE": resource.RLIMIT_NOFILE,
    "RLIMIT_MEMLOCK": resource.RLIMIT_MEMLOCK,
    "RLIMIT_AS": resource.RLIMIT_AS,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": resource.RLIMIT_SIGPENDING,
    "RLIMIT_MSGQUEUE": resource.RLIMIT_MSGQUEUE,
    "RLIMIT_NICE": resource.RLIMIT_NICE,
    "RLIMIT_RTPRIO": resource.RLIMIT_RTPRIO,
    "RLIMIT_RTTIME": resource.RLIMIT_RTTIME,
}

_UNLIMITED = 2 ** 64 - 1


def _value(v):
    # config.json says "unlimited" with the all-ones uint64; Python calls it RLIM_INFINITY
    return resource.RLIM_INFINITY if v >= _UNLIMITED else v


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


def apply(rlimits):
    for rl in rlimits or ():
        kind = rl["type"]
        try:
            resource.setrlimit(TYPES[kind], (_value(rl["soft"]), _value(rl["hard"])))
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise RuntimeFailure(f"setting rlimit {kind} to soft {rl['soft']} hard {rl['hard']} "
                                 f"failed: {reason} (raising a hard limit needs CAP_SYS_RESOURCE)") from None
