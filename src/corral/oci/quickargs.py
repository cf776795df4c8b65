"""A small command-line parser for the common case, so the lifecycle commands skip argparse.

argparse (with the re, gettext and locale modules it pulls in) costs several ms per call, and
containerd's shim calls corral-runc create/start/kill/delete for every container. The command
modules still describe their options with argparse's add_argument(); Recorder keeps those calls
and parse() handles plain command lines with them. Anything else (help, an unknown or malformed
option, a missing argument, a bad value, "--") returns None, and the caller replays the same
calls into argparse, which parses or reports exactly as before. A REMAINDER positional after
plain ones (exec's ID COMMAND...) takes everything after them, as argparse does.
"""

REMAINDER = "..."  # argparse.REMAINDER's value


class Namespace:
    def __init__(self, **values):
        self.__dict__.update(values)


class Recorder:
    """Stands in for an ArgumentParser while a command module's configure() runs."""

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


def parse(calls, argv):
    """The parsed Namespace, or None when argparse should handle this command line."""
    flags = {}
    positionals = []
    values = {}
    for names, options in calls:
        dest = _dest(names, options)
        action = options.get("action", "store")
        if action not in ("store", "store_true", "append"):
            return None
        if names[0].startswith("-"):
            for n in names:
                flags[n] = (dest, action, options)
            default = options.get("default", False if action == "store_true" else None)
            values[dest] = list(default) if action == "append" and default is not None else default
        else:
            positionals.append((dest, options))

    # a REMAINDER after plain positionals (exec's `ID COMMAND...`): once those are filled,
    # everything left is the remainder, as argparse takes it
    plain = [p for p in positionals if p[1].get("nargs") is None]
    remainder = None
    if (plain and positionals[-1][1].get("nargs") == REMAINDER
            and positionals[:-1] == plain):
        remainder = positionals.pop()[0]
    taken = []
    i = 0
    while i < len(argv):
        if remainder is not None and len(taken) == len(plain):
            rest = argv[i:]
            if rest[0] == "--":
                return None  # argparse drops a leading "--" here: its job
            values[remainder] = rest
            break
        arg = argv[i]
        i += 1
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            if name not in flags or (eq and not name.startswith("--")):
                return None  # help, --, short clusters, unknown options: argparse's job
            dest, action, options = flags[name]
            if action == "store_true":
                if eq:
                    return None
                values[dest] = True
                continue
            if eq:
                text = inline
            elif i < len(argv) and not argv[i].startswith("-"):
                text = argv[i]
                i += 1
            else:
                return None
            value = _convert(text, options)
            if value is None:
                return None
            if action == "append":
                values[dest] = (values[dest] or []) + [value]
            else:
                values[dest] = value
        else:
            taken.append(arg)

    for dest, options in positionals:
        nargs = options.get("nargs")
        if nargs == REMAINDER:
            if taken:
                return None
            values[dest] = []
        elif taken:
            value = _convert(taken.pop(0), options)
            if value is None:
                return None
            values[dest] = value
        elif nargs == "?":
            values[dest] = options.get("default")
        else:
            return None
    if taken:
        return None
    if remainder is not None and remainder not in values:
        values[remainder] = []
    return Namespace(**values)


def _convert(text, options):
    kind = options.get("type")
    if kind is not None:
        try:
            text = kind(text)
        except (TypeError, ValueError):
            return None
    choices = options.get("choices")
    if choices is not None and text not in choices:
        return None
    return text
