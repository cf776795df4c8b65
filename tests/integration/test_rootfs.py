"""corral.oci.linux.rootfs on the real kernel: a child unshares mount+pid (+cgroup, ipc, net,
uts) namespaces, forks, runs setup() on a busybox bundle, then execs a shell probe whose
output the test checks. The namespaces die with the child; temp dirs are removed."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from corral.busybox import make_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DRIVER = r"""
import json, os, sys
from corral.oci.errors import RuntimeFailure
from corral.oci.linux import rootfs, syscalls as S
bundle, script, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(os.path.join(bundle, "config.json")) as f:
    spec = json.load(f)
flags = S.CLONE_NEWNS | S.CLONE_NEWPID | S.CLONE_NEWIPC | S.CLONE_NEWNET | S.CLONE_NEWUTS
if opts.get("userns"):
    # map root to itself only: inside, mknod is not allowed and host mount flags are locked
    flags |= S.CLONE_NEWUSER
S.unshare(flags if opts.get("no_cgroupns") else flags | S.CLONE_NEWCGROUP)
if opts.get("userns"):
    for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
        with open("/proc/self/" + name, "w") as f:
            f.write(text)
hostproc = os.open("/proc", os.O_PATH | os.O_DIRECTORY)
pid = os.fork()
if pid == 0:
    try:
        before = None
        if opts.get("before_pivot"):
            before = lambda: open(os.path.join(bundle, "before-pivot-ran"), "w").close()
        rootfs.setup(spec, bundle, opts.get("cgroup_paths") or {}, no_pivot=opts.get("no_pivot", False),
                     before_pivot=before)
        if opts.get("console"):
            master, slave = os.openpty()
            rootfs.mount_console(os.ttyname(slave))
        os.execv("/bin/sh", ["sh", "-c", script])
    except RuntimeFailure as e:
        print("FAILURE:", e, file=sys.stderr)
    except BaseException as e:
        print("ERROR:", repr(e), file=sys.stderr)
    os._exit(3)
_, status = os.waitpid(pid, 0)
if opts.get("dump_mounts"):
    # the mount table of the namespace as seen from the old root (a held fd of the host /proc)
    sys.stdout.flush()
    print("===")
    print(open("self/mountinfo", opener=lambda p, f: os.open(p, f, dir_fd=hostproc)).read(), end="")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_setup(bundle, script, **opts):
    """Run setup() on `bundle` in fresh namespaces, then `script` inside; (rc, out, err)."""
    res = subprocess.run([sys.executable, "-c", DRIVER, bundle, script, json.dumps(opts)],
                         capture_output=True, text=True, timeout=60)
    return res.returncode, res.stdout, res.stderr


def ok(bundle, script, **opts):
    rc, out, err = run_setup(bundle, script, **opts)
    assert rc == 0, f"rc={rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def mountinfo_lines(out):
    """mount point -> (mount options, fstype, source, super options) from mountinfo text."""
    res = {}
    for line in out.splitlines():
        if " - " not in line:
            continue
        left, right = line.split(" - ", 1)
        f, r = left.split(), right.split()
        res[f[4]] = (f[5], r[0], r[1], r[2] if len(r) > 2 else "")
    return res


@pytest.fixture
def bundle(tmpdir_root):
    path = os.path.join(tmpdir_root, "bundle")
    make_bundle(path, args=["true"])
    return path


def edit(bundle, change):
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    change(spec)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return spec


