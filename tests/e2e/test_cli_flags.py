"""The CLI's global flags before and after the verb, --help on every command, and the one
line when corrald cannot be reached."""

import os
import socket
import subprocess
import tempfile
import uuid

import pytest

from corral.cli.main import COMMANDS
from tests.e2e.conftest import CORRAL, leftovers

# subcommands of the multi-word commands
SUBCOMMANDS = {"network": ["ls", "create", "rm", "inspect"],
               "volume": ["create", "ls", "rm", "inspect", "prune"],
               "system": ["info", "prune"]}


def raw(*args, timeout=60):
    return subprocess.run([CORRAL, *args], capture_output=True, text=True, timeout=timeout)


def test_namespace_and_address_after_the_verb(corral, corrald):
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    name = f"ns-{uuid.uuid4().hex[:8]}"
    sock, root = corral.address, corral.data_root
    try:
        corrald.ctr("images", "import", "--snapshotter", "overlayfs", os.path.join(corrald.dir, "busybox.tar"),
                    namespace=ns)
        # every flag after the verb: address, data root, namespace
        res = raw("create", "--address", sock, "--data-root", root, "--namespace", ns, "--name", name,
                  "--network", "none", "busybox", "true")
        assert res.returncode == 0, res.stderr
        cid = res.stdout.strip()
        assert corrald.ctr("containers", "ls", "-q", namespace=ns).stdout.split() == [cid]
        # ps's own -a (all) stays its own; -n after the verb is the namespace
        for args in (["ps", "-a", "--namespace", ns, "-q", "--no-trunc", "--address", sock, "--data-root", root],
                     ["ps", "-a", "-n", ns, "-q", "--no-trunc", "--address=" + sock, "--data-root=" + root],
                     ["--namespace", "default", "--address", "/nonexistent", "ps", "-a", "-q", "--no-trunc",
                      "--namespace", ns, "--address", sock, "--data-root", root]):
            res = raw(*args)
            assert res.returncode == 0, (args, res.stderr)
            assert res.stdout.split() == [cid], args
        # before the verb, as before
        assert corral("-n", ns, "ps", "-a", "-q", "--no-trunc").stdout.split() == [cid]
        # not in the default namespace
        assert cid not in corral("ps", "-a", "-q", "--no-trunc").stdout
        # short -a after a verb that has no -a of its own is the address
        res = raw("inspect", "-a", sock, "--data-root", root, "-n", ns, "-f", "{{.Name}}", name)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "/" + name
        # a flag after the container's command belongs to the command
        res = corral("run", "--rm", "-n", ns, "--network", "none", "busybox", "echo", "--namespace", "x", "-a", "y")
        assert res.stdout == "--namespace x -a y\n"
        # an empty value is refused
        res = raw("ps", "--address", sock, "--namespace=")
        assert res.returncode == 125 and res.stderr.count("\n") == 1 and "--namespace" in res.stderr
        res = raw("rm", "--address", sock, "--data-root", root, "--namespace", ns, name)
        assert res.returncode == 0, res.stderr
        assert leftovers(corrald, namespace=ns) == {"records": [], "snapshots": [], "files": []}
    finally:
        corral("-n", ns, "rm", "-f", name, check=False)
        corrald.ctr("images", "rm", "--sync", "docker.io/library/busybox:latest", namespace=ns, check=False)
        corrald.ctr("namespaces", "rm", ns, check=False)


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_help_on_every_command(verb):
    words = [[verb]] + [[verb, sub] for sub in SUBCOMMANDS.get(verb, [])]
    for w in words:
        for flag in ("--help", "-h"):
            res = raw(*w, flag)
            assert res.returncode == 0, (w, res.stderr)
            assert res.stdout.startswith(f"usage: corral {' '.join(w)}"), (w, res.stdout)
            assert res.stderr == ""
            # the global flags are shown for every command
            assert "--namespace" in res.stdout and "--address" in res.stdout, w
    # and the global flags may come first
    res = raw("--namespace", "x", verb, "--help")
    assert res.returncode == 0 and res.stdout.startswith(f"usage: corral {verb}")


def test_top_level_help():
    for args in (["--help"], ["-h"], ["help"]):
        res = raw(*args)
        assert res.returncode == 0
        assert res.stdout.startswith("usage: corral")
        for verb in COMMANDS:
            assert f"\n  {verb} " in res.stdout


@pytest.mark.parametrize("args", [["ps"], ["images"], ["run", "--rm", "busybox", "true"], ["events"], ["rm", "x"],
                                  ["stop", "x", "y"], ["inspect", "x"], ["rmi", "x"], ["logs", "x"],
                                  ["exec", "x", "true"], ["stats", "--no-stream"], ["system", "info"]])
def test_no_daemon_is_one_clear_line(args):
    d = tempfile.mkdtemp(prefix="corral-nod-")
    try:
        data_root = os.path.join(d, "root")
        missing = os.path.join(d, "missing.sock")
        # a socket file with nobody listening (a daemon that died)
        stale = os.path.join(d, "stale.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()
        for sock, reason in ((missing, "No such file or directory"), (stale, "Connection refused")):
            for argv in (["--address", sock, "--data-root", data_root, *args],
                         [args[0], "--address", sock, "--data-root", data_root, *args[1:]]):
                res = raw(*argv, timeout=30)
                assert res.returncode == 125, (argv, res.stdout, res.stderr)
                assert res.stderr == f"corral: cannot connect to corrald at {sock}: {reason} (is corrald running?)\n", argv
                assert "Traceback" not in res.stdout
        # nothing made in the data root but what is harmless to have (no container files)
        assert not os.path.exists(os.path.join(data_root, "containers")) or \
            not any(files for _, _, files in os.walk(os.path.join(data_root, "containers")))
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_version_without_daemon():
    res = raw("version", "--address", "/nonexistent/corrald.sock")
    assert res.returncode == 1
    assert res.stdout.startswith("Client:\n Version:")
    assert res.stderr == ("corral: cannot connect to corrald at /nonexistent/corrald.sock: No such file or directory "
                          "(is corrald running?)\n")
