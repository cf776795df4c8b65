"""CNI networking with the real plugins (/usr/lib/cni) and real corral-runc containers: the spec
from corral.cni.spec.apply, the corral-oci-hook run by the runtime at createRuntime and
poststop. Each test uses its own 10.9x.y.0/24 networks and checks that DEL leaves no veth,
iptables rule, host-local allocation, netns pin or cache entry, even when the container's
process died first. Whatever a failing test leaves is removed by the fixture."""

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from corral.cni import attach, cache, conflist, netns, plugins
from corral.cni import spec as cnispec
from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401

NS = "cnitest"


def _iptables_rules():
    out = []
    for table in ("nat", "filter"):
        res = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
        out += [(table, line) for line in res.stdout.splitlines()]
    return out


def _links():
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


class Net:
    """A data root with its own networks and containers; cleanup removes what tests left."""

    def __init__(self, rt):
        self.rt = rt
        self.root = os.path.join(rt.tmp, "data")
        self.networks = []
        self.ids = []

    def network(self, name, subnet):
        conflist.create(self.root, name, subnet=subnet)
        self.networks.append(name)
        return name

    def create(self, networks, ports=(), hostname="box", name="", args=("sleep", "1000"), start=True, caps=()):
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        self.ids.append(cid)

        def change(s):
            for k in ("bounding", "effective", "permitted"):
                s["process"]["capabilities"][k] += list(caps)
            s["hostname"] = hostname
            cnispec.apply(s, data_root=self.root, namespace=NS, container_id=cid, networks=networks,
                          ports=list(ports), hostname=hostname, name=name)
        bundle = self.rt.bundle(name=cid[:12], args=args, changes=change)
        res = self.rt("create", "--bundle", bundle, cid)
        if res.returncode != 0:
            return cid, res
        if start:
            self.rt.ok("start", cid)
        return cid, res

    def ip(self, cid, network):
        entry = cache.load(self.root, network, cid, "eth0")
        return plugins.ips(entry["result"])[0]

    def host_veth(self, cid, network):
        entry = cache.load(self.root, network, cid, "eth0")
        return [i["name"] for i in entry["result"]["interfaces"] if not i.get("sandbox") and i["name"].startswith("veth")][0]

    def ipam_files(self, network):
        d = os.path.join(conflist.ipam_dir(self.root), network)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def exec(self, cid, *args):
        return self.rt("exec", cid, *args, timeout=30)

    def remove(self, cid):
        self.rt("kill", cid, "KILL")
        self.rt.wait_status(cid, "stopped")
        self.rt.ok("delete", cid)

    def assert_released(self, cid, network, ip=None, veth=None):
        rules = [r for r in _iptables_rules() if cid in r[1] or (ip and f"{ip}/32" in r[1])]
        assert rules == []
        if veth:
            deadline = time.monotonic() + 5  # the kernel tears a dead namespace down asynchronously
            while f" {veth}@" in _links() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert f" {veth}@" not in _links()
        assert ip is None or ip not in self.ipam_files(network)
        assert cache.entries(self.root, cid) == []
        assert not os.path.exists(netns.path_of(self.root, cid))

    def cleanup(self):
        self.rt.cleanup()  # delete --force runs the poststop hooks
        for cid in self.ids:
            for step in (attach.teardown, netns.unpin):
                try:
                    step(self.root, cid)
                except Exception:
                    pass
            chains = set()
            for table, line in _iptables_rules():
                if cid in line and line.startswith("-A "):
                    args = _split(line)
                    subprocess.run(["iptables", "-w", "-t", table, "-D", *args[1:]], capture_output=True)
                    if args[1] in ("POSTROUTING", "CNI-HOSTPORT-DNAT") and args[-1].startswith("CNI-"):
                        chains.add((table, args[-1]))
            for table, chain in chains:
                subprocess.run(["iptables", "-w", "-t", table, "-F", chain], capture_output=True)
                subprocess.run(["iptables", "-w", "-t", table, "-X", chain], capture_output=True)
        for name in self.networks:
            try:
                conflist.remove(self.root, name)
            except Exception:
                pass


def _split(line):
    import shlex
    return shlex.split(line)


