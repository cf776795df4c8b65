"""Checking OCI linux.resources, and the v1 → v2 value conversions runc makes."""

from corral.oci.errors import RuntimeFailure

_KEYS = {
    "memory": {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
               "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"},
    "cpu": {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
            "mems", "idle"},
    "pids": {"limit"},
    "blockIO": {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"},
    "network": {"classID", "priorities"},
}
THROTTLES = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
             "throttleWriteIOPSDevice")
TOP_KEYS = {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma",
            "unified"}
# which controller each part needs: (v1 name, v2 name)
CONTROLLER = {"memory": ("memory", "memory"), "pids": ("pids", "pids"), "blockIO": ("blkio", "io"),
              "hugepageLimits": ("hugetlb", "hugetlb"), "rdma": ("rdma", "rdma")}


def _bad(what, value, expect):
    raise RuntimeFailure(f"linux.resources.{what}: {value!r} is not valid: {expect}")


_INT64_MAX = 2 ** 63 - 1  # the kernel parses these files as 64-bit: larger values wrap


def _int(section, key, value, minimum=None, maximum=_INT64_MAX):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{section}.{key}", value, "expected an integer")
    if minimum is not None and value < minimum:
        _bad(f"{section}.{key}", value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        _bad(f"{section}.{key}", value, f"must be at most {maximum}")


def _section(resources, name, kind):
    sec = resources.get(name)
    if sec is None:
        return None
    if not isinstance(sec, kind):
        _bad(name, sec, f"expected a JSON {'object' if kind is dict else 'array'}")
    if kind is dict and name in _KEYS:
        unknown = set(sec) - _KEYS[name]
        if unknown:
            raise RuntimeFailure(f"linux.resources.{name}: unknown field {sorted(unknown)[0]!r}; "
                                 f"known: {', '.join(sorted(_KEYS[name]))}")
    return sec


def _entries(section, sec, key):
    """sec[key] as a list ([] when absent or null); another type is refused."""
    lst = sec.get(key)
    if lst is None:
        return []
    if not isinstance(lst, list):
        _bad(f"{section}.{key}", lst, "expected a JSON array")
    return lst


def parse_cpu_list(text):
    """The set of numbers in a cpuset list like "0-3,7"; RuntimeFailure if malformed."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise ValueError(part)
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def check(resources, layout):
    if not isinstance(resources, dict):
        _bad("", resources, "expected a JSON object")
    unknown = set(resources) - TOP_KEYS
    if unknown:
        raise RuntimeFailure(f"linux.resources: unknown field {sorted(unknown)[0]!r}; known: "
                             f"{', '.join(sorted(TOP_KEYS))}")
    v2 = layout.kind == "v2"
    have = layout.controllers()

    def need(part, ctrl):
        if ctrl not in have:
            raise RuntimeFailure(f"linux.resources.{part} needs the {ctrl} cgroup controller, which "
                                 f"this host does not {'enable' if v2 else 'mount'} (it has: "
                                 f"{', '.join(sorted(have)) or 'none'}); remove {part} from the config")

    mem = _section(resources, "memory", dict)
    if mem:
        for k in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
            _int("memory", k, mem.get(k), minimum=-1)
        _int("memory", "swappiness", mem.get("swappiness"), minimum=-1, maximum=100)
        for k in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
            if mem.get(k) is not None and not isinstance(mem[k], bool):
                _bad(f"memory.{k}", mem[k], "expected true or false")
        if any(mem.get(k) not in (None, 0) for k in ("limit", "reservation", "swap", "kernel",
                                                      "kernelTCP")) or mem.get("disableOOMKiller"):
            need("memory", "memory")
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        if limit > 0 and swap > 0 and swap < limit:
            raise RuntimeFailure(f"linux.resources.memory.swap ({swap}) must be at least "
                                 f"memory.limit ({limit}): it counts memory plus swap")
        if v2:
            for k, why in (("kernel", "kernel memory limits do not exist on cgroup v2"),
                           ("kernelTCP", "kernel TCP memory limits do not exist on cgroup v2"),
                           ("swappiness", "memory.swappiness does not exist on cgroup v2")):
                if mem.get(k) not in ((None, -1) if k == "swappiness" else (None, 0)):
                    raise RuntimeFailure(f"linux.resources.memory.{k}: {why}; remove it")
            if mem.get("disableOOMKiller"):
                raise RuntimeFailure("linux.resources.memory.disableOOMKiller: cgroup v2 cannot "
                                     "disable the OOM killer; remove it")
            if mem.get("useHierarchy") is False:
                raise RuntimeFailure("linux.resources.memory.useHierarchy: cgroup v2 is always "
                                     "hierarchical; remove it or set it to true")
            swap_v2(mem.get("swap") or 0, mem.get("limit") or 0)

    cpu = _section(resources, "cpu", dict)
    if cpu:
        _int("cpu", "shares", cpu.get("shares"), minimum=0, maximum=262144)
        _int("cpu", "quota", cpu.get("quota"), minimum=-1)
        _int("cpu", "burst", cpu.get("burst"), minimum=0)
        _int("cpu", "period", cpu.get("period"), minimum=0, maximum=1000000)
        if cpu.get("period") and cpu["period"] < 1000:
            _bad("cpu.period", cpu["period"], "must be between 1000 and 1000000 microseconds")
        if cpu.get("quota") and 0 < cpu["quota"] < 1000:
            _bad("cpu.quota", cpu["quota"], "must be -1 or at least 1000 microseconds")
        _int("cpu", "realtimeRuntime", cpu.get("realtimeRuntime"), minimum=-1)
        _int("cpu", "realtimePeriod", cpu.get("realtimePeriod"), minimum=0)
        _int("cpu", "idle", cpu.get("idle"), minimum=0, maximum=1)
        for k in ("cpus", "mems"):
            val = cpu.get(k)
            if val is None or val == "":
                continue
            if not isinstance(val, str):
                _bad(f"cpu.{k}", val, "expected a list like \"0-2,4\"")
            try:
                parse_cpu_list(val)
            except ValueError:
                _bad(f"cpu.{k}", val, "expected a list like \"0-2,4\"")
            need(f"cpu.{k}", "cpuset")
        if any(cpu.get(k) for k in ("shares", "quota", "period", "realtimeRuntime",
                                    "realtimePeriod", "idle", "burst")):
            need("cpu", "cpu")
        if v2 and (cpu.get("realtimeRuntime") or cpu.get("realtimePeriod")):
            raise RuntimeFailure("linux.resources.cpu.realtimeRuntime/realtimePeriod: cgroup v2 "
                                 "has no real-time CPU limits; remove them")

    pids = _section(resources, "pids", dict)
    if pids and pids.get("limit") is not None:
        _int("pids", "limit", pids.get("limit"))
        need("pids", "pids")

    bio = _section(resources, "blockIO", dict)
    if bio:
        _int("blockIO", "weight", bio.get("weight"), minimum=0, maximum=1000)
        _int("blockIO", "leafWeight", bio.get("leafWeight"), minimum=0, maximum=1000)
        for k in ("weight", "leafWeight"):
            if bio.get(k) and bio[k] < 10:
                _bad(f"blockIO.{k}", bio[k], "must be between 10 and 1000")
        for i, d in enumerate(_entries("blockIO", bio, "weightDevice")):
            _device_id(f"blockIO.weightDevice[{i}]", d)
            _int(f"blockIO.weightDevice[{i}]", "weight", d.get("weight"), minimum=10, maximum=1000)
            _int(f"blockIO.weightDevice[{i}]", "leafWeight", d.get("leafWeight"), minimum=10, maximum=1000)
        for k in THROTTLES:
            for i, d in enumerate(_entries("blockIO", bio, k)):
                _device_id(f"blockIO.{k}[{i}]", d)
                _int(f"blockIO.{k}[{i}]", "rate", d.get("rate"), minimum=0)
                if d.get("rate") is None:
                    _bad(f"blockIO.{k}[{i}].rate", None, "a rate is required")
        if any(bio.get(k) for k in bio):
            need("blockIO", "io" if v2 else "blkio")
        if v2 and (bio.get("leafWeight") or any(d.get("leafWeight") for d in bio.get("weightDevice") or [])):
            raise RuntimeFailure("linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weight; "
                                 "remove it")

    huge = _section(resources, "hugepageLimits", list)
    if huge:
        for i, h in enumerate(huge):
            if not isinstance(h, dict) or not isinstance(h.get("pageSize"), str):
                _bad(f"hugepageLimits[{i}]", h, "expected {\"pageSize\": \"2MB\", \"limit\": N}")
            _int(f"hugepageLimits[{i}]", "limit", h.get("limit"), minimum=0)
            hugepage_size_bytes(h["pageSize"])
        need("hugepageLimits", "hugetlb")

    devs = _section(resources, "devices", list)
    for i, d in enumerate(devs or []):
        check_device_rule(f"devices[{i}]", d)

    net = _section(resources, "network", dict)
    if net and (net.get("classID") is not None or net.get("priorities")):
        if v2:
            raise RuntimeFailure("linux.resources.network: cgroup v2 has no net_cls/net_prio "
                                 "controllers; remove network (use eBPF or tc in the network namespace)")
        _int("network", "classID", net.get("classID"), minimum=0, maximum=0xffffffff)
        if net.get("classID") is not None:
            need("network.classID", "net_cls")
        for i, p in enumerate(_entries("network", net, "priorities")):
            if not isinstance(p, dict) or not isinstance(p.get("name"), str) or "/" in p["name"]:
                _bad(f"network.priorities[{i}]", p, "expected {\"name\": \"eth0\", \"priority\": N}")
            _int(f"network.priorities[{i}]", "priority", p.get("priority"), minimum=0)
        if net.get("priorities"):
            need("network.priorities", "net_prio")

    rdma = _section(resources, "rdma", dict)
    if rdma:
        for name, lim in rdma.items():
            if not isinstance(lim, dict) or set(lim) - {"hcaHandles", "hcaObjects"} or " " in name:
                _bad(f"rdma.{name}", lim, "expected {\"hcaHandles\": N, \"hcaObjects\": M}")
            _int(f"rdma.{name}", "hcaHandles", lim.get("hcaHandles"), minimum=0)
            _int(f"rdma.{name}", "hcaObjects", lim.get("hcaObjects"), minimum=0)
        need("rdma", "rdma")

    uni = _section(resources, "unified", dict)
    if uni:
        if not v2:
            raise RuntimeFailure("linux.resources.unified: this host uses cgroup v1, where cgroup v2 "
                                 "keys cannot be set; remove unified or use the v1 fields")
        for key, val in uni.items():
            check_unified_key(key, val)


def check_unified_key(key, val):
    if not isinstance(val, str):
        _bad(f"unified.{key}", val, "values are strings")
    if "/" in key or key.startswith(".") or "." not in key or key.startswith("cgroup."):
        _bad("unified", key, "keys are cgroup v2 interface file names like \"memory.high\" "
             "(not cgroup.* files, no '/')")


def _device_id(what, d):
    if not isinstance(d, dict):
        _bad(what, d, "expected {\"major\": M, \"minor\": N, ...}")
    _int(what, "major", d.get("major"), minimum=0)
    _int(what, "minor", d.get("minor"), minimum=0)
    if d.get("major") is None or d.get("minor") is None:
        _bad(what, d, "major and minor are required")


def check_device_rule(what, d):
    if not isinstance(d, dict):
        _bad(what, d, "expected {\"allow\": true|false, \"type\": \"a|b|c\", \"access\": \"rwm\"}")
    if not isinstance(d.get("allow"), bool):
        _bad(f"{what}.allow", d.get("allow"), "expected true or false")
    if d.get("type", "a") not in ("a", "b", "c", None):
        _bad(f"{what}.type", d.get("type"), "expected \"a\", \"b\" or \"c\"")
    for k in ("major", "minor"):
        if d.get(k) is not None:
            _int(what, k, d.get(k), minimum=-1)
    acc = d.get("access")
    if acc is not None and (not isinstance(acc, str) or not set(acc) <= set("rwm")):
        _bad(f"{what}.access", acc, "expected letters from \"rwm\"")


def hugepage_size_bytes(text):
    """Bytes in a page size like "2MB" or "1GB" (the names the kernel uses: 64KB, 2MB, 1GB)."""
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
    num, unit = text[:-2], text[-2:].upper()
    if unit not in units or not num.isdigit() or int(num) == 0:
        raise RuntimeFailure(f"linux.resources.hugepageLimits: page size {text!r} is not valid: "
                             "expected a size like \"2MB\" or \"1GB\"")
    return int(num) * units[unit]


# ---- v1 → v2 conversions, as runc makes them -------------------------------------------------

def cpu_weight(shares):
    """cpu.shares [2, 262144] → cpu.weight [1, 10000]."""
    if not shares:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(weight):
    """blkio weight [10, 1000] → io.weight [1, 10000]."""
    if not weight:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def cpu_max(quota, period):
    """The cpu.max line for an OCI quota/period ("" when neither is set)."""
    if not quota and not period:
        return ""
    text = str(quota) if quota and quota > 0 else "max"
    if period:
        text += f" {period}"
    return text


def swap_v2(swap, limit):
    """OCI memory.swap (memory+swap, as v1) → memory.swap.max (swap alone); -1 is max, 0 unset."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise RuntimeFailure("linux.resources.memory.swap: cannot limit swap without a memory limit "
                             "on cgroup v2; set memory.limit too")
    if swap < limit:
        raise RuntimeFailure(f"linux.resources.memory.swap ({swap}) must be at least "
                             f"memory.limit ({limit}): it counts memory plus swap")
    return swap - limit


def v2_limit(value):
    """A v2 limit file's text: -1 (or below 0) is "max"."""
    return "max" if value is None or value < 0 else str(value)
