"""corral.cli.quickparse parses `corral run` command lines exactly as argparse does, and hands
the rest to it (None)."""

import pytest

from corral.cli import main, quickparse
from corral.cli.commands import run as run_cmd

PLAIN = [
    ["busybox"],
    ["--rm", "busybox", "/bin/true"],
    ["--rm", "--network", "none", "busybox", "/bin/true"],
    ["-d", "--name", "web", "-p", "127.0.0.1:8080:80", "busybox", "httpd", "-f", "-p", "80"],
    ["--rm", "-e", "A=1", "--env", "B=2", "-v", "data:/data:ro", "--label=x=y", "busybox", "sh", "-c", "echo hi"],
    ["--rm", "busybox", "--rm", "--name", "x"],          # after the image: the command's
    ["-i", "-t", "--rm", "busybox", "sh"],
    ["--net=host", "--memory", "512m", "--cpus", "0.5", "--security-opt", "seccomp=unconfined", "busybox"],
    ["--rm", "--address", "/x.sock", "--data-root", "/d", "--debug", "busybox", "true"],
    ["--namespace", "ns1", "busybox", "-"],
    ["--entrypoint", "", "busybox", "echo"],
]
FALLBACK = [
    ["-it", "busybox"], ["--help"], ["-h"], ["--", "busybox"], ["--bogus", "busybox"], ["--netw", "none", "busybox"],
    ["--name"], ["--name", "-x", "busybox"], ["--rm=1", "busybox"], [], ["-e", "--rm", "busybox"],
]


def _argparse(argv):
    p = main.parser("run", "")
    run_cmd.configure(p)
    main.add_global_flags(p)
    return vars(p.parse_args(argv))


def _quick(argv):
    rec = quickparse.Recorder()
    run_cmd.configure(rec)
    opts = quickparse.parse(rec.calls, argv, main._quick_globals(rec.calls))
    return None if opts is None else vars(opts)


@pytest.mark.parametrize("argv", PLAIN)
def test_same_as_argparse(argv):
    assert _quick(argv) == _argparse(argv)


@pytest.mark.parametrize("argv", FALLBACK)
def test_left_to_argparse(argv):
    assert _quick(argv) is None
