"""CNI pieces without a network namespace: conflists, the plugin protocol (env, stdin, results
and error objects, through small executables standing in as plugins), port specs, the
container's etc files and corral's network store."""

import json
import os
import shutil
import stat
import tempfile

import pytest

from corral.cni import cache, conflist, etcfiles, plugins, ports
from corral.cni.errors import NetworkError


@pytest.fixture
def root():
    d = tempfile.mkdtemp(prefix="corral-cni-unit-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- conflists

def test_parse_conflist_and_single_conf():
    conf = conflist.parse('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}')
    assert conf["plugins"][0]["type"] == "bridge"
    single = conflist.parse('{"cniVersion": "0.4.0", "name": "old", "type": "bridge", "bridge": "b0"}')
    assert single == {"cniVersion": "0.4.0", "name": "old", "plugins": [{"type": "bridge", "bridge": "b0"}]}


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"cniVersion": "9.9.9", "name": "n", "plugins": [{"type": "x"}]}', "cniVersion '9.9.9' is not supported"),
    ('{"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}', "invalid network name"),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": []}', "non-empty list"),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"bridge": "x"}]}', "has no 'type'"),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../../bin/sh"}]}', "bare name"),
])
def test_bad_conflists(text, words):
    with pytest.raises(NetworkError) as e:
        conflist.parse(text, "test.conflist")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_default_network_made_on_first_use(root):
    conf = conflist.find(root, "bridge")
    assert conf["plugins"][0]["bridge"] == "corral0"
    assert [str(s) for s in conflist.subnets(conf)] == ["10.4.0.0/24"]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall"]
    assert os.path.exists(os.path.join(root, "networks", "bridge.conflist"))


def test_create_find_remove(root):
    conf = conflist.create(root, "front", subnet="10.79.3.0/24", labels={"a": "b"})
    assert conflist.find(root, "front") == conf
    ipam = conf["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "10.79.3.0/24", "gateway": "10.79.3.1"}]]
    assert ipam["dataDir"] == os.path.join(root, "cni", "networks")
    assert len(conf["plugins"][0]["bridge"]) <= 15
    auto = conflist.create(root, "auto")
    assert str(conflist.subnets(auto)[0]) == "10.4.1.0/24"  # the first /24 after the default's
    with pytest.raises(NetworkError, match="already exists"):
        conflist.create(root, "front", subnet="10.79.4.0/24")
    with pytest.raises(NetworkError, match="overlaps subnet 10.79.3.0/24 of network front"):
        conflist.create(root, "other", subnet="10.79.0.0/16")
    with pytest.raises(NetworkError, match="reserved"):
        conflist.create(root, "host")
    with pytest.raises(NetworkError, match="invalid subnet"):
        conflist.create(root, "x", subnet="10.79.5.1/24")
    with pytest.raises(NetworkError, match="only 'bridge'"):
        conflist.create(root, "x", driver="macvlan")
    conflist.remove(root, "front")
    with pytest.raises(NetworkError, match="not found"):
        conflist.find(root, "front")
    with pytest.raises(NetworkError, match="built in"):
        conflist.remove(root, "bridge")


# -- the plugin protocol

def _fake_plugin(d, name, body):
    """An executable that plays a plugin: it records its env and stdin, then runs `body`."""
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nenv > \"$0.env\"\ncat > \"$0.stdin\"\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def _recorded(path):
    with open(path + ".env") as f:
        env = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    with open(path + ".stdin") as f:
        return env, json.load(f)


def test_chain_threads_prev_result_and_runtime_config(root):
    a = _fake_plugin(root, "plug-a", """echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.5/24"}]}'""")
    b = _fake_plugin(root, "plug-b", """sed 's/.*"prevResult"://; s/}$//' "$0.stdin" """)
    conf = {"cniVersion": "1.0.0", "name": "chain", "plugins": [
        {"type": "plug-a", "x": 1}, {"type": "plug-b", "capabilities": {"portMappings": True}}]}
    rt = plugins.RuntimeConf("cid1", "/proc/1/ns/net", "eth3", args=[("IgnoreUnknown", "1")],
                             capability_args={"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}],
                                              "bandwidth": {"x": 1}})
    result = plugins.add(conf, rt, dirs=[root])
    env, stdin = _recorded(a)
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "cid1"
    assert env["CNI_NETNS"] == "/proc/1/ns/net" and env["CNI_IFNAME"] == "eth3"
    assert env["CNI_ARGS"] == "IgnoreUnknown=1" and env["CNI_PATH"] == root and env["PATH"]
    assert stdin == {"type": "plug-a", "x": 1, "cniVersion": "1.0.0", "name": "chain"}
    env, stdin = _recorded(b)
    assert stdin["prevResult"]["ips"] == [{"address": "10.9.0.5/24"}]
    assert stdin["runtimeConfig"] == {"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]}
    assert result["ips"][0]["address"] == "10.9.0.5/24"
    assert plugins.ips(result) == ["10.9.0.5"]

    # DEL runs in reverse with the cached result as prevResult, CHECK in order
    order = os.path.join(root, "order")
    for p in (a, b):
        with open(p, "a") as f:
            f.write(f'echo "$CNI_COMMAND $(basename $0)" >> {order}\n')
    plugins.delete(conf, rt, result, dirs=[root])
    plugins.check(conf, rt, result, dirs=[root])
    env, stdin = _recorded(a)
    assert env["CNI_COMMAND"] == "CHECK" and stdin["prevResult"] == result
    with open(order) as f:
        assert f.read().split("\n")[-5:-1] == ["DEL plug-b", "DEL plug-a", "CHECK plug-a", "CHECK plug-b"]


def test_plugin_error_object_is_one_line(root):
    _fake_plugin(root, "bad", """printf '%s' '{"cniVersion":"1.0.0","code":11,"msg":"no luck","details":"line1\\nline2"}'; exit 1""")
    conf = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bad"}]}
    with pytest.raises(plugins.PluginError) as e:
        plugins.add(conf, plugins.RuntimeConf("c", "/x"), dirs=[root])
    assert str(e.value) == "CNI plugin bad ADD on network n failed: no luck: line1 line2"
    assert e.value.code == 11
    _fake_plugin(root, "crash", "echo boom >&2; exit 2")
    with pytest.raises(plugins.PluginError, match="failed: boom$"):
        plugins.add({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "crash"}]},
                    plugins.RuntimeConf("c", "/x"), dirs=[root])


