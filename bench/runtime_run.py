"""`corral-runc run` vs `runc run` vs `crun run` of /bin/true on one busybox bundle.

Usage: .venv/bin/python bench/runtime_run.py [-n RUNS]
Prints the median wall time of each runtime and the ratios corral-runc/peer.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from corral.busybox import make_bundle  # noqa: E402


def runtimes():
    corral = os.path.join(os.path.dirname(sys.executable), "corral-runc")
    found = [("corral-runc", corral)] if os.path.exists(corral) else []
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            found.append((name, path))
    return found


def time_runs(binary, bundle, root, runs):
    samples = []
    for i in range(runs):
        cid = f"bench{os.getpid()}-{i}"
        t0 = time.perf_counter()
        res = subprocess.run([binary, "--root", root, "run", cid], cwd=bundle, capture_output=True, text=True)
        samples.append(time.perf_counter() - t0)
        if res.returncode != 0:
            subprocess.run([binary, "--root", root, "delete", "--force", cid], capture_output=True)
            return None, (res.stderr.strip().splitlines() or ["exit %d" % res.returncode])[-1]
    return statistics.median(samples), None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=30)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="corral-bench-")
    try:
        bundle = os.path.join(tmp, "bundle")
        make_bundle(bundle, args=["/bin/true"])
        results = {}
        for name, binary in runtimes():
            time_runs(binary, bundle, os.path.join(tmp, name), 3)  # warm caches
            median, err = time_runs(binary, bundle, os.path.join(tmp, name), args.runs)
            if err:
                print(f"{name:12s} unavailable here: {err}")
                continue
            results[name] = median
            print(f"{name:12s} median {median * 1000:7.1f} ms over {args.runs} runs")
        ours = results.get("corral-runc")
        for peer in ("runc", "crun"):
            if ours and peer in results:
                print(f"corral-runc/{peer} = {ours / results[peer]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
