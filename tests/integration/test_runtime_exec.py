"""corral-runc exec: joins the init's namespaces, exit status, env/cwd/user/caps, --process, --detach."""

import json
import os

from tests.helpers.oci_runtime import rt  # noqa: F401


def _running(rt, cid, **kw):
    bundle = rt.bundle(args=["sleep", "1000"], **kw)
    rt.ok("run", "-d", "--bundle", bundle, cid)
    return bundle


def test_exec_joins_the_container(rt, cid):
    _running(rt, cid, changes=lambda s: s.update(hostname="inside"))
    pid = rt.state(cid)["pid"]
    res = rt("exec", cid, "sh", "-c", "hostname; cat /proc/1/cmdline; echo; readlink /proc/self/ns/pid; "
                                      "readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; exit 9")
    assert res.returncode == 9, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "inside" and lines[1].startswith("sleep")
    assert len(lines) == 5
    for kind, line in zip(("pid", "net", "mnt"), lines[2:]):
        assert line == os.readlink(f"/proc/{pid}/ns/{kind}")


def test_exec_env_cwd_user_caps(rt, cid):
    _running(rt, cid)
    res = rt("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1001", cid,
             "sh", "-c", "echo $FOO; pwd; id -u; id -g")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["bar", "/tmp", "1000", "1001"]
    res = rt("exec", "--user", "nobody", cid, "id")
    assert res.returncode == 0 and res.stdout.startswith("uid=65534(nobody) gid=65534"), res.stderr
    res = rt("exec", "--user", "nosuchuser", cid, "id")
    assert res.returncode == 1 and "nosuchuser" in res.stderr
    res = rt("exec", "--cap", "CAP_NET_ADMIN", cid, "sh", "-c", "grep CapEff /proc/self/status")
    plain = rt("exec", cid, "sh", "-c", "grep CapEff /proc/self/status")
    assert int(res.stdout.split()[1], 16) == int(plain.stdout.split()[1], 16) | (1 << 12)


def test_exec_process_file_and_detach_pid_file(rt, cid):
    _running(rt, cid)
    proc = {"args": ["sh", "-c", "echo from-file $X"], "env": ["X=1", "PATH=/bin"], "cwd": "/"}
    path = os.path.join(rt.tmp, "process.json")
    with open(path, "w") as f:
        json.dump(proc, f)
    res = rt("exec", "--process", path, cid)
    assert res.returncode == 0 and res.stdout == "from-file 1\n", res.stderr
    pid_file = os.path.join(rt.tmp, "exec.pid")
    rt.ok("exec", "--detach", "--pid-file", pid_file, cid, "sleep", "1000")
    with open(pid_file) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1000"]


def test_exec_errors(rt, cid):
    _running(rt, cid)
    res = rt("exec", cid, "no-such-tool")
    assert res.returncode == 1 and "'no-such-tool' not found" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    res = rt("exec", cid, "true")
    assert res.returncode == 1 and "stopped" in res.stderr


def test_exec_back_to_back_statuses(rt, cid):
    # the process's "ready" (or error) must never overtake its pid on the way to the runtime
    _running(rt, cid)
    for n in range(15):
        res = rt("exec", cid, "sh", "-c", f"exit {n}")
        assert res.returncode == n, res.stderr
        res = rt("exec", cid, "no-such-tool")
        assert res.returncode != 0 and "lost" not in res.stderr and "pid 0" not in res.stderr
