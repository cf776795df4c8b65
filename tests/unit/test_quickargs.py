"""corral.oci.quickargs parses plain command lines exactly as argparse does, and hands the rest
to it (None): corral-runc's commands and the corral CLI's `run`, both through the one module."""

import argparse
import contextlib
import importlib
import io
import random
import subprocess
import sys

import pytest

from corral.cli import main
from corral.cli.commands import run as run_cmd
from corral.oci import quickargs
from corral.oci.cli import VERBS, _quick_globals

# --- corral-runc ------------------------------------------------------------------------------

LINES = {
    "create": [["--bundle", "/b", "--pid-file", "/p", "id1"], ["id1", "-b", "/b"], ["--bundle=/b", "id1"],
               ["--preserve-fds", "2", "--no-pivot", "--console-socket", "/s", "id1"]],
    "run": [["id1"], ["-d", "-b", "/b", "id1"], ["--keep", "id1", "--no-new-keyring"]],
    "start": [["id1"]],
    "kill": [["id1"], ["id1", "KILL"], ["--all", "id1", "9"], ["-a", "id1", "TERM"], ["id1", "KILL", "-a"],
             ["id1", "-a"]],
    "delete": [["id1"], ["-f", "id1"], ["--force", "id1"]],
    "exec": [["--process", "/p.json", "--detach", "--pid-file", "/p", "id1"],
             ["-e", "A=1", "--env", "B=2", "-g", "5", "-g", "6", "id1"],
             ["id1", "sh", "-c", "true"], ["-t", "id1", "sh", "--", "-x"], ["id1", "--env", "A=1", "sh"],
             ["--tty", "--user", "0:0", "id1", "-"], ["id1", "ls", "--cwd", "--co", "--", "--c"]],
    "state": [["id1"]],
    "list": [[], ["--format", "json"], ["-q"]],
    "ps": [["id1"], ["-f", "json", "id1"], ["id1", "-ef"]],
}


def _both(verb, argv):
    module = importlib.import_module(f"corral.oci.commands.{verb}")
    rec = quickargs.Recorder()
    module.configure(rec)
    parser = rec.replay(argparse.ArgumentParser(prog=verb))
    return quickargs.parse(rec.calls, argv), parser


@pytest.mark.parametrize("verb,argv", [(v, a) for v, lines in LINES.items() for a in lines])
def test_same_result_as_argparse(verb, argv):
    quick, parser = _both(verb, argv)
    assert quick is not None
    assert vars(quick) == vars(parser.parse_args(argv))


@pytest.mark.parametrize("verb,argv", [
    ("create", ["-h"]), ("create", []), ("create", ["--bund", "/b", "id1"]), ("create", ["--", "id1"]),
    ("create", ["--preserve-fds", "x", "id1"]), ("create", ["--bundle"]), ("create", ["a", "b"]),
    ("kill", ["id1", "-9"]), ("list", ["--format", "yaml"]), ("exec", ["id1", "--", "sh"]),
    ("run", ["-db", "/b", "id1"]), ("delete", ["--force=1", "id1"]), ("create", ["-b=/b", "id1"]),
    # argparse: a '?' positional after an option that ended the positionals has its default,
    # and what follows is unrecognized
    ("kill", ["id1", "-a", "KILL"]),
    # argparse: "--name=--" gives [] (it drops "--" from the values)
    ("create", ["--bundle=--", "id1"]),
    # argparse stops at an ambiguous abbreviation (--cwd, --cap, --console-socket), even in a REMAINDER
    ("exec", ["id1", "ls", "--c"]), ("exec", ["id1", "ls", "--c=1"]),
])
def test_unusual_lines_go_to_argparse(verb, argv):
    quick, _parser = _both(verb, argv)
    assert quick is None


def test_global_options():
    ns, at = _quick_globals(["--root", "/r", "--log=/l", "--log-format", "json", "--debug", "create", "x"])
    assert (ns.root, ns.log, ns.log_format, ns.debug, at) == ("/r", "/l", "json", True, 6)
    assert _quick_globals(["--root", "state", "kill", "x"])[0].root == "state"  # a value, not the verb
    for argv in (["--version"], ["--help", "run", "x"], ["--bogus", "run", "x"], ["--root"], []):
        assert _quick_globals(argv) is None
    assert set(VERBS) >= set(LINES)


# --- the corral CLI's `run` (with the global flags it takes after the verb: suppressed) ---------

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
    ["--rm", "busybox", "ls", "--", "--n"],
]
FALLBACK = [
    ["-it", "busybox"], ["--help"], ["-h"], ["--", "busybox"], ["--bogus", "busybox"], ["--netw", "none", "busybox"],
    ["--name"], ["--name", "-x", "busybox"], ["--rm=1", "busybox"], [], ["-e", "--rm", "busybox"],
    ["busybox", "--", "x"],     # argparse drops the "--"
    ["busybox", "ls", "--n"],   # ambiguous (--name, --network, --net, --namespace): argparse's error
    ["--name=--", "busybox"],
]


def _argparse(argv):
    p = main.parser("run", "")
    run_cmd.configure(p)
    main.add_global_flags(p)
    return vars(p.parse_args(argv))


