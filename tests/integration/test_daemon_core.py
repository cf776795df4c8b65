"""corrald's core pieces without the network: plugin ordering and failure reporting, the
filter syntax, config loading, the `corrald config default` command."""

import logging
import os
import subprocess
import sys

import pytest

from corral.daemon import config as configmod
from corral.daemon.plugin import Registration, Registry, SkipPlugin, sort_registrations
from corral.services import filters
from corral.services.errors import InvalidArgument

log = logging.getLogger("test")


def cfg(tmp_path, **extra):
    c = {"root": str(tmp_path / "root"), "state": str(tmp_path / "state"), "plugins": {},
         "disabled_plugins": [], "required_plugins": []}
    c.update(extra)
    return c


def test_dependency_order():
    regs = [Registration("b", "1", lambda ic: "b1", requires=["a"]),
            Registration("c", "1", lambda ic: "c1", requires=["*"]),
            Registration("a", "1", lambda ic: "a1"),
            Registration("a", "2", lambda ic: "a2")]
    order = [r.uri for r in sort_registrations(regs)]
    assert order.index("a.1") < order.index("b.1")
    assert order.index("a.2") < order.index("b.1")
    assert order[-1] == "c.1"


def test_cycle_refused():
    regs = [Registration("a", "1", None, requires=["b"]), Registration("b", "1", None, requires=["a"])]
    with pytest.raises(ValueError, match="cycle"):
        sort_registrations(regs)


def test_failures_are_recorded_not_fatal(tmp_path):
    def boom(ic):
        raise RuntimeError("disk on fire")

    def skip(ic):
        raise SkipPlugin("not on this kernel")

    seen = {}

    def needs_a(ic):
        seen["a"] = ic.get("a")
        seen["root"] = ic.root
        return "ok"

    regs = [Registration("a", "good", lambda ic: "A"),
            Registration("x", "bad", boom),
            Registration("y", "skip", skip),
            Registration("z", "needs-x", lambda ic: "never", requires=["x"]),
            Registration("w", "needs-a", needs_a, requires=["a"]),
            Registration("v", "off", lambda ic: "V")]
    reg = Registry(regs, log)
    reg.start(cfg(tmp_path, disabled_plugins=["v.off"]))
    by = {p.reg.uri: p for p in reg.plugins}
    assert by["a.good"].instance == "A" and by["a.good"].error is None
    assert "disk on fire" in str(by["x.bad"].error)
    assert by["y.skip"].skipped and "skip plugin" in str(by["y.skip"].error)
    assert by["z.needs-x"].instance is None and "x" in str(by["z.needs-x"].error)
    assert by["w.needs-a"].instance == "ok" and seen["a"] == "A"
    assert seen["root"] == os.path.join(str(tmp_path / "root"), "w.needs-a")
    assert by["v.off"].skipped and by["v.off"].instance is None


def test_required_plugin_failure_is_fatal(tmp_path):
    def boom(ic):
        raise RuntimeError("nope")
    reg = Registry([Registration("x", "bad", boom)], log)
    with pytest.raises(RuntimeError, match="required plugin x.bad"):
        reg.start(cfg(tmp_path, required_plugins=["x.bad"]))


@pytest.mark.parametrize("expr,fields,labels,expected", [
    ("name==foo", {"name": "foo"}, {}, True),
    ("name==foo", {"name": "bar"}, {}, False),
    ("name!=foo", {"name": "bar"}, {}, True),
    ("name~=^fo+$", {"name": "foooo"}, {}, True),
    ('name~="^b"', {"name": "foo"}, {}, False),
    ("labels.a", {}, {"a": "1"}, True),
    ("labels.a", {}, {}, False),
    ('labels."io.x/y"==z', {}, {"io.x/y": "z"}, True),
    ("name==foo,labels.k==v", {"name": "foo"}, {"k": "v"}, True),
    ("name==foo,labels.k==v", {"name": "foo"}, {"k": "w"}, False),
    ('name=="a,b"', {"name": "a,b"}, {}, True),
])
def test_filter_syntax(expr, fields, labels, expected):
    assert filters.parse([expr])(filters.getter(fields, labels)) is expected


def test_filters_or_and_errors():
    p = filters.parse(["name==a", "name==b"])
    assert p(filters.getter({"name": "b"})) and not p(filters.getter({"name": "c"}))
    assert filters.parse([])(filters.getter({}))
    for bad in ["name==", "==x", 'name=="open', "name~=/(/", "name==a extra"]:
        with pytest.raises(InvalidArgument):
            filters.parse([bad])


def test_config_file_merges_defaults(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('version = 2\nroot = "/tmp/x"\n[grpc]\ngid = 7\n')
    c = configmod.load(str(p))
    assert c["root"] == "/tmp/x" and c["grpc"]["gid"] == 7
    assert c["grpc"]["address"] == configmod.DEFAULTS["grpc"]["address"]
    assert configmod.ttrpc_address(c) == c["grpc"]["address"] + ".ttrpc"


def test_config_errors_are_one_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("version = [\n")
    with pytest.raises(configmod.ConfigError, match="cannot read config"):
        configmod.load(str(p))
    with pytest.raises(configmod.ConfigError, match="does not exist"):
        configmod.load(str(tmp_path / "missing.toml"))


def test_config_default_command():
    exe = os.path.join(os.path.dirname(sys.executable), "corrald")
    out = subprocess.run([exe, "config", "default"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    import tomllib
    data = tomllib.loads(out.stdout)
    assert data["version"] == 2 and data["grpc"]["address"] == "/run/corral/corrald.sock"
    assert "root" in data and "state" in data and "debug" in data


def test_bad_config_exits_with_one_line(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "corrald")
    out = subprocess.run([exe, "--config", str(tmp_path / "missing.toml")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "does not exist" in out.stderr
