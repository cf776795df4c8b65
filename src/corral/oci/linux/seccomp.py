"""linux.seccomp of config.json through libseccomp (pyseccomp).

validate() checks a config with tables of names only. preload() imports pyseccomp, which
loads libseccomp: it must run on the host, before the process enters the container's rootfs,
so that no library is ever loaded from an image; build() refuses to do that import itself.
"""

import errno
import os
import sys

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import seccomp_bpf

# Kernel return values of the actions (SECCOMP_RET_*), the same numbers libseccomp uses.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,          # kill the thread, as runc does for SCMP_ACT_KILL
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_WITH_RET = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

# config.json names -> attribute names of pyseccomp.Arch
ARCHES = {
    "SCMP_ARCH_X86": "X86", "SCMP_ARCH_X86_64": "X86_64", "SCMP_ARCH_X32": "X32",
    "SCMP_ARCH_ARM": "ARM", "SCMP_ARCH_AARCH64": "AARCH64",
    "SCMP_ARCH_MIPS": "MIPS", "SCMP_ARCH_MIPS64": "MIPS64", "SCMP_ARCH_MIPS64N32": "MIPS64N32",
    "SCMP_ARCH_MIPSEL": "MIPSEL", "SCMP_ARCH_MIPSEL64": "MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32": "MIPSEL64N32",
    "SCMP_ARCH_PPC": "PPC", "SCMP_ARCH_PPC64": "PPC64", "SCMP_ARCH_PPC64LE": "PPC64LE",
    "SCMP_ARCH_S390": "S390", "SCMP_ARCH_S390X": "S390X",
    "SCMP_ARCH_PARISC": "PARISC", "SCMP_ARCH_PARISC64": "PARISC64",
    "SCMP_ARCH_RISCV64": "RISCV64",
}

OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW")

_ATTR_CTL_NNP = 3
_ATTR_CTL_OPTIMIZE = 8
_NR_SCMP_ERROR = -1
_U64 = 2 ** 64 - 1


# the fields of linux.seccomp and of one of its syscalls entries that corral-runc applies
_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls"}
_CALL_KEYS = {"names", "name", "action", "errnoRet", "args"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}


def _fail(msg):
    raise RuntimeFailure(f"config.json: {msg}")


def _check_action(name, ret, where):
    if not isinstance(name, str) or name not in ACTIONS:
        raise RuntimeFailure(f"unknown seccomp action {name!r} in {where}: use one of "
                             f"{', '.join(sorted(ACTIONS))}")
    if name == "SCMP_ACT_NOTIFY":
        raise RuntimeFailure(f"seccomp action SCMP_ACT_NOTIFY in {where} is not supported by "
                             "corral-runc (no seccomp agent support): use another action")
    if ret is not None and (not isinstance(ret, int) or isinstance(ret, bool) or not 0 <= ret <= 0xFFFF):
        raise RuntimeFailure(f"bad errnoRet {ret!r} in {where}: want an errno number 0-65535")


