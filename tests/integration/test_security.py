"""Capabilities, user, groups, umask and rlimits applied by corral.oci.linux.security in a real
child process; compared with what real runc shows for the same config.json."""

import os
import shutil
import subprocess
import time

import pytest

from corral.busybox import host_busybox, make_rootfs
from corral.oci.errors import RuntimeFailure
from corral.oci.linux import capabilities, lsm, security, user
from corral.oci.specgen import default_spec
from tests.helpers.security import run_runc, run_secured

needs_runc = pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")


def _status(text):
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
        elif line.startswith(("nofile ", "umask ")):
            out[line.split()[0]] = line.split(None, 1)[1]
    return out


def _host_caps():
    """Names the host lets this process hold (this machine has no CAP_SYS_RESOURCE)."""
    return capabilities.to_names(capabilities.capget()[1])


def _default(spec):
    pass


def _non_root(spec):
    p = spec["process"]
    p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 1001], "umask": 0o027}
    p["capabilities"]["inheritable"] = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    p["noNewPrivileges"] = False
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]


def _all_host_caps(spec):
    names = _host_caps()
    spec["process"]["capabilities"] = {k: list(names) for k in capabilities.SETS}
    spec["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [10]}


def _split_sets(spec):
    spec["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_SYS_ADMIN"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_NET_RAW", "CAP_SETUID"],
    }
    spec["process"]["user"] = {"uid": 65534, "gid": 65534}


@needs_runc
@pytest.mark.parametrize("change", [_default, _non_root, _all_host_caps, _split_sets],
                         ids=["default", "non-root", "all-host-caps", "split-sets"])
def test_same_view_as_runc(tmpdir_root, cid, change):
    spec, theirs = run_runc(tmpdir_root, cid, change)
    assert theirs.returncode == 0, theirs.stderr
    ours = run_secured(spec["process"], spec["linux"])
    assert ours.returncode == 0, ours.stderr
    a, b = _status(ours.stdout), _status(theirs.stdout)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                "Uid", "Gid", "Groups", "nofile", "umask"):
        assert a.get(key) == b.get(key), f"{key}: corral {a.get(key)!r} runc {b.get(key)!r}"


def test_default_process_view():
    spec = default_spec(args=["sh"], terminal=False)
    out = run_secured(spec["process"], spec["linux"])
    assert out.returncode == 0, out.stderr
    st = _status(out.stdout)
    want = capabilities.to_mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert int(st["CapBnd"], 16) == int(st["CapEff"], 16) == int(st["CapPrm"], 16) == want
    assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == 0
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "0"
    assert st["nofile"] == "1024 1024" and st["umask"] == "0022"
    assert st["Uid"].split() == ["0"] * 4 and st["Groups"] == ""


def test_ambient_caps_survive_exec_as_non_root():
    process = {"user": {"uid": 1000, "gid": 1000},
               "capabilities": {k: ["CAP_NET_BIND_SERVICE"] for k in capabilities.SETS}}
    out = run_secured(process)
    assert out.returncode == 0, out.stderr
    st = _status(out.stdout)
    assert int(st["CapEff"], 16) == int(st["CapAmb"], 16) == 1 << 10
    # a privileged port can be bound only with the ambient CAP_NET_BIND_SERVICE
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 700:
            return
    script = ("httpd -f -h / -p 127.0.0.1:700 & p=$!; sleep 0.3; "
              "if kill $p 2>/dev/null; then echo bound; fi; wait $p 2>/dev/null; true")
    out = run_secured(process, argv=[host_busybox(), "sh", "-c", script])
    assert out.stdout.strip() == "bound", out.stderr
    out = run_secured({"user": {"uid": 1000, "gid": 1000}}, argv=[host_busybox(), "sh", "-c", script])
    assert out.stdout.strip() == "", out.stdout


def test_rlimits_and_umask():
    import resource
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 4096 if nproc == resource.RLIM_INFINITY else min(nproc, 4096)
    process = {"user": {"uid": 0, "gid": 0, "umask": 0o077},
               "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                           {"type": "RLIMIT_NPROC", "soft": nproc, "hard": nproc},
                           {"type": "RLIMIT_CORE", "soft": 2 ** 64 - 1, "hard": 2 ** 64 - 1}],
               "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}}
    cur_core = resource.getrlimit(resource.RLIMIT_CORE)
    argv = [host_busybox(), "sh", "-c", "echo $(ulimit -n) $(ulimit -Hn) $(ulimit -u) $(ulimit -c); umask"]
    out = run_secured(process, argv=argv)
    if cur_core[1] != -1:
        assert out.returncode == 126 and "RLIMIT_CORE" in out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["100", "200", str(nproc), "unlimited", "0077"]


@pytest.mark.skipif("CAP_SYS_RESOURCE" in capabilities.to_names(capabilities.capget()[0]),
                    reason="the runtime may raise hard limits here")
def test_raising_a_hard_limit_fails_clearly():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit to raise")
    process = {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]}
    out = run_secured(process, argv=[host_busybox(), "true"])
    assert out.returncode == 126
    assert "RLIMIT_NOFILE" in out.stderr and "CAP_SYS_RESOURCE" in out.stderr


def test_cap_the_host_lacks_fails_clearly():
    missing = [n for n in capabilities.NAMES[:capabilities.last_cap() + 1] if n not in _host_caps()]
    if not missing:
        pytest.skip("this host grants every capability")
    process = {"capabilities": {k: [missing[0]] for k in ("bounding", "effective", "permitted")}}
    out = run_secured(process, argv=[host_busybox(), "true"])
    assert out.returncode == 126 and missing[0] in out.stderr, out.stderr