def _quick(argv):
    rec = quickargs.Recorder()
    run_cmd.configure(rec)
    opts = quickargs.parse(rec.calls, argv, main._quick_globals(rec.calls))
    return None if opts is None else vars(opts)


@pytest.mark.parametrize("argv", PLAIN)
def test_cli_run_same_as_argparse(argv):
    assert _quick(argv) == _argparse(argv)


@pytest.mark.parametrize("argv", FALLBACK)
def test_cli_run_left_to_argparse(argv):
    assert _quick(argv) is None


# --- add_argument() forms ---------------------------------------------------------------------

def _result(parser, argv):
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return vars(parser.parse_args(argv))
    except (SystemExit, Exception):
        return "error"


@pytest.mark.parametrize("calls,argv", [
    ([(("-n", "--num"), {"type": int, "default": 3}), (("name",), {})], ["-n", "7", "x"]),
    ([(("-n", "--num"), {"type": int, "default": 3}), (("name",), {})], ["x"]),
    ([(("--ratio",), {"type": float}), (("name",), {"choices": ("a", "b")})], ["--ratio=0.5", "b"]),
    ([(("-g",), {"action": "append", "type": int})], ["-g", "1", "-g", "2"]),
    ([(("--x-y",), {"dest": "z", "action": "store_true"})], ["--x-y"]),
    ([(("a",), {}), (("b",), {"nargs": "?", "default": "d"})], ["1"]),
    ([(("a",), {}), (("b",), {"nargs": "?"})], ["1", "2"]),
])
def test_forms_it_parses(calls, argv):
    rec = quickargs.Recorder()
    for names, options in calls:
        rec.add_argument(*names, **options)
    quick = quickargs.parse(rec.calls, argv)
    assert quick is not None
    assert vars(quick) == _result(rec.replay(argparse.ArgumentParser()), argv)


@pytest.mark.parametrize("calls,argv", [
    ([(("--num",), {"type": int, "default": "3"})], []),              # argparse converts the default
    ([(("--num",), {"type": lambda s: s})], ["--num", "1"]),          # a type with unknown effects
    ([(("--num",), {"required": True})], []),
    ([(("--num",), {"nargs": 2})], ["--num", "1", "2"]),
    ([(("--num",), {"action": "count"})], ["--num"]),
    ([(("--num",), {"action": "append", "default": ("a",)})], []),    # argparse keeps the tuple
    ([(("--a",), {"dest": "x"}), (("--b",), {"dest": "x", "default": 1})], []),
    ([(("--a",), {"choices": ("x",)})], ["--a", "y"]),
    ([(("--a",), {"type": int})], ["--a", "y"]),
    ([(("a",), {"nargs": "*"})], ["1", "2"]),
    ([(("a",), {"nargs": "?", "choices": ("x",), "default": "y"})], []),
    ([(("a",), {"nargs": "..."})], ["x"]),                            # a REMAINDER only after plain ones
    ([(("a",), {}), (("b",), {"nargs": "?"}), (("c",), {})], ["1", "2"]),
])
def test_forms_left_to_argparse(calls, argv):
    rec = quickargs.Recorder()
    for names, options in calls:
        rec.add_argument(*names, **options)
    assert quickargs.parse(rec.calls, argv) is None


# --- random command lines: whenever quickargs takes one, it gives argparse's result ------------

WORDS = ["id1", "x", "KILL", "9", "-9", "5", "json", "yaml", "-", "--", "", "a b", "-x", "--bogus", "sh",
         "0.5", "=", "-h", "--n", "--ne", "--c", "--na=3", "--he", "--e", "-x=1", "--rm=x", "--=x"]


def _setups():
    for verb in VERBS:
        module = importlib.import_module(f"corral.oci.commands.{verb}")
        rec = quickargs.Recorder()
        module.configure(rec)
        yield verb, rec.calls, (), rec.replay(argparse.ArgumentParser(prog=verb))
    rec = quickargs.Recorder()
    run_cmd.configure(rec)
    p = main.parser("run", "")
    run_cmd.configure(p)
    main.add_global_flags(p)
    yield "corral run", rec.calls, main._quick_globals(rec.calls), p


@pytest.mark.parametrize("verb", list(VERBS) + ["corral run"])
def test_random_lines(verb):
    calls, suppressed, parser = next(s[1:] for s in _setups() if s[0] == verb)
    rng = random.Random(verb)
    names = [n for ns, _ in calls if ns[0].startswith("-") for n in ns] + [n for ns, _, _ in suppressed for n in ns]
    names = names or ["--bogus"]
    taken = 0
    for _ in range(1500):
        argv = []
        for _ in range(rng.randint(0, 7)):
            if rng.random() < 0.45:
                name = rng.choice(names)
                argv.append(name + "=" + rng.choice(WORDS) if name.startswith("--") and rng.random() < 0.2 else name)
            else:
                argv.append(rng.choice(WORDS))
        quick = quickargs.parse(calls, argv, suppressed)
        if quick is not None:
            taken += 1
            assert vars(quick) == _result(parser, argv), argv
    assert taken > 20  # the lines it takes are checked


def test_imports_nothing():
    """It is on corral-runc's hot path and the CLI's: no argparse, re, gettext..."""
    code = ("import sys; before = set(sys.modules); import corral.oci.quickargs; "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['corral', 'corral.oci', 'corral.oci.quickargs']"
