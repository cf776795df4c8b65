"""`corral logs` and `corral volume` as a user, against the session corrald."""

import os
import subprocess
import time
import uuid

from tests.e2e.conftest import leftovers


def uname(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_exited(corral, name, timeout=20):
    res = corral("wait", name, timeout=timeout)
    return int(res.stdout.strip())


def test_logs_streams_tail_since_timestamps(corral, cleanup):
    name = uname("lg")
    cleanup.append(name)
    corral("run", "-d", "--network", "none", "--name", name, "busybox", "sh", "-c",
           "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf partial")
    assert _wait_exited(corral, name) == 0
    res = corral("logs", name)
    assert res.stdout == "out1\nout2\nout3\npartial"
    assert res.stderr == "err1\nerr2\nerr3\n"
    res = corral("logs", "--tail", "2", name)
    assert res.stdout + res.stderr in ("err3\npartial", "partialerr3\n")
    res = corral("logs", "-t", "--tail", "1", name)
    stamp, _, text = res.stdout.partition(" ")
    assert text == "partial" and stamp.endswith("Z") and stamp[:2] == "20"
    assert corral("logs", "--since", "1h", name).stdout == "out1\nout2\nout3\npartial"
    assert corral("logs", "--since", "2099-01-01T00:00:00Z", name).stdout == ""
    # -f on a container that has exited prints what there is and returns
    assert corral("logs", "-f", name, timeout=10).stdout == "out1\nout2\nout3\npartial"
    bad = corral("logs", "--since", "last tuesday", name, check=False)
    assert bad.returncode == 125 and len(bad.stderr.strip().splitlines()) == 1
    missing = corral("logs", "no-such-container", check=False)
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1


def test_logs_follow_across_rotation_until_exit(corral, corrald, cleanup):
    name = uname("lf")
    cleanup.append(name)
    n = 400
    corral("run", "-d", "--network", "none", "--name", name, "--log-opt", "max-size=3k", "--log-opt", "max-file=3",
           "busybox", "sh", "-c",
           f"sleep 1; i=0; while [ $i -lt {n} ]; do echo line-$i; i=$((i+1)); [ $((i % 10)) = 0 ] && sleep 0.02; done; exit 0")
    follower = subprocess.Popen(corral.argv("logs", "-f", name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert out.splitlines() == [f"line-{i}" for i in range(n)]
    cid = corral("inspect", "-f", "{{.Id}}", name).stdout.strip()
    cdir = os.path.join(corrald.root, "containers", "default", cid)
    files = sorted(f for f in os.listdir(cdir) if f.startswith(f"{cid}-json.log"))
    assert [f[len(cid):] for f in files] == ["-json.log", "-json.log.1", "-json.log.2"]
    for f in files:
        assert os.path.getsize(os.path.join(cdir, f)) <= 3072


def test_volume_persists_across_containers(corral, cleanup):
    vol = uname("vol")
    try:
        assert corral("volume", "create", "--label", "purpose=test", vol).stdout.strip() == vol
        corral("run", "--rm", "--network", "none", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo kept > /data/f")
        res = corral("run", "--rm", "--network", "none", "-v", f"{vol}:/data:ro", "busybox", "sh", "-c",
                     "cat /data/f; echo x > /data/g 2>/dev/null || echo read-only")
        assert res.stdout == "kept\nread-only\n"
        assert vol in corral("volume", "ls", "-q").stdout.split()
        import json
        info = json.loads(corral("volume", "inspect", vol).stdout)[0]
        assert info["Name"] == vol and info["Labels"] == {"purpose": "test"}
        assert open(os.path.join(info["Mountpoint"], "f")).read() == "kept\n"
    finally:
        corral("volume", "rm", "-f", vol, check=False)
    assert vol not in corral("volume", "ls", "-q").stdout.split()


def test_named_volume_made_on_first_use_and_rm_refused_while_used(corral, corrald, cleanup):
    vol = uname("auto")
    holder = uname("holder")
    cleanup.append(holder)
    try:
        corral("create", "--network", "none", "--name", holder, "-v", f"{vol}:/d", "busybox", "true")
        assert vol in corral("volume", "ls", "-q").stdout.split()
        res = corral("volume", "rm", vol, check=False)
        assert res.returncode == 1 and "in use" in res.stderr and holder in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert vol in corral("volume", "ls", "-q").stdout.split()
        corral("rm", holder)
        assert corral("volume", "rm", vol).stdout.strip() == vol
    finally:
        corral("volume", "rm", "-f", vol, check=False)


def test_volume_prune_removes_only_unused(corral, cleanup):
    used, unused = uname("used"), uname("unused")
    holder = uname("holder")
    cleanup.append(holder)
    try:
        corral("volume", "create", unused)
        corral("create", "--network", "none", "--name", holder, "-v", f"{used}:/d", "busybox", "true")
        out = corral("volume", "prune", "-f").stdout
        names = corral("volume", "ls", "-q").stdout.split()
        assert unused in out and unused not in names and used in names
    finally:
        corral("rm", "-f", holder, check=False)
        for v in (used, unused):
            corral("volume", "rm", "-f", v, check=False)


def test_bad_volume_requests_leave_nothing(corral, corrald):
    before = leftovers(corrald)
    vols = corral("volume", "ls", "-q").stdout.split()
    res = corral("run", "--rm", "--network", "none", "-v", "/no/such/host/dir:/d", "busybox", "true", check=False)
    assert res.returncode == 125 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "/no/such/host/dir" in res.stderr
    res = corral("volume", "create", "bad/name", check=False)
    assert res.returncode == 125 and len(res.stderr.strip().splitlines()) == 1
    res = corral("volume", "rm", "no-such-volume", check=False)
    assert res.returncode == 1 and "no such volume" in res.stderr
    assert leftovers(corrald) == before
    assert corral("volume", "ls", "-q").stdout.split() == vols


def test_client_api_volumes(corral, corrald, cleanup):
    from corral.client import Client
    from corral import volumes
    vol = uname("api")
    holder = uname("holder")
    cleanup.append(holder)
    with Client(corrald.sock) as c:
        c.data_root = corrald.root
        v = c.volumes.create(vol, labels={"app": "db"})
        assert os.path.isdir(v.mountpoint)
        assert vol in corral("volume", "ls", "-q").stdout.split()
        assert c.volumes.get(vol).labels == {"app": "db"}
        corral("create", "--network", "none", "--name", holder, "-v", f"{vol}:/d", "busybox", "true")
        try:
            c.volumes.remove(vol)
            raise AssertionError("a volume in use was removed")
        except volumes.VolumeInUse as e:
            assert holder in str(e)
        corral("rm", holder)
        assert vol in c.volumes.prune()
        assert vol not in [x.name for x in c.volumes.list()]
