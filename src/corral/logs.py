"""Reading docker json-file logs (what the shim's jsonfile:// writer makes): the rotated files
oldest first, --tail, --since, and following the current file across rotation and truncation
until the caller says the container is done.

    for entry in follow(path, tail=10, stop=lambda: task_exited()):
        print(entry.log, end="")
"""

import json
import os
import re
import time
from datetime import datetime, timezone
from typing import NamedTuple


class Entry(NamedTuple):
    time: str     # RFC3339 with nanoseconds, UTC
    stream: str   # "stdout" or "stderr"
    log: str      # the text, with its newline unless a partial (split) line


class LogsError(ValueError):
    pass


# patterns, compiled (and cached by re) when first used: `corral run` follows logs but parses no times
_RFC3339 = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?$"
_DURATION = r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s))+$"
_DURATION_PART = r"(\d+(?:\.\d+)?)(h|ms|m|s)"


def time_ns(text):
    """Nanoseconds since the epoch from an RFC3339 time (the fraction may have up to 9 digits;
    no zone: local time, as docker reads --since)."""
    m = re.match(_RFC3339, text)
    if not m:
        raise LogsError(f"invalid time {text!r}: want RFC3339 like 2026-01-02T15:04:05Z")
    base, frac, zone = m.groups()
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    if zone is None:
        dt = dt.astimezone()  # local time
    elif zone == "Z":
        dt = dt.replace(tzinfo=timezone.utc)
    else:
        sign = 1 if zone[0] == "+" else -1
        from datetime import timedelta
        dt = dt.replace(tzinfo=timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))))
    return int(dt.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def parse_since(text, now_ns=None):
    """--since: RFC3339, a date (YYYY-MM-DD), a Unix timestamp (seconds[.fraction]) or a
    duration before now like 10m, 1h30m, 45s. Returns nanoseconds since the epoch."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    t = text.strip()
    if re.match(_DURATION, t):
        total = sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in re.findall(_DURATION_PART, t))
        return now_ns - int(total * 1_000_000_000)
    if re.fullmatch(r"\d+(\.\d{1,9})?", t):
        sec, _, frac = t.partition(".")
        return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0") if frac else 0)
    if re.fullmatch(r"\d{4}-\d\d-\d\d", t):
        t += "T00:00:00Z"
    try:
        return time_ns(t)
    except LogsError:
        raise LogsError(f"invalid --since {text!r}: want RFC3339 (2026-01-02T15:04:05Z), "
                        "a Unix timestamp or a duration like 10m") from None


def log_files(path):
    """The log file and its rotated siblings, oldest first (path.N ... path.1, path)."""
    rotated = []
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        suffix = name[len(base) + 1:]
        if name.startswith(base + ".") and suffix.isdigit():
            rotated.append((int(suffix), os.path.join(directory, name)))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if base in names:
        files.append(path)
    return files


def _rotated_between(path, old_ino, new_ino):
    """The rotated files newer than the one with inode old_ino (all of them if it is gone)
    and older than the one with new_ino (all of them if that is still the current file),
    oldest first."""
    rotated = [p for p in log_files(path) if p != path]
    inos = []
    for p in rotated:
        try:
            inos.append(os.stat(p).st_ino)
        except FileNotFoundError:
            inos.append(None)
    start = inos.index(old_ino) + 1 if old_ino in inos else 0
    end = inos.index(new_ino) if new_ino in inos else len(rotated)
    return rotated[start:end]


def _parse_line(line):
    try:
        d = json.loads(line)
        return Entry(d.get("time", ""), d.get("stream", "stdout"), d.get("log", ""))
    except (ValueError, AttributeError):
        return None  # a torn or foreign line: skip it


class _Source:
    """One open log file read line by line, keeping a partly written last line for later."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")
        self.ino = os.fstat(self.f.fileno()).st_ino
        self.rest = b""

    def read(self):
        data = self.f.read()
        if not data:
            return []
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        return [e for e in (_parse_line(x) for x in lines if x) if e is not None]

    def truncated(self):
        return os.fstat(self.f.fileno()).st_size < self.f.tell()

    def close(self):
        self.f.close()


def _wanted(entry, since_ns):
    if since_ns is None:
        return True
    try:
        return time_ns(entry.time) >= since_ns
    except LogsError:
        return True


def _history(path, tail, since_ns):
    """The entries in the rotated files and the current one, and the current file left open at
    its end (None if it does not exist yet)."""
    if tail is not None and tail >= 0:
        return _history_tail(path, tail, since_ns)
    entries = []
    current = None
    for p in log_files(path):
        try:
            src = _Source(p)
        except FileNotFoundError:
            continue  # rotated away between listing and opening
        if p == path:
            current = src
            found = src.read()
        else:
            found = src.read()
            src.close()
        entries.extend(e for e in found if _wanted(e, since_ns))
    return entries, current


