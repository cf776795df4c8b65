"""`corral stats [--no-stream] [-a] [CONTAINER...]`: CPU, memory and process counts from the
tasks' cgroup metrics (two samples for the CPU percentage)."""

import os
import sys
import time

INTERVAL = 1.0


def configure(p):
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("-a", "--all", action="store_true", help="all containers (default: running ones)")
    p.add_argument("--format", default="", help="json for one JSON object per line")
    p.add_argument("containers", nargs="*")


def _decode(metric):
    """(cpu ns, mem usage, mem limit, pids) from a v1 or v2 metrics Any."""
    data = metric.data
    if data.type_url.endswith("cgroups.v2.Metrics"):
        from corral.api.cgroups.v2 import metrics_pb2
        m = metrics_pb2.Metrics.FromString(data.value)
        return m.cpu.usage_usec * 1000, m.memory.usage, m.memory.usage_limit, m.pids.current
    from corral.api.cgroups.v1 import metrics_pb2
    m = metrics_pb2.Metrics.FromString(data.value)
    return m.cpu.usage.total, m.memory.usage.usage, m.memory.usage.limit, m.pids.current


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024


def sample(client, ids):
    out = {}
    for m in client.metrics(*[f"id=={i}" for i in ids]) if ids else []:
        try:
            out[m.id] = _decode(m)
        except Exception:
            continue
    return out, time.monotonic()


def run(opts, env):
    import json
    from corral.cli.commands._common import get
    client = env.client()
    if opts.containers:
        cs = [get(env, ref) for ref in opts.containers]
    else:
        cs = client.containers.list(all=opts.all)
    ids = [c.id for c in cs]
    host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    prev, t0 = sample(client, ids)
    while True:
        time.sleep(INTERVAL if not opts.no_stream else 0.5)
        cur, t1 = sample(client, ids)
        lines = []
        for c in cs:
            if c.id not in cur:
                cpu, use, limit, pids = 0.0, 0, 0, 0
            else:
                total, use, limit, pids = cur[c.id]
                before = prev.get(c.id, cur[c.id])[0]
                cpu = 100.0 * (total - before) / ((t1 - t0) * 1e9) if t1 > t0 else 0.0
            limit = limit if 0 < limit < host_mem else host_mem
            row = {"ID": c.id[:12], "Name": c.name, "CPUPerc": f"{cpu:.2f}%",
                   "MemUsage": f"{human(use)} / {human(limit)}", "MemPerc": f"{100.0 * use / limit:.2f}%",
                   "PIDs": str(pids)}
            lines.append(row)
        if opts.format == "json":
            for r in lines:
                print(json.dumps(r))
        else:
            if not opts.no_stream:
                sys.stdout.write("\033[2J\033[H")
            print(f"{'CONTAINER ID':<14}{'NAME':<20}{'CPU %':<9}{'MEM USAGE / LIMIT':<24}{'MEM %':<9}PIDS")
            for r in lines:
                print(f"{r['ID']:<14}{r['Name'][:19]:<20}{r['CPUPerc']:<9}{r['MemUsage']:<24}{r['MemPerc']:<9}{r['PIDs']}")
        sys.stdout.flush()
        if opts.no_stream:
            return 0
        prev, t0 = cur, t1
