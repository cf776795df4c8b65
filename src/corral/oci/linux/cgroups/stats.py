"""Cgroup statistics in the shape of runc's `events --stats` data."""

import os

from corral.oci.linux.cgroups import fs

_NS_PER_TICK = 10**9 // os.sysconf("SC_CLK_TCK")


def _entry(d, prefix):
    """runc's memory entry: limit, usage, max, failcnt from <prefix>.* files."""
    return {"limit": fs.read_int(d, prefix + "limit_in_bytes"),
            "usage": fs.read_int(d, prefix + "usage_in_bytes"),
            "max": fs.read_int(d, prefix + "max_usage_in_bytes"),
            "failcnt": fs.read_int(d, prefix + "failcnt")}


def _ints(d, name):
    try:
        return [int(x) for x in fs.read(d, name).split()]
    except (OSError, ValueError):
        return []


def _blkio_v1(d, name):
    out = []
    try:
        text = fs.read(d, name)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def _empty():
    return {"cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}}, "cpuset": {},
            "memory": {"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                       "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}},
            "pids": {}, "blkio": {}, "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None}


def v1(mgr):
    s = _empty()
    d = mgr.dir("cpuacct")
    if d:
        stat = fs.read_keyed(d, "cpuacct.stat")
        s["cpu"]["usage"] = {"total": fs.read_int(d, "cpuacct.usage"),
                             "percpu": _ints(d, "cpuacct.usage_percpu"),
                             "percpu_kernel": _ints(d, "cpuacct.usage_percpu_sys"),
                             "percpu_user": _ints(d, "cpuacct.usage_percpu_user"),
                             "kernel": stat.get("system", 0) * _NS_PER_TICK,
                             "user": stat.get("user", 0) * _NS_PER_TICK}
    d = mgr.dir("cpu")
    if d:
        st = fs.read_keyed(d, "cpu.stat")
        s["cpu"]["throttling"] = {"periods": st.get("nr_periods", 0),
                                  "throttled_periods": st.get("nr_throttled", 0),
                                  "throttled_time": st.get("throttled_time", 0)}
    d = mgr.dir("cpuset")
    if d:
        from corral.oci.linux.cgroups.values import parse_cpu_list
        cs = {}
        for key, f in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            try:
                cs[key] = sorted(parse_cpu_list(fs.read(d, f).strip()))
            except (OSError, ValueError):
                pass
        for key in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                    "memory_spread_page", "memory_spread_slab", "memory_pressure",
                    "sched_load_balance", "sched_relax_domain_level"):
            cs[key] = fs.read_int(d, "cpuset." + key)
        s["cpuset"] = cs
    d = mgr.dir("memory")
    if d:
        raw = fs.read_keyed(d, "memory.stat")
        s["memory"] = {"cache": raw.get("cache", 0), "usage": _entry(d, "memory."),
                       "swap": _entry(d, "memory.memsw."), "kernel": _entry(d, "memory.kmem."),
                       "kernelTCP": _entry(d, "memory.kmem.tcp."), "raw": raw}
    d = mgr.dir("pids")
    if d:
        s["pids"] = {"current": fs.read_int(d, "pids.current"), "limit": fs.read_int(d, "pids.max")}
    d = mgr.dir("blkio")
    if d:
        for key, names in (("ioServiceBytesRecursive", ("blkio.io_service_bytes_recursive",
                                                        "blkio.bfq.io_service_bytes_recursive",
                                                        "blkio.throttle.io_service_bytes_recursive")),
                           ("ioServicedRecursive", ("blkio.io_serviced_recursive",
                                                    "blkio.bfq.io_serviced_recursive",
                                                    "blkio.throttle.io_serviced_recursive"))):
            for name in names:
                if os.path.exists(os.path.join(d, name)):
                    entries = _blkio_v1(d, name)
                    if entries:
                        s["blkio"][key] = entries
                    break
    d = mgr.dir("hugetlb")
    if d:
        for name in sorted(os.listdir(d)):
            if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes") and ".rsvd." not in name:
                size = name.split(".")[1]
                s["hugetlb"][size] = {"usage": fs.read_int(d, f"hugetlb.{size}.usage_in_bytes"),
                                      "max": fs.read_int(d, f"hugetlb.{size}.max_usage_in_bytes"),
                                      "failcnt": fs.read_int(d, f"hugetlb.{size}.failcnt")}
    return omit_empty(s)


