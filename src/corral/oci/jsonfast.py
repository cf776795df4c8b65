"""json.loads and json.dumps through the C accelerator module alone.

`import json` loads json.decoder, which compiles regular expressions: the re module and enum
with it cost about 10 ms, a quarter of a whole `corral-runc run`. The C scanner and encoder in
_json do the work either way. The results are the same as json's: dumps() writes what
json.dumps(obj) writes, loads() returns what json.loads() returns; on bad input loads() lets
json itself raise its usual error.
"""

import _json

_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_WHITESPACE = " \t\n\r"


class _ScanContext:
    """The attributes _json.make_scanner reads (json.JSONDecoder's defaults)."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _json.make_scanner(_ScanContext())


def _not_serializable(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def loads(text):
    if isinstance(text, (bytes, bytearray)):
        if text[:3] == b"\xef\xbb\xbf" or (text[:1] == b"\x00" or text[1:2] == b"\x00"):
            return _slow_loads(text)  # a BOM or UTF-16/32: json's encoding detection
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return _slow_loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(text, start)
    except Exception:
        # StopIteration, or the scanner's own error (which, with json not yet imported, can
        # surface as a SystemError): json reports the problem in its usual words
        return _slow_loads(text)
    if text[end:].strip(_WHITESPACE):
        return _slow_loads(text)
    return obj


def _slow_loads(text):
    import json
    return json.loads(text)


def dumps(obj, indent=None, sort_keys=False, separators=None):
    """json.dumps(obj) with these arguments (indent only without the other two)."""
    if indent is not None:
        return _pretty(obj, " " * indent, "\n")
    item_sep, key_sep = separators or (", ", ": ")
    markers = {}
    encode = _json.make_encoder(markers, _not_serializable, _json.encode_basestring_ascii, None,
                                key_sep, item_sep, sort_keys, False, True)
    return "".join(encode(obj, 0))


def _pretty(obj, step, newline):
    """json.dumps(obj, indent=len(step)) (the C encoder has no indent)."""
    inner = newline + step
    if isinstance(obj, dict) and obj:
        items = (f"{dumps(k if isinstance(k, str) else dumps(k))}: {_pretty(v, step, inner)}"
                 for k, v in obj.items())
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if isinstance(obj, (list, tuple)) and obj:
        return "[" + inner + ("," + inner).join(_pretty(v, step, inner) for v in obj) + newline + "]"
    return dumps(obj)
