"""Seccomp filters built from config.json and loaded in a real child process."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from corral.busybox import host_busybox
from corral.oci.linux.seccomp_default import default_profile
from corral.oci.specgen import DEFAULT_CAPS, default_spec
from tests.helpers.security import run_runc, run_secured

needs_runc = pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")


def _process(nnp=True, uid=0):
    spec = default_spec(args=["sh"], terminal=False)
    process = spec["process"]
    process["noNewPrivileges"] = nnp
    process["user"] = {"uid": uid, "gid": uid}
    return process


def _sh(script):
    return [host_busybox(), "sh", "-c", script]


def _mkdir_rule(action="SCMP_ACT_ERRNO", **extra):
    return {"names": ["mkdir", "mkdirat"], "action": action, **extra}


@pytest.mark.parametrize("nnp,uid", [(True, 0), (False, 0), (False, 1000), (True, 1000)],
                         ids=["nnp-root", "no-nnp-root", "no-nnp-user", "nnp-user"])
def test_errno_rule_blocks_only_mkdir(tmpdir_root, nnp, uid):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_mkdir_rule()]}
    script = (f"mkdir {tmpdir_root}/d; touch {tmpdir_root}/f 2>&1 && echo touched; "
              "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
    os.chmod(tmpdir_root, 0o777)
    out = run_secured(_process(nnp, uid), {"seccomp": seccomp}, argv=_sh(script))
    assert out.returncode == 0, out.stderr
    assert "Operation not permitted" in out.stderr
    assert "touched" in out.stdout
    assert "Seccomp:\t2" in out.stdout
    assert f"NoNewPrivs:\t{int(nnp)}" in out.stdout
    assert not os.path.exists(os.path.join(tmpdir_root, "d"))


def test_errno_ret_and_default_errno(tmpdir_root):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [_mkdir_rule(errnoRet=13), {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}
    out = run_secured(_process(), {"seccomp": seccomp},
                      argv=_sh(f"mkdir {tmpdir_root}/d; rmdir {tmpdir_root}"))
    assert "mkdir: can't create directory" in out.stderr and "Permission denied" in out.stderr
    assert "rmdir" in out.stderr and "Operation not permitted" in out.stderr


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_TRAP"])
def test_kill_actions_kill(tmpdir_root, action):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_mkdir_rule(action)]}
    out = run_secured(_process(), {"seccomp": seccomp},
                      argv=[host_busybox(), "mkdir", os.path.join(tmpdir_root, "d")])
    assert out.returncode == -signal.SIGSYS, (out.returncode, out.stderr)
    assert not os.path.exists(os.path.join(tmpdir_root, "d"))


def test_log_action_allows(tmpdir_root):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_mkdir_rule("SCMP_ACT_LOG")]}
    out = run_secured(_process(), {"seccomp": seccomp},
                      argv=[host_busybox(), "mkdir", os.path.join(tmpdir_root, "d")])
    assert out.returncode == 0, out.stderr
    assert os.path.isdir(os.path.join(tmpdir_root, "d"))


def test_argument_rules():
    # kill(pid, 0) -> EPERM; kill(pid, SIGCONT) matched through a mask -> EACCES; others pass
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 1, "value": 0xFF, "valueTwo": signal.SIGCONT, "op": "SCMP_CMP_MASKED_EQ"}]},
    ]}
    script = ("kill -0 $$ 2>&1 || echo zero-refused; kill -CONT $$ 2>&1 || echo cont-refused; "
              "kill -WINCH $$ && echo winch-ok")
    out = run_secured(_process(), {"seccomp": seccomp}, argv=_sh(script))
    lines = out.stdout.splitlines()
    assert "zero-refused" in lines and "cont-refused" in lines and "winch-ok" in lines, out.stdout
    assert "Operation not permitted" in out.stdout and "Permission denied" in out.stdout


def test_two_conditions_on_one_argument_are_ored_like_runc(tmpdir_root):
    # runc adds one rule per condition when an argument index repeats
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": signal.SIGCONT, "op": "SCMP_CMP_EQ"}]}]}
    out = run_secured(_process(), {"seccomp": seccomp},
                      argv=_sh("kill -0 $$ || echo a; kill -CONT $$ || echo b; kill -WINCH $$ && echo c"))
    assert out.stdout.split() == ["a", "b", "c"], out.stdout + out.stderr


def test_unknown_syscall_names_are_skipped(tmpdir_root):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["no_such_syscall_at_all", "mkdir", "mkdirat"],
                             "action": "SCMP_ACT_ERRNO"}]}
    out = run_secured(_process(), {"seccomp": seccomp}, argv=_sh(f"mkdir {tmpdir_root}/d"))
    assert out.returncode != 0 and "Operation not permitted" in out.stderr


def test_flags_and_architectures_load():
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": default_profile()["architectures"],
               "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
               "syscalls": [_mkdir_rule()]}
    out = run_secured(_process(), {"seccomp": seccomp}, argv=_sh("grep ^Seccomp: /proc/self/status"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Seccomp:\t2"


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_default_profile_works(tmpdir_root, nnp):
    # without no_new_privs the filter is loaded before the user switch and capset, which
    # the profile must then allow
    seccomp = default_profile(DEFAULT_CAPS)
    os.chmod(tmpdir_root, 0o777)
    script = (f"mkdir {tmpdir_root}/d && echo mkdir-ok; unshare -m true 2>&1 || echo unshare-refused; "
              "sh -c 'echo child-ok'; grep ^Seccomp: /proc/self/status")
    out = run_secured(_process(nnp, uid=1000), {"seccomp": seccomp}, argv=_sh(script))
    assert out.returncode == 0, out.stderr
    for word in ("mkdir-ok", "unshare-refused", "child-ok", "Seccomp:\t2"):
        assert word in out.stdout, out.stdout


def test_default_profile_loads_fast():
    """Build + load of the docker-like default profile, timed in fresh children (pyseccomp
    already imported). Prints the numbers for the report."""
    code = r"""
