"""Latency of `ctr run --rm busybox /bin/true` through real containerd: the corral shim against
containerd's runc shim (io.containerd.runc.v2), side by side, interleaved, on the same image.

    .venv/bin/python bench/shim_latency.py [runs]     (root; containerd, ctr, runc installed)

corral's shim is measured driving runc (so only the shims differ) and driving its default
runtime, corral-runc. Prints medians and ratios to runc's shim.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.helpers.containerd import Containerd, import_busybox, runtime_config  # noqa: E402


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    ctrd = Containerd()
    try:
        ctrd.start()
        image = import_busybox(ctrd)
        conf = runtime_config(ctrd.dir, "runc")
        cases = {
            "runc shim + runc": ["--runtime", "io.containerd.runc.v2"],
            "corral shim + runc": ["--runtime", "io.containerd.corral.v2", "--runtime-config-path", conf],
            "corral shim + corral-runc": ["--runtime", "io.containerd.corral.v2"],
        }
        times = {name: [] for name in cases}
        for i in range(runs + 1):  # the first round warms caches and is not counted
            for name, args in list(cases.items()):
                t = time.perf_counter()
                res = ctrd.ctr("run", "--rm", *args, image, f"bench-{i}-{len(times[name])}-{len(name)}",
                               "/bin/true", check=False)
                if res.returncode != 0:
                    print(f"  {name}: dropped, ctr run failed: {res.stderr.strip()[-300:]}")
                    del cases[name], times[name]
                elif i:
                    times[name].append(time.perf_counter() - t)
        base = statistics.median(times["runc shim + runc"])
        print(f"ctr run --rm /bin/true, {runs} runs each, median:")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:28s} {med * 1000:7.1f} ms   ratio {med / base:5.2f}")
    finally:
        ctrd.cleanup()


if __name__ == "__main__":
    main()
