"""cgroup v1: one directory per mounted hierarchy (plus the cgroup2 one on a hybrid host)."""

import os
import posixpath
import time

from corral.oci.errors import RuntimeFailure
from corral.oci.linux.cgroups import fs


class Manager:
    kind = "v1"

    def __init__(self, dirs, unified=None, container_id=""):
        # dirs: hierarchy key ("cpu", "cpu,cpuacct", "name=systemd") → the container's directory
        self.dirs = dirs
        self.unified = unified  # the container's directory in the hybrid cgroup2 mount, or None
        self.id = container_id

    @classmethod
    def for_layout(cls, layout, cgroups_path, container_id):
        from corral.oci.linux.cgroups import inner_path
        dirs = {}
        for mp, (_root, ctrls) in sorted(layout.hierarchies.items()):
            if not ctrls:
                continue
            key = ",".join(ctrls)
            # a relative cgroupsPath is under our own cgroup in that hierarchy (runc does this)
            inner = inner_path(cgroups_path, container_id, ctrls[0])
            dirs[key] = posixpath.join(mp, inner.lstrip("/"))
        unified = None
        if layout.unified:
            unified = posixpath.join(layout.unified, inner_path(cgroups_path, container_id, "").lstrip("/"))
        return cls(dirs, unified, container_id)

    @classmethod
    def from_saved(cls, saved):
        return cls(dict(saved["dirs"]), saved.get("unified"), saved.get("id", ""))

    def saved(self):
        return {"kind": "v1", "dirs": self.dirs, "unified": self.unified, "id": self.id}

    def dir(self, controller):
        for key, d in self.dirs.items():
            if controller in key.split(","):
                return d
        return None

    def _need(self, controller, what):
        d = self.dir(controller)
        if d is None:
            raise RuntimeFailure(f"{what} needs the {controller} cgroup controller, which this host "
                                 "does not mount; remove it from the config")
        return d

    # ---- life ----------------------------------------------------------------------------

    def create(self):
        made = []
        try:
            for key, d in self.dirs.items():
                new = fs.makedirs(d)
                made.extend(new)
                if "cpuset" in key.split(","):
                    _init_cpuset(d)
            if self.unified:
                made.extend(fs.makedirs(self.unified))
        except BaseException:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def apply(self, pid):
        for d in list(self.dirs.values()) + ([self.unified] if self.unified else []):
            try:
                fs.write(d, "cgroup.procs", pid)
            except RuntimeFailure as e:
                raise RuntimeFailure(f"cannot move process {pid} into the cgroup {d}: {e}") from None

    def clone_target(self):
        """The cgroup2 directory a new process can start in (clone3 CLONE_INTO_CGROUP), or None."""
        return self.unified

    def join_files(self, cloned):
        """The files a process writes "0" to, to move itself into the container's cgroups
        (cloned: it started in clone_target()). v1 hierarchies: `tasks`, so a single-threaded
        process moves itself without the kernel's global lock, whose RCU wait a move through
        cgroup.procs pays (5-15 ms)."""
        files = [posixpath.join(d, "tasks") for d in self.dirs.values()]
        if self.unified and not cloned:
            files.append(posixpath.join(self.unified, "cgroup.procs"))
        return files

    def paths(self):
        out = {}
        for key, d in self.dirs.items():
            out[key] = d
            for c in key.split(","):
                out[c] = d
        if self.unified:
            out[""] = self.unified
        return out

    def pids(self):
        d = self.dir("pids") or self.dir("freezer") or self.dir("memory") or next(iter(self.dirs.values()))
        return sorted(set(fs.procs(d)))

    def destroy(self):
        for d in list(self.dirs.values()) + ([self.unified] if self.unified else []):
            fs.remove(d)

    # ---- freezer -------------------------------------------------------------------------

    def _unified_freezer(self):
        """On a hybrid host without the v1 freezer, the cgroup2 directory's cgroup.freeze."""
        if self.dir("freezer") is None and self.unified:
            from corral.oci.linux.cgroups.v2 import Manager as V2
            return V2(posixpath.dirname(self.unified), posixpath.basename(self.unified), controllers=False)
        return None

    def freeze(self):
        alt = self._unified_freezer()
        if alt is not None:
            return alt.freeze()
        d = self._need("freezer", "pause")
        fs.write(d, "freezer.state", "FROZEN")
        deadline = time.monotonic() + 10
        while fs.read(d, "freezer.state").strip() != "FROZEN":
            if time.monotonic() > deadline:
                fs.write(d, "freezer.state", "THAWED")
                raise RuntimeFailure(f"cannot freeze the cgroup {d}: still FREEZING after 10 s; "
                                     "left it thawed")
            # a task that was busy can make the kernel give up: asking again resumes the freeze
            time.sleep(0.01)
            fs.write(d, "freezer.state", "FROZEN")

    def thaw(self):
        alt = self._unified_freezer()
        if alt is not None:
            return alt.thaw()
        d = self._need("freezer", "resume")
        fs.write(d, "freezer.state", "THAWED")

    def frozen(self):
        alt = self._unified_freezer()
        if alt is not None:
            return alt.frozen()
        d = self.dir("freezer")
        if d is None:
            return False
        try:
            return fs.read(d, "freezer.state").strip() != "THAWED"
        except FileNotFoundError:
            return False

    # ---- limits --------------------------------------------------------------------------

    def set(self, resources, extra_devices=()):
        mem = resources.get("memory") or {}
        if any(mem.get(k) is not None for k in mem):
            self._set_memory(self._need("memory", "linux.resources.memory"), mem)
        cpu = resources.get("cpu") or {}
        if any(cpu.get(k) not in (None, 0, "") for k in ("shares", "quota", "period", "burst",
                                                       "realtimeRuntime", "realtimePeriod", "idle")):
            self._set_cpu(self._need("cpu", "linux.resources.cpu"), cpu)
        for k, f in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if cpu.get(k):
                fs.write(self._need("cpuset", f"linux.resources.cpu.{k}"), f, cpu[k])
        pids = resources.get("pids") or {}
        if pids.get("limit") is not None:
            fs.write(self._need("pids", "linux.resources.pids"), "pids.max",
                     "max" if pids["limit"] <= 0 else pids["limit"])
        bio = resources.get("blockIO") or {}
        if any(bio.get(k) for k in bio):
            self._set_blkio(self._need("blkio", "linux.resources.blockIO"), bio)
        for h in resources.get("hugepageLimits") or []:
            d = self._need("hugetlb", "linux.resources.hugepageLimits")
            fs.write(d, f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"])
        net = resources.get("network") or {}
        if net.get("classID") is not None:
            fs.write(self._need("net_cls", "linux.resources.network.classID"), "net_cls.classid",
                     net["classID"])
        for p in net.get("priorities") or []:
            fs.write(self._need("net_prio", "linux.resources.network.priorities"),
                     "net_prio.ifpriomap", f"{p['name']} {p['priority']}")
        for name, lim in (resources.get("rdma") or {}).items():
            fs.write(self._need("rdma", "linux.resources.rdma"), "rdma.max", _rdma_line(name, lim))
        if resources.get("devices") is not None:
            self._set_devices(self._need("devices", "linux.resources.devices"),
                              resources["devices"], extra_devices)

    def _set_memory(self, d, mem):
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        if limit and swap:
            # write in the order that keeps memory <= memory+swap at each step
            cur = fs.read_int(d, "memory.limit_in_bytes")
            if swap == -1 or cur < swap:
                fs.write(d, "memory.memsw.limit_in_bytes", swap)
                fs.write(d, "memory.limit_in_bytes", limit)
            else:
                fs.write(d, "memory.limit_in_bytes", limit)
                fs.write(d, "memory.memsw.limit_in_bytes", swap)
        elif limit:
            # unlimited memory means unlimited memory+swap too, lifted first (memory <= memsw)
            if limit == -1 and os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                fs.write(d, "memory.memsw.limit_in_bytes", -1)
            fs.write(d, "memory.limit_in_bytes", limit)
        elif swap:
            fs.write(d, "memory.memsw.limit_in_bytes", swap)
        if mem.get("reservation"):
            fs.write(d, "memory.soft_limit_in_bytes", mem["reservation"])
        if mem.get("kernel"):
            fs.write(d, "memory.kmem.limit_in_bytes", mem["kernel"])
        if mem.get("kernelTCP"):
            fs.write(d, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"])
        if mem.get("swappiness") is not None and mem["swappiness"] >= 0:
            fs.write(d, "memory.swappiness", mem["swappiness"])
        if mem.get("disableOOMKiller"):
            fs.write(d, "memory.oom_control", 1)
        if mem.get("useHierarchy") is not None:
            cur = fs.read_int(d, "memory.use_hierarchy", -1)
            want = 1 if mem["useHierarchy"] else 0
            if cur != want:
                fs.write(d, "memory.use_hierarchy", want)

    def _set_cpu(self, d, cpu):
        if cpu.get("shares"):
            fs.write(d, "cpu.shares", cpu["shares"])
            got = fs.read_int(d, "cpu.shares")
            if got != cpu["shares"]:
                raise RuntimeFailure(f"linux.resources.cpu.shares {cpu['shares']} is out of the "
                                     f"kernel's range (it kept {got}): use 2 to 262144")
        if cpu.get("period"):
            fs.write(d, "cpu.cfs_period_us", cpu["period"])
        if cpu.get("quota"):
            fs.write(d, "cpu.cfs_quota_us", cpu["quota"])
        if cpu.get("burst") is not None:
            fs.write(d, "cpu.cfs_burst_us", cpu["burst"])
        if cpu.get("realtimePeriod"):
            fs.write(d, "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            fs.write(d, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        if cpu.get("idle") is not None:
            fs.write(d, "cpu.idle", cpu["idle"])

    def _set_blkio(self, d, bio):
        weight_file = "blkio.weight" if os.path.exists(os.path.join(d, "blkio.weight")) else "blkio.bfq.weight"
        if bio.get("weight"):
            fs.write(d, weight_file, bio["weight"])
        if bio.get("leafWeight"):
            fs.write(d, "blkio.leaf_weight", bio["leafWeight"])
        for w in bio.get("weightDevice") or []:
            if w.get("weight"):
                fs.write(d, weight_file + "_device", f"{w['major']}:{w['minor']} {w['weight']}")
            if w.get("leafWeight"):
                fs.write(d, "blkio.leaf_weight_device", f"{w['major']}:{w['minor']} {w['leafWeight']}")
        for key, f in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                       ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                       ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                       ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
            for t in bio.get(key) or []:
                fs.write(d, f, f"{t['major']}:{t['minor']} {t['rate']}")

    def _set_devices(self, d, rules, extra_devices):
        from corral.oci.linux.cgroups import devices
        # as on cgroup v2 (and in runc), what the rules do not allow is denied: start from
        # deny-all, which a fresh v1 cgroup is not
        fs.write(d, "devices.deny", "a")
        for rule in devices.normalize(rules, extra_devices):
            name, line = devices.v1_line(rule)
            fs.write(d, name, line)

    def stats(self):
        from corral.oci.linux.cgroups import stats
        return stats.v1(self)


def _init_cpuset(d):
    """A new v1 cpuset cgroup starts with no CPUs and no memory nodes: copy them down from the
    nearest ancestor that has them, so that processes can join."""
    chain = []
    p = d
    while True:
        try:
            if fs.read(p, "cpuset.cpus").strip() and fs.read(p, "cpuset.mems").strip():
                break
        except FileNotFoundError:
            return
        chain.append(p)
        p = posixpath.dirname(p)
    for child in reversed(chain):
        parent = posixpath.dirname(child)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if not fs.read(child, f).strip():
                fs.write(child, f, fs.read(parent, f).strip())


def _rdma_line(name, lim):
    parts = [name]
    if lim.get("hcaHandles") is not None:
        parts.append(f"hca_handle={lim['hcaHandles']}")
    if lim.get("hcaObjects") is not None:
        parts.append(f"hca_object={lim['hcaObjects']}")
    return " ".join(parts)