def test_default_mounts_and_devices(bundle):
    out = ok(bundle, "cat /proc/self/mountinfo; echo ---; ls -l /dev /dev/pts; echo ---; pwd")
    info, dev, cwd = out.split("---\n")
    m = mountinfo_lines(info)
    assert m["/"][0].startswith("rw")
    assert m["/proc"][1] == "proc"
    assert m["/dev"][:2] == ("rw,nosuid", "tmpfs") and "size=65536k" in m["/dev"][3]
    assert m["/dev/pts"][1] == "devpts" and "ptmxmode=666" in m["/dev/pts"][3]
    assert m["/dev/shm"][0] == "rw,nosuid,nodev,noexec,relatime"
    assert m["/dev/mqueue"][1] == "mqueue"
    assert m["/sys"][:2] == ("ro,nosuid,nodev,noexec,relatime", "sysfs")
    assert m["/sys/fs/cgroup"][1] in ("tmpfs", "cgroup2")
    assert m["/proc/sys"][0].startswith("ro")
    assert m["/proc/keys"][2] == "tmpfs"  # /dev/null of the container's /dev bound over it
    assert m["/sys/firmware"][:2] == ("ro,relatime", "tmpfs")
    for name, major_minor in [("null", "1,   3"), ("zero", "1,   5"), ("full", "1,   7"),
                              ("random", "1,   8"), ("urandom", "1,   9"), ("tty", "5,   0")]:
        line = next(l for l in dev.splitlines() if l.endswith(" " + name))
        assert line.startswith("crw-rw-rw-") and major_minor in line, line
    for link in ["fd -> /proc/self/fd", "stdin -> /proc/self/fd/0", "stdout -> /proc/self/fd/1",
                 "stderr -> /proc/self/fd/2", "ptmx -> pts/ptmx"]:
        assert link in dev
    assert cwd.strip() == "/"


PROBE = ("cut -d' ' -f5,6 /proc/self/mountinfo; echo ---; ls -ln /dev | awk '{print $1, $3, $4, $NF}'; "
         "echo ---; ls /home; cat /etc/hostname; touch /tmp/x 2>&1 | wc -l")


def _richer(spec):
    spec["root"]["readonly"] = True
    spec["mounts"] += [
        {"destination": "/mnt/ro", "type": "bind", "source": "rootfs/etc", "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/mnt/file", "type": "bind", "source": "rootfs/etc/passwd", "options": ["bind", "noexec"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nodev", "size=2m", "mode=700"]},
        {"destination": "/var/x", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "noatime"]},
    ]
    spec["linux"]["devices"] = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1, "gid": 1},
        {"path": "/dev/fifo", "type": "p", "fileMode": 0o600}]
    spec["linux"]["maskedPaths"] += ["/etc/hostname", "/home"]
    spec["linux"]["readonlyPaths"] += ["/tmp"]


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
@pytest.mark.parametrize("variant", ["default", "readonly", "richer"])
def test_same_mounts_as_runc(tmpdir_root, cid, variant):
    bundle = os.path.join(tmpdir_root, "bundle")
    make_bundle(bundle, args=["sh", "-c", PROBE], rootfs_readonly=variant == "readonly",
                spec_changes=_richer if variant == "richer" else None)
    ours = ok(bundle, PROBE)
    root = os.path.join(tmpdir_root, "runc")
    try:
        res = subprocess.run(["runc", "--root", root, "run", cid], cwd=bundle, capture_output=True,
                             text=True, timeout=60)
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", cid], capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    for a, b in zip(ours.split("---\n"), res.stdout.split("---\n")):
        assert sorted(a.splitlines()) == sorted(b.splitlines())


