"""Pull + unpack of a ~160 MB (compressed), 5-layer image from a local registry: corral vs
real containerd's `ctr images pull --plain-http`, each from an empty store.

Usage: .venv/bin/python bench/pull.py [--mb 160] [--runs 3]
Prints both times and the ratio corral/containerd of each run (the two take turns going
first), then the median ratio (target: <= 0.4). One run on a shared machine is noise.
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from corral.content.store import ContentStore  # noqa: E402
from corral.images.pull import pull  # noqa: E402
from corral.remotes.registry import HostConfig, Registry  # noqa: E402
from corral.snapshots.overlay import OverlaySnapshotter  # noqa: E402
from tests.helpers.containerd import Containerd, unmount_below  # noqa: E402
from tests.helpers.imagebuild import Image, busybox_layer, tree_layer  # noqa: E402
from tests.helpers.registry import LocalRegistry  # noqa: E402


def data_layer(seed, compressed_mb):
    """A layer of many files whose bytes are ~30% random, the rest repeated text: it gzips to
    about 41% of its size, like real binaries and libraries."""
    rng = random.Random(seed)
    words = b" ".join(rng.choice([b"corral", b"layer", b"image", b"snapshot", b"digest", b"content"])
                      for _ in range(8000))
    with tempfile.TemporaryDirectory() as tmp:
        total = 0
        i = 0
        while total < compressed_mb * (1 << 20) / 0.43:
            d = os.path.join(tmp, f"usr/lib/pkg{i // 50}")
            os.makedirs(d, exist_ok=True)
            size = rng.choice([4 << 10, 64 << 10, 512 << 10, 2 << 20])
            parts = []
            n = 0
            while n < size:
                parts.append(rng.randbytes(2400))
                parts.append(words[:(8 << 10) - 2400])
                n += 8 << 10
            with open(os.path.join(d, f"file{i}.so"), "wb") as f:
                f.write(b"".join(parts)[:size])
            total += size
            i += 1
        return tree_layer(tmp)


def time_corral(host, name, workdir):
    store = ContentStore(os.path.join(workdir, "content"))
    sn = OverlaySnapshotter(os.path.join(workdir, "overlay"))
    try:
        t = time.monotonic()
        pull(name, store, Registry(hosts={host: HostConfig(plain_http=True)}, credentials={}), sn)
        return time.monotonic() - t
    finally:
        sn.close()


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
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    reg = LocalRegistry().start()
    work = tempfile.mkdtemp(prefix="corral-bench-pull-")
    try:
        t = time.monotonic()
        layers = [busybox_layer()] + [data_layer(i, args.mb / 4) for i in range(4)]
        img = Image(layers)
        size = sum(d["size"] for d in img.layer_descs)
        raw = sum(len(r) for r in layers)
        name = f"{reg.host}/bench/pull:v1"
        img.push(reg.host, "bench/pull", "v1")
        print(f"image: 5 layers, {size / 1e6:.0f} MB compressed, {raw / 1e6:.0f} MB uncompressed "
              f"(built and pushed in {time.monotonic() - t:.1f} s)")
        ratios = []
        for run in range(args.runs):
            d = os.path.join(work, f"corral{run}")

            def corral():
                try:
                    return time_corral(reg.host, name, d)
                finally:
                    unmount_below(d)
                    shutil.rmtree(d, ignore_errors=True)
            if run % 2:
                k = time_containerd(name)
                c = corral()
            else:
                c = corral()
                k = time_containerd(name)
            ratios.append(c / k)
            print(f"run {run + 1}: corral pull+unpack {c:.2f} s, containerd (ctr images pull) {k:.2f} s, "
                  f"ratio {c / k:.2f}", flush=True)
        print(f"median ratio over {len(ratios)} runs: {statistics.median(ratios):.2f} (target <= 0.4)")
    finally:
        unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
        reg.stop()


if __name__ == "__main__":
    main()