def test_missing_plugin(root):
    with pytest.raises(NetworkError, match="CNI plugin 'nope' not found"):
        plugins.find_plugin("nope", [root])
    assert plugins.find_plugin("bridge").startswith(("/usr/lib/cni", "/opt/cni/bin"))


def test_del_runs_every_plugin_and_raises_the_first_error(root):
    _fake_plugin(root, "p1", "exit 0")
    _fake_plugin(root, "p2", """echo '{"code":7,"msg":"p2 broke"}'; exit 1""")
    conf = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "p1"}, {"type": "p2"}]}
    with pytest.raises(plugins.PluginError, match="p2 broke"):
        plugins.delete(conf, plugins.RuntimeConf("c", ""), None, dirs=[root])
    env, _ = _recorded(os.path.join(root, "p1"))
    assert env["CNI_COMMAND"] == "DEL" and env["CNI_NETNS"] == ""


def test_version_of_a_real_plugin():
    # the real plugin speaks the CNI versions conflist accepts
    import subprocess
    out = subprocess.run([plugins.find_plugin("bridge")], env={"CNI_COMMAND": "VERSION"}, input=b"{}",
                         capture_output=True).stdout
    assert "1.0.0" in json.loads(out)["supportedVersions"]


def test_cache_round_trip(root):
    e = {"kind": cache.KIND, "containerId": "abc", "networkName": "n", "ifName": "eth0", "result": {"ips": []}}
    cache.save(root, e)
    assert cache.load(root, "n", "abc", "eth0") == e
    assert cache.entries(root, "abc") == [e] and cache.entries(root, "ab") == []
    cache.remove(root, e)
    assert cache.entries(root) == []


# -- ports

@pytest.mark.parametrize("spec, want", [
    ("8080:80", [("", 8080, 80, "tcp")]),
    ("127.0.0.1:8080:80/udp", [("127.0.0.1", 8080, 80, "udp")]),
    ("[::1]:8080:80", [("::1", 8080, 80, "tcp")]),
    ("8000-8001:9000-9001/TCP", [("", 8000, 9000, "tcp"), ("", 8001, 9001, "tcp")]),
])
def test_port_specs(spec, want):
    got = [(p["hostIP"], p["hostPort"], p["containerPort"], p["protocol"]) for p in ports.parse(spec)]
    assert got == want


@pytest.mark.parametrize("spec, words", [
    ("80", "give the host port too"),
    ("x:80", "'x' is not a port number"),
    ("8080:70000", "'70000' is not a port number"),
    ("8080:80/sctp", "protocol 'sctp'"),
    ("1.2.3:8080:80", "is not an IP address"),
    ("1:2:3:4", "want [ip:]hostPort:containerPort"),
    ("8000-8002:80-81", "differ in length"),
    ("", "give the host port too"),
])
def test_bad_port_specs(spec, words):
    with pytest.raises(ValueError) as e:
        ports.parse_publish(spec)
    assert words in str(e.value) and repr(spec) in str(e.value)


def test_port_taken_on_host_and_by_container():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        with pytest.raises(NetworkError, match=f"port 0.0.0.0:{port}/tcp is already in use on the host"):
            ports.check_free([{"hostIP": "", "hostPort": port, "containerPort": 80, "protocol": "tcp"}])
        with pytest.raises(NetworkError, match="already in use"):
            ports.check_free([{"hostIP": "127.0.0.1", "hostPort": port, "containerPort": 80, "protocol": "tcp"}])
        ports.check_free([{"hostIP": "", "hostPort": port, "containerPort": 80, "protocol": "udp"}])
    finally:
        s.close()
    ports.check_free([{"hostIP": "", "hostPort": port, "containerPort": 80, "protocol": "tcp"}])
    taken = [{"hostIP": "127.0.0.1", "hostPort": port, "containerPort": 1, "protocol": "tcp"}]
    with pytest.raises(NetworkError, match="already published by another container"):
        ports.check_free([{"hostIP": "", "hostPort": port, "containerPort": 80, "protocol": "tcp"}], taken)


