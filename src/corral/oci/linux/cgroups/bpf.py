"""Loading a device program with bpf() and attaching it to a cgroup2 directory.

The program is attached with BPF_F_ALLOW_MULTI (nested runtimes can attach their own below),
then the programs attached before it are detached, so an update swaps the rules in one step.
"""

import ctypes
import os

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import syscalls

SYS_bpf = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("pad", ctypes.c_char * 64)]


class _Attach(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32), ("pad", ctypes.c_char * 44)]


class _Query(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("query_flags", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32),
                ("pad", ctypes.c_char * 36)]


class _GetFd(ctypes.Structure):
    _fields_ = [("prog_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32), ("pad", ctypes.c_char * 52)]


def _bpf(cmd, attr, what):
    return syscalls.syscall(SYS_bpf, ctypes.c_int(cmd), ctypes.byref(attr),
                            ctypes.c_uint(ctypes.sizeof(attr)), what=what)


def load_device_program(code):
    """Load encoded instructions; return the program's fd."""
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = _ProgLoad(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(code) // 8,
                     insns=ctypes.addressof(buf), license=ctypes.addressof(lic),
                     log_level=1, log_size=len(log), log_buf=ctypes.addressof(log),
                     prog_name=b"corral_devices")
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
    except OSError as e:
        if e.errno == 28:  # ENOSPC: log too small; a load without a log says the real error
            attr.log_level = attr.log_size = attr.log_buf = 0
            try:
                return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
            except OSError as e2:
                e = e2
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise RuntimeFailure(f"cannot load the device cgroup eBPF program: {e.strerror}"
                             f"{' (' + detail[-1] + ')' if detail else ''}; is bpf() allowed here?") from None


def attached(cgroup_fd):
    """IDs of the device programs attached to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _Query(target_fd=cgroup_fd, attach_type=BPF_CGROUP_DEVICE,
                  prog_ids=ctypes.addressof(ids), prog_cnt=64)
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    return list(ids[:attr.prog_cnt])


def set_device_program(cgroup_dir, code):
    """Attach the program to cgroup_dir and detach the ones attached before it."""
    dfd = os.open(cgroup_dir, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            old = attached(dfd)
        except OSError as e:
            raise RuntimeFailure(f"cannot list the device programs of {cgroup_dir}: {e.strerror}") from None
        pfd = load_device_program(code)
        try:
            try:
                _bpf(BPF_PROG_ATTACH, _Attach(target_fd=dfd, attach_bpf_fd=pfd,
                                              attach_type=BPF_CGROUP_DEVICE,
                                              attach_flags=BPF_F_ALLOW_MULTI), "bpf(BPF_PROG_ATTACH)")
            except OSError as e:
                raise RuntimeFailure(f"cannot attach the device eBPF program to {cgroup_dir}: "
                                     f"{e.strerror}") from None
            for prog_id in old:
                _detach(dfd, prog_id, cgroup_dir)
        finally:
            os.close(pfd)
    finally:
        os.close(dfd)


def _detach(dfd, prog_id, cgroup_dir):
    try:
        pfd = _bpf(BPF_PROG_GET_FD_BY_ID, _GetFd(prog_id=prog_id), "bpf(BPF_PROG_GET_FD_BY_ID)")
    except OSError as e:
        if e.errno == 2:
            return
        raise RuntimeFailure(f"cannot open device program {prog_id} of {cgroup_dir}: {e.strerror}") from None
    try:
        _bpf(BPF_PROG_DETACH, _Attach(target_fd=dfd, attach_bpf_fd=pfd,
                                      attach_type=BPF_CGROUP_DEVICE), "bpf(BPF_PROG_DETACH)")
    except OSError as e:
        if e.errno != 2:
            raise RuntimeFailure(f"cannot detach the old device program from {cgroup_dir}: "
                                 f"{e.strerror}") from None
    finally:
        os.close(pfd)
