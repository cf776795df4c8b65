"""corral-runc lifecycle on the real kernel: create, state, start, kill, delete, run."""

import os
import subprocess

from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401


def _cgpath(cid):
    def change(spec):
        spec["linux"]["cgroupsPath"] = f"/corral-test/{cid}"
    return change


def test_lifecycle_create_start_kill_delete(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"], changes=_cgpath(cid))
    pid_file = os.path.join(rt.tmp, "pid")
    rt.ok("create", "--bundle", bundle, "--pid-file", pid_file, cid)
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == bundle and st["rootfs"] == os.path.join(bundle, "rootfs")
    assert st["created"].endswith("Z") and "owner" in st
    with open(pid_file) as f:
        assert int(f.read()) == st["pid"]
    assert os.path.exists(f"/proc/{st['pid']}")
    assert cid in rt.ok("list", "-q").stdout.split()

    rt.ok("start", cid)
    assert rt.state(cid)["status"] == "running"
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    res = rt("start", cid)
    assert res.returncode == 1 and "running" in res.stderr

    res = rt("delete", cid)
    assert res.returncode == 1 and "--force" in res.stderr

    rt.ok("kill", cid, "SIGKILL")
    assert rt.wait_status(cid, "stopped") == "stopped"
    rt.ok("delete", cid)
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert rt.ok("list", "-q").stdout.strip() == ""
    assert leftovers(rt.tmp, cid) == []
    res = rt("state", cid)
    assert res.returncode == 1 and res.stderr.strip() == f"corral-runc: container {cid} does not exist"


def test_kill_signal_forms(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "trap 'exit 11' USR1; trap 'exit 12' TERM; while :; do sleep 0.05; done"])
    for n, sig in enumerate(("USR1", "SIGTERM", "15")):
        c = f"{cid}-{n}"
        rt.ok("run", "--detach", "--bundle", bundle, c)
        rt.ok("kill", c, sig)
        assert rt.wait_status(c, "stopped") == "stopped"
        rt.ok("delete", c)
    res = rt("kill", cid, "NOSUCH")
    assert res.returncode == 1


def test_kill_created_container_ends_its_waiting_init(rt, cid):
    # the waiting init is pid 1 of its namespace, which drops unhandled signals: runc's dies
    bundle = rt.bundle(args=["sleep", "1000"])
    for n, sig in enumerate(("TERM", "INT", "HUP")):
        c = f"{cid}-{n}"
        rt.ok("create", "--bundle", bundle, c)
        pid = rt.state(c)["pid"]
        rt.ok("kill", c, sig)
        assert rt.wait_status(c, "stopped") == "stopped"
        res = rt("start", c)
        assert res.returncode == 1
        rt.ok("delete", c)
        assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split()[2] in "ZX"


def test_delete_force_running_and_created(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"], changes=_cgpath(cid))
    rt.ok("create", "--bundle", bundle, cid)
    pid = rt.state(cid)["pid"]
    rt.ok("delete", cid)  # a created container may be deleted without --force, as runc does
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split()[2] in "ZX"
    rt.ok("run", "-d", "--bundle", bundle, cid)
    rt.ok("delete", "--force", cid)
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert leftovers(rt.tmp, cid) == []


def test_run_exit_codes(rt, cid):
    for code, script in ((0, "exit 0"), (7, "exit 7"), (0, "kill -9 $$")):
        bundle = rt.bundle(name=f"b{code}", args=["sh", "-c", script])
        res = rt("run", "--bundle", bundle, f"{cid}-{code}")
        assert res.returncode == code, res.stderr  # pid 1 ignores its own SIGKILL, as under runc
    assert rt.ok("list", "-q").stdout.strip() == ""
    assert leftovers(rt.tmp, cid) == []


def test_run_killed_exits_128_plus_signal(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "echo up; exec sleep 1000"])
    p = subprocess.Popen([rt.binary, "--root", rt.root, "run", "--bundle", bundle, cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n"
        rt.ok("kill", cid, "9")
        p.communicate(timeout=20)
        assert p.returncode == 137
        assert not os.path.exists(os.path.join(rt.root, cid))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_run_output_and_stdin(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "read x; echo got $x; echo err >&2"])
    res = rt("run", "--bundle", bundle, cid, input="hello\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "got hello\n" and res.stderr == "err\n"


def test_run_forwards_signals(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "trap 'echo got-term; exit 5' TERM; echo up; while :; do sleep 0.05; done"])
    p = subprocess.Popen([rt.binary, "--root", rt.root, "run", "--bundle", bundle, cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n"
        p.terminate()
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 5 and "got-term" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_list_json_and_table(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"])
    rt.ok("create", "--bundle", bundle, cid)
    import json
    rows = json.loads(rt.ok("list", "--format", "json").stdout)
    assert [r["id"] for r in rows] == [cid] and rows[0]["status"] == "created"
    table = rt.ok("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and table[1].split()[0] == cid


def test_state_of_reused_pid_is_stopped(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"])
    rt.ok("run", "-d", "--bundle", bundle, cid)
    path = os.path.join(rt.root, cid, "state.json")
    import json
    with open(path) as f:
        data = json.load(f)
    real_pid = data["pid"]
    data["pid"] = os.getpid()  # a live process that is not the container's init
    with open(path, "w") as f:
        json.dump(data, f)
    try:
        assert rt.state(cid)["status"] == "stopped"
    finally:
        data["pid"] = real_pid  # so that the cleanup finds and kills the real init
        with open(path, "w") as f:
            json.dump(data, f)
    rt.ok("delete", "--force", cid)
    assert leftovers(rt.tmp, cid) == []


def test_no_pivot(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "ls /; cat /proc/self/mountinfo | wc -l"])
    res = rt("run", "--no-pivot", "--bundle", bundle, cid)
    assert res.returncode == 0, res.stderr
    assert "bin" in res.stdout.split() and "busybox" not in res.stdout


def test_delete_kills_all_in_shared_pid_namespace(rt, cid):
    def change(s):
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "pid"]
    bundle = rt.bundle(args=["sh", "-c", "sleep 1000 & exec sleep 1001"], changes=change)
    rt.ok("run", "-d", "--bundle", bundle, cid)
    pid = rt.state(cid)["pid"]
    import time
    deadline = time.monotonic() + 10
    children = ""
    while not children and time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        time.sleep(0.01)
    assert children
    rt.ok("kill", "--all", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    for p in children + [str(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                assert f.read().split(") ")[1][0] in "ZX"
        except FileNotFoundError:
            pass
    assert leftovers(rt.tmp, cid) == []


def test_features_json(rt):
    import json
    f = json.loads(rt.ok("features").stdout)
    assert f["ociVersionMin"].startswith("1.") and len(f["hooks"]) == 6
    assert {"pid", "network", "user", "cgroup", "mount", "uts", "ipc"} <= set(f["linux"]["namespaces"])


def test_failure_logged_as_json_for_the_shim(rt, cid):
    import json
    log = os.path.join(rt.tmp, "log.json")
    bundle = rt.bundle(args=["no-such-program"])
    res = rt("--log", log, "--log-format", "json", "create", "--bundle", bundle, cid)
    assert res.returncode == 1
    with open(log) as f:
        last = json.loads(f.read().splitlines()[-1])
    assert last["level"] == "error" and "no-such-program" in last["msg"]
