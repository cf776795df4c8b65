"""Cgroup value checks, the v1 → v2 conversions, the v2 file writes against a temp tree shaped
like a cgroup2 mount, device rules and the eBPF program's logic, and the command parsers."""

import os

import pytest

from corral.oci.errors import RuntimeFailure
from corral.oci.linux.cgroups import Layout, detect_layout, devices, inner_path, values
from corral.oci.linux.cgroups.v2 import Manager as V2Manager

V1 = Layout("v1", hierarchies={"/sys/fs/cgroup/memory": ("/", ["memory"]),
                               "/sys/fs/cgroup/cpu,cpuacct": ("/", ["cpu", "cpuacct"]),
                               "/sys/fs/cgroup/pids": ("/", ["pids"]),
                               "/sys/fs/cgroup/cpuset": ("/", ["cpuset"]),
                               "/sys/fs/cgroup/blkio": ("/", ["blkio"])})


class FakeV2(Layout):
    def __init__(self, ctrls):
        super().__init__("v2", mount="/x")
        self._c = set(ctrls)

    def controllers(self):
        return self._c


V2 = FakeV2(["cpu", "cpuset", "memory", "pids", "io"])


def refused(resources, layout=V1):
    with pytest.raises(RuntimeFailure) as e:
        values.check(resources, layout)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_valid_resources_pass():
    res = {"memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25, "swappiness": 10},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
           "pids": {"limit": 20}, "blockIO": {"weight": 300},
           "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                          "minor": 3, "access": "rw"}]}
    values.check(res, V1)
    values.check({k: v for k, v in res.items() if k != "memory"}, V2)


@pytest.mark.parametrize("res,words", [
    ({"memory": {"limit": "1g"}}, "memory.limit"),
    ({"memory": {"limit": -5}}, "at least -1"),
    ({"memory": {"swappiness": 101}}, "swappiness"),
    ({"memory": {"bogus": 1}}, "unknown field 'bogus'"),
    ({"cpu": {"cpus": "0-x"}}, "cpu.cpus"),
    ({"cpu": {"period": 10}}, "cpu.period"),
    ({"cpu": {"shares": True}}, "cpu.shares"),
    ({"blockIO": {"weight": 5}}, "blockIO.weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8}]}}, "major and minor"),
    ({"devices": [{"access": "rwm"}]}, "devices[0].allow"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "rwm"),
    ({"devices": [{"allow": True, "type": "z"}]}, "type"),
    ({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}, "page size"),
    ({"frobs": {}}, "unknown field 'frobs'"),
    ({"memory": {"limit": 1 << 26, "swap": 1 << 20}}, "must be at least memory.limit"),
])
def test_malformed_values_refused_in_one_line(res, words):
    assert words in refused(res)


def test_host_lacks_controller():
    msg = refused({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]})
    assert "hugetlb" in msg and "remove hugepageLimits" in msg
    assert "net_cls" in refused({"network": {"classID": 5}})
    assert "rdma" in refused({"rdma": {"mlx5_0": {"hcaHandles": 3}}})
    assert "memory" in refused({"memory": {"limit": 1 << 26}}, FakeV2(["cpu"]))


def test_v1_refuses_unified_and_v2_refuses_v1_only_fields():
    assert "cgroup v1" in refused({"unified": {"memory.high": "1000000"}})
    assert "kernel memory" in refused({"memory": {"kernel": 1 << 26}}, V2)
    assert "swappiness" in refused({"memory": {"swappiness": 10}}, V2)
    assert "OOM killer" in refused({"memory": {"disableOOMKiller": True}}, V2)
    assert "net_cls" in refused({"network": {"classID": 1}}, V2)
    assert "real-time" in refused({"cpu": {"realtimeRuntime": 1000}}, V2)
    assert "swap" in refused({"memory": {"swap": 1 << 20}}, V2)  # swap without a limit
    assert "at least" in refused({"memory": {"limit": 1 << 26, "swap": 1 << 20}}, V2)
    assert "cgroup.*" in refused({"unified": {"cgroup.procs": "1"}}, V2)
    assert "'/'" in refused({"unified": {"../memory.max": "1"}}, V2)
    values.check({"unified": {"memory.high": "1000000"}, "memory": {"swappiness": -1}}, V2)


def test_conversions_match_runc():
    assert values.cpu_weight(2) == 1
    assert values.cpu_weight(1024) == 39
    assert values.cpu_weight(262144) == 10000
    assert values.io_weight(10) == 1 and values.io_weight(1000) == 10000 and values.io_weight(500) == 4950
    assert values.cpu_max(50000, 100000) == "50000 100000"
    assert values.cpu_max(-1, 100000) == "max 100000"
    assert values.cpu_max(20000, 0) == "20000"
    assert values.cpu_max(None, None) == ""
    assert values.swap_v2(-1, 1 << 26) == -1
    assert values.swap_v2(0, -1) == -1
    assert values.swap_v2(0, 1 << 26) == 0
    assert values.swap_v2(3 << 26, 1 << 26) == 2 << 26


@pytest.fixture
def v2tree(tmp_path):
    """A temp tree shaped like a cgroup2 mount: root, /a, and the container's /a/c."""
    root = tmp_path
    for d, ctrls in ((root, "cpuset cpu io memory hugetlb pids"), (root / "a", "cpuset cpu io memory hugetlb pids"),
                     (root / "a" / "c", "cpuset cpu io memory hugetlb pids")):
        d.mkdir(exist_ok=True)
        (d / "cgroup.controllers").write_text(ctrls + "\n")
        (d / "cgroup.subtree_control").write_text("")
    for f in ("memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max", "cpu.idle",
              "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight", "io.max", "hugetlb.2MB.max",
              "memory.high", "cgroup.procs", "cgroup.freeze"):
        (root / "a" / "c" / f).write_text("")
    return root


def test_v2_create_enables_controllers_in_parents(v2tree):
    m = V2Manager(str(v2tree), "/a/c", "c")
    m.create()
    want = "+cpuset +cpu +io +memory +hugetlb +pids"
    assert (v2tree / "cgroup.subtree_control").read_text() == want
    assert (v2tree / "a" / "cgroup.subtree_control").read_text() == want
    assert (v2tree / "a" / "c" / "cgroup.subtree_control").read_text() == ""
    assert m.paths() == {"": str(v2tree / "a" / "c")}


def test_v2_set_writes_converted_values(v2tree):
    m = V2Manager(str(v2tree), "/a/c", "c")
    m.set({"memory": {"limit": 1 << 26, "swap": 3 << 26, "reservation": 1 << 25},
           "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0", "idle": 1},
           "pids": {"limit": 0}, "blockIO": {"weight": 500,
                                             "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 22}],
           "unified": {"memory.high": "50000000"}})
    c = v2tree / "a" / "c"
    got = {f: (c / f).read_text() for f in ("memory.max", "memory.swap.max", "memory.low", "cpu.weight",
                                            "cpu.max", "cpu.idle", "cpuset.cpus", "pids.max", "io.weight",
                                            "io.max", "hugetlb.2MB.max", "memory.high")}
    assert got == {"memory.max": str(1 << 26), "memory.swap.max": str(2 << 26), "memory.low": str(1 << 25),
                   "cpu.weight": "39", "cpu.max": "50000 100000", "cpu.idle": "1", "cpuset.cpus": "0",
                   "pids.max": "max", "io.weight": "default 4950", "io.max": "8:0 rbps=1000",
                   "hugetlb.2MB.max": str(1 << 22), "memory.high": "50000000"}
    m.set({"memory": {"limit": -1}})
    assert (c / "memory.max").read_text() == "max" and (c / "memory.swap.max").read_text() == "max"


def test_v2_check_before_update(v2tree):
    m = V2Manager(str(v2tree), "/a/c", "c")
    (v2tree / "a" / "c" / "memory.current").write_text(str(50 << 20) + "\n")
    with pytest.raises(RuntimeFailure) as e:
        m.set({"memory": {"limit": 40 << 20, "checkBeforeUpdate": True}})
    assert "below the current usage" in str(e.value)
    assert (v2tree / "a" / "c" / "memory.max").read_text() == ""
    m.set({"memory": {"limit": 60 << 20, "checkBeforeUpdate": True}})
    assert (v2tree / "a" / "c" / "memory.max").read_text() == str(60 << 20)


def test_v2_missing_file_is_one_clear_line(v2tree):
    m = V2Manager(str(v2tree), "/a/c", "c")
    with pytest.raises(RuntimeFailure) as e:
        m.set({"rdma": {"mlx5_0": {"hcaHandles": 2}}})
    assert "rdma.max" in str(e.value) and "does not exist" in str(e.value) and "\n" not in str(e.value)


def test_v2_saved_round_trip(v2tree):
    from corral.oci.linux.cgroups import load_manager
    m = V2Manager(str(v2tree), "/a/c", "c", controllers=False)
    again = load_manager(m.saved())
    assert again.saved() == m.saved() and again.path == m.path


def test_inner_path_forms():
    assert inner_path(None, "abc") == "/corral/abc"
    assert inner_path("/x/y", "abc") == "/x/y"
    own = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.split(":")[1] == "":
                own = line.rstrip("\n").split(":", 2)[2]
    assert inner_path("sub/c1", "abc", "") == os.path.normpath(own.rstrip("/") + "/sub/c1")
    assert inner_path("/../x", "abc") == "/x"  # ".." cannot climb above the hierarchy's root
    for bad in ("/", "../../../../../../.."):
        with pytest.raises(RuntimeFailure):
            inner_path(bad, "abc")
    with pytest.raises(RuntimeFailure) as e:
        inner_path("system.slice:corral:abc", "abc")
    assert "--systemd-cgroup" in str(e.value)


def test_detect_layout_hybrid_and_unified(tmp_path):
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(
        "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n")
    lay = detect_layout(str(hybrid))
    assert lay.kind == "v1" and lay.unified == "/sys/fs/cgroup/unified"
    assert lay.hierarchies["/sys/fs/cgroup/cpu,cpuacct"] == ("/", ["cpu", "cpuacct"])
    assert lay.hierarchies["/sys/fs/cgroup/systemd"] == ("/", ["name=systemd"])
    unified = tmp_path / "unified"
    unified.write_text("30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    lay = detect_layout(str(unified))
    assert lay.kind == "v2" and lay.mount == "/sys/fs/cgroup"


def test_device_rules_v1_lines_and_defaults():
    rules = devices.normalize([{"allow": False, "access": "rwm"},
                               {"allow": True, "type": "c", "major": 10, "minor": -1, "access": "r"}],
                              [{"type": "c", "major": 10, "minor": 229}])
    lines = [devices.v1_line(r) for r in rules]
    assert lines[0] == ("devices.deny", "a")
    assert lines[1] == ("devices.allow", "c 10:* r")
    assert ("devices.allow", "c 1:3 rwm") in lines and ("devices.allow", "c 136:* rwm") in lines
    assert lines[-1] == ("devices.allow", "c 10:229 rwm")


def test_device_program_logic_and_encoding():
    rules = devices.normalize([{"allow": False, "access": "rwm"},
                               {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
                               {"allow": False, "type": "c", "major": 1, "minor": 9, "access": "w"}])
    assert devices.allows(rules, "c", 1, 3, "rw")            # a default device
    assert not devices.allows(rules, "c", 10, 229, "r")      # nothing allows it
    assert devices.allows(rules, "b", 8, 0, "r")
    assert not devices.allows(rules, "b", 8, 0, "rw")        # asks for more than allowed
    assert devices.allows(rules, "c", 99, 1, "m")            # mknod of any char device
    prog = devices.program(rules)
    code = devices.encode(prog)
    assert len(code) == 8 * len(prog) and prog[-1][0] == 0x95
    # jumps stay inside the program
    for n, (op, _d, _s, off, _i) in enumerate(prog):
        if op in (0x55, 0x15, 0x5d):
            assert 0 < n + 1 + off < len(prog)
    # a rule matching everything ends the program: rules before it are never reached
    allow_all = devices.normalize([{"allow": True, "access": "rwm"}])
    assert devices.program(allow_all)[-2:] == [(0xb7, 0, 0, 0, 1), (0x95, 0, 0, 0, 0)]
    assert devices.allows(allow_all, "b", 7, 7, "rwm")


def test_update_flag_parsing():
    from corral.oci.commands import update
    assert update.parse_bytes("memory", "512m") == 512 << 20
    assert update.parse_bytes("memory", "1G") == 1 << 30
    assert update.parse_bytes("memory", "1gb") == 1 << 30
    assert update.parse_bytes("memory", "4096") == 4096
    assert update.parse_bytes("memory-swap", "-1") == -1
    with pytest.raises(RuntimeFailure):
        update.parse_bytes("memory", "lots")
    merged = update.merge({"memory": {"limit": 1, "swap": 5}, "pids": {"limit": 3}},
                          {"memory": {"limit": 2}, "cpu": {"shares": 9}})
    assert merged == {"memory": {"limit": 2, "swap": 5}, "pids": {"limit": 3}, "cpu": {"shares": 9}}


def test_events_interval_and_ps_filter():
    from corral.oci.commands import events, ps
    assert events.parse_interval("5s") == 5
    assert events.parse_interval("250ms") == 0.25
    assert events.parse_interval("1m30s") == 90
    for bad in ("", "5", "5x", "s"):
        with pytest.raises(ValueError):
            events.parse_interval(bad)
    table = ("UID   PID  PPID CMD\nroot    1     0 init\nroot   42     1 sleep 1000\n"
             "root  420     1 other 42\n")
    assert ps.filter_table(table, {42}) == "UID   PID  PPID CMD\nroot   42     1 sleep 1000\n"
    with pytest.raises(RuntimeFailure):
        ps.filter_table("USER CMD\nroot x\n", {1})