# -- etc files

def test_hosts_and_resolv(root):
    text = etcfiles.hosts_text("h1", ["10.1.0.2"], ["web"], [("10.1.0.3", ["db", "db"])])
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "10.1.0.2\th1 web\n" in text and "10.1.0.3\tdb\n" in text
    evil = etcfiles.hosts_text("ok", ["10.1.0.2"], [], [("10.1.0.3", ["x\n1.2.3.4 bank", "y z"])])
    assert "bank" not in evil and "10.1.0.3" not in evil
    src = os.path.join(root, "resolv.conf")
    with open(src, "w") as f:
        f.write("# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org\noptions ndots:2\n")
    assert etcfiles.resolv_text(source=src) == "search example.org\noptions ndots:2\nnameserver 192.0.2.53\n"
    assert etcfiles.resolv_text(["192.0.2.1"], source=src).endswith("nameserver 192.0.2.1\n")
    with open(src, "w") as f:
        f.write("nameserver 127.0.0.53\n")
    assert etcfiles.resolv_text(source=src) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    # rewriting keeps the inode (a bind mount of the file keeps seeing it)
    path = os.path.join(root, "c", "hosts")
    etcfiles.write(path, "a\n")
    ino = os.stat(path).st_ino
    etcfiles.write(path, "b\n")
    assert os.stat(path).st_ino == ino


def test_spec_apply_modes(root):
    from corral.cni import spec as cnispec
    from corral.oci.specgen import default_spec
    s = default_spec(args=["true"])
    cnispec.apply(s, data_root=root, namespace="ns1", container_id="c" * 64, networks=["bridge"],
                  ports=[], hostname="box", name="web")
    hooks = s["hooks"]
    assert hooks["createRuntime"][0]["args"][1:] == ["--data-root", root, "createRuntime"]
    assert hooks["poststop"][0]["args"][-1] == "poststop"
    assert {"type": "network"} in s["linux"]["namespaces"]
    assert s["annotations"]["corral/networks"] == '["bridge"]'
    d = os.path.join(root, "containers", "ns1", "c" * 64)
    assert {m["destination"]: m["source"] for m in s["mounts"] if m["destination"].startswith("/etc/")} == {
        "/etc/hostname": f"{d}/hostname", "/etc/hosts": f"{d}/hosts", "/etc/resolv.conf": f"{d}/resolv.conf"}
    with open(f"{d}/hosts") as f:
        assert f.read().startswith("127.0.0.1\tlocalhost\n")  # its own address comes with the hook

    h = default_spec(args=["true"])
    cnispec.apply(h, data_root=root, namespace="ns1", container_id="d" * 64, networks=["host"], ports=[], hostname="x")
    assert not any(n["type"] in ("network", "uts") for n in h["linux"]["namespaces"])
    assert "hooks" not in h or not h["hooks"].get("createRuntime")

    n = default_spec(args=["true"])
    cnispec.apply(n, data_root=root, namespace="ns1", container_id="e" * 64, networks=["none"], ports=[], hostname="x")
    # loopback only, which the runtime sets up in the network namespace it creates: no hook
    assert any(ns["type"] == "network" and not ns.get("path") for ns in n["linux"]["namespaces"])
    assert not any((n.get("hooks") or {}).values())

    for networks, ports_, words in [(["nope"], [], "network nope not found"),
                                    (["none"], ["8080:80"], "cannot be published with --network none"),
                                    (["host", "bridge"], [], "cannot be combined"),
                                    (["bridge"], ["80"], "give the host port too")]:
        with pytest.raises(ValueError, match=words):
            cnispec.apply(default_spec(args=["true"]), data_root=root, namespace="ns1", container_id="f" * 64,
                          networks=networks, ports=ports_, hostname="x")


def test_system_conflists(root, monkeypatch):
    sysdir = os.path.join(root, "etc-cni")
    os.makedirs(sysdir)
    with open(os.path.join(sysdir, "10-sys.conflist"), "w") as f:
        json.dump({"cniVersion": "0.4.0", "name": "sysnet", "plugins": [{"type": "bridge", "bridge": "sys0"}]}, f)
    with open(os.path.join(sysdir, "20-single.conf"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "single", "type": "ptp"}, f)
    with open(os.path.join(sysdir, "30-broken.conflist"), "w") as f:
        f.write("{")
    monkeypatch.setattr(conflist, "SYSTEM_DIRS", (sysdir,))
    names = [c["name"] for c, _ in conflist.list_all(root)]
    assert names == ["bridge", "sysnet", "single"]  # corral's first; a broken file is skipped
    assert conflist.find(root, "single")["plugins"] == [{"type": "ptp"}]
    with pytest.raises(NetworkError, match="is not corral's"):
        conflist.remove(root, "sysnet")
    with pytest.raises(NetworkError, match="already exists"):
        conflist.create(root, "sysnet", subnet="10.79.9.0/24")