def test_home_is_set_from_passwd():
    process = {"user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin:/usr/bin"]}
    from corral.oci.linux import security as sec
    pid = os.fork()
    if pid == 0:  # finalize in a throwaway child, report HOME through the exit code
        try:
            sec.finalize(process, {})
            os._exit(0 if "HOME=" + user.home_of(0) in process["env"] else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("child hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


def test_oom_score_adj(tmpdir_root):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        security.set_oom_score_adj(proc.pid, 500)
        with open(f"/proc/{proc.pid}/oom_score_adj") as f:
            assert f.read().strip() == "500"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    with pytest.raises(RuntimeFailure, match="oom_score_adj"):
        security.set_oom_score_adj(proc.pid, 10)


@pytest.mark.skipif(lsm.apparmor_enabled(), reason="AppArmor is enabled on this host")
def test_apparmor_profile_is_never_silently_ignored():
    out = run_secured({"apparmorProfile": "docker-default"}, argv=[host_busybox(), "true"])
    assert out.returncode == 126 and "AppArmor is not enabled" in out.stderr


@pytest.fixture
def rootfs(tmpdir_root):
    root = make_rootfs(os.path.join(tmpdir_root, "rootfs"))
    with open(os.path.join(root, "etc/passwd"), "a") as f:
        f.write("app:x:1000:1000:app:/home/app:/bin/sh\n")
    with open(os.path.join(root, "etc/group"), "a") as f:
        f.write("app:x:1000:\nextra:x:2000:daemon,app\nother:x:3000:daemon\n")
    os.makedirs(os.path.join(root, "home/app"))
    return root


def test_exec_user_names_resolve_in_the_container(rootfs):
    assert user.resolve_in_rootfs("app", rootfs) == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert user.resolve_in_rootfs("app:daemon", rootfs) == {"uid": 1000, "gid": 1}
    assert user.resolve_in_rootfs("app:77", rootfs) == {"uid": 1000, "gid": 77}
    assert user.resolve_in_rootfs("1000", rootfs) == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert user.resolve_in_rootfs("4321", rootfs) == {"uid": 4321, "gid": 0}
    assert user.resolve_in_rootfs("4321:4321", rootfs) == {"uid": 4321, "gid": 4321}
    for bad in ("ghost", "app:ghosts"):
        with pytest.raises(RuntimeFailure, match="ghost"):
            user.resolve_in_rootfs(bad, rootfs)


def test_passwd_symlink_cannot_leave_the_rootfs(rootfs):
    # an absolute symlink in the image must resolve inside the rootfs, never on the host
    os.rename(os.path.join(rootfs, "etc/passwd"), os.path.join(rootfs, "etc/passwd.real"))
    os.symlink("/../../../../../etc/passwd.real", os.path.join(rootfs, "etc/passwd"))
    assert user.resolve_in_rootfs("app", rootfs)["uid"] == 1000
    os.remove(os.path.join(rootfs, "etc/passwd"))
    os.symlink("/../../../../../etc/passwd", os.path.join(rootfs, "etc/passwd"))
    # the host's /etc/passwd has root; the rootfs has no passwd now, so "root" is unknown
    with pytest.raises(RuntimeFailure, match="root"):
        user.resolve_in_rootfs("root", rootfs)


def test_exec_user_runs_in_chroot(rootfs):
    proc_user = user.resolve_in_rootfs("app", rootfs)
    process = {"user": proc_user, "env": ["PATH=/bin"],
               "capabilities": {k: ["CAP_KILL"] for k in capabilities.SETS}}
    out = run_secured(process, root=rootfs, argv=["/bin/busybox", "id"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "uid=1000(app) gid=1000(app) groups=2000(extra)"


def test_parent_death_signal_survives_the_user_switch():
    import ctypes
    import signal
    from corral.oci.linux import syscalls
    process = {"user": {"uid": 1000, "gid": 1000}}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            security.finalize(process, {})
            sig = ctypes.c_int(0)
            syscalls.prctl(2, ctypes.addressof(sig))  # PR_GET_PDEATHSIG
            os.write(w, str(sig.value).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            got = f.read()
    finally:
        os.waitpid(pid, 0)
    assert got == str(int(signal.SIGKILL))


def test_exec_user_resolves_through_a_running_containers_root(rootfs):
    # `exec --user` can name the container's root as /proc/<pid>/root of its init
    proc = subprocess.Popen(["chroot", rootfs, "/bin/busybox", "sleep", "30"])
    try:
        root = f"/proc/{proc.pid}/root"
        deadline = time.monotonic() + 10
        while os.readlink(root) != rootfs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert user.resolve_in_rootfs("app", root) == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _in_own_user_namespace(process):
    """Fork; in a new user namespace that maps only root and denies setgroups (as a rootless
    container has), run finalize(); return the child's error text ('' when it worked)."""
    from corral.oci.linux import syscalls
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        msg = ""
        try:
            os.close(r)
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            security.finalize(process, {})
        except BaseException as e:
            msg = f"{type(e).__name__}: {e}"
        finally:
            os.write(w, msg.encode() or b"ok")
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            return f.read()
    finally:
        os.waitpid(pid, 0)


def test_setgroups_denied_in_a_user_namespace():
    assert _in_own_user_namespace({"user": {"uid": 0, "gid": 0}}) == "ok"
    got = _in_own_user_namespace({"user": {"uid": 0, "gid": 0, "additionalGids": [5]}})
    assert got.startswith("RuntimeFailure") and "setgroups is denied" in got, got
    got = _in_own_user_namespace({"user": {"uid": 1000, "gid": 0}})
    assert got.startswith("RuntimeFailure") and "setuid 1000" in got and "mapped" in got, got
