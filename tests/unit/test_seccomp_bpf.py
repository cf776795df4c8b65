"""The -ENOSYS stub put in front of libseccomp's program, run through a tiny BPF evaluator."""

import pytest

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import seccomp_bpf as bpf
from corral.oci.linux import security

X86_64 = 0xC000003E
I386 = 0x40000003
AARCH64 = 0xC00000B7
X32_BIT = 0x40000000


def run_stub(stub, arch, nr):
    """'enosys' or 'prog' (fell through to libseccomp's program) for one syscall."""
    data = {0: nr, 4: arch}
    acc, pc = 0, 0
    while pc < len(stub):
        code, jt, jf, k = stub[pc]
        pc += 1
        if code == 0x20:
            acc = data[k]
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x25, 0x45):
            hit = {0x15: acc == k, 0x25: acc > k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        elif code == 0x06:
            assert k == 0x00050000 | 38
            return "enosys"
    assert pc == len(stub), "jumped past the program start"
    return "prog"


def test_newer_syscalls_get_enosys_per_arch():
    stub = bpf.enosys_stub({X86_64: 449, I386: 440})
    assert run_stub(stub, X86_64, 0) == "prog"
    assert run_stub(stub, X86_64, 449) == "prog"
    assert run_stub(stub, X86_64, 450) == "enosys"
    assert run_stub(stub, I386, 440) == "prog"
    assert run_stub(stub, I386, 441) == "enosys"
    assert run_stub(stub, AARCH64, 5000) == "prog"  # not in the filter: libseccomp decides


def test_x32_calls_are_checked_against_x32_numbers():
    stub = bpf.enosys_stub({X86_64: 449}, x32_last=X32_BIT | 547)
    assert run_stub(stub, X86_64, X32_BIT | 547) == "prog"
    assert run_stub(stub, X86_64, X32_BIT | 548) == "enosys"
    without = bpf.enosys_stub({X86_64: 449})
    assert run_stub(without, X86_64, X32_BIT | 5) == "prog"


def test_program_bytes_and_limits():
    stub = bpf.enosys_stub({AARCH64: 400})
    code = bpf.assemble(stub, b"")
    assert len(code) == 8 * len(stub)
    with pytest.raises(RuntimeFailure, match="cannot be loaded"):
        bpf.load(b"")


def test_features_lists_what_validate_accepts():
    f = security.features()
    assert "CAP_SYS_ADMIN" in f["capabilities"]
    assert "SCMP_ACT_ERRNO" in f["seccomp"]["actions"] and "SCMP_ACT_NOTIFY" not in f["seccomp"]["actions"]
    assert "SCMP_CMP_MASKED_EQ" in f["seccomp"]["operators"]
    assert "SCMP_ARCH_X86_64" in f["seccomp"]["archs"]
    assert f["seccomp"]["supportedFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                              "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
