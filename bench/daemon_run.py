"""`ctr run --rm busybox /bin/true` (image present) against corrald vs against real
containerd 1.6, same shim (io.containerd.runc.v2 by default), interleaved runs.

Usage: .venv/bin/python bench/daemon_run.py [-n RUNS] [--runtime io.containerd.runc.v2]
                                           [--corrald-runtime io.containerd.corral.v2]
Prints the median wall time against each daemon and the ratio corrald/containerd
(target: <= 0.8). --corrald-runtime: corrald runs that shim instead (each daemon with its own
stack: corrald with corral's shim, containerd with its runc shim).
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


def run_once(daemon, runtime, i):
    cid = f"bench{os.getpid()}-{i}"
    t0 = time.perf_counter()
    res = daemon.ctr("run", "--rm", "--runtime", runtime, IMAGE, cid, "/bin/true", check=False)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"ctr run failed against {daemon.sock}: {res.stderr.strip()}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=20)
    ap.add_argument("--runtime", default="io.containerd.runc.v2")
    ap.add_argument("--corrald-runtime", default=None, help="corrald's runtime, if not --runtime")
    args = ap.parse_args()
    runtimes = {"corrald": args.corrald_runtime or args.runtime, "containerd": args.runtime}
    ours, theirs = Corrald(log_level="warning"), Containerd()  # both log at warning level
    try:
        ours.start()
        theirs.start()
        archive = os.path.join(ours.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        for name, d in (("corrald", ours), ("containerd", theirs)):
            d.ctr("images", "import", archive)
            for i in range(3):  # warm caches
                run_once(d, runtimes[name], f"warm{i}")
        samples = {"corrald": [], "containerd": []}
        for i in range(args.runs):
            order = [("corrald", ours), ("containerd", theirs)]
            for name, d in order if i % 2 == 0 else order[::-1]:  # each goes first half the time
                samples[name].append(run_once(d, runtimes[name], f"{name[:4]}{i}"))
        med = {k: statistics.median(v) for k, v in samples.items()}
        for k, v in med.items():
            print(f"{k:11s} median {v * 1000:7.1f} ms over {args.runs} runs ({runtimes[k]})")
        print(f"corrald/containerd = {med['corrald'] / med['containerd']:.2f}")
    finally:
        ours.cleanup()
        theirs.cleanup()


if __name__ == "__main__":
    main()
