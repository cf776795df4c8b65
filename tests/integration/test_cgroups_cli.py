"""corral-runc's cgroup verbs on real containers: limits seen from inside, a pids limit that
makes fork fail, pause/resume, update (flags and --resources), events, ps; bad values refused
with one line and nothing left behind."""

import json
import os
import subprocess

import pytest

from corral.oci.linux import cgroups
from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401

V1 = cgroups.layout().kind == "v1"


def _spec(cid, resources):
    def change(spec):
        spec["linux"]["cgroupsPath"] = f"/corral-test/{cid}"
        spec["linux"]["resources"] = resources
    return change


def _inside(rt, cid, path):
    return rt.ok("exec", cid, "cat", path).stdout.strip()


def _host(cid, ctrl, name):
    base = f"/sys/fs/cgroup/{ctrl}/corral-test/{cid}" if V1 else f"/sys/fs/cgroup/corral-test/{cid}"
    with open(os.path.join(base, name)) as f:
        return f.read().strip()


@pytest.fixture
def running(rt, cid):
    """A running `sleep` container with limits; deleted (by rt) at the end."""
    res = {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}, "cpu": {"shares": 300},
           "devices": [{"allow": False, "access": "rwm"}]}
    bundle = rt.bundle(args=["sleep", "1000"], changes=_spec(cid, res))
    rt.ok("create", "--bundle", bundle, cid)
    rt.ok("start", cid)
    yield rt.state(cid)
    rt("delete", "--force", cid)
    assert leftovers(rt.tmp, cid) == []


