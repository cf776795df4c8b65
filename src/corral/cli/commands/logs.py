"""`corral logs [-f] [--tail N] [--since T] [-t] CONTAINER`: the container's json-file log;
stdout lines to stdout, stderr lines to stderr. -f follows (across rotation) until the
container's task exits."""

import sys
import time


def configure(p):
    p.add_argument("-f", "--follow", action="store_true", help="follow the log until the container stops")
    p.add_argument("-n", "--tail", default="all", help="only the last N lines (default all)")
    p.add_argument("--since", help="only lines since a time (RFC3339, Unix seconds) or a duration ago (10m)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    p.add_argument("container")


def _tail(text):
    from corral.cli.errors import CLIError
    if text == "all":
        return None
    if not text.lstrip("-").isdigit():
        raise CLIError(f"invalid --tail {text!r}: want a number or all")
    n = int(text)
    return None if n < 0 else n


def _stopper(c, every=0.5):
    """True once the container's task is no longer running (read at most every `every` s)."""
    state = {"at": 0.0, "stopped": False}

    def stopped():
        now = time.monotonic()
        if not state["stopped"] and now - state["at"] >= every:
            state["at"] = now
            c.task(refresh=True)
            state["stopped"] = c.status not in ("running", "paused")
        return state["stopped"]
    return stopped


def run(opts, env):
    from corral import logs
    from corral.cli.commands._common import get
    from corral.cli.errors import CLIError
    tail = _tail(opts.tail)
    try:
        since = logs.parse_since(opts.since) if opts.since else None
    except logs.LogsError as e:
        raise CLIError(str(e)) from None
    c = get(env, opts.container)
    path = c.log_path
    if opts.follow:
        entries = logs.follow(path, tail=tail, since=since, stop=_stopper(c))
    else:
        entries = logs.read(path, tail=tail, since=since)
    logs.write(entries, sys.stdout.buffer, sys.stderr.buffer, timestamps=opts.timestamps)
    return 0
