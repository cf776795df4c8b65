"""containerd-syntax list filters over our records."""

import pytest

from corral.metadata.errors import InvalidArgument
from corral.metadata.filters import parse
from corral.metadata.types import Container, Descriptor, Image, Runtime
from corral.snapshots.base import Info, Kind

IMG = Image("docker.io/library/busybox:latest",
            Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "a" * 64, 10),
            {"foo": "bar", "io.x/y": "z"})
CT = Container(id="c1", runtime=Runtime("io.containerd.runc.v2"), image="busybox",
               snapshotter="overlayfs", snapshot_key="c1-key", labels={"env": "prod"})


@pytest.mark.parametrize("filters,img,ct", [
    (None, True, True),
    (["labels.foo==bar"], True, False),
    (['labels."io.x/y"==z'], True, False),
    (["labels.foo!=bar"], False, True),
    (["labels.foo"], True, False),
    (["name~=busybox", "id==c1"], True, True),
    (["name~=/^docker\\.io/,labels.foo==bar"], True, False),
    (["name~=^docker,labels.foo==nope"], False, False),
    (['target.mediatype=="application/vnd.oci.image.index.v1+json"'], True, False),
    (["runtime.name==io.containerd.runc.v2,snapshotkey==c1-key"], False, True),
    (["runtime==io.containerd.runc.v2"], False, True),
    (["labels.env==prod", "labels.foo==bar"], True, True),
])
def test_filters_match(filters, img, ct):
    pred = parse(filters)
    if pred is None:
        assert filters is None
        return
    assert pred(IMG) is img
    assert pred(CT) is ct


def test_snapshot_kind_and_errors():
    info = Info(Kind.COMMITTED, "layer", "parent", {"a": "b"})
    assert parse(["kind==committed,parent==parent"])(info)
    assert not parse(["kind==active"])(info)
    for bad in ["labels.foo==", "==x", 'labels."unterminated', "name~=(", "name==a b,"]:
        with pytest.raises(InvalidArgument):
            parse([bad])
