"""The cgroup library on the real kernel: real cgroup directories, real processes moved into
them, limits read back from the cgroup files and felt by the processes. On a hybrid host the
v2 code runs on the cgroup2 mount beside the v1 controllers (directory, cgroup.procs,
cgroup.freeze and the device eBPF program work there without controllers)."""

import os
import subprocess
import sys
import time
import uuid

import pytest

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import cgroups
from corral.oci.linux.cgroups.v2 import Manager as V2Manager

PARENT = "/corral-test-cg"
LAYOUT = cgroups.layout()
needs_v1 = pytest.mark.skipif(LAYOUT.kind != "v1", reason="host uses cgroup v2 only")


class Env:
    """Managers and processes of one test; all removed at the end, even on failure."""

    def __init__(self):
        self.managers = []
        self.procs = []

    def manager(self, mgr=None):
        if mgr is None:
            mgr = cgroups.open_manager(f"{PARENT}/{uuid.uuid4().hex[:12]}", "t")
        mgr.create()
        self.managers.append(mgr)
        return mgr

    def spawn(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def python(self, code, **kw):
        return self.spawn([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, **kw)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for m in self.managers:
            try:
                m.thaw()
            except Exception:
                pass
        for p in self.procs:
            p.wait(timeout=10)
        for m in self.managers:
            m.destroy()
            for d in set(m.paths().values()):
                try:
                    os.rmdir(os.path.dirname(d))  # the shared test parent, once empty
                except OSError:
                    pass


@pytest.fixture
def env():
    e = Env()
    yield e
    e.close()


def _read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def _counter(env, tmp):
    """A process that rewrites a counter in a file every 20 ms, waiting on stdin first."""
    path = os.path.join(tmp, "counter")
    code = ("import sys, time\nsys.stdin.readline()\ni = 0\nwhile True:\n"
            f"    i += 1\n    open({path!r}, 'w').write(str(i))\n    time.sleep(0.02)\n")
    return env.python(code), path


def _value(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _advances(path, wait=0.3):
    a = _value(path)
    time.sleep(wait)
    return _value(path) != a


@needs_v1
def test_v1_limits_written_and_read_back(env):
    m = env.manager()
    p = env.spawn(["sleep", "60"])
    m.apply(p.pid)
    assert m.pids() == [p.pid]
    res = {"memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20, "swappiness": 10},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
           "pids": {"limit": 20}}
    blk = m.dir("blkio")
    wfile = next((f for f in ("blkio.weight", "blkio.bfq.weight") if os.path.exists(os.path.join(blk, f))), None)
    if wfile is None:
        # no proportional-weight I/O scheduler (e.g. every disk on "none"): a clear error, not a silent skip
        with pytest.raises(RuntimeFailure, match="blkio.bfq.weight.*does not exist"):
            m.set({"blockIO": {"weight": 300}})
    else:
        res["blockIO"] = {"weight": 300}
    cgroups.validate(res)
    m.set(res)
    mem, cpu, cpuset, pids = m.dir("memory"), m.dir("cpu"), m.dir("cpuset"), m.dir("pids")
    assert _read(mem, "memory.limit_in_bytes") == str(64 << 20)
    assert _read(mem, "memory.memsw.limit_in_bytes") == str(96 << 20)
    assert _read(mem, "memory.soft_limit_in_bytes") == str(32 << 20)
    assert _read(mem, "memory.swappiness") == "10"
    assert _read(cpu, "cpu.shares") == "512"
    assert _read(cpu, "cpu.cfs_quota_us") == "50000" and _read(cpu, "cpu.cfs_period_us") == "100000"
    assert _read(cpuset, "cpuset.cpus") == "0" and _read(cpuset, "cpuset.mems") == "0"
    assert _read(pids, "pids.max") == "20"
    if wfile:
        assert _read(blk, wfile).split()[-1] == "300"
    # lowering memory below memory+swap, then raising both, in either order
    m.set({"memory": {"limit": 32 << 20, "swap": 48 << 20}})
    m.set({"memory": {"limit": 128 << 20, "swap": 256 << 20}})
    assert _read(mem, "memory.limit_in_bytes") == str(128 << 20)
    assert _read(mem, "memory.memsw.limit_in_bytes") == str(256 << 20)
    m.set({"memory": {"limit": -1}})
    unlimited = _read(os.path.dirname(os.path.dirname(mem)), "memory.limit_in_bytes")
    assert _read(mem, "memory.limit_in_bytes") == _read(mem, "memory.memsw.limit_in_bytes") == unlimited
    assert _read(str(os.path.join(cpuset)), "cgroup.procs") == str(p.pid)
    paths = m.paths()
    assert paths["memory"] == mem and all(os.path.isdir(d) for d in paths.values())
    again = cgroups.load_manager(m.saved())
    assert again.paths() == paths and again.pids() == [p.pid]


@needs_v1
def test_pids_limit_makes_fork_fail(env):
    m = env.manager()
    code = ("import os, sys\nsys.stdin.readline()\ntry:\n    pid = os.fork()\nexcept OSError as e:\n"
            "    print('fork failed', e.errno)\n    sys.exit(0)\nif pid == 0:\n    os._exit(0)\n"
            "os.waitpid(pid, 0)\nprint('forked')\n")
    p = env.python(code)
    m.apply(p.pid)
    m.set({"pids": {"limit": 1}})
    out, _ = p.communicate("go\n", timeout=30)
    assert out.strip() == "fork failed 11"
    m.set({"pids": {"limit": -1}})
    assert _read(m.dir("pids"), "pids.max") == "max"


def test_freeze_and_thaw_a_real_process(env, tmpdir_root):
    m = env.manager()
    p, path = _counter(env, tmpdir_root)
    m.apply(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    deadline = time.monotonic() + 10
    while not _value(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _advances(path)
    assert not m.frozen()
    m.freeze()
    assert m.frozen()
    time.sleep(0.05)
    assert not _advances(path)
    m.thaw()
    assert not m.frozen()
    assert _advances(path)


@pytest.mark.skipif(not LAYOUT.unified, reason="not a hybrid host")
def test_hybrid_without_v1_freezer_freezes_in_cgroup2(env, tmpdir_root, cid):
    from corral.oci.linux.cgroups.v1 import Manager as V1Manager
    pids_dir = os.path.join(next(mp for mp, (_r, c) in LAYOUT.hierarchies.items() if "pids" in c),
                            PARENT.lstrip("/"), cid)
    m = env.manager(V1Manager({"pids": pids_dir}, os.path.join(LAYOUT.unified, PARENT.lstrip("/"), cid), cid))
    p, path = _counter(env, tmpdir_root)
    m.apply(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    deadline = time.monotonic() + 10
    while not _value(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    m.freeze()
    assert m.frozen() and not _advances(path)
    with open(os.path.join(m.unified, "cgroup.freeze")) as f:
        assert f.read().strip() == "1"
    m.thaw()
    assert not m.frozen() and _advances(path)


def test_stats_of_a_working_process(env):
    m = env.manager()
    code = ("import sys, time\nsys.stdin.readline()\nblob = bytearray(24 << 20)\n"
            "for i in range(0, len(blob), 4096): blob[i] = 1\nt = time.process_time()\n"
            "while time.process_time() - t < 0.2: pass\nprint('done', flush=True)\nsys.stdin.readline()\n")
    p = env.python(code)
    m.apply(p.pid)
    m.set({"pids": {"limit": 5}} if "pids" in LAYOUT.controllers() else {})
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "done"
    s = m.stats()
    assert set(s) >= {"cpu", "memory", "pids", "blkio", "hugetlb"}
    if LAYOUT.kind == "v1" or "cpu" in LAYOUT.controllers():
        assert s["cpu"]["usage"]["total"] >= 100_000_000  # ns; the process burned 0.2 s
    if "memory" in LAYOUT.controllers():
        assert s["memory"]["usage"]["usage"] >= 20 << 20
        assert s["memory"]["usage"]["limit"] > 0
    if "pids" in LAYOUT.controllers():
        assert s["pids"] == {"current": 1, "limit": 5}


@needs_v1
def test_v1_device_rules_deny_open(env):
    if not os.path.exists("/dev/kmsg"):
        pytest.skip("no /dev/kmsg to test with")
    m = env.manager()
    code = ("import sys\nsys.stdin.readline()\nfor dev in ('/dev/null', '/dev/kmsg'):\n    try:\n"
            "        open(dev, 'rb').close()\n        print(dev, 'ok')\n    except OSError as e:\n"
            "        print(dev, e.errno)\n")
    p = env.python(code)
    m.apply(p.pid)
    m.set({"devices": [{"allow": False, "access": "rwm"}]})
    listing = _read(m.dir("devices"), "devices.list").splitlines()
    assert "c 1:3 rwm" in listing and "a *:* rwm" not in listing
    out, _ = p.communicate("go\n", timeout=30)
    assert out.split("\n")[:2] == ["/dev/null ok", "/dev/kmsg 1"]  # EPERM
    # rules that only allow still deny the rest, as on v2; an allow-all rule opens everything
    m.set({"devices": [{"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]})
    listing = _read(m.dir("devices"), "devices.list").splitlines()
    assert "c 10:200 rwm" in listing and "a *:* rwm" not in listing
    m.set({"devices": [{"allow": True, "access": "rwm"}]})
    assert _read(m.dir("devices"), "devices.list") == "a *:* rwm"


def _v2_manager(env, cid):
    if LAYOUT.kind == "v2":
        return env.manager(cgroups.open_manager(f"{PARENT}/{cid}", cid))
    if not LAYOUT.unified:
        pytest.skip("no cgroup2 mount on this host")
    return env.manager(V2Manager(LAYOUT.unified, f"{PARENT}/{cid}", cid, controllers=False))


def test_v2_directory_procs_freeze_and_device_program(env, tmpdir_root, cid):
    m = _v2_manager(env, cid)
    assert os.path.isdir(m.path)
    p, path = _counter(env, tmpdir_root)
    m.apply(p.pid)
    assert m.pids() == [p.pid]
    p.stdin.write("go\n")
    p.stdin.flush()
    deadline = time.monotonic() + 10
    while not _value(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    m.freeze()
    assert m.frozen() and not _advances(path)
    m.thaw()
    assert not m.frozen() and _advances(path)

    # the eBPF device program: processes in the cgroup can open the default devices only
    m.set({"devices": [{"allow": False, "access": "rwm"}]})
    probe = ("import sys\nfor dev in sys.argv[1:]:\n    try:\n        open(dev, 'rb').close()\n"
             "        print(dev, 'ok')\n    except OSError as e:\n        print(dev, e.errno)\n")
    devs = ["/dev/null", "/dev/zero"] + [d for d in ("/dev/kmsg", "/dev/loop0") if os.path.exists(d)]

    def run_probe():
        def join():
            with open(os.path.join(m.path, "cgroup.procs"), "w") as f:
                f.write("0")
        return subprocess.run([sys.executable, "-c", probe] + devs, preexec_fn=join,
                              capture_output=True, text=True, timeout=30).stdout.split("\n")

    out = run_probe()
    assert out[:2] == ["/dev/null ok", "/dev/zero ok"]
    assert all(line.endswith(" 1") for line in out[2:len(devs)])  # EPERM
    # an update swaps the program: now zero is denied too, one program stays attached
    m.set({"devices": [{"allow": True, "access": "rwm"},
                       {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})
    from corral.oci.linux.cgroups import bpf
    fd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(bpf.attached(fd)) == 1
    finally:
        os.close(fd)
    out = run_probe()
    # the default set is allowed after the config's rules, as runc does: zero stays open
    assert out[:2] == ["/dev/null ok", "/dev/zero ok"]
    assert all(line.endswith(" ok") for line in out[2:len(devs)])
    # a deny rule for one access: writing is refused, reading is not
    if os.path.exists("/dev/kmsg"):
        m.set({"devices": [{"allow": True, "access": "rwm"},
                           {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"}]})
        code = ("for mode in ('rb', 'wb'):\n    try:\n        open('/dev/kmsg', mode).close()\n"
                "        print(mode, 'ok')\n    except OSError as e:\n        print(mode, e.errno)\n")

        def join():
            with open(os.path.join(m.path, "cgroup.procs"), "w") as f:
                f.write("0")
        out = subprocess.run([sys.executable, "-c", code], preexec_fn=join, capture_output=True,
                             text=True, timeout=30).stdout.split("\n")
        assert out[:2] == ["rb ok", "wb 1"]
    if LAYOUT.kind == "v1":
        with pytest.raises(RuntimeFailure) as e:
            m.set({"memory": {"limit": 64 << 20}})  # no controllers on the hybrid cgroup2 mount
        assert "memory.max" in str(e.value) and "\n" not in str(e.value)


def test_destroy_waits_for_exit_and_kills_nothing(env):
    m = env.manager()
    p = env.spawn(["sleep", "60"])
    m.apply(p.pid)
    with pytest.raises(RuntimeFailure) as e:
        m.destroy()
    assert "\n" not in str(e.value) and "processes" in str(e.value)
    assert p.poll() is None  # still alive: destroy kills nothing
    p.kill()
    m.destroy()  # right after the kill: retried while the cgroup is still busy
    assert not any(os.path.exists(d) for d in m.paths().values())
    p.wait(timeout=10)


@needs_v1
def test_oom_is_counted(env):
    from corral.oci.commands.events import oom_count
    m = env.manager()
    code = "import sys\nsys.stdin.readline()\nblob = bytearray(128 << 20)\nfor i in range(0, len(blob), 4096): blob[i] = 1\n"
    p = env.python(code)
    m.apply(p.pid)
    limit = {"limit": 32 << 20}
    if os.path.exists(os.path.join(m.dir("memory"), "memory.memsw.limit_in_bytes")):
        limit["swap"] = 32 << 20
    m.set({"memory": limit})
    before = oom_count(m)
    p.communicate("go\n", timeout=60)
    assert p.returncode == -9
    assert oom_count(m) > before


def test_systemd_driver_refused_clearly():
    with pytest.raises(RuntimeFailure) as e:
        cgroups.open_manager("system.slice:corral:x", "x", systemd=True)
    assert "systemd" in str(e.value) and "\n" not in str(e.value)
