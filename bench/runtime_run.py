"""`corral-runc run` vs `runc run` vs `crun run` of /bin/true on one busybox bundle.

Usage: .venv/bin/python bench/runtime_run.py [-n RUNS]
corral's bytecode is compiled first, as an installation has it (a run with
PYTHONDONTWRITEBYTECODE set and no .pyc files compiles every module each time: ~40 ms a call).
Prints the median wall time of each runtime's `run`, of `create` and `start` as containerd's
shim calls them (then `delete`), and the ratios corral-runc/peer. The runtimes take turns run by
run, so a busy machine slows them alike.
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


def _timed(cmd, cwd):
    # output to a file, not a pipe: a created container's init holds it until start
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        code = subprocess.call(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        elapsed = time.perf_counter() - t0
        if code != 0:
            out.seek(0)
            raise RuntimeError((out.read().decode().strip().splitlines() or ["exit %d" % code])[-1])
    return elapsed


def one_round(binary, bundle, root, cid):
    """{phase: seconds} for run, then create + start + delete of a detached /bin/true."""
    base = [binary, "--root", root]
    times = {"run": _timed(base + ["run", cid], bundle)}
    cid += "-cs"
    times["create"] = _timed(base + ["create", "--bundle", bundle, cid], bundle)
    try:
        times["start"] = _timed(base + ["start", cid], bundle)
    finally:
        t0 = time.perf_counter()
        subprocess.run(base + ["delete", "--force", cid], capture_output=True)
        times["delete"] = time.perf_counter() - t0
    return times


PHASES = ("run", "create", "start", "delete")


def compile_bytecode():
    import compileall

    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "corral")
    compileall.compile_dir(src, quiet=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=30)
    args = ap.parse_args()
    compile_bytecode()
    tmp = tempfile.mkdtemp(prefix="corral-bench-")
    try:
        bundle = os.path.join(tmp, "bundle")
        make_bundle(bundle, args=["/bin/true"])
        samples = {}
        for name, binary in runtimes():
            try:
                for i in range(3):  # warm caches
                    one_round(binary, bundle, os.path.join(tmp, name), f"warm{os.getpid()}-{i}")
            except RuntimeError as e:
                print(f"{name:12s} unavailable here: {e}")
                continue
            samples[name] = (binary, {p: [] for p in PHASES})
        for i in range(args.runs):
            for name, (binary, per_phase) in samples.items():
                for phase, t in one_round(binary, bundle, os.path.join(tmp, name), f"b{os.getpid()}-{i}").items():
                    per_phase[phase].append(t)
        medians = {name: {p: statistics.median(v) for p, v in per_phase.items()}
                   for name, (_, per_phase) in samples.items()}
        print(f"median ms over {args.runs} runs: " + "  ".join(f"{p:>7s}" for p in PHASES))
        for name, m in medians.items():
            print(f"{name:12s}" + " " * 20 + "  ".join(f"{m[p] * 1000:7.1f}" for p in PHASES))
        ours = medians.get("corral-runc")
        for peer in ("runc", "crun"):
            if ours and peer in medians:
                ratios = "  ".join(f"{p} {ours[p] / medians[peer][p]:.2f}" for p in PHASES)
                print(f"corral-runc/{peer}: {ratios}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
