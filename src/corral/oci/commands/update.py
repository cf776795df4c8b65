import json
import sys

from corral.oci import state
from corral.oci.errors import RuntimeFailure

HELP = "change the cgroup limits of a running container (flags, or --resources FILE|- as JSON)"

# flag → (section, field, parse)
_FLAGS = {
    "memory": ("memory", "limit", "bytes"), "memory_reservation": ("memory", "reservation", "bytes"),
    "memory_swap": ("memory", "swap", "bytes"), "kernel_memory": ("memory", "kernel", "bytes"),
    "kernel_memory_tcp": ("memory", "kernelTCP", "bytes"),
    "cpu_share": ("cpu", "shares", "int"), "cpu_period": ("cpu", "period", "int"),
    "cpu_quota": ("cpu", "quota", "int"), "cpu_rt_period": ("cpu", "realtimePeriod", "int"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"), "cpuset_cpus": ("cpu", "cpus", "str"),
    "cpuset_mems": ("cpu", "mems", "str"), "pids_limit": ("pids", "limit", "int"),
    "blkio_weight": ("blockIO", "weight", "int"),
}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def configure(p):
    p.add_argument("-r", "--resources", help="linux.resources JSON from a file, or - for stdin")
    p.add_argument("--memory", help="memory limit (bytes, or with a k/m/g suffix)")
    p.add_argument("--memory-reservation", help="memory soft limit")
    p.add_argument("--memory-swap", help="memory plus swap limit (-1: unlimited)")
    p.add_argument("--kernel-memory", help="kernel memory limit (cgroup v1 only)")
    p.add_argument("--kernel-memory-tcp", help="kernel TCP buffer limit (cgroup v1 only)")
    p.add_argument("--cpu-share", "--cpu-shares", dest="cpu_share", help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", help="CPU CFS period in microseconds")
    p.add_argument("--cpu-quota", help="CPU CFS quota in microseconds per period (-1: none)")
    p.add_argument("--cpu-rt-period", help="real-time period in microseconds")
    p.add_argument("--cpu-rt-runtime", help="real-time runtime in microseconds")
    p.add_argument("--cpuset-cpus", help="CPUs allowed, e.g. 0-2,4")
    p.add_argument("--cpuset-mems", help="memory nodes allowed, e.g. 0")
    p.add_argument("--pids-limit", help="maximum number of processes (0 or -1: unlimited)")
    p.add_argument("--blkio-weight", help="block IO weight, 10 to 1000")
    p.add_argument("--l3-cache-schema", help="Intel RDT: not supported")
    p.add_argument("--mem-bw-schema", help="Intel RDT: not supported")
    p.add_argument("container_id")


def parse_bytes(flag, text):
    t = text.strip().lower()
    if t == "-1":
        return -1
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix) and t[-len(suffix) - 1] in "kmgtp":
            t = t[:-len(suffix)]
            break
    unit = t[-1] if t and t[-1] in _UNITS else ""
    num = t[:-1] if unit else t
    try:
        value = float(num)
    except ValueError:
        raise RuntimeFailure(f"update: --{flag} {text!r} is not a size: use bytes or a number with "
                             "k, m, g or t") from None
    if value < 0:
        raise RuntimeFailure(f"update: --{flag} {text!r} must not be negative (only -1: unlimited)")
    return int(value * _UNITS[unit])


def _from_flags(args):
    if args.l3_cache_schema or args.mem_bw_schema:
        raise RuntimeFailure("update: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported")
    res = {}
    for attr, (section, field, kind) in _FLAGS.items():
        text = getattr(args, attr)
        if text is None:
            continue
        flag = attr.replace("_", "-")
        if kind == "bytes":
            value = parse_bytes(flag, text)
        elif kind == "int":
            try:
                value = int(text)
            except ValueError:
                raise RuntimeFailure(f"update: --{flag} {text!r} is not an integer") from None
        else:
            value = text
        res.setdefault(section, {})[field] = value
    return res


def _read_resources(where):
    try:
        if where == "-":
            data = sys.stdin.read()
        else:
            with open(where) as f:
                data = f.read()
        res = json.loads(data)
    except OSError as e:
        raise RuntimeFailure(f"update: cannot read {where}: {e.strerror}") from None
    except ValueError as e:
        raise RuntimeFailure(f"update: {where} is not valid JSON: {e}") from None
    if not isinstance(res, dict):
        raise RuntimeFailure(f"update: {where} must hold a JSON object (linux.resources)")
    return res


def merge(saved, given):
    """The saved linux.resources with the given sections merged in (objects field by field,
    lists replaced)."""
    out = json.loads(json.dumps(saved or {}))
    for key, val in given.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict) and key != "unified":
            out[key].update({k: v for k, v in val.items() if v is not None})
        elif isinstance(val, dict) and key == "unified" and isinstance(out.get(key), dict):
            out[key].update(val)
        else:
            out[key] = val
    return out


def run(ctx, args):
    from corral.oci.linux import cgroups

    given = _read_resources(args.resources) if args.resources else _from_flags(args)
    c = state.load(ctx, args.container_id)
    status = c.status()
    if status not in ("created", "running", "paused"):
        raise RuntimeFailure(f"cannot update container {c.id}: it is {status}")
    mgr = c.cgroup_manager()
    if mgr is None:
        raise RuntimeFailure(f"cannot update container {c.id}: it has no cgroup")
    linux = c.config.setdefault("linux", {})
    saved = linux.get("resources") or {}
    merged = merge(saved, given)
    cgroups.validate(merged)
    # apply what was given; memory goes whole, since swap is defined against the limit
    apply = {k: merged[k] for k in given if k in merged}
    if "devices" in apply and apply["devices"] == saved.get("devices"):
        del apply["devices"]  # unchanged: rewriting would briefly deny devices on cgroup v1
    mgr.set(apply, c.config.get("linux", {}).get("devices") or ())
    linux["resources"] = merged
    c.save()
    return 0
