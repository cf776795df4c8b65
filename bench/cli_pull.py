"""`corral pull` end to end (CLI process, corrald's transfer service, fetch, unpack into
overlayfs, image record) vs real containerd's `ctr images pull --plain-http`, the same
~160 MB 5-layer image from one local registry, each daemon from an empty store.

Usage: .venv/bin/python bench/cli_pull.py [--mb 160] [--runs 1]
Prints both times and the ratio corral/containerd.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from pull import data_layer  # noqa: E402  (bench/pull.py: the same image)
from tests.helpers.containerd import Containerd  # noqa: E402
from tests.helpers.corrald import Corrald  # noqa: E402
from tests.helpers.imagebuild import Image, busybox_layer  # noqa: E402
from tests.helpers.registry import LocalRegistry  # noqa: E402

CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


def time_corral(name):
    d = Corrald(log_level="warning").start()
    try:
        t = time.monotonic()
        subprocess.run([CORRAL, "--address", d.sock, "pull", "-q", "--plain-http", name], check=True,
                       capture_output=True, timeout=600)
        return time.monotonic() - t
    finally:
        d.cleanup()


def time_containerd(name):
    ctrd = Containerd().start()
    try:
        t = time.monotonic()
        ctrd.ctr("images", "pull", "--plain-http", name, timeout=600)
        return time.monotonic() - t
    finally:
        ctrd.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=160, help="compressed image size in MB")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    reg = LocalRegistry().start()
    try:
        img = Image([busybox_layer()] + [data_layer(i, args.mb / 4) for i in range(4)])
        size = sum(d["size"] for d in img.layer_descs)
        name = f"{reg.host}/bench/clipull:v1"
        img.push(reg.host, "bench/clipull", "v1")
        print(f"image: 5 layers, {size / 1e6:.0f} MB compressed")
        for run in range(args.runs):
            c = time_corral(name)
            k = time_containerd(name)
            print(f"run {run + 1}: corral pull {c:.2f} s, ctr images pull (containerd) {k:.2f} s, ratio {c / k:.2f}")
    finally:
        reg.stop()


if __name__ == "__main__":
    main()