def _history_tail(path, n, since_ns):
    """The last n entries, read backwards from the end of the newest file, so a short tail of a
    long log costs little. The current file is opened first and read up to the size it had
    then; following continues from there."""
    try:
        current = _Source(path)
    except FileNotFoundError:
        current = None
    newest_first = []
    done = n == 0
    if current is not None:
        fd = current.f.fileno()
        end = os.fstat(fd).st_size
        # a torn last line (being written) is left for the follower
        last_nl = _last_newline(fd, end)
        found, done = _tail_of(fd, last_nl + 1, n, since_ns)
        newest_first += found
        current.f.seek(last_nl + 1)
    for p in reversed([p for p in log_files(path) if p != path]):
        if done or len(newest_first) >= n:
            break
        try:
            with open(p, "rb") as f:
                found, done = _tail_of(f.fileno(), os.fstat(f.fileno()).st_size, n - len(newest_first), since_ns)
        except FileNotFoundError:
            continue
        newest_first += found
    return newest_first[::-1], current


def _last_newline(fd, end, block=65536):
    pos = end
    while pos > 0:
        size = min(block, pos)
        pos -= size
        i = os.pread(fd, size, pos).rfind(b"\n")
        if i >= 0:
            return pos + i
    return -1


def _tail_of(fd, end, n, since_ns, block=65536):
    """Up to n wanted entries before offset end (a line boundary), newest first; and whether an
    entry older than since was met (so older files need not be read)."""
    out = []
    pos, rest = end, b""
    while pos > 0 and len(out) < n:
        size = min(block, pos)
        pos -= size
        lines = (os.pread(fd, size, pos) + rest).split(b"\n")
        rest = lines.pop(0) if pos > 0 else b""  # may be the end of a line that starts earlier
        for line in reversed(lines):
            e = _parse_line(line) if line else None
            if e is None:
                continue
            if not _wanted(e, since_ns):
                return out, True
            out.append(e)
            if len(out) == n:
                break
    return out, False


def read(path, *, tail=None, since=None):
    """The entries logged so far (tail: only the last N; since: ns since the epoch)."""
    entries, current = _history(path, tail, since)
    if current is not None:
        current.close()
    return entries


def follow(path, *, tail=None, since=None, stop=None, interval=0.1, sleep=None):
    """The entries so far, then new ones as they are written, across rotation (the file replaced:
    another inode) and truncation, until stop() returns True; then what is left is read and the
    iteration ends. stop=None follows forever. sleep(interval) waits between looks (default
    time.sleep; e.g. an Event's wait, so that the stop is seen at once, not after the interval)."""
    sleep = sleep or time.sleep
    entries, src = _history(path, tail, since)
    yield from entries
    try:
        while True:
            done = stop is not None and stop()
            # done: one last pass so output written just before the exit is not lost
            if src is None:
                try:
                    src = _Source(path)
                except FileNotFoundError:
                    if done:
                        return
                    sleep(interval)
                    continue
            got = [e for e in src.read() if _wanted(e, since)]
            yield from got
            try:
                replaced = os.stat(path).st_ino != src.ino
            except FileNotFoundError:
                replaced = False  # between the rename and the new file: keep the old one for now
            if replaced:
                yield from (e for e in src.read() if _wanted(e, since))
                try:
                    new = _Source(path)
                except FileNotFoundError:
                    continue  # mid-rotation: look again
                src.close()
                # files rotated more than once since our last look sit between the two
                for p in _rotated_between(path, src.ino, new.ino):
                    try:
                        between = _Source(p)
                    except FileNotFoundError:
                        continue
                    yield from (e for e in between.read() if _wanted(e, since))
                    between.close()
                src = new
                continue
            if src.truncated():
                src.f.seek(0)
                src.rest = b""
                continue
            if done:
                return
            if not got:
                sleep(interval)
    finally:
        if src is not None:
            src.close()


def write(entries, out, err, timestamps=False):
    """Print entries: stdout's to out, stderr's to err (binary files); with timestamps, each
    line starts with its time (partial pieces of a split line continue it)."""
    at_line_start = {"stdout": True, "stderr": True}
    for e in entries:
        f = err if e.stream == "stderr" else out
        text = e.log.encode("utf-8", "surrogateescape")
        if timestamps and at_line_start.get(e.stream, True):
            text = e.time.encode() + b" " + text
        at_line_start[e.stream] = e.log.endswith("\n")
        f.write(text)
        f.flush()
