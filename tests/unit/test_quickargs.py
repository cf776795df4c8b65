"""quickargs parses plain command lines exactly as argparse does, and hands the rest to it."""

import argparse
import importlib

import pytest

from corral.oci import quickargs
from corral.oci.cli import VERBS, _quick_globals

LINES = {
    "create": [["--bundle", "/b", "--pid-file", "/p", "id1"], ["id1", "-b", "/b"], ["--bundle=/b", "id1"],
               ["--preserve-fds", "2", "--no-pivot", "--console-socket", "/s", "id1"]],
    "run": [["id1"], ["-d", "-b", "/b", "id1"], ["--keep", "id1", "--no-new-keyring"]],
    "start": [["id1"]],
    "kill": [["id1"], ["id1", "KILL"], ["--all", "id1", "9"], ["-a", "id1", "TERM"]],
    "delete": [["id1"], ["-f", "id1"], ["--force", "id1"]],
    "exec": [["--process", "/p.json", "--detach", "--pid-file", "/p", "id1"],
             ["-e", "A=1", "--env", "B=2", "-g", "5", "-g", "6", "id1"],
             ["id1", "sh", "-c", "true"], ["-t", "id1", "sh", "--", "-x"], ["id1", "--env", "A=1", "sh"],
             ["--tty", "--user", "0:0", "id1", "-"]],
    "state": [["id1"]],
    "list": [[], ["--format", "json"], ["-q"]],
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
