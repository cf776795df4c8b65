"""Run a host command in a child that went through corral's process-security setup, and the
same probe under real runc, so tests can compare what the kernel reports."""

import copy
import os
import subprocess

from corral.busybox import host_busybox, make_bundle

PROBE = ("grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups)' /proc/self/status; "
         "echo nofile $(ulimit -n) $(ulimit -Hn); echo umask $(umask)")


def run_secured(process, linux=None, argv=None, root=None, env=None, timeout=30, cache_dir=None):
    """Fork, set rlimits and finalize() in the child (chrooted into `root` if given), call
    last_step() and exec argv. A setup failure exits 126 with the error on stderr."""
    process = copy.deepcopy(process)
    linux = copy.deepcopy(linux or {})
    from corral.oci.linux import security

    security.preload({"linux": linux}, cache_dir)  # on the host, before the child may chroot

    def child():
        try:
            if root:
                os.chroot(root)
                os.chdir("/")
            security.apply_rlimits(process)
            last = security.finalize(process, linux)
            last()
        except BaseException as e:  # report and never return into the test runner's code
            os.write(2, f"setup failed: {type(e).__name__}: {e}\n".encode())
            os._exit(126)

    if argv is None:
        argv = [host_busybox(), "sh", "-c", PROBE]
    return subprocess.run(argv, preexec_fn=child, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout,
                          env=env or {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin"})


def run_runc(tmpdir, cid, spec_changes, script=PROBE, timeout=60):
    """Run `sh -c script` in a busybox bundle under real runc; returns (spec, result)."""
    bundle = os.path.join(tmpdir, "bundle-" + cid)
    root = os.path.join(tmpdir, "runc-root")
    spec = make_bundle(bundle, args=["sh", "-c", script], spec_changes=spec_changes)
    try:
        res = subprocess.run(["runc", "--root", root, "run", cid], cwd=bundle, capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", cid], capture_output=True,
                       timeout=timeout)
    return spec, res