def test_symlink_and_dotdot_escapes_stay_inside(bundle, tmpdir_root):
    hostdir = os.path.join(tmpdir_root, "hostdir")       # must never be created on the host
    hostfile = os.path.join(tmpdir_root, "hostfile")     # must never be written or mounted over
    with open(hostfile, "w") as f:
        f.write("host\n")
    rootfs_dir = os.path.join(bundle, "rootfs")
    os.rename(os.path.join(rootfs_dir, "etc"), os.path.join(rootfs_dir, "etc.image"))
    os.symlink(hostdir, os.path.join(rootfs_dir, "etc"))
    os.symlink("../../../../../../..", os.path.join(rootfs_dir, "up"))
    os.symlink(hostfile, os.path.join(rootfs_dir, "hosts2"))
    src = os.path.join(tmpdir_root, "src")
    os.mkdir(src)
    with open(os.path.join(src, "marker"), "w") as f:
        f.write("inside\n")
    with open(os.path.join(tmpdir_root, "srcfile"), "w") as f:
        f.write("bound\n")

    def change(spec):
        spec["mounts"] += [
            {"destination": "/etc/x", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/../../dotdot", "type": "bind", "source": src, "options": ["rbind"]},
            {"destination": "/up/up2", "type": "bind", "source": src, "options": ["rbind"]},
            {"destination": "/hosts2", "type": "bind", "source": os.path.join(tmpdir_root, "srcfile"),
             "options": ["bind"]},
        ]
        spec["linux"]["devices"] = [{"path": "/up/dev2", "type": "c", "major": 1, "minor": 3}]
    edit(bundle, change)
    out = ok(bundle, "cut -d' ' -f5 /proc/self/mountinfo; cat /dotdot/marker /up2/marker /hosts2")
    with open("/proc/self/mountinfo") as f:
        assert tmpdir_root not in f.read()  # no mount left on the host (others' tests may mount elsewhere)
    points = out.splitlines()
    assert "/etc/x" not in points  # shown where it really landed, inside the root
    assert os.path.join(hostdir, "x") in points
    assert "/dotdot" in points and "/up2" in points
    assert out.count("inside") == 2 and "bound" in out
    # created inside the rootfs, nothing on the host
    assert os.path.isdir(os.path.join(rootfs_dir, hostdir.lstrip("/"), "x"))
    assert os.path.isdir(os.path.join(rootfs_dir, "dotdot")) and os.path.isdir(os.path.join(rootfs_dir, "up2"))
    assert os.path.exists(os.path.join(rootfs_dir, "dev2"))
    assert os.path.exists(os.path.join(rootfs_dir, hostfile.lstrip("/")))
    assert not os.path.exists(hostdir)
    with open(hostfile) as f:
        assert f.read() == "host\n"
    assert sorted(os.listdir(tmpdir_root)) == ["bundle", "hostfile", "src", "srcfile"]
    assert os.listdir(src) == ["marker"]


def test_proc_through_symlink_and_mounts_into_proc_refused(bundle, tmpdir_root):
    fake = os.path.join(tmpdir_root, "meminfo")
    with open(fake, "w") as f:
        f.write("MemTotal: 1 kB\n")
    os.symlink("/proc/sys", os.path.join(bundle, "rootfs", "sneaky"))
    edit(bundle, lambda s: s["mounts"].append(
        {"destination": "/proc/meminfo", "type": "bind", "source": fake, "options": ["bind"]}))
    assert ok(bundle, "cat /proc/meminfo") == "MemTotal: 1 kB\n"  # as lxcfs does
    for bad in [{"destination": "/proc/sys/kernel", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sneaky/kernel", "type": "bind", "source": tmpdir_root, "options": ["rbind"]}]:
        edit(bundle, lambda s: s["mounts"].append(bad))
        rc, out, err = run_setup(bundle, "true")
        assert rc == 3 and "FAILURE:" in err and "inside /proc" in err, err
        edit(bundle, lambda s: s["mounts"].pop())
    rootfs_dir = os.path.join(bundle, "rootfs")
    os.rmdir(os.path.join(rootfs_dir, "proc"))
    os.symlink("/etc", os.path.join(rootfs_dir, "proc"))
    edit(bundle, lambda s: s["mounts"].pop())
    rc, out, err = run_setup(bundle, "true")
    assert rc == 3 and "FAILURE:" in err and "symlink" in err, err


def test_bind_ro_file_tmpfs_options_propagation(bundle, tmpdir_root):
    src = os.path.join(tmpdir_root, "src")
    os.mkdir(src)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("data\n")
    edit(bundle, lambda s: s["mounts"].extend([
        {"destination": "/mnt/ro", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/mnt/rw", "type": "none", "source": src, "options": ["bind", "rshared"]},
        {"destination": "/mnt/file", "source": os.path.join(src, "f"), "options": ["bind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nodev", "noexec", "size=1m", "mode=700"]},
    ]))
    out = ok(bundle, "cat /proc/self/mountinfo; echo ---; cat /mnt/ro/f /mnt/file; "
                     "touch /mnt/ro/new 2>/dev/null && echo WROTE-RO; touch /mnt/rw/new && echo WROTE-RW; "
                     "stat -c %a /scratch")
    info, rest = out.split("---\n")
    m = mountinfo_lines(info)
    assert m["/mnt/ro"][0].startswith("ro,nosuid")
    assert m["/mnt/file"][0].startswith("ro")
    assert m["/mnt/rw"][0].startswith("rw")
    shared = [l for l in info.splitlines() if l.split()[4] == "/mnt/rw"][0]
    assert "shared:" in shared
    assert m["/scratch"][0] == "rw,nodev,noexec,relatime" and "size=1024k" in m["/scratch"][3]
    assert rest.splitlines() == ["data", "data", "WROTE-RW", "700"]
    assert os.path.exists(os.path.join(src, "new"))


def test_recursive_readonly(bundle, tmpdir_root):
    src = os.path.join(tmpdir_root, "src")
    os.makedirs(os.path.join(src, "sub"))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(src, "sub")], check=True)
    try:
        edit(bundle, lambda s: s["mounts"].extend([
            {"destination": "/a", "type": "bind", "source": src, "options": ["rbind", "ro"]},
            {"destination": "/b", "type": "bind", "source": src, "options": ["rbind", "rro"]},
        ]))
        out = ok(bundle, "touch /a/sub/x && echo A-SUB-RW; touch /b/sub/y 2>/dev/null || echo B-SUB-RO; "
                         "touch /a/x 2>/dev/null || echo A-RO")
    finally:
        subprocess.run(["umount", "-l", os.path.join(src, "sub")], check=True)
    # "ro" makes the top mount read-only (as runc does); "rro" every mount below it too
    assert out.split() == ["A-SUB-RW", "B-SUB-RO", "A-RO"]


def test_masked_readonly_paths_and_readonly_root(bundle):
    def change(spec):
        spec["root"]["readonly"] = True
        spec["linux"]["maskedPaths"] = ["/etc/hostname", "/home", "/does/not/exist"]
        spec["linux"]["readonlyPaths"] = ["/var", "/nope"]
        spec["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs"})
        os.makedirs(os.path.join(bundle, "rootfs", "home", "user"))
    edit(bundle, change)
    out = ok(bundle, "cat /etc/hostname; ls /home; touch /var/x 2>/dev/null || echo VAR-RO; "
                     "touch /x 2>/dev/null || echo ROOT-RO; touch /run/x && echo RUN-RW; "
                     "touch /home/x 2>/dev/null || echo HOME-RO")
    assert out.split() == ["VAR-RO", "ROOT-RO", "RUN-RW", "HOME-RO"]


def test_spec_devices_modes_and_owners(bundle):
    edit(bundle, lambda s: s["linux"].update(devices=[
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1, "gid": 5},
        {"path": "/dev/sub/fifo", "type": "p", "fileMode": 0o640},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620},
    ]))
    out = ok(bundle, "ls -ln /dev/mynull /dev/sub/fifo /dev/null; echo hi > /dev/mynull && echo OK")
    lines = out.splitlines()
    assert lines[0].startswith("crw-------") and "1        5" in lines[0]
    assert lines[1].startswith("crw--w----")  # the default /dev/null replaced by the spec's
    assert lines[2].startswith("prw-r-----")
    assert lines[3] == "OK"


