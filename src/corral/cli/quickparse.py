"""Plain command lines parsed without argparse, for the commands on a latency path (`run`).

argparse costs `corral run` several ms: its import with gettext, and at the first
add_argument() its help formatter imports shutil (bz2, lzma, fnmatch) and locale. A command's
configure(p) still describes its flags with argparse's add_argument(); Recorder keeps the calls
and parse() handles the common command lines with them, giving what argparse gives. Anything
else (help, an unknown or malformed flag, short flags run together, "--", a value that starts
with "-", type or choices to check, a missing positional) returns None and the caller replays
the same calls into argparse, which parses or reports exactly as it always did
(tests/unit/test_cli_quickparse.py compares the two).
"""

REMAINDER = "..."  # argparse.REMAINDER


class Options:
    """What argparse.Namespace is, for the parsed flags."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return f"Options({self.__dict__!r})"


class Recorder:
    """Stands in for an ArgumentParser while a command module's configure() runs; any other
    use of the parser than add_argument() means the command is not for the quick path."""

    def __init__(self):
        self.calls = []

    def add_argument(self, *names, **options):
        self.calls.append((names, options))

    def replay(self, parser):
        for names, options in self.calls:
            parser.add_argument(*names, **options)
        return parser


def _dest(names, options):
    if "dest" in options:
        return options["dest"]
    longs = [n for n in names if n.startswith("--")]
    return (longs[0] if longs else names[0]).lstrip("-").replace("-", "_")


def parse(calls, argv, suppressed=()):
    """The parsed Options, or None when argparse should parse `argv`. suppressed: flags as
    (names, dest, action) that appear in the result only when given (argparse.SUPPRESS)."""
    flags, values, positionals = {}, {}, []
    for names, options in calls:
        if set(options) - {"action", "default", "help", "metavar", "dest", "nargs"}:
            return None  # type=, choices=, required=...: argparse's job
        dest = _dest(names, options)
        action = options.get("action", "store")
        if action not in ("store", "store_true", "append") or ("nargs" in options and names[0].startswith("-")):
            return None
        if names[0].startswith("-"):
            for n in names:
                flags[n] = (dest, action)
            default = options.get("default", False if action == "store_true" else None)
            values[dest] = list(default) if isinstance(default, list) else default
        else:
            positionals.append((dest, options.get("nargs")))
    for names, dest, action in suppressed:
        for n in names:
            flags.setdefault(n, (dest, action))

    taken = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if taken and positionals and positionals[-1][1] == REMAINDER and len(taken) >= len(positionals) - 1:
            taken.append(arg)  # after the positionals before a REMAINDER: everything is its
            continue
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            if name not in flags or (eq and not name.startswith("--")):
                return None  # help, "--", short flags together, unknown flags
            dest, action = flags[name]
            if action == "store_true":
                if eq:
                    return None
                values[dest] = True
                continue
            if eq:
                value = inline
            elif i < len(argv) and not argv[i].startswith("-"):
                value = argv[i]
                i += 1
            else:
                return None
            if action == "append":
                values[dest] = (values.get(dest) or []) + [value]
            else:
                values[dest] = value
        else:
            taken.append(arg)

    for dest, nargs in positionals:
        if nargs == REMAINDER:
            values[dest], taken = taken, []
        elif nargs is None and taken:
            values[dest] = taken.pop(0)
        else:
            return None
    if taken:
        return None
    return Options(**values)
