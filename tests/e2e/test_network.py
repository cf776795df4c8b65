"""Networking as a user: `-p` to a busybox httpd on 127.0.0.1, containers on a user-defined
network reaching each other by name, `network ls/create/rm/inspect`, bad port specs and
taken ports, and the network released (IP, veth, iptables rules, netns pin) when the
container goes, also after corrald was killed with SIGKILL while it ran."""

import glob
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.e2e.conftest import IMAGE, Runner, leftovers
from tests.helpers.corrald import Corrald

HTTPD = "mkdir -p /www && echo hello-through-portmap > /www/index.html && exec httpd -f -p 80 -h /www"


def uname(prefix="n"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _id(corral, name):
    return json.loads(corral("inspect", name).stdout)[0]["Id"]


def _attachment(root, cid):
    """(network, ip, host veth) from the CNI result cache."""
    from corral.cni import cache, plugins
    entries = cache.entries(root, cid)
    assert len(entries) == 1, entries
    e = entries[0]
    veth = [i["name"] for i in e["result"]["interfaces"] if not i.get("sandbox") and i["name"].startswith("veth")][0]
    return e["networkName"], plugins.ips(e["result"])[0], veth


def _ipam_dir(root, network):
    if network == "bridge":
        return "/var/lib/cni/networks/bridge"
    return os.path.join(root, "cni", "networks", network)


def _assert_released(root, cid, network, ip, veth):
    from corral.cni import cache, netns
    assert cache.entries(root, cid) == []
    assert not os.path.exists(netns.path_of(root, cid))
    assert not os.path.exists(os.path.join(_ipam_dir(root, network), ip))
    rules = []
    for table in ("nat", "filter"):
        out = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
        rules += [line for line in out.splitlines() if cid in line or f"{ip}/32" in line or f"{ip}:" in line]
    assert rules == []
    deadline = time.monotonic() + 5
    while veth in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, f"{veth} still there"
        time.sleep(0.05)


def _get(url, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def networks(corral):
    names = []
    yield names
    for n in names:
        corral("network", "rm", n, check=False)


def test_httpd_published_on_localhost(corral, corrald, cleanup):
    name = uname("web")
    cleanup.append(name)
    port = _free_port()
    corral("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD)
    assert _get(f"http://127.0.0.1:{port}/") == "hello-through-portmap\n"
    cid = _id(corral, name)
    network, ip, veth = _attachment(corrald.root, cid)
    assert network == "bridge" and ip.startswith("10.4.0.")
    assert os.path.exists(os.path.join(_ipam_dir(corrald.root, network), ip))
    hosts = corral("exec", name, "cat", "/etc/hosts").stdout
    assert f"{ip}\t{cid[:12]} {name}" in hosts
    corral("stop", "-t", "1", name)
    corral("rm", name)
    _assert_released(corrald.root, cid, network, ip, veth)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_user_network_containers_reach_each_other(corral, corrald, cleanup, networks):
    net = uname("net")
    networks.append(net)
    out = corral("network", "create", net, "--subnet", "10.94.7.0/24").stdout
    assert len(out.strip()) == 64
    assert net in corral("network", "ls").stdout
    srv = uname("srv")
    cleanup.append(srv)
    corral("run", "-d", "--name", srv, "--network", net, "busybox", "sh", "-c",
           "while true; do nc -l -p 7000 -e echo pong; done")
    res = corral("run", "--rm", "--network", net, "busybox", "sh", "-c",
                 f"for i in 1 2 3 4 5; do echo hi | nc -w 2 {srv} 7000 && break; sleep 0.2; done")
    assert res.stdout.strip() == "pong", res.stderr
    info = json.loads(corral("network", "inspect", net).stdout)[0]
    cid = _id(corral, srv)
    assert info["Containers"][cid]["Name"] == srv
    assert info["Containers"][cid]["IPv4Address"].startswith("10.94.7.")
    # in use: refused
    res = corral("network", "rm", net, check=False)
    assert res.returncode == 125 and f"network {net} is in use by container(s) {srv}" in res.stderr
    network, ip, veth = _attachment(corrald.root, cid)
    corral("rm", "-f", srv)
    _assert_released(corrald.root, cid, network, ip, veth)
    corral("network", "rm", net)
    assert net not in corral("network", "ls").stdout
    # the built-in ones stay
    for builtin in ("bridge", "host", "none"):
        res = corral("network", "rm", builtin, check=False)
        assert res.returncode == 125 and "built in" in res.stderr


def test_network_create_conflicts(corral, networks):
    a = uname("net")
    networks.append(a)
    corral("network", "create", a, "--subnet", "10.94.8.0/24")
    res = corral("network", "create", a, "--subnet", "10.94.9.0/24", check=False)
    assert res.returncode == 125 and res.stderr.strip() == f"corral: network {a} already exists"
    b = uname("net")
    res = corral("network", "create", b, "--subnet", "10.94.8.128/25", check=False)
    assert res.returncode == 125 and f"overlaps subnet 10.94.8.0/24 of network {a}" in res.stderr
    assert b not in corral("network", "ls", "-q").stdout.split()


@pytest.mark.parametrize("spec", ["80", "x:80", "8080:80/sctp", "1.2.3:8080:80", "8080:99999"])
def test_bad_port_spec(corral, corrald, spec):
    before = leftovers(corrald)
    res = corral("run", "--rm", "-p", spec, "busybox", "true", check=False)
    assert res.returncode == 125
    assert len(res.stderr.strip().splitlines()) == 1 and "invalid port spec" in res.stderr, res.stderr
    assert leftovers(corrald) == before


def test_port_already_taken(corral, corrald):
    before = leftovers(corrald)
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        res = corral("run", "-d", "-p", f"{port}:80", "busybox", "sleep", "10", check=False)
    finally:
        s.close()
    assert res.returncode == 125
    assert res.stderr.strip() == f"corral: port 0.0.0.0:{port}/tcp is already in use on the host"
    assert leftovers(corrald) == before


def _dport_rules(port):
    out = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"--dport {port} " in line + " " and "DNAT" in line]


def test_port_taken_by_a_container_fails_its_start(corral, corrald, cleanup):
    """Two containers made with the same host port (neither running then): the one started
    second fails with one line, exit 125 (`start` of several: 1), with nothing attached."""
    from corral.cni import cache, netns
    port = _free_port()
    a, b = uname("pa"), uname("pb")
    cleanup += [a, b]
    corral("create", "--name", a, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD)
    corral("create", "--name", b, "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
    bid = _id(corral, b)
    corral("start", a)
    assert _get(f"http://127.0.0.1:{port}/") == "hello-through-portmap\n"
    rules = _dport_rules(port)
    assert len(rules) == 1, rules
    want = f"cannot attach the container's network: port 0.0.0.0:{port}/tcp is already published by another container ({a})"
    res = corral("start", b, check=False)
    assert res.returncode == 1 and res.stderr == f"corral: {b}: {want}\n", res.stderr
    res = corral("start", "-a", b, check=False)
    assert res.returncode == 125 and res.stderr == f"corral: {want}\n", res.stderr
    res = corral("restart", "-t", "1", b, check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and want in res.stderr
    # nothing of b attached: no cache entry, no pinned namespace, no task, no second DNAT rule
    assert cache.entries(corrald.root, bid) == []
    assert not os.path.exists(netns.path_of(corrald.root, bid))
    assert corrald.ctr("tasks", "ls", "-q").stdout.split().count(bid) == 0
    assert json.loads(corral("inspect", b).stdout)[0]["State"]["Status"] == "created"
    assert _dport_rules(port) == rules
    assert _get(f"http://127.0.0.1:{port}/") == "hello-through-portmap\n"  # a still serves
    # a new container: refused when it is made, nothing left
    before = leftovers(corrald)
    for args in (["--rm"], ["-d"], ["-d", "--rm"]):
        res = corral("run", *args, "-p", f"127.0.0.1:{port}:80", "busybox", "true", check=False)
        assert res.returncode == 125, res.stderr
        assert res.stderr == f"corral: port 127.0.0.1:{port}/tcp is already published by another container ({a})\n"
    assert leftovers(corrald) == before
    # once a has stopped (its network released), b starts and serves on the port
    corral("stop", "-t", "1", a)
    corral("start", b)
    assert _get(f"http://127.0.0.1:{port}/") == "hello-through-portmap\n"
    assert len(_dport_rules(port)) == 1
    res = corral("start", a, check=False)
    assert res.returncode == 1 and f"already published by another container ({b})" in res.stderr
    corral("rm", "-f", a, b)
    assert _dport_rules(port) == []


def test_host_and_none_networks(corral):
    res = corral("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert "eth0" not in res.stdout
    lo = [line for line in res.stdout.splitlines() if " lo: " in line]
    assert lo and ",UP" in lo[0], res.stdout  # the hook set it up, as runc and docker have it
    res = corral("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert "lo:" in res.stdout and "eth0" in res.stdout


def test_released_after_daemon_killed(networks):
    """corrald dies (SIGKILL) while the container runs; the container then exits. Once a
    daemon is back, `rm` deletes the task and the runtime's poststop hook releases
    everything the network gave it."""
    from corral.busybox import make_oci_archive
    d = Corrald(log_level="info")
    try:
        d.start()
        archive = os.path.join(d.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        d.ctr("images", "import", "--snapshotter", "overlayfs", archive)
        corral = Runner(d)
        net = uname("net")
        corral("network", "create", net, "--subnet", "10.94.10.0/24")
        name = uname("c")
        flag = os.path.join(d.dir, "go")
        corral("run", "-d", "--name", name, "--network", net, "-v", f"{d.dir}:/host", "busybox", "sh", "-c",
               "while [ ! -e /host/go ]; do sleep 0.1; done")
        cid = _id(corral, name)
        network, ip, veth = _attachment(d.root, cid)
        d.stop(signal.SIGKILL)
        open(flag, "w").close()  # the container exits while no daemon runs
        deadline = time.monotonic() + 10
        while glob.glob(f"/sys/fs/cgroup/pids/*/{cid}/cgroup.procs") and \
                open(glob.glob(f"/sys/fs/cgroup/pids/*/{cid}/cgroup.procs")[0]).read().strip():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        d.start()
        corral("rm", name)
        _assert_released(d.root, cid, network, ip, veth)
        corral("network", "rm", net)
    finally:
        for c in Runner(d)("ps", "-aq", check=False).stdout.split() if d.proc else []:
            Runner(d)("rm", "-f", c, check=False)
        from corral.cni import attach, cache
        for cid in {e["containerId"] for e in cache.entries(d.root)}:  # a test that failed midway
            try:
                attach.teardown(d.root, cid)
            except Exception:
                pass
        for n in glob.glob(os.path.join(d.root, "networks", "net-*.conflist")):
            Runner(d)("network", "rm", os.path.basename(n)[:-len(".conflist")], check=False)
        d.cleanup()


def test_client_api_networks(corral, corrald, cleanup):
    from corral.client import Client
    from corral.cni.api import Networks
    from corral.cni.errors import NetworkError
    with Client(corrald.sock) as client:
        assert isinstance(client.networks, Networks)
        nets = Networks(client, data_root=corrald.root)
        name = uname("api")
        net = nets.create(name, subnet="10.94.11.0/24", labels={"team": "ops"})
        try:
            assert nets.get(name).subnets == ["10.94.11.0/24"] and net.labels == {"team": "ops"}
            assert name in [n.name for n in nets.list()]
            c = uname("c")
            cleanup.append(c)
            corral("run", "-d", "--name", c, "--network", name, "busybox", "sleep", "60")
            assert list(nets.get(name).containers.values())[0]["Name"] == c
            with pytest.raises(NetworkError, match=f"in use by container.s. {c}"):
                nets.remove(name)
            corral("rm", "-f", c)
        finally:
            nets.remove(name)
        with pytest.raises(NetworkError, match="not found"):
            nets.get(name)


def test_failing_plugin_fails_run_and_leaves_nothing(corral, corrald, networks):
    from corral.cni import cache, conflist
    net = uname("net")
    networks.append(net)
    corral("network", "create", net, "--subnet", "10.94.12.0/24")
    path = conflist.path_of(corrald.root, net)
    with open(path) as f:
        conf = json.load(f)
    conf["plugins"].insert(1, {"type": "no-such-plugin"})
    with open(path, "w") as f:
        json.dump(conf, f)
    before = leftovers(corrald)
    for args in (["--rm"], ["-d", "--rm"], []):
        res = corral("run", *args, "--network", net, "busybox", "true", check=False)
        assert res.returncode == 125, res.stderr  # corral's error, not the command's (126/127)
        assert len(res.stderr.strip().splitlines()) == 1 and "CNI plugin 'no-such-plugin' not found" in res.stderr
        if not args:  # a container kept (no --rm): its start fails the same way, exit 125
            name = json.loads(corral("ps", "-a", "--format", "json").stdout.splitlines()[0])["Names"]
            res = corral("start", name, check=False)
            assert res.returncode == 1 and "CNI plugin 'no-such-plugin' not found" in res.stderr
            res = corral("start", "-a", name, check=False)
            assert res.returncode == 125 and "CNI plugin 'no-such-plugin' not found" in res.stderr
            corral("rm", name)
    assert leftovers(corrald) == before
    assert [e for e in cache.entries(corrald.root) if e["networkName"] == net] == []
    ipam = os.path.join(corrald.root, "cni", "networks", net)
    assert [f for f in (os.listdir(ipam) if os.path.isdir(ipam) else []) if f.startswith("10.")] == []


def test_unknown_network(corral, corrald):
    before = leftovers(corrald)
    res = corral("run", "--rm", "--network", "no-such-net", "busybox", "true", check=False)
    assert res.returncode == 125
    assert res.stderr.strip() == "corral: network no-such-net not found; see `corral network ls`"
    assert leftovers(corrald) == before


def test_stop_then_start_reattaches(corral, corrald, cleanup, networks):
    net = uname("net")
    networks.append(net)
    corral("network", "create", net, "--subnet", "10.94.13.0/24")
    srv = uname("srv")
    cleanup.append(srv)
    corral("run", "-d", "--name", srv, "--network", net, "busybox", "nc", "-ll", "-p", "7000", "-e", "echo", "pong")
    cid = _id(corral, srv)
    _, ip1, veth1 = _attachment(corrald.root, cid)
    corral("stop", "-t", "1", srv)
    _assert_released(corrald.root, cid, net, ip1, veth1)  # stop deletes the task: poststop DEL
    assert json.loads(corral("inspect", srv).stdout)[0]["State"]["Status"] == "exited"
    corral("start", srv)  # a new task: ADD again
    _, ip2, veth2 = _attachment(corrald.root, cid)
    allocated = [f for f in os.listdir(_ipam_dir(corrald.root, net)) if f.startswith("10.")]
    assert allocated == [ip2]
    res = corral("run", "--rm", "--network", net, "busybox", "sh", "-c",
                 f"for i in 1 2 3 4 5; do nc -w 2 {srv} 7000 </dev/null && break; sleep 0.2; done")
    assert res.stdout.strip() == "pong"
    corral("rm", "-f", srv)
    _assert_released(corrald.root, cid, net, ip2, veth2)
