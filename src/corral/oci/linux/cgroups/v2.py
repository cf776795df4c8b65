"""cgroup v2 (unified): one directory; controllers enabled in the parents' subtree_control."""

import os
import posixpath
import time

from corral.oci.errors import RuntimeFailure
from corral.oci.linux.cgroups import fs, values


class Manager:
    kind = "v2"

    def __init__(self, mount, inner, container_id="", controllers=True):
        """mount: the cgroup2 mount point; inner: the container's path inside it.
        controllers=False manages the directory only (the hybrid host's cgroup2 mount, where
        the v1 hierarchies hold the controllers)."""
        self.mount = mount
        self.inner = "/" + inner.lstrip("/")
        self.path = posixpath.join(mount, inner.lstrip("/"))
        self.id = container_id
        self.controllers = controllers

    @classmethod
    def from_saved(cls, saved):
        return cls(saved["mount"], saved["inner"], saved.get("id", ""), saved.get("controllers", True))

    def saved(self):
        return {"kind": "v2", "mount": self.mount, "inner": self.inner, "id": self.id,
                "controllers": self.controllers}

    # ---- life ----------------------------------------------------------------------------

    def create(self):
        made = fs.makedirs(self.path)
        try:
            if self.controllers:
                self._enable_controllers()
        except BaseException:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def _enable_controllers(self):
        # every controller the root offers, enabled from the root down to our parent
        wanted = fs.read(self.mount, "cgroup.controllers").split()
        parts = [p for p in self.inner.split("/") if p]
        d = self.mount
        for part in parts:
            have = fs.read(d, "cgroup.subtree_control").split()
            missing = [c for c in wanted if c not in have]
            avail = fs.read(d, "cgroup.controllers").split()
            missing = [c for c in missing if c in avail]
            if missing:
                try:
                    fs.write(d, "cgroup.subtree_control", " ".join("+" + c for c in missing))
                except RuntimeFailure:
                    # one at a time, keeping those that can be enabled (cpu cannot while a
                    # real-time task sits in the parent, for instance); a limit on a controller
                    # left off fails later with the name of its missing file
                    for c in missing:
                        try:
                            fs.write(d, "cgroup.subtree_control", "+" + c)
                        except RuntimeFailure:
                            pass
            d = posixpath.join(d, part)

    def apply(self, pid):
        try:
            fs.write(self.path, "cgroup.procs", pid)
        except RuntimeFailure as e:
            raise RuntimeFailure(f"cannot move process {pid} into the cgroup {self.path}: {e} "
                                 "(cgroup v2 refuses processes in a cgroup whose children have "
                                 "controllers)") from None

    def clone_target(self):
        """The cgroup2 directory a new process can start in (clone3 CLONE_INTO_CGROUP)."""
        return self.path

    def join_files(self, cloned):
        """The files a process writes "0" to, to move itself into the cgroup (none if it
        started there)."""
        return [] if cloned else [posixpath.join(self.path, "cgroup.procs")]

    def paths(self):
        return {"": self.path}

    def pids(self):
        return sorted(set(fs.procs(self.path)))

    def destroy(self):
        fs.remove(self.path)

    # ---- freezer -------------------------------------------------------------------------

    def freeze(self):
        self._freeze("1", "frozen 1")

    def thaw(self):
        self._freeze("0", "frozen 0")

    def _freeze(self, value, want):
        fs.write(self.path, "cgroup.freeze", value)
        deadline = time.monotonic() + 10
        delay = 0.001
        while want not in fs.read(self.path, "cgroup.events").splitlines():
            if time.monotonic() > deadline:
                if value == "1":
                    fs.write(self.path, "cgroup.freeze", "0")
                raise RuntimeFailure(f"cgroup {self.path} did not become {want!r} within 10 s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def frozen(self):
        try:
            return fs.read(self.path, "cgroup.freeze").strip() == "1"
        except FileNotFoundError:
            return False

    # ---- limits --------------------------------------------------------------------------

    def set(self, resources, extra_devices=()):
        mem = resources.get("memory") or {}
        if mem.get("checkBeforeUpdate") and (mem.get("limit") or 0) > 0:
            current = fs.read_int(self.path, "memory.current")
            if current > mem["limit"]:
                raise RuntimeFailure(f"memory limit {mem['limit']} is below the current usage "
                                     f"{current} of {self.path}: raise it, or free memory first")
        writes = plan(resources)
        for name, value in writes:
            fs.write(self.path, name, value)
        if resources.get("devices") is not None:
            from corral.oci.linux.cgroups import bpf, devices
            rules = devices.normalize(resources["devices"], extra_devices)
            bpf.set_device_program(self.path, devices.encode(devices.program(rules)))

    def stats(self):
        from corral.oci.linux.cgroups import stats
        return stats.v2(self.path)


def plan(resources):
    """The (file, value) writes that apply linux.resources on cgroup v2, in order; devices are
    an eBPF program, not a file."""
    out = []
    mem = resources.get("memory") or {}
    if mem:
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        swap_max = values.swap_v2(swap, limit)
        # swap first when lowering memory.max would otherwise not fit the old swap limit
        if swap_max:
            out.append(("memory.swap.max", values.v2_limit(swap_max)))
        if limit:
            out.append(("memory.max", values.v2_limit(limit)))
        if mem.get("reservation"):
            out.append(("memory.low", values.v2_limit(mem["reservation"])))
    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        out.append(("cpu.weight", values.cpu_weight(cpu["shares"])))
    line = values.cpu_max(cpu.get("quota"), cpu.get("period"))
    if line:
        out.append(("cpu.max", line))
    if cpu.get("burst") is not None:
        out.append(("cpu.max.burst", cpu["burst"]))
    if cpu.get("idle") is not None:
        out.append(("cpu.idle", cpu["idle"]))
    if cpu.get("cpus"):
        out.append(("cpuset.cpus", cpu["cpus"]))
    if cpu.get("mems"):
        out.append(("cpuset.mems", cpu["mems"]))
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        out.append(("pids.max", "max" if pids["limit"] <= 0 else pids["limit"]))
    bio = resources.get("blockIO") or {}
    if bio.get("weight"):
        out.append(("io.weight", f"default {values.io_weight(bio['weight'])}"))
    for w in bio.get("weightDevice") or []:
        if w.get("weight"):
            out.append(("io.weight", f"{w['major']}:{w['minor']} {values.io_weight(w['weight'])}"))
    for key, word in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for t in bio.get(key) or []:
            out.append(("io.max", f"{t['major']}:{t['minor']} {word}={t['rate'] or 'max'}"))
    for h in resources.get("hugepageLimits") or []:
        out.append((f"hugetlb.{h['pageSize']}.max", h["limit"]))
    for name, lim in (resources.get("rdma") or {}).items():
        parts = [name]
        if lim.get("hcaHandles") is not None:
            parts.append(f"hca_handle={lim['hcaHandles']}")
        if lim.get("hcaObjects") is not None:
            parts.append(f"hca_object={lim['hcaObjects']}")
        out.append(("rdma.max", " ".join(parts)))
    for key, val in (resources.get("unified") or {}).items():
        values.check_unified_key(key, val)
        out.append((key, val))
    return out
