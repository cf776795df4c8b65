"""run flags and client features as a user: udp -p through portmap, --privileged, --cap-add,
--mount type=bind|volume|tmpfs, ps --no-trunc, and corral.Client.events()."""

import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from tests.e2e.conftest import leftovers


def uname(prefix="f"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _udp_counters(corral, name):
    """The container's kernel UDP counters (its network namespace's /proc/net/snmp)."""
    lines = [line.split() for line in corral("exec", name, "cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def _send_udp(port, data=b"ping"):
    """Send one datagram from a connected socket; True when the ICMP port-unreachable answer
    comes back (the datagram reached a kernel that had no socket on the port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("127.0.0.1", port))
        s.settimeout(2)
        s.send(data)
        try:
            s.recv(100)
        except ConnectionRefusedError:
            return True
        except socket.timeout:
            return False
        return False
    finally:
        s.close()


def _nat_rules(port, proto):
    out = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"-p {proto}" in line and f"--dport {port} " in line + " "
            and "DNAT" in line]


def test_udp_port_published_on_localhost(corral, cleanup):
    """busybox has no UDP server, so the container's kernel answers: datagrams sent to the
    host port arrive in the container's namespace on the container port (its UDP NoPorts
    counter grows by what we sent) and its ICMP answer comes back through the NAT."""
    name = uname("udp")
    cleanup.append(name)
    port = _free_udp_port()
    corral("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5353/udp", "busybox", "sleep", "300")
    ps = json.loads(corral("ps", "--format", "json").stdout.splitlines()[0])
    assert ps["Names"] == name and ps["Ports"] == f"127.0.0.1:{port}->5353/udp"
    rules = _nat_rules(port, "udp")
    assert len(rules) == 1 and ":5353" in rules[0], rules
    assert _nat_rules(port, "tcp") == []
    before = _udp_counters(corral, name)
    answered = sum(_send_udp(port, b"ping-%d" % i) for i in range(3))
    after = _udp_counters(corral, name)
    assert after["NoPorts"] - before["NoPorts"] == 3, (before, after)
    assert answered == 3
    # a tcp connection to the same port number goes nowhere (only udp is published)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    corral("rm", "-f", name)
    assert _nat_rules(port, "udp") == []


def _status_field(text, key):
    return next(line.split()[1] for line in text.splitlines() if line.startswith(key + ":"))


def test_privileged(corral):
    with open("/proc/self/status") as f:
        host_bounding = _status_field(f.read(), "CapBnd")
    script = ("cat /proc/self/status; echo ---; cat /proc/self/mounts; echo ---; ls /dev; echo ---; "
              "wc -c < /proc/timer_list; ip link set lo mtu 1400 && echo net-admin-ok")
    plain = corral("run", "--rm", "--network", "none", "busybox", "sh", "-c", script, check=False)
    priv = corral("run", "--rm", "--network", "none", "--privileged", "busybox", "sh", "-c", script)
    p_status, p_mounts, p_dev, p_rest = plain.stdout.split("---\n")
    status, mounts, dev, rest = priv.stdout.split("---\n")
    # every capability the host grants, no seccomp filter
    assert _status_field(status, "CapEff") == host_bounding
    assert _status_field(status, "CapBnd") == host_bounding
    assert _status_field(status, "Seccomp") == "0" and _status_field(p_status, "Seccomp") == "2"
    assert _status_field(p_status, "CapEff") != host_bounding
    # /sys writable, /proc/sys not read-only, nothing masked
    assert any(line.split()[1] == "/sys" and line.split()[3].startswith("rw") for line in mounts.splitlines())
    assert any(line.split()[1] == "/sys" and line.split()[3].startswith("ro") for line in p_mounts.splitlines())
    assert not any(line.split()[1] == "/proc/sys" for line in mounts.splitlines())
    assert int(rest.split()[0]) > 0 and int(p_rest.split()[0]) == 0  # /proc/timer_list masked without
    # the host's devices
    host_devs = {n for n in os.listdir("/dev") if os.path.exists(f"/dev/{n}") and
                 (os.path.stat.S_ISCHR(os.lstat(f"/dev/{n}").st_mode) or os.path.stat.S_ISBLK(os.lstat(f"/dev/{n}").st_mode))}
    host_devs -= {"console", "ptmx"}
    assert host_devs <= set(dev.split()), host_devs - set(dev.split())
    assert len(dev.split()) > len(p_dev.split())
    # net admin: allowed privileged, refused otherwise
    assert "net-admin-ok" in rest and "net-admin-ok" not in p_rest
    assert "Operation not permitted" in plain.stderr


def test_cap_add(corral):
    cmd = ["busybox", "sh", "-c", "ip link set lo mtu 1400 && echo ok; grep CapEff /proc/self/status"]
    res = corral("run", "--rm", "--network", "none", *cmd, check=False)
    assert "ok" not in res.stdout.split() and "Operation not permitted" in res.stderr
    plain = int(_status_field(res.stdout, "CapEff"), 16)
    res = corral("run", "--rm", "--network", "none", "--cap-add", "NET_ADMIN", *cmd)
    assert "ok" in res.stdout.split()
    assert int(_status_field(res.stdout, "CapEff"), 16) == plain | 1 << 12  # CAP_NET_ADMIN is 12
    res = corral("run", "--rm", "--network", "none", "--cap-add", "cap_sys_time", "--cap-drop", "NET_RAW", *cmd,
                 check=False)
    assert int(_status_field(res.stdout, "CapEff"), 16) == (plain | 1 << 25) & ~(1 << 13)


def test_mount_bind_volume_tmpfs(corral, corrald, cleanup):
    host = tempfile.mkdtemp(prefix="corral-mnt-")
    vol = uname("vol")
    try:
        with open(os.path.join(host, "from-host"), "w") as f:
            f.write("hello\n")
        before = leftovers(corrald)
        res = corral("run", "--rm", "--network", "none",
                     "--mount", f"type=bind,source={host},target=/h",
                     "--mount", f"type=bind,src={host},dst=/hro,readonly",
                     "--mount", f"type=volume,source={vol},target=/v",
                     "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
                     "busybox", "sh", "-c",
                     "cat /h/from-host; echo back > /h/from-ctr; echo kept > /v/f; echo gone > /t/f; "
                     "touch /hro/x 2>&1; grep -E ' /(h|hro|v|t) ' /proc/self/mounts")
        lines = res.stdout.splitlines()
        assert lines[0] == "hello"
        assert "Read-only file system" in lines[1]
        mounts = {line.split()[1]: line.split() for line in lines[2:]}
        assert mounts["/h"][3].startswith("rw") and mounts["/hro"][3].startswith("ro")
        assert mounts["/t"][2] == "tmpfs" and "size=1024k" in mounts["/t"][3]
        assert mounts["/v"][3].startswith("rw")
        with open(os.path.join(host, "from-ctr")) as f:
            assert f.read() == "back\n"
        assert not os.path.exists(os.path.join(host, "x"))
        # the volume was made on first use and keeps its data; the tmpfs keeps nothing
        assert vol in corral("volume", "ls", "-q").stdout.split()
        res = corral("run", "--rm", "--network", "none", "--mount", f"type=volume,src={vol},dst=/v,ro",
                     "--mount", "type=tmpfs,dst=/t", "busybox", "sh", "-c", "cat /v/f; ls -A /t; touch /v/y",
                     check=False)
        assert res.stdout == "kept\n" and res.returncode != 0 and "Read-only file system" in res.stderr
        assert leftovers(corrald) == before
        # bad --mount input: one line, 125, nothing left
        for bad, words in ((f"type=bind,source={host}/missing,target=/m", "missing"),
                           ("type=bind,source=relative,target=/m", "absolute"),
                           ("type=tmpfs", "target"), ("type=nfs,target=/m", "bind, volume or tmpfs"),
                           ("type=tmpfs,target=/m,color=red", "unknown key")):
            res = corral("run", "--rm", "--network", "none", "--mount", bad, "busybox", "true", check=False)
            assert res.returncode == 125 and res.stderr.count("\n") == 1 and words in res.stderr, (bad, res.stderr)
        assert leftovers(corrald) == before
    finally:
        shutil.rmtree(host, ignore_errors=True)
        corral("volume", "rm", "-f", vol, check=False)


def test_ps_no_trunc(corral, cleanup):
    name = uname("nt")
    cleanup.append(name)
    long_cmd = "sleep 300; echo this-command-is-longer-than-twenty-characters"
    cid = corral("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c", long_cmd).stdout.strip()
    assert len(cid) == 64
    short = [r for r in map(json.loads, corral("ps", "--format", "json").stdout.splitlines()) if r["Names"] == name]
    full = [r for r in map(json.loads, corral("ps", "--no-trunc", "--format", "json").stdout.splitlines())
            if r["Names"] == name]
    assert short[0]["ID"] == cid[:12] and full[0]["ID"] == cid
    assert full[0]["Command"] == f'"sh -c {long_cmd}"'
    assert short[0]["Command"] != full[0]["Command"] and len(short[0]["Command"]) <= 22
    assert cid in corral("ps", "-q", "--no-trunc").stdout.split()
    assert cid[:12] in corral("ps", "-q").stdout.split() and cid not in corral("ps", "-q").stdout
    table = corral("ps", "--no-trunc").stdout
    assert cid in table and long_cmd in table


def test_client_events(corral, corrald):
    from corral.api.containerd.events import task_pb2
    from corral.client import Client
    client = Client(corrald.sock)
    client.data_root = corrald.root
    seen = queue.Queue()
    sub = client.events('topic~="/tasks/"', 'topic~="/images/"')

    def reader():
        try:
            for ev in sub:
                seen.put(ev)
        except Exception as e:  # cancelled
            seen.put(e)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    tag = f"e2e/events-{uuid.uuid4().hex[:8]}:1"
    try:
        # the subscription is live once an event we cause reaches it
        deadline = time.monotonic() + 10
        live = False
        while not live and time.monotonic() < deadline:
            client.images.tag("busybox", tag)
            client.images.remove(tag)
            try:
                while True:
                    ev = seen.get(timeout=0.3)
                    live = live or getattr(ev, "topic", "").startswith("/images/")
            except queue.Empty:
                pass
        assert live, "no event reached the subscriber"
        ctr = client.containers.run("busybox", ["sh", "-c", "exit 7"], name=uname("ev"), network="none")
        try:
            assert ctr.wait() == 7
            events = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(e.topic == "/tasks/exit" for e in events):
                try:
                    events.append(seen.get(timeout=0.5))
                except queue.Empty:
                    pass
        finally:
            ctr.remove(force=True)
        mine = [e for e in events if e.topic.startswith("/tasks/")]
        topics = [e.topic for e in mine]
        assert "/tasks/create" in topics and "/tasks/start" in topics and "/tasks/exit" in topics, topics
        assert all(e.namespace == "default" for e in mine)
        exit_ev = next(e for e in mine if e.topic == "/tasks/exit")
        msg = task_pb2.TaskExit.FromString(exit_ev.event.value)
        assert msg.container_id == ctr.id and msg.exit_status == 7
        assert exit_ev.event.type_url.endswith("containerd.events.TaskExit")
        assert not any(e.topic.startswith("/containers/") for e in events)  # the filter holds
    finally:
        sub.cancel()
        t.join(5)
        client.close()