def test_no_pivot_and_before_pivot(bundle):
    out = ok(bundle, "cat /etc/hostname", no_pivot=True, before_pivot=True, dump_mounts=True)
    assert out.split()[0] == "busybox"
    outside = [l.split() for l in out.split("===\n")[1].splitlines()]
    assert len(outside) > 5
    # no proc or sysfs of the host's left anywhere in the container's mount namespace
    with open("/proc/self/mountinfo") as f:
        host = [l.split() for l in f]
    host_devs = {f[2] for f in host if f[f.index("-") + 1] in ("proc", "sysfs")}
    left = [f for f in outside if f[f.index("-") + 1] in ("proc", "sysfs") and f[2] in host_devs]
    assert not left
    assert os.path.exists(os.path.join(bundle, "before-pivot-ran"))


def test_cgroup_v1_binds_without_cgroupns(bundle):
    edit(bundle, lambda s: s["linux"].update(
        namespaces=[n for n in s["linux"]["namespaces"] if n["type"] != "cgroup"]))
    with open("/proc/self/cgroup") as f:
        mine = f.read()
    out = ok(bundle, "ls /sys/fs/cgroup; echo ---; cat /proc/self/mountinfo", no_cgroupns=True)
    names, info = out.split("---\n")
    m = mountinfo_lines(info)
    if m["/sys/fs/cgroup"][1] == "cgroup2":
        return  # a unified host: one cgroup2 bind
    assert "memory" in names.split()
    # the bind shows this process's own cgroup directory as the mount's root
    own = [l.split(":", 2)[2] for l in mine.splitlines() if l.split(":")[1] == "memory"][0]
    line = [l for l in info.splitlines() if l.split()[4] == "/sys/fs/cgroup/memory"][0]
    assert line.split()[3] == own and line.split()[5].startswith("ro,nosuid,nodev,noexec")


