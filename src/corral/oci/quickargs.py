"""A small command-line parser for the common case, so the commands on a latency path skip
argparse: corral-runc's lifecycle commands (containerd's shim calls create/start/kill/delete
for every container) and the corral CLI's `run`.

argparse costs several ms per call: its import with re, gettext and locale, and at the first
add_argument() its help formatter imports shutil (bz2, lzma, fnmatch). The commands still
describe their options with argparse's add_argument(); Recorder keeps those calls and parse()
handles plain command lines with them, giving what argparse gives. Anything else (help, an
unknown or malformed option, short options run together, "--", a value that starts with "-",
a missing argument, a bad value, an add_argument() this module does not know) returns None,
and the caller replays the same calls into argparse, which parses or reports exactly as before
(tests/unit/test_quickargs.py compares the two). A REMAINDER positional after plain ones
(exec's ID COMMAND..., run's IMAGE COMMAND...) takes everything after them, as argparse does.

This module imports nothing: corral-runc preloads it from its bytecode (corral.oci.cli) and
the shim's zygote imports it (corral.shim.inproc); the corral CLI imports it too, and
corral.oci's __init__ is empty.
"""

REMAINDER = "..."  # argparse.REMAINDER's value

_KEYS = frozenset(("action", "default", "help", "metavar", "dest", "nargs", "type", "choices"))
_FLAG_KEYS = frozenset(("action", "default", "help", "dest"))  # what store_true takes
_TYPES = (int, float, str)  # conversions with no side effects, safe to run before argparse


class Namespace:
    """What argparse.Namespace is, for the parsed options."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


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


def parse(calls, argv, suppressed=()):
    """The parsed Namespace, or None when argparse should handle `argv`.

    calls: the add_argument() calls, as Recorder keeps them. suppressed: more options as
    (names, dest, action) that appear in the result only when given (argparse.SUPPRESS);
    a name that `calls` uses stays theirs."""
    flags = {}        # option string -> (dest, action, add_argument's options)
    values = {}
    positionals = []  # (dest, nargs, options)
    for names, options in calls:
        for key in options:
            if key not in _KEYS:
                return None  # required=, const=...: argparse's job
        kind = options.get("type")
        if kind is not None and (kind not in _TYPES or isinstance(options.get("default"), str)):
            return None  # argparse would also convert a string default
        action = options.get("action", "store")
        if names and names[0].startswith("-"):
            if action == "store_true":
                for key in options:
                    if key not in _FLAG_KEYS:
                        return None
                default = options.get("default", False)
            elif action in ("store", "append") and "nargs" not in options:
                default = options.get("default")
                if action == "append" and default is not None:
                    if type(default) is not list:
                        return None
                    default = default[:]
            else:
                return None
            dest = options.get("dest")
            if dest is None:
                longs = [n for n in names if n.startswith("--")]
                dest = (longs[0] if longs else names[0]).lstrip("-").replace("-", "_")
            if dest in values:
                return None  # the first default would stand
            for n in names:
                if n in flags or not n.startswith("-"):
                    return None
                flags[n] = (dest, action, options)
            values[dest] = default
        else:
            nargs = options.get("nargs")
            if (len(names) != 1 or "dest" in options or action != "store"
                    or nargs not in (None, "?", REMAINDER)
                    or (nargs == "?" and options.get("choices") is not None)):
                return None  # argparse would check a '?' positional's default against choices
            positionals.append((names[0], nargs, options))
    for names, dest, action in suppressed:
        if action not in ("store", "store_true", "append"):
            return None
        for n in names:
            flags.setdefault(n, (dest, action, {}))

    # a REMAINDER after plain positionals (exec's `ID COMMAND...`): once those are filled,
    # everything left is the remainder, as argparse takes it
    remainder = None
    optional = False  # a '?' positional
    last = len(positionals) - 1
    for at, (dest, nargs, _) in enumerate(positionals):
        if dest in values:
            return None
        if nargs == REMAINDER:
            if at != last:
                return None
            remainder = dest
        elif nargs == "?":
            optional = True
    if remainder is not None:
        positionals.pop()
        if not positionals or optional:
            return None

    taken = []
    split = False  # an option came after a positional
    i = 0
    while i < len(argv):
        if remainder is not None and len(taken) == len(positionals):
            rest = argv[i:]
            if rest[0] == "--" or _ambiguous(rest, flags):
                return None  # argparse drops a leading "--" here, or stops at the word: its job
            values[remainder] = rest
            break
        arg = argv[i]
        i += 1
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            if name not in flags or (eq and not name.startswith("--")):
                return None  # help, "--", short options together, unknown options
            dest, action, options = flags[name]
            if taken:
                split = True
            if action == "store_true":
                if eq:
                    return None
                values[dest] = True
                continue
            if eq:
                if inline == "--":
                    return None  # argparse drops it: the value would be []
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
                values[dest] = (values.get(dest) or []) + [value]
            else:
                values[dest] = value
        else:
            if split and optional:
                return None  # argparse gives a '?' positional its default when an option
                # ends the run of positionals: what comes after is an error or another's
            taken.append(arg)

    for dest, nargs, options in positionals:
        if taken:
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


def _ambiguous(args, flags):
    """True if argparse would stop at one of `args` (a REMAINDER's) as an ambiguous
    abbreviation of its long options ("--n" for --name and --network): it looks at each
    argument before the first "--", whatever takes it later."""
    for arg in args:
        if arg == "--":
            return False
        if arg.startswith("--") and arg not in flags:
            prefix = arg.partition("=")[0]
            if prefix in flags and prefix != arg:
                continue  # --name=VALUE
            matches = [n for n in flags if n.startswith(prefix)]
            if "--help".startswith(prefix) and "--help" not in flags:
                matches.append("--help")  # argparse's own
            if len(matches) > 1:
                return True
    return False


def _convert(text, options):
    """`text` as argparse stores it (type, then choices), or None when argparse should judge."""
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
