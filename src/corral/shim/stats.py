"""Task.Stats: the container's cgroup counters read straight from cgroupfs, as the Any containerd
expects (io.containerd.cgroups.v1.Metrics or io.containerd.cgroups.v2.Metrics)."""

import os


def _cgroup_dirs(pid):
    """{controller: dir} for v1 controllers, plus {'': dir} for the unified hierarchy."""
    with open(f"/proc/{pid}/cgroup") as f:
        paths = {}
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                paths[c] = path
    dirs = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[-1].split(",")
            if fstype == "cgroup":
                for c in opts:
                    if c in paths and c not in dirs:
                        dirs[c] = os.path.join(fields[4], paths[c].lstrip("/"))
            elif fstype == "cgroup2" and "" in paths and "" not in dirs:
                dirs[""] = os.path.join(fields[4], paths[""].lstrip("/"))
    return dirs


def _read(d, name):
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except (OSError, TypeError):
        return ""


def _int(d, name):
    text = _read(d, name)
    try:
        return int(text)
    except ValueError:
        return 0  # missing, or "max"


def _kv(d, name):
    out = {}
    for line in _read(d, name).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            pass
    return out


def metrics(pid):
    """An Any with the cgroup metrics of pid's container."""
    from google.protobuf.any_pb2 import Any

    dirs = _cgroup_dirs(pid)
    if "memory" in dirs or "cpuacct" in dirs or "pids" in dirs:
        from corral.api.cgroups.v1 import metrics_pb2 as v1

        m = v1.Metrics()
        pids = dirs.get("pids")
        m.pids.current, m.pids.limit = _int(pids, "pids.current"), _int(pids, "pids.max")
        acct = dirs.get("cpuacct")
        tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        st = _kv(acct, "cpuacct.stat")
        m.cpu.usage.total = _int(acct, "cpuacct.usage")
        m.cpu.usage.user, m.cpu.usage.kernel = st.get("user", 0) * tick, st.get("system", 0) * tick
        m.cpu.usage.per_cpu.extend(int(x) for x in _read(acct, "cpuacct.usage_percpu").split())
        th = _kv(dirs.get("cpu"), "cpu.stat")
        m.cpu.throttling.periods = th.get("nr_periods", 0)
        m.cpu.throttling.throttled_periods = th.get("nr_throttled", 0)
        m.cpu.throttling.throttled_time = th.get("throttled_time", 0)
        mem = dirs.get("memory")
        ms = _kv(mem, "memory.stat")
        m.memory.cache, m.memory.rss = ms.get("cache", 0), ms.get("rss", 0)
        m.memory.total_cache, m.memory.total_rss = ms.get("total_cache", 0), ms.get("total_rss", 0)
        for entry, prefix in ((m.memory.usage, "memory."), (m.memory.swap, "memory.memsw."),
                              (m.memory.kernel, "memory.kmem.")):
            entry.usage = _int(mem, prefix + "usage_in_bytes")
            entry.limit = _int(mem, prefix + "limit_in_bytes")
            entry.max = _int(mem, prefix + "max_usage_in_bytes")
            entry.failcnt = _int(mem, prefix + "failcnt")
        return Any(type_url="io.containerd.cgroups.v1.Metrics", value=m.SerializeToString())
    from corral.api.cgroups.v2 import metrics_pb2 as v2

    d = dirs.get("")
    m = v2.Metrics()
    m.pids.current, m.pids.limit = _int(d, "pids.current"), _int(d, "pids.max")
    cpu = _kv(d, "cpu.stat")
    for field in ("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"):
        setattr(m.cpu, field, cpu.get(field, 0))
    ms = _kv(d, "memory.stat")
    m.memory.anon, m.memory.file = ms.get("anon", 0), ms.get("file", 0)
    m.memory.usage, m.memory.usage_limit = _int(d, "memory.current"), _int(d, "memory.max")
    m.memory.swap_usage, m.memory.swap_limit = _int(d, "memory.swap.current"), _int(d, "memory.swap.max")
    ev = _kv(d, "memory.events")
    for field in ("low", "high", "max", "oom", "oom_kill"):
        setattr(m.memory_events, field, ev.get(field, 0))
    return Any(type_url="io.containerd.cgroups.v2.Metrics", value=m.SerializeToString())
