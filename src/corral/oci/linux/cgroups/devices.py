"""Device rules: v1 devices.allow/devices.deny lines, and the v2 eBPF program.

OCI rules apply in order, a later rule overriding an earlier one. The runtime always allows
the devices every container needs after the config's own rules, as runc does.
"""

# (type, major, minor, access), the same set as runc 1.1: /dev/null, zero, full, random,
# urandom, tty, ptmx, the pts devices (/dev/console is a pts bind mount), /dev/net/tun, and
# mknod of any device (access to what is made stays controlled)
DEFAULT_ALLOWED = [
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
]


def normalize(rules, extra_devices=()):
    """OCI device rules (plus linux.devices entries to allow) → [(allow, type, major, minor,
    access)] with None for a wildcard, then the default allowed set."""
    out = []
    for r in rules or []:
        major = r.get("major")
        minor = r.get("minor")
        out.append((bool(r["allow"]), r.get("type") or "a",
                    None if major is None or major < 0 else major,
                    None if minor is None or minor < 0 else minor,
                    r.get("access") or "rwm"))
    for t, major, minor, access in DEFAULT_ALLOWED:
        out.append((True, t, major, minor, access))
    for d in extra_devices or ():
        if d.get("type") in ("c", "b", "u"):
            out.append((True, "c" if d["type"] == "u" else d["type"], d.get("major"),
                        d.get("minor"), "rwm"))
    return out


def v1_line(rule):
    """("devices.allow" or "devices.deny", "c 1:3 rwm")."""
    allow, t, major, minor, access = rule
    if t == "a":
        text = "a"
    else:
        text = f"{t} {'*' if major is None else major}:{'*' if minor is None else minor} {access}"
    return ("devices.allow" if allow else "devices.deny"), text


# ---- the eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) ------------------------------------------
# The program's context is struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor},
# access_type = (access << 16) | type. Return 1 to allow, 0 to deny.

BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}
_TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# opcodes
_LDXW = 0x61        # dst = *(u32 *)(src + off)
_MOV_X = 0xbf       # dst = src (64-bit)
_MOV_K = 0xb7       # dst = imm
_AND_K = 0x57
_RSH_K = 0x77
_JNE_K = 0x55       # if dst != imm goto +off
_JEQ_K = 0x15
_JNE_X = 0x5d       # if dst != src goto +off
_EXIT = 0x95


def _insn(code, dst=0, src=0, off=0, imm=0):
    return (code, dst, src, off, imm)


def _access_mask(access):
    m = 0
    for ch in access:
        m |= ACCESS_BITS[ch]
    return m


def program(rules):
    """The instructions (code, dst, src, off, imm) of a program that applies the normalized
    rules: checked last to first, the first match decides; nothing matching is denied. An
    allow rule matches when it grants every access asked for; a deny rule matches when it
    covers any of them."""
    # r2 = type, r3 = access, r4 = major, r5 = minor
    head = [
        _insn(_LDXW, 2, 1, 0), _insn(_MOV_X, 3, 2), _insn(_AND_K, 2, imm=0xffff),
        _insn(_RSH_K, 3, imm=16), _insn(_LDXW, 4, 1, 4), _insn(_LDXW, 5, 1, 8),
    ]
    body = []
    for allow, t, major, minor, access in reversed(rules):
        mask = _access_mask(access)
        checks = []  # each a list of instructions ending in a jump to "next rule" (off filled later)
        if t != "a":
            checks.append([_insn(_JNE_K, 2, imm=_TYPES[t])])
        if major is not None:
            checks.append([_insn(_JNE_K, 4, imm=major)])
        if minor is not None:
            checks.append([_insn(_JNE_K, 5, imm=minor)])
        if mask != 7:
            if allow:  # every asked bit granted: (asked & mask) == asked
                checks.append([_insn(_MOV_X, 6, 3), _insn(_AND_K, 6, imm=mask), _insn(_JNE_X, 6, 3)])
            else:      # any asked bit covered: (asked & mask) != 0
                checks.append([_insn(_MOV_X, 6, 3), _insn(_AND_K, 6, imm=mask), _insn(_JEQ_K, 6, imm=0)])
        block = [i for c in checks for i in c] + [_insn(_MOV_K, 0, imm=1 if allow else 0), _insn(_EXIT)]
        # point every jump at the end of this block
        fixed = []
        for n, ins in enumerate(block):
            if ins[0] in (_JNE_K, _JEQ_K, _JNE_X):
                ins = (ins[0], ins[1], ins[2], len(block) - n - 1, ins[4])
            fixed.append(ins)
        body.extend(fixed)
        if not checks:
            break  # matches everything: earlier rules can never decide
    else:
        body += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]
    return head + body


def encode(insns):
    """struct bpf_insn[]: u8 code, u8 dst:4 | src:4 << 4, s16 off, s32 imm (little endian)."""
    import struct
    return b"".join(struct.pack("<BBhi", c, (d & 0xf) | ((s & 0xf) << 4), off, imm)
                    for c, d, s, off, imm in insns)


def allows(rules, dev_type, major, minor, access):
    """What the program decides for one request (the same logic, for tests and checks)."""
    asked = _access_mask(access)
    for allow, t, ma, mi, acc in reversed(rules):
        if t != "a" and t != dev_type:
            continue
        if ma is not None and ma != major or mi is not None and mi != minor:
            continue
        mask = _access_mask(acc)
        if allow and asked & mask != asked or not allow and not asked & mask:
            continue
        return allow
    return False