@pytest.fixture
def net(rt):
    n = Net(rt)
    yield n
    n.cleanup()


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_two_containers_on_a_user_network(net):
    net.network("cnit-a", "10.93.1.0/24")
    a, _ = net.create(["cnit-a"], hostname="alpha", name="web", caps=["CAP_NET_RAW"])
    b, _ = net.create(["cnit-a"], hostname="beta", name="db")
    ip_a, ip_b = net.ip(a, "cnit-a"), net.ip(b, "cnit-a")
    assert ip_a.startswith("10.93.1.") and ip_b.startswith("10.93.1.") and ip_a != ip_b
    out = net.exec(a, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"{ip_a}/24" in out
    assert net.exec(a, "ip", "-o", "link", "show", "lo").stdout.count("UP") >= 1
    # a's hosts file learned about b after b was made (written in place, seen through the mount)
    hosts_a = net.exec(a, "cat", "/etc/hosts").stdout
    assert f"{ip_a}\talpha web" in hosts_a and f"{ip_b}\tdb beta" in hosts_a
    assert net.exec(b, "hostname").stdout.strip() == "beta"
    assert net.exec(b, "cat", "/etc/hostname").stdout.strip() == "beta"
    assert "nameserver" in net.exec(b, "cat", "/etc/resolv.conf").stdout
    # reach each other by address and by name
    res = net.exec(a, "ping", "-c", "1", "-W", "3", ip_b)
    assert res.returncode == 0 and "1 packets received" in res.stdout, res.stdout + res.stderr
    res = net.exec(a, "ping", "-c", "1", "-W", "3", "db")
    assert res.returncode == 0 and f"({ip_b})" in res.stdout, res.stdout + res.stderr
    net.exec(b, "sh", "-c", "nc -l -p 7000 -e echo pong &")
    time.sleep(0.3)
    res = net.exec(a, "sh", "-c", "echo ping | nc -w 3 db 7000")
    assert res.stdout.strip() == "pong", res.stderr
    # the ADD result is what CHECK verifies
    attach.check(net.root, a)

    veth_a = net.host_veth(a, "cnit-a")
    assert ip_a in net.ipam_files("cnit-a")
    # a's process dies first, then the runtime deletes it (poststop)
    net.remove(a)
    net.assert_released(a, "cnit-a", ip_a, veth_a)
    assert f"{ip_a}\t" not in net.exec(b, "cat", "/etc/hosts").stdout  # b's hosts forgot a
    veth_b = net.host_veth(b, "cnit-a")
    net.remove(b)
    net.assert_released(b, "cnit-a", ip_b, veth_b)
    assert net.ipam_files("cnit-a") in ([], ["last_reserved_ip.0", "lock"])


def test_published_port_answers_on_localhost(net):
    net.network("cnit-p", "10.93.2.0/24")
    port = _free_port()
    cid, _ = net.create(["cnit-p"], ports=[f"127.0.0.1:{port}:80"],
                        args=["sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && "
                                          "exec httpd -f -p 80 -h /www"])
    ip = net.ip(cid, "cnit-p")
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
                body = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert body == "hello-from-httpd\n"
    assert any(f"--dport {port}" in line and ip in line for _, line in _iptables_rules())
    # the port is now published: a second container cannot take it
    with pytest.raises(ValueError, match=f"127.0.0.1:{port}/tcp is already published"):
        net.create(["cnit-p"], ports=[f"127.0.0.1:{port}:80"])
    net.ids.pop()
    veth = net.host_veth(cid, "cnit-p")
    net.remove(cid)
    net.assert_released(cid, "cnit-p", ip, veth)
    assert not any(f"--dport {port}" in line for _, line in _iptables_rules())


def test_port_already_taken_on_the_host(net):
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        with pytest.raises(ValueError, match=f"port 0.0.0.0:{port}/tcp is already in use on the host"):
            net.create(["bridge"], ports=[f"{port}:80"])
    finally:
        s.close()


def test_failed_chain_is_undone_and_create_fails(net):
    net.network("cnit-f", "10.93.3.0/24")
    # a network whose second plugin does not exist: bridge ADD succeeds, then the chain fails
    conf = conflist.find(net.root, "cnit-f")
    conf["plugins"].insert(1, {"type": "no-such-plugin"})
    with open(conflist.path_of(net.root, "cnit-f"), "w") as f:
        json.dump(conf, f)
    cid, res = net.create(["cnit-f"])
    assert res.returncode != 0
    assert "CNI plugin 'no-such-plugin' not found" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(net.rt.root, cid))
    assert leftovers(net.rt.tmp + "/state", cid) == []
    net.assert_released(cid, "cnit-f")
    assert [f for f in net.ipam_files("cnit-f") if f.startswith("10.")] == []
    assert "veth" not in subprocess.run(["ip", "-o", "link", "show", "master", conf["plugins"][0]["bridge"]],
                                        capture_output=True, text=True).stdout


