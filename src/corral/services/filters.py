"""containerd's filter syntax for List calls.

    filter   := selector ("," selector)*        every selector must match (AND)
    selector := fieldpath [op value]            op: == != ~= (regexp); no op: field present
    fieldpath:= field ("." field)*              e.g. labels."io.x/y", name, target.digest
    value    := "quoted" | /regexp/ | bare

A List call's filters are ORed. `parse(filters)` returns a predicate over a getter
get(path_tuple) -> str or None."""

import re

from .errors import InvalidArgument

_BARE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_BARE_VALUE = re.compile(r"[^\s,]+")


class _Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def error(self, what):
        raise InvalidArgument(f"invalid filter {self.s!r} at offset {self.i}: {what}")

    def skip_ws(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self, tok):
        return self.s.startswith(tok, self.i)

    def quoted(self):
        q = self.s[self.i]
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                nxt = self.s[self.i + 1]
                # in /regexp/ keep escapes for the regexp engine, except the delimiter
                out.append(nxt if (q == '"' or nxt == "/") else c + nxt)
                self.i += 2
                continue
            if c == q:
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        self.error("unterminated quote")

    def field(self):
        self.skip_ws()
        if self.i < len(self.s) and self.s[self.i] in "\"/":
            return self.quoted()
        m = _BARE_FIELD.match(self.s, self.i)
        if not m:
            self.error("expected a field name")
        self.i = m.end()
        return m.group()

    def selector(self):
        path = [self.field()]
        while self.peek("."):
            self.i += 1
            path.append(self.field())
        self.skip_ws()
        for op in ("==", "!=", "~="):
            if self.peek(op):
                self.i += 2
                self.skip_ws()
                if self.i < len(self.s) and self.s[self.i] in "\"/":
                    value = self.quoted()
                else:
                    m = _BARE_VALUE.match(self.s, self.i)
                    if not m:
                        self.error("expected a value")
                    self.i = m.end()
                    value = m.group()
                if op == "~=":
                    try:
                        value = re.compile(value)
                    except re.error as e:
                        self.error(f"bad regexp: {e}")
                return tuple(path), op, value
        return tuple(path), None, None

    def parse(self):
        sels = [self.selector()]
        self.skip_ws()
        while self.peek(","):
            self.i += 1
            sels.append(self.selector())
            self.skip_ws()
        if self.i != len(self.s):
            self.error("unexpected text")
        return sels


def _match(sel, get):
    path, op, value = sel
    got = get(path)
    if op is None:
        return got is not None and got != ""
    if op == "==":
        return got is not None and got == value
    if op == "!=":
        return got is None or got != value
    return got is not None and value.search(got) is not None


def parse(filters):
    """A predicate for the ORed list of filter strings (empty list: everything matches)."""
    filters = [f for f in (filters or []) if f.strip()]
    if not filters:
        return lambda get: True
    parsed = [_Parser(f).parse() for f in filters]
    return lambda get: any(all(_match(s, get) for s in sels) for sels in parsed)


def getter(fields, labels=None):
    """A getter over a flat dict of top-level fields plus a labels dict (labels.KEY)."""
    def get(path):
        if len(path) == 2 and path[0] == "labels":
            return (labels or {}).get(path[1])
        if len(path) == 1:
            v = fields.get(path[0])
            return None if v is None else str(v)
        return fields.get(".".join(path))
    return get
