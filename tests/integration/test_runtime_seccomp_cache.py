"""corral-runc keeps the seccomp programs it builds in <root>/@seccomp-cache: the next
container with the same profile reads its program back; the cache is root-only, never
listed as a container, and a program from it filters as the freshly built one does."""

import os
import stat

from corral.oci.linux.seccomp_default import default_profile
from tests.helpers.oci_runtime import rt  # noqa: F401


def _seccomp(spec):
    spec["linux"]["seccomp"] = default_profile()


PROBE = ["sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?"]


def test_seccomp_program_is_cached_and_reused(rt, cid):
    bundle = rt.bundle(args=PROBE, changes=_seccomp)
    os.makedirs(rt.root, exist_ok=True)
    first = rt.ok("run", "--bundle", bundle, cid + "a").stdout
    cache = os.path.join(rt.root, "@seccomp-cache")
    [name] = os.listdir(cache)
    st = os.stat(cache)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    mtime = os.stat(os.path.join(cache, name)).st_mtime_ns

    second = rt.ok("run", "--bundle", bundle, cid + "b").stdout
    assert first == second and "Seccomp:\t2" in second and "unshare=1" in second
    assert os.listdir(cache) == [name]
    assert os.stat(os.path.join(cache, name)).st_mtime_ns == mtime  # read, not written again
    assert rt.ok("list", "-q").stdout.split() == []