def test_limits_seen_from_inside(rt, cid, running):
    if V1:
        assert _inside(rt, cid, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(64 << 20)
        assert _inside(rt, cid, "/sys/fs/cgroup/pids/pids.max") == "10"
        assert _inside(rt, cid, "/sys/fs/cgroup/cpu/cpu.shares") == "300"
    else:
        assert _inside(rt, cid, "/sys/fs/cgroup/memory.max") == str(64 << 20)
        assert _inside(rt, cid, "/sys/fs/cgroup/pids.max") == "10"
        assert _inside(rt, cid, "/sys/fs/cgroup/cpu.weight") == "12"
    # devices: everything denied but the default set
    res = rt("exec", cid, "sh", "-c", "echo x > /dev/null && echo null-ok; "
             "mknod /tmp/kmsg c 1 11 && cat /tmp/kmsg")
    assert "null-ok" in res.stdout and res.returncode != 0 and "ermitted" in res.stderr


def test_pids_limit_makes_fork_fail_inside(rt, cid):
    script = "i=0; while [ $i -lt 8 ]; do sleep 2 & i=$((i+1)); done; echo started"
    bundle = rt.bundle(args=["sh", "-c", script], changes=_spec(cid, {"pids": {"limit": 4}}))
    res = rt("run", "--bundle", bundle, cid, timeout=60)
    assert "can't fork" in res.stderr or "Resource temporarily unavailable" in res.stderr
    rt("delete", "--force", cid)
    assert leftovers(rt.tmp, cid) == []


def test_pause_resume_ps(rt, cid, running):
    pid = running["pid"]
    assert json.loads(rt.ok("ps", "--format", "json", cid).stdout) == [pid]
    table = rt.ok("ps", cid).stdout.splitlines()
    assert table[0].split()[:2] == ["UID", "PID"] and len(table) == 2 and table[1].split()[1] == str(pid)
    table = rt.ok("ps", cid, "--", "-o", "pid,comm").stdout.splitlines()
    assert table[1].split() == [str(pid), "sleep"]

    rt.ok("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    if V1:
        assert _host(cid, "freezer", "freezer.state") == "FROZEN"
    else:
        assert _host(cid, "", "cgroup.freeze") == "1"
    res = rt("pause", cid)
    assert res.returncode == 1 and res.stderr.strip().endswith("it is paused, not running")
    rt.ok("resume", cid)
    assert rt.state(cid)["status"] == "running"
    res = rt("resume", cid)
    assert res.returncode == 1 and res.stderr.strip().endswith("it is running, not paused")
    assert len(res.stderr.strip().splitlines()) == 1


def test_update_flags_and_resources_persist(rt, cid, running):
    rt.ok("update", "--memory", "100m", "--pids-limit", "7", "--cpu-share", "512", cid)
    if V1:
        assert _host(cid, "memory", "memory.limit_in_bytes") == str(100 << 20)
        assert _host(cid, "pids", "pids.max") == "7"
        assert _host(cid, "cpu", "cpu.shares") == "512"
        assert _inside(rt, cid, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(100 << 20)
    else:
        assert _host(cid, "", "memory.max") == str(100 << 20)
        assert _host(cid, "", "pids.max") == "7"
    rt.ok("update", "-r", "-", cid, input=json.dumps({"pids": {"limit": 9}, "cpu": {"quota": 20000,
                                                                                      "period": 100000}}))
    assert _host(cid, "pids", "pids.max") == "9"
    if V1:
        assert _host(cid, "cpu", "cpu.cfs_quota_us") == "20000"
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        saved = json.load(f)["config"]["linux"]["resources"]
    assert saved["memory"]["limit"] == 100 << 20 and saved["pids"]["limit"] == 9
    assert saved["cpu"] == {"shares": 512, "quota": 20000, "period": 100000}
    # refused with one line, nothing changed
    for args, words in ((["--memory", "lots"], "not a size"), (["--pids-limit", "x"], "not an integer"),
                        (["--blkio-weight", "5"], "blockIO.weight")):
        res = rt("update", *args, cid)
        assert res.returncode == 1 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = rt("update", "-r", "-", cid, input="{not json")
    assert res.returncode == 1 and "not valid JSON" in res.stderr
    assert _host(cid, "pids", "pids.max") == "9"


def test_events_stats_and_stream(rt, cid, running):
    ev = json.loads(rt.ok("events", "--stats", cid).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    assert data["pids"] == {"current": 1, "limit": 10}
    assert data["memory"]["usage"]["limit"] == 64 << 20
    assert data["cpu"]["usage"]["total"] > 0
    assert set(data) >= {"cpu", "memory", "pids", "blkio", "hugetlb"}
    # the stream: one line per interval until the container is gone
    p = subprocess.Popen([rt.binary, "--root", rt.root, "events", "--interval", "200ms", cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        lines = [json.loads(p.stdout.readline()) for _ in range(3)]
        assert [e["type"] for e in lines] == ["stats"] * 3
        rt.ok("kill", cid, "KILL")
        p.wait(timeout=15)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    res = rt("events", "--stats", cid)
    assert res.returncode == 1 and "stopped" in res.stderr


def test_bad_resources_refused_leave_nothing(rt, cid):
    for res, words in (({"memory": {"limit": "64m"}}, "memory.limit"),
                       ({"devices": [{"allow": "yes"}]}, "devices[0].allow"),
                       ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]}, "hugetlb")):
        if "hugepageLimits" in res and "hugetlb" in cgroups.layout().controllers():
            continue
        bundle = rt.bundle(args=["true"], changes=_spec(cid, res))
        out = rt("create", "--bundle", bundle, cid)
        assert out.returncode == 1 and words in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert not os.path.exists(os.path.join(rt.root, cid))
        assert leftovers(rt.tmp, cid) == []
    if V1:
        bundle = rt.bundle(args=["true"], changes=_spec(cid, {"unified": {"memory.high": "1"}}))
        out = rt("create", "--bundle", bundle, cid)
        assert out.returncode == 1 and "cgroup v1" in out.stderr
        assert leftovers(rt.tmp, cid) == []


def _shape(value):
    """The keys of nested objects (values and list lengths left out)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "raw"}
    return type(value).__name__


def test_events_stats_shape_matches_runc(rt, cid):
    import shutil
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    res = {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}}
    bundle = rt.bundle(args=["sleep", "1000"], changes=_spec(cid, res))
    rt.ok("run", "--detach", "--bundle", bundle, cid)
    ours = json.loads(rt.ok("events", "--stats", cid).stdout)
    rt.ok("delete", "--force", cid)
    rroot = os.path.join(rt.tmp, "runc-state")
    rid = cid + "r"
    try:
        # no pipes: the detached container would hold them open
        subprocess.run([runc, "--root", rroot, "run", "-d", "--bundle", bundle, rid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        theirs = json.loads(subprocess.run([runc, "--root", rroot, "events", "--stats", rid], check=True,
                                           capture_output=True, text=True, timeout=60).stdout)
    finally:
        subprocess.run([runc, "--root", rroot, "delete", "--force", rid], capture_output=True, timeout=60)
    assert leftovers(rt.tmp, cid) == []
    assert set(ours) == set(theirs) == {"type", "id", "data"}
    a, b = _shape(ours["data"]), _shape(theirs["data"])
    assert set(a) == set(b)
    for part in ("memory", "pids", "cpuset"):
        assert a[part] == b[part], part
    assert set(a["cpu"]) == set(b["cpu"])
    assert ours["data"]["pids"] == theirs["data"]["pids"] == {"current": 1, "limit": 10}
    assert ours["data"]["memory"]["usage"]["limit"] == theirs["data"]["memory"]["usage"]["limit"]


def test_events_stream_reports_oom(rt, cid):
    limit = {"limit": 32 << 20}
    if not V1 or os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        limit["swap"] = 32 << 20  # no swapping around the limit
    # the container waits for a file before eating memory, so that events is already watching
    script = "while [ ! -e /go ]; do sleep 0.05; done; tail /dev/zero; sleep 1000"
    bundle = rt.bundle(args=["sh", "-c", script], changes=_spec(cid, {"memory": limit}))
    rt.ok("run", "--detach", "--bundle", bundle, cid)
    p = subprocess.Popen([rt.binary, "--root", rt.root, "events", "--interval", "10s", cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        assert first["type"] == "stats"
        with open(os.path.join(bundle, "rootfs", "go"), "w"):
            pass
        ev = json.loads(p.stdout.readline())  # before the next stats, 10 s away
        assert ev == {"type": "oom", "id": cid}
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    rt.ok("delete", "--force", cid)
    assert leftovers(rt.tmp, cid) == []


@pytest.mark.skipif(not V1, reason="reads the v1 files")
def test_limits_inside_match_runc(rt, cid):
    import shutil
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    files = ["memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes",
             "memory/memory.soft_limit_in_bytes", "memory/memory.swappiness", "cpu/cpu.shares",
             "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus", "pids/pids.max",
             "devices/devices.list"]
    res = {"memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20, "swappiness": 20},
           "cpu": {"shares": 256, "quota": 30000, "period": 60000, "cpus": "0"},
           "pids": {"limit": 12},
           "devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]}
    script = "; ".join(f"echo == {f}; cat /sys/fs/cgroup/{f}" for f in files)
    bundle = rt.bundle(args=["sh", "-c", script], changes=_spec(cid, res))
    ours = rt.ok("run", "--bundle", bundle, cid).stdout  # run deletes the container at exit
    rroot = os.path.join(rt.tmp, "runc-state")
    rid = cid + "r"
    try:
        theirs = subprocess.run([runc, "--root", rroot, "run", "--bundle", bundle, rid], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=60).stdout
    finally:
        subprocess.run([runc, "--root", rroot, "delete", "--force", rid], capture_output=True, timeout=60)
    assert leftovers(rt.tmp, cid) == []

    def parse(text):
        out, cur = {}, None
        for line in text.splitlines():
            if line.startswith("== "):
                cur = line[3:]
                out[cur] = []
            elif cur:
                out[cur].append(line)
        out["devices/devices.list"] = sorted(out.get("devices/devices.list", []))
        return out
    a, b = parse(ours), parse(theirs)
    assert set(a) == set(files)
    assert a == b, " | ".join(a["devices/devices.list"]) + " vs " + " | ".join(b["devices/devices.list"])


def test_config_devices_allowed_under_deny_all(rt, cid):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this host")

    def change(spec):
        _spec(cid, {"devices": [{"allow": False, "access": "rwm"}]})(spec)
        spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                     "fileMode": 0o666, "uid": 0, "gid": 0}]
    bundle = rt.bundle(args=["sh", "-c", "exec 3</dev/fuse && echo fuse-opened; "
                                         "mknod /tmp/k c 1 11 && exec 4</tmp/k && echo kmsg-opened"],
                       changes=change)
    res = rt("run", "--bundle", bundle, cid)
    assert "fuse-opened" in res.stdout and "kmsg-opened" not in res.stdout
    assert leftovers(rt.tmp, cid) == []
