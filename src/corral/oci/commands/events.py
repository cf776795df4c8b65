import json
import sys
import time

from corral.oci import state
from corral.oci.errors import RuntimeFailure

HELP = "print a container's cgroup statistics as JSON events: once with --stats, else every --interval, with an \"oom\" event when the memory cgroup reports one"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def configure(p):
    p.add_argument("--stats", action="store_true", help="print the statistics once and exit")
    p.add_argument("--interval", default="5s", help="time between statistics, e.g. 5s, 500ms")
    p.add_argument("container_id")


def parse_interval(text):
    """Seconds in a Go-style duration ("5s", "1m30s", "250ms")."""
    rest, total = text.strip(), 0.0
    if not rest:
        raise ValueError(text)
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        num, unit = rest[:i], rest[i:j]
        if not num or unit not in _UNITS:
            raise ValueError(text)
        total += float(num) * _UNITS[unit]
        rest = rest[j:]
    return total


def _emit(kind, cid, data=None):
    ev = {"type": kind, "id": cid}
    if data is not None:
        ev["data"] = data
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def oom_count(mgr):
    """How many OOM events the container's memory cgroup has had (None: not available)."""
    from corral.oci.linux.cgroups import fs
    if mgr.kind == "v2":
        ev = fs.read_keyed(mgr.path, "memory.events")
        return ev.get("oom") if ev else None
    d = mgr.dir("memory")
    if d is None:
        return None
    ctl = fs.read_keyed(d, "memory.oom_control")
    # oom_kill counts kills; under_oom is the state while the OOM killer is disabled
    return ctl.get("oom_kill", 0) + ctl.get("under_oom", 0) if ctl else None


def run(ctx, args):
    try:
        interval = parse_interval(args.interval)
    except ValueError:
        raise RuntimeFailure(f"events: --interval {args.interval!r} is not a duration: use e.g. "
                             "5s or 500ms") from None
    if interval <= 0:
        raise RuntimeFailure("events: --interval must be positive")
    c = state.load(ctx, args.container_id)
    status = c.status()
    if status in ("stopped", "creating"):
        raise RuntimeFailure(f"cannot get the events of container {c.id}: it is {status}")
    mgr = c.cgroup_manager()
    if mgr is None:
        raise RuntimeFailure(f"cannot get the events of container {c.id}: it has no cgroup")
    if args.stats:
        _emit("stats", c.id, mgr.stats())
        return 0
    ooms = oom_count(mgr) or 0
    next_stats = time.monotonic()
    while c.alive():
        now = time.monotonic()
        if now >= next_stats:
            try:
                _emit("stats", c.id, mgr.stats())
            except (OSError, RuntimeFailure):
                break  # the cgroup went away with the container
            next_stats = now + interval
        n = oom_count(mgr)
        if n is not None and n > ooms:
            _emit("oom", c.id)
        ooms = n if n is not None else ooms
        time.sleep(min(0.2, max(0.0, next_stats - time.monotonic())))
    return 0
