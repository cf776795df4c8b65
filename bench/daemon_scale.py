"""With N running `sleep` containers (io.containerd.runc.v2 shim): the daemon's memory (PSS
and RSS from smaps_rollup), its idle CPU over a few seconds, and `ctr tasks ls` latency —
corrald vs real containerd 1.6 with the same containers.

Usage: .venv/bin/python bench/daemon_scale.py [-n 100] [--idle 5] [--ls-runs 10]
Prints both daemons' numbers and the ratios corrald/containerd.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from corral.busybox import make_oci_archive  # noqa: E402
from tests.helpers.containerd import Containerd  # noqa: E402
from tests.helpers.corrald import Corrald  # noqa: E402

IMAGE = "docker.io/library/busybox:latest"


def memory_kb(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                out[parts[0][:-1].lower()] = int(parts[1])
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name, d, n, idle, ls_runs):
    for i in range(n):
        d.ctr("run", "-d", IMAGE, f"scale{i}", "sleep", "100000", timeout=60)
    time.sleep(1)
    pid = d.proc.pid
    c0 = cpu_seconds(pid)
    time.sleep(idle)
    cpu = (cpu_seconds(pid) - c0) / idle
    mem = memory_kb(pid)
    samples = []
    for _ in range(ls_runs):
        t0 = time.perf_counter()
        out = d.ctr("tasks", "ls").stdout
        samples.append(time.perf_counter() - t0)
    assert out.count("RUNNING") == n, out
    ls = statistics.median(samples)
    print(f"{name:11s} {n} containers: PSS {mem['pss'] / 1024:6.1f} MB  RSS {mem['rss'] / 1024:6.1f} MB  "
          f"idle CPU {cpu * 100:5.2f}%  tasks ls {ls * 1000:6.1f} ms")
    return {"pss": mem["pss"], "rss": mem["rss"], "cpu": cpu, "ls": ls}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--containers", type=int, default=100)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--ls-runs", type=int, default=10)
    args = ap.parse_args()
    results = {}
    for name, cls in (("corrald", lambda: Corrald(log_level="warning")), ("containerd", Containerd)):
        d = cls()
        try:
            d.start()
            archive = os.path.join(d.dir, "busybox.tar")
            make_oci_archive(archive, IMAGE)
            d.ctr("images", "import", archive)
            results[name] = measure(name, d, args.containers, args.idle, args.ls_runs)
        finally:
            d.cleanup()
    ours, theirs = results["corrald"], results["containerd"]
    for key in ("pss", "rss", "ls"):
        print(f"{key}: corrald/containerd = {ours[key] / theirs[key]:.2f}")
    print(f"idle CPU: corrald {ours['cpu'] * 100:.2f}% vs containerd {theirs['cpu'] * 100:.2f}%")


if __name__ == "__main__":
    main()
