"""jsonfast writes and reads what the json module does."""

import json

import pytest

from corral.oci import jsonfast

VALUES = [
    {"ociVersion": "1.0.2", "process": {"args": ["sh", "-c", "echo é \u2028"], "env": [], "terminal": False},
     "linux": {"resources": {"memory": {"limit": 10 ** 12}, "cpu": {"shares": 1.5}}, "x": None}},
    [], {}, "text", 0, -1.25, None, True, [1, [2, [3, {}]]], {1: "int key", None: "null key"},
]


@pytest.mark.parametrize("value", VALUES)
def test_same_text_as_json(value):
    assert jsonfast.dumps(value) == json.dumps(value)
    assert jsonfast.dumps(value, indent=2) == json.dumps(value, indent=2)
    text = json.dumps(value)
    assert jsonfast.loads(text) == json.loads(text)
    assert jsonfast.loads(text.encode()) == json.loads(text.encode())


def test_whitespace_bom_and_errors():
    assert jsonfast.loads(' \n {"a": [1, 2]} \t') == {"a": [1, 2]}
    assert jsonfast.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    for bad in ("", "{", "{} x", "[1,]", b"\xff"):
        with pytest.raises(ValueError):
            jsonfast.loads(bad)
    with pytest.raises(TypeError):
        jsonfast.dumps({"a": object()})
