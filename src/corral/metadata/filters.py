"""containerd's list filters, parsed into a predicate over our records.

Syntax (containerd's filters package): each filter string is a comma-separated list of
conditions that must all hold; the strings of a list are alternatives (any one may hold).

    condition := fieldpath [ ("==" | "!=" | "~=") value ]
    fieldpath := component ("." component)*   component: word or "quoted string"
    value     := word | "quoted string" | /regexp/

A bare fieldpath holds when the field is present and not empty; `~=` is a regexp search.
Field names match our dataclass attributes ignoring case and underscores
(`target.mediatype`, `snapshotkey`); `labels.<key>` and `annotations.<key>` look keys up.
"""

import dataclasses
import enum
import re

from corral.metadata.errors import InvalidArgument

_OPS = ("==", "!=", "~=")
_WORD = re.compile(r"[A-Za-z0-9_\-+@:/*]+")


class _Scanner:
    def __init__(self, text):
        self.text, self.pos = text, 0

    def error(self, what):
        return InvalidArgument(f"invalid filter {self.text!r} at {self.pos}: {what}")

    def skip_ws(self):
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, s):
        self.skip_ws()
        return self.text.startswith(s, self.pos)

    def quoted(self, q):
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append(nxt if q == '"' or nxt == q else c + nxt)
                self.pos += 2
                continue
            if c == q:
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise self.error(f"unterminated {q}")

    def component(self):
        self.skip_ws()
        if self.peek('"'):
            return self.quoted('"')
        m = _WORD.match(self.text, self.pos)
        if not m:
            raise self.error("expected a field name")
        self.pos = m.end()
        return m.group(0)

    def value(self):
        self.skip_ws()
        if self.peek('"'):
            return self.quoted('"')
        if self.peek("/"):
            return self.quoted("/")
        end = self.text.find(",", self.pos)
        end = len(self.text) if end < 0 else end
        v = self.text[self.pos:end].strip()
        if not v:
            raise self.error("expected a value")
        self.pos = end
        return v


def _parse_one(text):
    sc = _Scanner(text)
    conds = []
    while True:
        path = [sc.component()]
        while sc.peek(".") and not sc.peek(".."):
            sc.pos += 1
            path.append(sc.component())
        op = next((o for o in _OPS if sc.peek(o)), None)
        value = None
        if op:
            sc.pos += 2
            value = sc.value()
            if op == "~=":
                try:
                    value = re.compile(value)
                except re.error as e:
                    raise sc.error(f"bad regexp: {e}") from None
        conds.append((path, op, value))
        sc.skip_ws()
        if sc.pos >= len(text):
            return conds
        if not sc.peek(","):
            raise sc.error("expected ',' or an operator")
        sc.pos += 1


def _norm(name):
    return name.replace("_", "").lower()


def lookup(obj, path):
    """The string value at `path` in a record, or None when absent."""
    cur = obj
    for i, comp in enumerate(path):
        if cur is None:
            return None
        if isinstance(cur, dict):
            cur = cur.get(comp)
            continue
        if dataclasses.is_dataclass(cur):
            fields = {_norm(f.name): f.name for f in dataclasses.fields(cur)}
            name = fields.get(_norm(comp))
            if name is None:
                return None
            cur = getattr(cur, name)
            continue
        return None
    if cur is None:
        return None
    if isinstance(cur, enum.Enum):
        return cur.name.lower()
    if dataclasses.is_dataclass(cur) and hasattr(cur, "name"):
        return str(cur.name)  # e.g. a container's runtime
    if isinstance(cur, (dict, list)):
        return None
    return str(cur)


def parse(filters):
    """A predicate for a list of filter strings (None or [] accepts everything)."""
    alts = [_parse_one(f) for f in (filters or []) if f.strip()]
    if not alts:
        return None

    def match_all(obj, conds):
        for path, op, value in conds:
            v = lookup(obj, path)
            if op is None:
                ok = bool(v)
            elif op == "==":
                ok = v == value
            elif op == "!=":
                ok = v != value
            else:
                ok = v is not None and value.search(v) is not None
            if not ok:
                return False
        return True

    return lambda obj: any(match_all(obj, c) for c in alts)
