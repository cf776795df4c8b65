"""Memory of the shims per container with N running `sleep` containers (default 20): corral's
shim, one per container (the default), and grouped (all N in one pod via the
io.kubernetes.cri.sandbox-id annotation; all N plain containers of a namespace with
CORRAL_SHIM_GROUP=namespace), against containerd's runc shim with one shim per container, as
containerd runs plain containers. PSS from /proc/PID/smaps_rollup, and RSS. Where ksmd runs
(scripts/setup.sh turns it on), each case is measured once it has merged what it can.

    .venv/bin/python bench/shim_memory.py [count]     (root; containerd, ctr, runc installed)
"""

import os
import sys
import time

KSM = "/sys/kernel/mm/ksm"

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from corral.shim.server import IDLE_CHECK  # noqa: E402
from tests.helpers.containerd import Containerd, import_busybox, runtime_config  # noqa: E402

SHIMS = (b"containerd-shim-runc-v2", b"containerd-shim-corral-v2")


def shim_memory(ctrd):
    """(count, PSS kB, RSS kB) summed over the shims of this containerd, and the kB of PSS and
    private dirty pages per kind of process (runc's shims; our servers, spare and zygote)."""
    n = pss = rss = 0
    kinds = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/comm", "rb") as f:
                comm = f.read().strip()
            ours = comm == b"corral-shim" or b"corral.shim.zygote" in argv  # servers and their zygote
            if not (ours or any(a.endswith(SHIMS) for a in argv[:2])) or ctrd.sock.encode() not in argv:
                continue
            with open(f"/proc/{entry}/smaps_rollup") as f:
                fields = {line.split()[0]: int(line.split()[1]) for line in f if line.split()[-1] == "kB"}
        except OSError:
            continue
        n += 1
        pss += fields["Pss:"]
        rss += fields["Rss:"]
        kind = comm.decode()  # containerd-shim (runc's), corral-shim (a server), corral-spare
        if kind not in ("corral-shim", "corral-spare") and b"corral.shim.zygote" in argv:
            kind = "zygote"
        totals = kinds.setdefault(kind, [0, 0, 0])
        totals[0] += 1
        totals[1] += fields["Pss:"]
        totals[2] += fields["Private_Dirty:"]
    return n, pss, rss, kinds


def ksm_value(name):
    try:
        with open(os.path.join(KSM, name)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def settle(scans=3, timeout=300):
    """With ksmd running, wait until it has scanned all mergeable memory `scans` more times:
    it merges a page once the page stayed the same between two of its scans. Seconds waited."""
    start = time.monotonic()
    first = ksm_value("full_scans")
    while ksm_value("full_scans") < first + scans and time.monotonic() - start < timeout:
        time.sleep(1.0)
    return time.monotonic() - start


def measure(ctrd, image, name, count, args):
    ids = [f"mem-{name}-{i}" for i in range(count)]
    try:
        for cid in ids:
            ctrd.ctr("run", "-d", *args, image, cid, "sleep", "1000")
        time.sleep(1.0)
        if name.startswith("corral") and ksm_value("run") == 1:  # runc's shims offer ksmd nothing
            time.sleep(IDLE_CHECK)  # each server offers the mappings it made since its fork at its first check
            settled[name] = settle()
        return shim_memory(ctrd)
    finally:
        for cid in ids:
            ctrd.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        for cid in ids:
            for _ in range(50):
                if ctrd.ctr("tasks", "delete", cid, check=False).returncode == 0:
                    break
                time.sleep(0.1)
            ctrd.ctr("containers", "delete", cid, check=False)


settled = {}  # case: seconds waited for ksmd


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    results = {}
    # the namespace group needs CORRAL_SHIM_GROUP in containerd's environment: a second daemon
    for env, cases in ((None, ("runc", "corral", "corral-pod")), ({"CORRAL_SHIM_GROUP": "namespace"}, ("corral-ns",))):
        ctrd = Containerd(env=env)
        try:
            ctrd.start()
            image = import_busybox(ctrd)
            conf = runtime_config(ctrd.dir, "runc")
            corral = ["--runtime", "io.containerd.corral.v2", "--runtime-config-path", conf]
            args = {"runc": ["--runtime", "io.containerd.runc.v2"], "corral": corral, "corral-ns": corral,
                    "corral-pod": corral + ["--annotation", "io.kubernetes.cri.sandbox-id=bench-pod"]}
            for name in cases:
                results[name] = measure(ctrd, image, name, count, args[name])
        finally:
            ctrd.cleanup()
    _, base_pss, base_rss, _ = results["runc"]
    if ksm_value("run") == 1:
        waits = ", ".join(f"{name} {secs:.0f} s" for name, secs in settled.items())
        print(f"KSM on: corral's shims measured after {IDLE_CHECK:.0f} s and 3 full scans of ksmd ({waits})")
    else:
        print("KSM off (/sys/kernel/mm/ksm/run is not 1): corral's shims keep their copied pages")
    print(f"shim memory with {count} sleep containers (per container):")
    for name, (n, pss, rss, _) in results.items():
        print(f"  {name:11s} {n:3d} shim(s)  PSS {pss / count / 1024:6.2f} MB (ratio {pss / base_pss:5.2f})"
              f"  RSS {rss / count / 1024:6.2f} MB (ratio {rss / base_rss:5.2f})")
    print("by process (mean per process):")
    for name, (_, _, _, kinds) in results.items():
        for kind, (k, pss, private) in sorted(kinds.items()):
            print(f"  {name:11s} {k:3d} x {kind:24s} PSS {pss / k / 1024:6.2f} MB"
                  f"  private dirty {private / k / 1024:6.2f} MB")


if __name__ == "__main__":
    main()