def test_user_namespace_binds_devices(bundle):
    def change(spec):
        spec["root"]["readonly"] = True
        spec["mounts"][2]["options"].remove("gid=5")  # gid 5 is not mapped (as runc spec --rootless)
    rc, out, err = run_setup(bundle, "true", userns=True)
    assert rc == 3 and "mounts[2]: mounting devpts devpts on /dev/pts failed: Invalid argument" in err
    edit(bundle, change)
    out = ok(bundle, "cut -d' ' -f5,6 /proc/self/mountinfo; echo ---; ls -l /dev/null /dev/tty; "
                     "echo hi > /dev/null && echo NULL-OK; touch /x 2>/dev/null || echo ROOT-RO", userns=True)
    info, rest = out.split("---\n")
    points = dict(l.split(" ", 1) for l in info.splitlines())
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        assert "/dev/" + name in points  # bound from the host, mknod being refused
    assert points["/"].startswith("ro") and points["/proc/sys"].startswith("ro")
    assert rest.splitlines()[-2:] == ["NULL-OK", "ROOT-RO"]
    assert rest.startswith("crw-rw-rw-")


def test_console_bind(bundle):
    out = ok(bundle, "grep -c ' /dev/console ' /proc/self/mountinfo; ls -l /dev/console", console=True)
    count, line = out.splitlines()
    assert count == "1" and line.startswith("crw--w----") and "136," in line


@pytest.mark.parametrize("cgroupns", [True, False])
def test_cgroup2_mount(bundle, cgroupns):
    def change(spec):
        spec["mounts"][-1] = {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup",
                              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        if not cgroupns:
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "cgroup"]
    edit(bundle, change)
    out = ok(bundle, "cat /proc/self/mountinfo; echo ---; cat /proc/self/cgroup; ls /sys/fs/cgroup",
             no_cgroupns=not cgroupns)
    info, rest = out.split("---\n")
    m = mountinfo_lines(info)
    assert m["/sys/fs/cgroup"][:2] == ("ro,nosuid,nodev,noexec,relatime", "cgroup2")
    own = [l.split(":", 2)[2] for l in rest.splitlines() if l.startswith("0::")][0]
    line = [l for l in info.splitlines() if l.split()[4] == "/sys/fs/cgroup"][0]
    assert line.split()[3] == own  # the container's own cgroup, not the host's root
    assert "cgroup.procs" in rest.split()


def test_rootfs_propagation_and_no_fd_leak(bundle):
    edit(bundle, lambda s: s["linux"].update(rootfsPropagation="rshared"))
    out = ok(bundle, "awk '$5 == \"/\"' /proc/self/mountinfo; ls /proc/self/fd | xargs")
    line, fds = out.splitlines()
    assert "shared:" in line
    assert fds == "0 1 2 3"  # stdio and ls's own directory fd: nothing from setup()
    edit(bundle, lambda s: s["linux"].update(rootfsPropagation="private"))
    out = ok(bundle, "awk '$5 == \"/\"' /proc/self/mountinfo")
    assert "shared:" not in out and "master:" not in out


def test_tmpfs_copyup(bundle):
    edit(bundle, lambda s: s["mounts"].append(
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "mode=755"]}))
    out = ok(bundle, "grep -c root /etc/passwd; echo changed > /etc/hostname; cat /etc/hostname; "
                     "awk '$5 == \"/etc\" {print $9}' /proc/self/mountinfo")
    assert out.split() == ["1", "changed", "tmpfs"]
    with open(os.path.join(bundle, "rootfs", "etc", "hostname")) as f:
        assert f.read() == "busybox\n"  # the copy changed, not the image
    assert not [d for d in os.listdir("/tmp") if d.startswith("corral-copyup-")]
