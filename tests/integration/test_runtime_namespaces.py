"""Namespaces under corral-runc: uts, pid, user with id maps, time offsets, cgroup, joining by path,
sysctl, and no host fd reaching the container."""

import os
import subprocess

import pytest

from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401


def _run(rt, cid, script, changes=None, **kw):
    bundle = rt.bundle(name=f"b-{cid}", args=["sh", "-c", script], changes=changes, **kw)
    res = rt("run", "--bundle", bundle, cid)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_hostname_pid1_and_own_namespaces(rt, cid):
    def change(s):
        s["hostname"] = "box-" + cid[:6]
        s["domainname"] = "example.test"
    out = _run(rt, cid, "hostname; cat /proc/sys/kernel/domainname; echo $$; "
                        "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done", change)
    lines = out.split("\n")
    assert lines[0] == "box-" + cid[:6] and lines[1] == "example.test" and lines[2] == "1"
    for line in lines[3:9]:
        kind = line.split(":")[0]
        host = os.readlink(f"/proc/self/ns/{kind}")
        assert line != host, f"{kind} namespace is the host's"


@pytest.mark.parametrize("userns", [False, True])
def test_new_network_namespace_has_loopback_up(rt, cid, userns):
    """As runc and crun: lo is up in a network namespace the runtime creates (both the
    direct path and the one through stage1 and a user namespace)."""
    def change(s):
        if userns:
            s["linux"]["namespaces"].append({"type": "user"})
            s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
            s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    os.chmod(rt.tmp, 0o755)  # the mapped root must be able to reach the rootfs
    out = _run(rt, cid, "ip -o link", change)
    lo = [line for line in out.splitlines() if " lo: " in line]
    assert lo and ",UP" in lo[0] and "eth0" not in out, out


def test_user_namespace_mapping(rt, cid):
    def change(s):
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    os.chmod(rt.tmp, 0o755)  # the mapped root must be able to reach the rootfs
    bundle = rt.bundle(args=["sleep", "1000"], changes=change)
    rt.ok("run", "-d", "--bundle", bundle, cid)
    pid = rt.state(cid)["pid"]
    out = rt.ok("exec", cid, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u").stdout.split()
    assert out == ["0", "200000", "65536", "0", "300000", "65536", "0"]
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["200000"] * 4
    rt.ok("delete", "--force", cid)
    assert leftovers(rt.tmp, cid) == []


def test_time_namespace_offsets(rt, cid):
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")

    def change(s):
        s["linux"]["namespaces"].append({"type": "time"})
        s["linux"]["timeOffsets"] = {"boottime": {"secs": 10_000_000, "nanosecs": 0}}
    out = _run(rt, cid, "cut -d. -f1 /proc/uptime", change)
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert 10_000_000 + host - 5 < int(out) < 10_000_000 + host + 60


def test_sysctl_in_container_netns(rt, cid):
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host_value = f.read()
    out = _run(rt, cid, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
               lambda s: s["linux"].update(sysctl={"net.ipv4.ip_unprivileged_port_start": "99"}))
    assert out == "99\n"
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read() == host_value


@pytest.fixture
def netns_file(tmpdir_root):
    """A persistent network namespace bound on a file, with a dummy link to tell it apart."""
    path = os.path.join(tmpdir_root, "netns")
    open(path, "w").close()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True, timeout=30)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], capture_output=True, timeout=30)


def test_join_network_namespace_by_path(rt, cid, netns_file):
    def change(s):
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "network"]
        s["linux"]["namespaces"].append({"type": "network", "path": netns_file})
    out = _run(rt, cid, "readlink /proc/self/ns/net; ip -o link", change)
    assert out.split()[0] == f"net:[{os.stat(netns_file).st_ino}]"
    lo = [line for line in out.splitlines() if " lo: " in line]
    assert lo and ",UP" not in lo[0], out  # a joined namespace is left as it is


def test_only_stdio_fds_reach_the_container(rt, cid):
    """Inspected from the host: the container's init and an exec'd process hold only stdio,
    even when corral-runc's caller leaks an inheritable fd into it."""
    bundle = rt.bundle(args=["sleep", "1000"])
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        for verb in (["run", "-d", "--bundle", bundle, cid],
                     ["exec", "-d", "--pid-file", os.path.join(rt.tmp, "exec.pid"), cid, "sleep", "1000"]):
            res = subprocess.run([rt.binary, "--root", rt.root, *verb], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                                 close_fds=False)
            assert res.returncode == 0
    finally:
        os.close(r)
        os.close(w)
    with open(os.path.join(rt.tmp, "exec.pid")) as f:
        exec_pid = int(f.read())
    for pid in (rt.state(cid)["pid"], exec_pid):
        assert sorted(os.listdir(f"/proc/{pid}/fd"), key=int) == ["0", "1", "2"]
        rootfs = os.stat(os.path.join(rt.tmp, "bundle", "rootfs"))
        for link in ("cwd", "root"):
            st = os.stat(f"/proc/{pid}/{link}")
            assert (st.st_dev, st.st_ino) == (rootfs.st_dev, rootfs.st_ino)


def test_preserve_fds(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "cd /proc/self/fd && echo *; cat <&3"])
    r, w = os.pipe()
    os.write(w, b"through fd 3\n")
    os.close(w)
    try:
        res = subprocess.run([rt.binary, "--root", rt.root, "run", "--preserve-fds", "1", "--bundle",
                              bundle, cid], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60, close_fds=False, preexec_fn=lambda: os.dup2(r, 3))
    finally:
        os.close(r)
    assert res.returncode == 0, res.stderr
    fds, text = res.stdout.splitlines()
    # stdio, the preserved fd, and the shell's own directory fd for the glob
    assert fds.split()[:4] == ["0", "1", "2", "3"] and len(fds.split()) <= 5
    assert text == "through fd 3"


def test_waiting_init_is_out_of_reach(rt, cid):
    """Before start, init is still the runtime's interpreter: a process in the container must
    not reach its executable or its fds (init is not dumpable, and holds only stdio + FIFO)."""
    bundle = rt.bundle(args=["sleep", "1000"])
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        res = subprocess.run([rt.binary, "--root", rt.root, "create", "--bundle", bundle, cid],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, timeout=60, close_fds=False)
    finally:
        os.close(r)
        os.close(w)
    assert res.returncode == 0
    out = rt.ok("exec", cid, "sh", "-c", "readlink /proc/1/exe || echo no-exe; ls /proc/1/fd | tr '\\n' ' '; "
                                         "cat /proc/1/fd/3 || echo no-fd").stdout.split()
    assert out == ["no-exe", "0", "1", "2", "3", "no-fd"], out
