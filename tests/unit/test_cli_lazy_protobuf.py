"""corral.cli.main._defer_protobuf_internals: in the command's process protobuf's pure-Python
implementation modules are not executed for the messages `corral run` uses, and still work
when something does use them."""

import subprocess
import sys

CODE = r"""
import sys
from corral.cli import main
main._defer_protobuf_internals()
from corral.api.containerd.services.containers.v1 import containers_pb2 as pb
from corral.api.containerd.types import task_pb2
from google.protobuf import any_pb2
c = pb.Container(id="x", labels={"a": "b"}, spec=any_pb2.Any(type_url="t", value=b"{}"))
c.runtime.name = "r"
c.created_at.seconds = 5
data = pb.CreateContainerRequest(container=c).SerializeToString()
back = pb.CreateContainerRequest.FromString(data).container
assert (back.id, dict(back.labels), back.runtime.name, back.spec.value, back.created_at.seconds) == \
    ("x", {"a": "b"}, "r", b"{}", 5)
assert task_pb2.Status.Name(task_pb2.STOPPED) == "STOPPED"
lazy = type(sys.modules["google.protobuf.internal.python_message"]).__name__
assert lazy == "_LazyModule", lazy
from google.protobuf import text_format
assert text_format.MessageToString(pb.Container(id="y")).strip() == 'id: "y"'
print("ok")
"""


def test_lazy_protobuf_internals():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
