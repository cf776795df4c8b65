"""Log throughput: a busybox container printing LINES lines of 100 bytes, side by side:
  - containerd 1.6 + containerd-shim-runc-v2 with --log-uri file:// (the shim copies raw
    bytes from pipes into the file),
  - corrald + our shim with --log-uri jsonfile:// (docker json-file lines, rotation on),
  - corrald + our shim with --log-uri file:// (the container writes the file directly).

Usage: .venv/bin/python bench/logs_throughput.py [-n RUNS] [--lines N]
Prints median wall times of `ctr run --rm` and the ratio jsonfile/containerd.
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


def run_once(daemon, runtime, uri, lines, tag):
    cid = f"logbench{os.getpid()}-{tag}"
    script = f"yes $(printf '%099d' 0) | head -n {lines}"
    t0 = time.perf_counter()
    daemon.ctr("run", "--rm", "--runtime", runtime, "--log-uri", uri, IMAGE, cid, "sh", "-c", script, timeout=300)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=200000)
    args = ap.parse_args()
    ours, theirs = Corrald(log_level="warning"), Containerd()
    try:
        ours.start()
        theirs.start()
        archive = os.path.join(ours.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        for d in (ours, theirs):
            d.ctr("images", "import", archive)
        out = os.path.join(ours.dir, "logs")
        cases = {
            "containerd runc-v2 file://": (theirs, "io.containerd.runc.v2", f"file://{out}/ctrd.log"),
            "corral jsonfile://": (ours, "io.containerd.corral.v2",
                                   f"jsonfile://{out}/json.log?max-size=104857600&max-file=3"),
            "corral file://": (ours, "io.containerd.corral.v2", f"file://{out}/raw.log"),
        }
        samples = {k: [] for k in cases}
        for i in range(args.runs):
            for k, (d, rt, uri) in cases.items():
                samples[k].append(run_once(d, rt, uri, args.lines, f"{i}-{len(samples[k])}-{abs(hash(k)) % 1000}"))
        med = {k: statistics.median(v) for k, v in samples.items()}
        mb = args.lines * 100 / 1e6
        for k, v in med.items():
            print(f"{k:28s} median {v * 1000:8.1f} ms for {mb:.0f} MB ({mb / v:6.1f} MB/s) over {args.runs} runs")
        print(f"jsonfile/containerd = {med['corral jsonfile://'] / med['containerd runc-v2 file://']:.2f}")
    finally:
        ours.cleanup()
        theirs.cleanup()


if __name__ == "__main__":
    main()