def _list(obj, key, where, item=str, what="strings"):
    """obj[key] as a list of `item`s ([] when absent or null); anything else is refused."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
        _fail(f"{where}.{key} must be a list of {what}")
    return value


def _unknown(obj, known, where):
    extra = sorted(set(obj) - known)
    if extra:
        _fail(f"{where}.{extra[0]} is not supported by corral-runc; remove it")


def validate(cfg):
    """Refuse what build() would refuse, without importing pyseccomp."""
    if not isinstance(cfg, dict):
        raise RuntimeFailure("linux.seccomp in config.json must be an object")
    for key in ("listenerPath", "listenerMetadata"):
        if key in cfg:
            _fail(f"linux.seccomp.{key} is not supported by corral-runc (no seccomp agent "
                  "support: it cannot hand a notify fd to a listener); remove it")
    _unknown(cfg, _KEYS, "linux.seccomp")
    if "defaultAction" not in cfg:
        raise RuntimeFailure("linux.seccomp in config.json has no defaultAction: add one, "
                             "e.g. SCMP_ACT_ERRNO")
    _check_action(cfg["defaultAction"], cfg.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    for arch in _list(cfg, "architectures", "linux.seccomp"):
        if arch not in ARCHES:
            raise RuntimeFailure(f"unknown seccomp architecture {arch!r} in config.json: use one "
                                 f"of {', '.join(sorted(ARCHES))}")
    for flag in _list(cfg, "flags", "linux.seccomp"):
        if flag not in FLAGS:
            raise RuntimeFailure(f"seccomp flag {flag!r} in config.json is not supported: use "
                                 f"{', '.join(sorted(FLAGS))}")
    for i, call in enumerate(_list(cfg, "syscalls", "linux.seccomp", dict, "objects")):
        where = f"linux.seccomp.syscalls[{i}]"
        _unknown(call, _CALL_KEYS, where)
        names = call.get("names")
        if names is None and "name" in call:
            names = [call["name"]]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise RuntimeFailure(f"{where} in config.json needs a non-empty list of syscall names")
        _check_action(call.get("action"), call.get("errnoRet"), where)
        args = _list(call, "args", where, dict, "objects")
        if len(args) > 6 * 6:
            raise RuntimeFailure(f"{where} in config.json has too many argument rules")
        for j, arg in enumerate(args):
            _unknown(arg, _ARG_KEYS, f"{where}.args[{j}]")
            index, op = arg.get("index"), arg.get("op")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
                raise RuntimeFailure(f"bad argument index {index!r} in {where}: want 0-5")
            if not isinstance(op, str) or op not in OPS:
                raise RuntimeFailure(f"unknown seccomp operator {op!r} in {where}: use one of "
                                     f"{', '.join(sorted(OPS))}")
            for key in ("value", "valueTwo"):
                v = arg.get(key, 0)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _U64:
                    raise RuntimeFailure(f"bad {key} {v!r} in {where}: want an unsigned 64-bit integer")


def _action(name, ret):
    code = ACTIONS[name]
    if name in _WITH_RET:
        code |= (errno.EPERM if ret is None else ret) & 0xFFFF
    return code


_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}


def _quick_find_library(name):
    import ctypes
    soname = _SONAMES.get(name)
    try:
        ctypes.CDLL(soname)
    except (OSError, TypeError):
        raise ImportError(f"{name} is not loadable as {soname}") from None
    return soname


def preload():
    """Import pyseccomp (and with it libseccomp) now, on the host.

    pyseccomp finds its libraries with ctypes.util, whose import (shutil, subprocess) and
    ldconfig run cost ~20 ms on the container start path; a stand-in that names the usual
    sonames is used for the import when they load, the real ctypes.util otherwise."""
    if "pyseccomp" in sys.modules:
        return sys.modules["pyseccomp"]
    import ctypes
    import types
    if "ctypes.util" not in sys.modules:
        stand_in = types.ModuleType("ctypes.util")
        stand_in.find_library = _quick_find_library
        sys.modules["ctypes.util"] = ctypes.util = stand_in
        try:
            import pyseccomp
            return pyseccomp
        except ImportError:
            sys.modules.pop("pyseccomp", None)
        finally:
            del sys.modules["ctypes.util"]
            if getattr(ctypes, "util", None) is stand_in:
                del ctypes.util
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as e:
        raise RuntimeFailure(f"seccomp is unavailable: {e}; install libseccomp2 and pyseccomp") from None
    return pyseccomp


class Program:
    """A ready classic-BPF seccomp program and its seccomp(2) flags."""

    def __init__(self, code, flags):
        self.code = code
        self.flags = flags


def _last_syscalls(pyseccomp, cfg):
    """{audit arch: highest syscall number the profile names}, and the x32 one (or None)."""
    arches = {pyseccomp.system_arch()}
    arches.update(getattr(pyseccomp.Arch, ARCHES[a]) for a in cfg.get("architectures") or ())
    names = {n for call in cfg.get("syscalls") or () for n in (call.get("names") or [call.get("name")])}
    last, x32_last = {}, None
    for arch in arches:
        numbers = [pyseccomp.resolve_syscall(arch, n) for n in names]
        numbers = [nr for nr in numbers if nr >= 0]
        if not numbers:
            continue
        if arch == pyseccomp.Arch.X32:
            x32_last = max(numbers)
        else:
            last[arch] = max(numbers)
    return last, x32_last


def _build(cfg):
    """The seccomp program for the config, ready to load(); nothing is loaded yet."""
    pyseccomp = sys.modules["pyseccomp"]

    default = _action(cfg["defaultAction"], cfg.get("defaultErrnoRet"))
    try:
        filt = pyseccomp.SyscallFilter(default)
        for arch in cfg.get("architectures") or ():
            try:
                filt.add_arch(getattr(pyseccomp.Arch, ARCHES[arch]))
            except OSError as e:
                if e.errno != errno.EEXIST:  # the native arch is always in
                    raise
        # the runtime sets no_new_privs itself when process.noNewPrivileges asks for it
        filt.set_attr(_ATTR_CTL_NNP, 0)
    except OSError as e:
        raise RuntimeFailure(f"setting up the seccomp filter failed: {e.strerror}") from None
    syscalls = cfg.get("syscalls") or ()
    if len(syscalls) > 32:
        try:
            filt.set_attr(_ATTR_CTL_OPTIMIZE, 2)  # binary tree: faster for long lists
        except OSError:
            pass
    for call in syscalls:
        act = _action(call["action"], call.get("errnoRet"))
        if act == default:
            continue
        conds = [pyseccomp.Arg(a["index"], OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                 for a in call.get("args") or ()]
        # several conditions on one argument cannot be ANDed by libseccomp: one rule each
        per_arg = [a["index"] for a in call.get("args") or ()]
        split = len(per_arg) != len(set(per_arg))
        for name in call.get("names") or [call.get("name")]:
            nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to libseccomp: skipped, as runc does
            try:
                if split:
                    for c in conds:
                        filt.add_rule(act, nr, c)
                else:
                    filt.add_rule(act, nr, *conds)
            except OSError as e:
                raise RuntimeFailure(f"adding the seccomp rule for {name} failed: {e.strerror}") from None
    try:
        code = seccomp_bpf.export(filt)
    except OSError as e:
        raise RuntimeFailure(f"generating the seccomp program failed: {e.strerror}") from None
    if cfg["defaultAction"] not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        last, x32_last = _last_syscalls(pyseccomp, cfg)
        if last:
            code = seccomp_bpf.assemble(seccomp_bpf.enosys_stub(last, x32_last), code)
    return Program(code, _flags(cfg))


# programs built on the host by prepare(), by _key() of their config
_prepared = {}
_CACHE_FORMAT = "corral-seccomp-1"  # bump when the program layout (e.g. the stub) changes


_libseccomp_version = None  # (major, minor, micro), read on the host by prepare()


def _read_libseccomp_version():
    """The version of the host's libseccomp, without importing pyseccomp when it is not
    needed (a cached program needs only this)."""
    from corral.oci.linux import cabi as ctypes  # without ctypes' import cost

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    if "pyseccomp" in sys.modules:
        lib = sys.modules["pyseccomp"]._libseccomp
    else:
        try:
            lib = ctypes.CDLL(_SONAMES["seccomp"])
        except OSError:
            lib = preload()._libseccomp
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return (v.major, v.minor, v.micro)


def _key(cfg):
    """The exact text a program depends on: config, arch, libseccomp version, our format
    (json.dumps' text, through the C encoder alone: `import json` costs ~7 ms with re)."""
    from corral.oci import jsonfast
    return jsonfast.dumps([_CACHE_FORMAT, os.uname().machine, _libseccomp_version, cfg],
                          sort_keys=True, separators=(",", ":")).encode()


def _flags(cfg):
    flags = 0
    for flag in cfg.get("flags") or ():
        flags |= seccomp_bpf.FLAG_BITS[flag]
    return flags


_MAX_CODE = 8 * 4096


def _read_cached(path, key):
    """The program stored with exactly this key, or None. File: key length (8 bytes), key, code.
    The file name is only a crc of the key; the stored key is compared in full."""
    try:
        with open(path, "rb") as f:
            data = f.read(8 + len(key) + _MAX_CODE + 1)
    except OSError:
        return None
    if int.from_bytes(data[:8], "little") != len(key) or data[8:8 + len(key)] != key:
        return None
    code = data[8 + len(key):]
    if not code or len(code) % 8 or len(code) > _MAX_CODE:
        return None
    return code


def _cache_dir_is_private(cache_dir):
    """Only a directory that nobody but its owner (us) can write may feed programs to us."""
    try:
        st = os.stat(cache_dir)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _write_cached(cache_dir, path, key, code):
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            f.write(len(key).to_bytes(8, "little") + key + code)
        os.rename(tmp, path)
    except OSError:
        try:  # a cache that cannot be written only costs time
            os.unlink(tmp)
        except OSError:
            pass


def prepare(cfg, cache_dir=None):
    """Build the program for cfg on the host and keep it, so that build() in the container's
    init only looks it up. With cache_dir (root-only, in the runtime's state), programs are
    kept on disk too: the same profile for the next container costs a file read."""
    import zlib

    global _libseccomp_version
    validate(cfg)
    if _libseccomp_version is None:
        _libseccomp_version = _read_libseccomp_version()
    key = _key(cfg)
    program = _prepared.get(key)
    if program is not None:
        return program
    path = os.path.join(cache_dir, f"{zlib.crc32(key):08x}-{len(key)}.bpf") if cache_dir else None
    code = _read_cached(path, key) if path and _cache_dir_is_private(cache_dir) else None
    if code is not None:
        program = Program(code, _flags(cfg))
    else:
        preload()
        program = _build(cfg)
        if path:
            _write_cached(cache_dir, path, key, program.code)
    _prepared[key] = program
    return program


def build(cfg):
    """The program for cfg: the one prepare() made on the host, else built now (libseccomp
    must have been loaded on the host: nothing is loaded from a container's rootfs)."""
    validate(cfg)
    if _libseccomp_version is not None:
        program = _prepared.get(_key(cfg))
        if program is not None:
            return program
    if sys.modules.get("pyseccomp") is None:
        raise RuntimeFailure("internal error: libseccomp was not loaded before entering the "
                             "container's rootfs (call security.preload(spec) on the host first)")
    return _build(cfg)


def load(program):
    seccomp_bpf.load(program.code, program.flags)
