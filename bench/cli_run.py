"""`corral run --rm --network none busybox /bin/true` end to end (the CLI process included)
against corrald, vs `ctr run --rm` of the same image on real containerd 1.6 (its default
runc shim), both daemons side by side, runs interleaved.

Usage: .venv/bin/python bench/cli_run.py [-n RUNS]
Prints the median wall time of each and the ratio corral/ctr (target: <= 1.0). corral applies
docker's default seccomp profile and ctr does not: the unconfined line
(--security-opt seccomp=unconfined) is the like-for-like one.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from corral.busybox import make_oci_archive  # noqa: E402
from tests.helpers.containerd import Containerd  # noqa: E402
from tests.helpers.corrald import Corrald  # noqa: E402

IMAGE = "docker.io/library/busybox:latest"
CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


def timed(argv):
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... failed: {res.stderr.strip()}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=20)
    args = ap.parse_args()
    ours, theirs = Corrald(log_level="warning"), Containerd()
    try:
        ours.start()
        theirs.start()
        archive = os.path.join(ours.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        for d in (ours, theirs):
            d.ctr("images", "import", archive)
        corral = [CORRAL, "--address", ours.sock, "--data-root", ours.root, "run", "--rm", "--network", "none",
                  "busybox", "/bin/true"]
        unconfined = corral[:-2] + ["--security-opt", "seccomp=unconfined"] + corral[-2:]

        def ctr(i):
            return ["ctr", "--address", theirs.sock, "run", "--rm", IMAGE, f"bench{os.getpid()}-{i}", "/bin/true"]
        for i in range(3):  # warm caches (and corral's shim zygote)
            timed(corral)
            timed(unconfined)
            timed(ctr(f"w{i}"))
        samples = {"corral": [], "unconfined": [], "ctr": []}
        for i in range(args.runs):
            samples["corral"].append(timed(corral))
            samples["unconfined"].append(timed(unconfined))
            samples["ctr"].append(timed(ctr(i)))
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"corral run --rm (corrald)            median {med['corral'] * 1000:7.1f} ms over {args.runs} runs")
        print(f"  ... --security-opt seccomp=unconfined  median {med['unconfined'] * 1000:7.1f} ms")
        print(f"ctr run --rm (containerd)            median {med['ctr'] * 1000:7.1f} ms")
        print(f"corral/ctr = {med['corral'] / med['ctr']:.2f}   unconfined/ctr = {med['unconfined'] / med['ctr']:.2f}")
    finally:
        ours.cleanup()
        theirs.cleanup()


if __name__ == "__main__":
    main()