def v2(path):
    s = _empty()
    st = fs.read_keyed(path, "cpu.stat")
    s["cpu"]["usage"] = {"total": st.get("usage_usec", 0) * 1000,
                         "kernel": st.get("system_usec", 0) * 1000,
                         "user": st.get("user_usec", 0) * 1000}
    if "nr_periods" in st:
        s["cpu"]["throttling"] = {"periods": st.get("nr_periods", 0),
                                  "throttled_periods": st.get("nr_throttled", 0),
                                  "throttled_time": st.get("throttled_usec", 0) * 1000}
    if os.path.exists(os.path.join(path, "memory.current")):
        raw = fs.read_keyed(path, "memory.stat")
        unlimited = 2**64 - 1
        usage = fs.read_int(path, "memory.current")
        events = fs.read_keyed(path, "memory.events")
        swap = fs.read_int(path, "memory.swap.current")
        s["memory"] = {
            "cache": raw.get("file", 0),
            "usage": {"limit": fs.read_int(path, "memory.max", unlimited), "usage": usage,
                      "max": fs.read_int(path, "memory.peak"), "failcnt": events.get("max", 0)},
            # as runc: v2 swap usage counted with memory, like v1's memsw
            "swap": {"limit": fs.read_int(path, "memory.swap.max", unlimited), "usage": swap + usage,
                     "failcnt": 0},
            "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0},
            "raw": raw}
    if os.path.exists(os.path.join(path, "pids.current")):
        s["pids"] = {"current": fs.read_int(path, "pids.current"), "limit": fs.read_int(path, "pids.max")}
    try:
        io = fs.read(path, "io.stat")
    except OSError:
        io = ""
    nbytes, nios = [], []
    for line in io.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for op, b, n in (("Read", "rbytes", "rios"), ("Write", "wbytes", "wios")):
            nbytes.append({"major": major, "minor": minor, "op": op, "value": int(kv.get(b, 0))})
            nios.append({"major": major, "minor": minor, "op": op, "value": int(kv.get(n, 0))})
    if nbytes:
        s["blkio"] = {"ioServiceBytesRecursive": nbytes, "ioServicedRecursive": nios}
    for name in sorted(os.listdir(path)):
        if name.startswith("hugetlb.") and name.endswith(".current") and ".rsvd." not in name:
            size = name.split(".")[1]
            ev = fs.read_keyed(path, f"hugetlb.{size}.events")
            s["hugetlb"][size] = {"usage": fs.read_int(path, name),
                                  "max": fs.read_int(path, f"hugetlb.{size}.max"),
                                  "failcnt": ev.get("max", 0)}
    return omit_empty(s)


# fields runc leaves out when zero or empty (Go's omitempty), by the object they sit in
_OMIT = {
    "usage@cpu": {"total", "percpu", "percpu_kernel", "percpu_user"},
    "throttling": {"periods", "throttled_periods", "throttled_time"},
    "cpuset": {"cpus", "mems"},
    "entry": {"usage", "max"},
    "memory": {"cache", "raw"},
    "pids": {"current", "limit"},
    "blkio": {"ioServiceBytesRecursive", "ioServicedRecursive"},
    "hugetlb": {"usage", "max"},
}


def _drop(d, keys):
    for k in keys:
        if k in d and not d[k]:
            del d[k]


def omit_empty(s):
    """Leave out the zero fields runc's JSON leaves out, so the output reads the same."""
    _drop(s["cpu"]["usage"], _OMIT["usage@cpu"])
    _drop(s["cpu"]["throttling"], _OMIT["throttling"])
    _drop(s["cpuset"], _OMIT["cpuset"])
    for key in ("usage", "swap", "kernel", "kernelTCP"):
        if key in s["memory"]:
            _drop(s["memory"][key], _OMIT["entry"])
    _drop(s["memory"], _OMIT["memory"])
    _drop(s["pids"], _OMIT["pids"])
    _drop(s["blkio"], _OMIT["blkio"])
    for h in s["hugetlb"].values():
        _drop(h, _OMIT["hugetlb"])
    return s