import os, sys, time
import pyseccomp
from corral.oci.linux import seccomp
from corral.oci.linux.seccomp_default import default_profile
from corral.oci.specgen import DEFAULT_CAPS
cfg = default_profile(DEFAULT_CAPS)
r, w = os.pipe()
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t0 = time.perf_counter()
        f = seccomp.build(cfg)
        t1 = time.perf_counter()
        seccomp.load(f)
        t2 = time.perf_counter()
        os.write(w, f"{(t1-t0)*1000:.2f} {(t2-t1)*1000:.2f}\n".encode())
        os._exit(0)
    os.waitpid(pid, 0)
os.close(w)
print(os.read(r, 4096).decode(), end="")
"""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [tuple(map(float, line.split())) for line in out.stdout.splitlines()]
    assert len(rows) == 5
    build = sorted(r[0] for r in rows)[2]
    load = sorted(r[1] for r in rows)[2]
    print(f"\ndefault profile: build {build:.1f} ms, load {load:.1f} ms (medians of 5); "
          f"whole probe {time.perf_counter() - t0:.2f} s")
    assert build + load < 500, f"building and loading the default profile took {build + load:.0f} ms"


@needs_runc
def test_same_seccomp_view_as_runc(tmpdir_root, cid):
    def change(spec):
        spec["linux"]["seccomp"] = default_profile(DEFAULT_CAPS)
    script = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status; mkdir /tmp/x && echo ok"
    spec, theirs = run_runc(tmpdir_root, cid, change, script=script)
    assert theirs.returncode == 0, theirs.stderr
    ours = run_secured(spec["process"], spec["linux"], argv=_sh(script.replace("/tmp/x", f"{tmpdir_root}/x")))
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout


def test_filter_in_a_rootfs_without_libseccomp(tmpdir_root):
    # libseccomp is loaded on the host; the busybox rootfs has no library at all
    from corral.busybox import make_rootfs
    root = make_rootfs(os.path.join(tmpdir_root, "rootfs"))
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_mkdir_rule()]}
    out = run_secured(_process(), {"seccomp": seccomp}, root=root,
                      argv=["/bin/busybox", "sh", "-c", "mkdir /tmp/d; echo done"])
    assert out.returncode == 0, out.stderr
    assert "Operation not permitted" in out.stderr and out.stdout.strip() == "done"
    assert not os.path.exists(os.path.join(root, "tmp/d"))


_PROBE_SYSCALLS = ("import ctypes, sys\n"
                   "libc = ctypes.CDLL(None, use_errno=True)\n"
                   "for nr in map(int, sys.argv[1:]):\n"
                   "    ctypes.set_errno(0)\n"
                   "    ret = libc.syscall(nr, 0, 0, 0)\n"
                   "    print(nr, ctypes.get_errno() if ret < 0 else 'ok')\n")


def test_syscalls_newer_than_the_profile_get_enosys():
    import pyseccomp
    profile = default_profile(DEFAULT_CAPS)
    # pretend the profile was written before syscall 441 existed
    allow = profile["syscalls"][0]
    allow["names"] = [n for n in allow["names"] if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, n) <= 440]
    # 300 is fanotify_init (CAP_SYS_ADMIN only): the default EPERM; 448 and 999 are newer: ENOSYS
    argv = [sys.executable, "-I", "-S", "-c", _PROBE_SYSCALLS, "300", "448", "999"]
    out = run_secured(_process(), {"seccomp": profile}, argv=argv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["300 1", "448 38", "999 38"], out.stdout


def test_no_enosys_stub_when_the_default_allows():
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    argv = [sys.executable, "-I", "-S", "-c", _PROBE_SYSCALLS, "39"]  # getpid on x86_64
    out = run_secured(_process(), {"seccomp": seccomp}, argv=argv)
    assert out.returncode == 0, out.stderr
    if os.uname().machine == "x86_64":
        assert out.stdout.split("\n")[0] == "39 ok"


def test_program_cache_on_disk(tmpdir_root):
    """The parent prepares the program once; the next container with the same profile reads
    it from the cache. Prints cold and cached times for the report."""
    cache = os.path.join(tmpdir_root, "seccomp-cache")
    code = r"""
