"""corral.containers.image.normalize's short path for official images' short names gives what
corral.images.reference.parse gives, and leaves everything else to it."""

import pytest

from corral.containers.image import normalize
from corral.images.reference import parse


@pytest.mark.parametrize("name", ["busybox", "busybox:latest", "alpine:3.19", "abc123:_x", "a:B-1.2_c",
                                  "user/app", "user/app:1", "localhost:5000/x:y", "my-app", "my.app:v1",
                                  "busybox@sha256:" + "a" * 64, "ubuntu:" + "t" * 128])
def test_same_as_the_parser(name):
    assert normalize(name) == str(parse(name))


@pytest.mark.parametrize("name", ["Busybox", "busybox:", "busybox:.x", "busybox:-x", ":tag", "",
                                  "busybox:" + "t" * 129, "busy box", "busybox:a:b"])
def test_bad_names_still_refused(name):
    with pytest.raises(ValueError):
        parse(name)
    with pytest.raises(ValueError):
        normalize(name)
