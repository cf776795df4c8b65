"""The raw side of seccomp: the classic-BPF program libseccomp generates, an -ENOSYS stub put
in front of it, and loading the program with prctl/seccomp(2).

Why the stub: a profile written before a syscall existed sends that syscall to its default
action (usually EPERM), and programs that probe a new syscall and fall back on ENOSYS (glibc
with clone3, faccessat2, ...) then fail. Like runc, every syscall number above the highest one
the profile names (per architecture) returns ENOSYS instead.
"""

import os
import struct

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import cabi as ctypes  # without ctypes' import cost
from corral.oci.linux import syscalls

_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

_LD_W_ABS = 0x20
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_JMP_JGT_K = 0x25
_JMP_JSET_K = 0x45
_RET_K = 0x06

_OFF_NR = 0
_OFF_ARCH = 4
_RET_ERRNO = 0x00050000
_ENOSYS = 38
_X32_SYSCALL_BIT = 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_SET_MODE_FILTER = 1
FLAG_BITS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
             "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "s390x": 348, "ppc64le": 358,
                "i686": 354, "armv7l": 383}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_ulong)]  # a pointer (LP64)


def enosys_stub(last_by_arch, x32_last=None):
    """Instructions (code, jt, jf, k) that return ENOSYS for a syscall number above the last
    known one of its arch, and fall through to the program after them otherwise.

    last_by_arch: {audit arch: highest syscall number the profile names}. On x86_64, x32 calls
    (number with the x32 bit) are checked against x32_last, or left to the program."""
    # symbolic jumps: "prog" (first instruction after the stub), "enosys", ("next", i)
    code = [(_LD_W_ABS, 0, 0, _OFF_ARCH)]
    labels = {}
    blocks = sorted(last_by_arch.items())
    for i, (arch, last) in enumerate(blocks):
        labels[("block", i)] = len(code)
        code.append((_JMP_JEQ_K, None, ("block", i + 1), arch))
        code.append((_LD_W_ABS, 0, 0, _OFF_NR))
        if arch == _AUDIT_ARCH_X86_64:
            code.append((_JMP_JSET_K, ("x32", i), None, _X32_SYSCALL_BIT))
            code.append((_JMP_JGT_K, "enosys", "prog", last))
            labels[("x32", i)] = len(code)
            if x32_last is not None:
                code.append((_JMP_JGT_K, "enosys", "prog", x32_last))
            else:
                code.append((_JMP_JA, "prog", None, 0))
        else:
            code.append((_JMP_JGT_K, "enosys", "prog", last))
    labels[("block", len(blocks))] = len(code)
    code.append((_JMP_JA, "prog", None, 0))
    labels["enosys"] = len(code)
    code.append((_RET_K, 0, 0, _RET_ERRNO | _ENOSYS))
    labels["prog"] = len(code)

    out = []
    for i, (op, jt, jf, k) in enumerate(code):
        def rel(target):
            if target is None:
                return 0
            if isinstance(target, int):
                return target
            return labels[target] - (i + 1)
        if op == _JMP_JA:
            out.append((op, 0, 0, rel(jt)))
        else:
            out.append((op, rel(jt), rel(jf), k))
    for _, jt, jf, _ in out:
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise RuntimeFailure("seccomp: the -ENOSYS stub has a jump too long for BPF")
    return out


def export(filt):
    """The classic-BPF program libseccomp generates for filt, as bytes."""
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    try:
        with open(fd, "rb", closefd=False) as f:
            filt.export_bpf(f)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def assemble(stub, program):
    return b"".join(_INSN.pack(*insn) for insn in stub) + program


def load(program, flags=0):
    """Install a BPF program (bytes of sock_filter) on this thread/process."""
    count = len(program) // _INSN.size
    if count == 0 or count > 4096:
        raise RuntimeFailure(f"seccomp program of {count} instructions cannot be loaded (1-4096)")
    buf = ctypes.c_char_p(program)  # points into the (immutable, kept alive) bytes
    prog = _SockFprog(count, ctypes.c_ulong.from_address(ctypes.addressof(buf)).value)
    try:
        if flags == 0:
            syscalls.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))
        else:
            nr = _SYS_SECCOMP.get(os.uname().machine)
            if nr is None:
                raise RuntimeFailure("seccomp flags are not supported on this architecture by corral-runc")
            syscalls.syscall(nr, ctypes.c_uint(_SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags),
                             ctypes.c_ulong(ctypes.addressof(prog)), what="seccomp")
    except OSError as e:
        hint = (" (without noNewPrivileges it must be loaded while CAP_SYS_ADMIN is held)"
                if e.errno == 13 else "")
        raise RuntimeFailure(f"loading the seccomp filter failed: {e.strerror}{hint}") from None