import sys, time
t0 = time.perf_counter()
import json, zlib
from corral.oci.linux import security, seccomp, seccomp_bpf
from corral.oci.linux.seccomp_default import default_profile
from corral.oci.specgen import DEFAULT_CAPS
spec = {"linux": {"seccomp": default_profile(DEFAULT_CAPS)}}
t1 = time.perf_counter()
security.preload(spec, sys.argv[1])
print(f"{(time.perf_counter() - t1) * 1000:.2f}")
"""
    times = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code, cache], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        times.append(float(out.stdout))
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".bpf"), files
    assert os.stat(cache).st_mode & 0o777 == 0o700
    print(f"\ndefault profile preload (program, and libseccomp when not cached): "
          f"cold {times[0]:.1f} ms, cached {min(times[1:]):.1f} ms")
    # a cached program is what gets loaded, and it works
    seccomp = default_profile(DEFAULT_CAPS)
    out = run_secured(_process(), {"seccomp": seccomp}, argv=_sh("unshare -m true || echo refused"),
                      cache_dir=cache)
    assert out.returncode == 0 and "refused" in out.stdout, out.stderr


def test_program_cache_ignores_foreign_or_open_files(tmpdir_root):
    from corral.oci.linux import seccomp as sc
    cache = os.path.join(tmpdir_root, "cache")
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_mkdir_rule()]}
    sc.preload()
    sc._prepared.clear()
    good = sc.prepare(cfg, cache)
    [name] = os.listdir(cache)
    path = os.path.join(cache, name)
    with open(path, "rb") as f:
        data = f.read()
    allow_all = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # ret SECCOMP_RET_ALLOW
    # a file whose stored key differs (e.g. a crc collision) is not used
    assert b"corral-seccomp-1" in data
    with open(path, "wb") as f:
        f.write(data.replace(b"corral-seccomp-1", b"corral-seccomp-0")[:-8] + allow_all)
    sc._prepared.clear()
    assert sc.prepare(cfg, cache).code == good.code
    # a cache directory others can write is not read
    os.chmod(cache, 0o777)
    with open(path, "wb") as f:
        f.write(data[:-8] + allow_all)
    sc._prepared.clear()
    assert sc.prepare(cfg, cache).code == good.code
    sc._prepared.clear()


def test_trace_action_without_a_tracer_fails_the_call(tmpdir_root):
    # with no ptrace tracer attached the kernel fails the syscall with ENOSYS
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_mkdir_rule("SCMP_ACT_TRACE")]}
    out = run_secured(_process(), {"seccomp": seccomp}, argv=_sh(f"mkdir {tmpdir_root}/d; echo after"))
    assert "Function not implemented" in out.stderr and out.stdout.strip() == "after", out.stderr