def test_hook_is_idempotent_and_tolerant(net):
    net.network("cnit-i", "10.93.4.0/24")
    cid, _ = net.create(["cnit-i"])
    ip = net.ip(cid, "cnit-i")
    state = json.loads(net.rt.ok("state", cid).stdout)
    state["annotations"] = state.get("annotations") or json.load(
        open(os.path.join(state["bundle"], "config.json")))["annotations"]
    hook = os.path.join(os.path.dirname(cnispec.hook_path()), "corral-oci-hook")

    def run_hook(stage):
        return subprocess.run([hook, "--data-root", net.root, stage], input=json.dumps(state),
                              capture_output=True, text=True, env={})
    res = run_hook("createRuntime")
    assert res.returncode == 0, res.stderr
    assert net.ip(cid, "cnit-i") == ip and len(cache.entries(net.root, cid)) == 1
    attach.check(net.root, cid)
    # CHECK notices an address gone from the container's interface
    subprocess.run(["nsenter", f"--net={netns.path_of(net.root, cid)}", "ip", "addr", "flush", "dev", "eth0"],
                   check=True)
    with pytest.raises(plugins.PluginError, match="CHECK on network cnit-i failed"):
        attach.check(net.root, cid)
    # (the bridge plugin finds the NAT rules to delete from the interface's addresses)
    subprocess.run(["nsenter", f"--net={netns.path_of(net.root, cid)}", "ip", "addr", "add", f"{ip}/24",
                    "dev", "eth0"], check=True)
    assert run_hook("poststop").returncode == 0
    assert run_hook("poststop").returncode == 0  # already detached: nothing to do
    net.assert_released(cid, "cnit-i", ip)
    bad = subprocess.run([hook, "poststart"], input="{}", capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "unknown or missing hook stage" in bad.stderr
    bad = subprocess.run([hook, "createRuntime"], input="not json", capture_output=True, text=True)
    assert bad.returncode == 1 and "not JSON" in bad.stderr


def test_none_network_has_only_loopback(net):
    cid, _ = net.create(["none"])
    out = net.exec(cid, "ip", "-o", "link").stdout
    assert "lo:" in out and "eth0" not in out and "UP" in out
    net.remove(cid)
    assert cache.entries(net.root, cid) == []


def test_default_bridge(net):
    cid, _ = net.create(["bridge"], name="plain")
    ip = net.ip(cid, "bridge")
    assert ip.startswith("10.4.0.")
    assert "corral0" in _links()
    assert net.exec(cid, "ip", "route").stdout.startswith("default via 10.4.0.1")
    veth = net.host_veth(cid, "bridge")
    net.remove(cid)
    net.assert_released(cid, "bridge", ip, veth)
    assert ip not in os.listdir("/var/lib/cni/networks/bridge")


def test_concurrent_containers_get_distinct_addresses(net):
    from concurrent.futures import ThreadPoolExecutor
    net.network("cnit-c", "10.93.5.0/24")
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda i: net.create(["cnit-c"], hostname=f"h{i}", name=f"c{i}"), range(4)))
    for cid, res in made:
        assert res.returncode == 0, res.stderr
    ips = [net.ip(cid, "cnit-c") for cid, _ in made]
    assert len(set(ips)) == 4
    # every hosts file ends up knowing all four (peers are rewritten as others arrive)
    for cid, _ in made:
        hosts = net.exec(cid, "cat", "/etc/hosts").stdout
        assert all(ip in hosts for ip in ips), hosts
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda m: net.remove(m[0]), made))
    for (cid, _), ip in zip(made, ips):
        net.assert_released(cid, "cnit-c", ip)


def test_setup_replaces_attachments_of_an_earlier_namespace(net):
    """createRuntime for a container id whose earlier namespace was never detached (no
    poststop ran): the old attachment is released first, the new namespace gets its own."""
    net.network("cnit-s", "10.93.6.0/24")
    procs = [subprocess.Popen(["unshare", "-n", "sleep", "60"]) for _ in range(2)]
    cid = uuid.uuid4().hex * 2
    net.ids.append(cid)
    try:
        time.sleep(0.2)
        c = attach.Container(id=cid, namespace=NS, networks=["cnit-s"])
        first = attach.setup(net.root, c, procs[0].pid)[0]
        ip1 = plugins.ips(first["result"])[0]
        procs[0].kill()
        second = attach.setup(net.root, c, procs[1].pid)[0]
        ip2 = plugins.ips(second["result"])[0]
        assert [f for f in net.ipam_files("cnit-s") if f.startswith("10.")] == [ip2]
        assert not [r for r in _iptables_rules() if f"{ip1}/32" in r[1]]
        assert netns.same_namespace(netns.path_of(net.root, cid), f"/proc/{procs[1].pid}/ns/net")
        out = subprocess.run(["nsenter", "-t", str(procs[1].pid), "-n", "ip", "-4", "-o", "addr"],
                             capture_output=True, text=True).stdout
        assert f"{ip2}/24" in out
        attach.teardown(net.root, cid, ["cnit-s"])
        net.assert_released(cid, "cnit-s", ip2)
    finally:
        for p in procs:
            p.kill()
            p.wait()
