import pytest

from corral.images import mediatypes as mt
from corral.images.reference import ReferenceError, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1"),
    ("index.docker.io/user/app", "docker.io/user/app:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
    ("quay.io/org/app@" + D, "quay.io/org/app@" + D),
    ("app:t@" + D, "docker.io/library/app:t@" + D),
    ("[::1]:5000/app:x", "[::1]:5000/app:x"),
])
def test_normalize(text, want):
    assert str(parse(text)) == want


def test_parts():
    r = parse("127.0.0.1:5000/team/app:v2")
    assert (r.domain, r.path, r.tag, r.digest, r.object) == ("127.0.0.1:5000", "team/app", "v2", "", "v2")
    r = parse("busybox@" + D)
    assert r.tag == "" and r.object == D
    assert parse("busybox").familiar() == "busybox:latest"
    assert parse("user/app:v1").familiar() == "user/app:v1"


@pytest.mark.parametrize("text", ["", "Busybox", "busybox:", "busybox@sha256:abc", "a//b",
                                  "busybox:-bad", "host:port/app", " busybox", "a/../b"])
def test_invalid(text):
    with pytest.raises(ReferenceError):
        parse(text)


def test_platform_selection():
    index = {"manifests": [
        {"digest": "sha256:1", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:2", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:3", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:4", "platform": {"os": "windows", "architecture": "amd64"}},
    ]}
    assert mt.select_manifest(index, mt.parse_platform("linux/amd64"))["digest"] == "sha256:2"
    assert mt.select_manifest(index, mt.parse_platform("linux/arm64"))["digest"] == "sha256:3"
    assert mt.select_manifest(index, mt.parse_platform("linux/arm/v7"))["digest"] == "sha256:1"
    assert mt.select_manifest(index, mt.parse_platform("linux/arm/v6")) is None
    assert mt.select_manifest(index, mt.parse_platform("windows/amd64"))["digest"] == "sha256:4"
    assert mt.select_manifest(index) is not None      # this host is one of those
    assert mt.select_manifest({"manifests": [{"digest": "sha256:9"}]})["digest"] == "sha256:9"
    assert mt.select_manifest({"manifests": [{"digest": "sha256:9"}, {"digest": "sha256:8"}]}) is None


def test_media_types():
    assert mt.compression(mt.OCI_LAYER_GZIP) == "gzip"
    assert mt.compression(mt.DOCKER_LAYER_GZIP) == "gzip"
    assert mt.compression(mt.OCI_LAYER_ZSTD) == "zstd"
    assert mt.compression(mt.OCI_LAYER) == ""
    with pytest.raises(ValueError):
        mt.compression("application/octet-stream")
    assert mt.detect(b'{"manifests": []}') == mt.OCI_INDEX
    assert mt.detect(b'{"mediaType": "%s"}' % mt.DOCKER_LIST.encode()) == mt.DOCKER_LIST


def test_hosts_and_credentials(tmp_path):
    import base64
    import json

    from corral.remotes.auth import load_credentials, parse_challenge, save_credentials
    from corral.remotes.registry import HostConfig, hosts_from_config

    assert hosts_from_config({"127.0.0.1:5000": {"plain_http": True}}) == {"127.0.0.1:5000": HostConfig(plain_http=True)}
    with pytest.raises(ValueError, match="unknown"):
        hosts_from_config({"h": {"insecure": True}})
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {
        "https://reg.example:5000/v2/": {"auth": base64.b64encode(b"u:p:w").decode()},
        "other.example": {"username": "a", "password": "b"}}}))
    assert load_credentials(str(path)) == {"reg.example:5000": ("u", "p:w"), "other.example": ("a", "b")}
    save_credentials("new.example", "x", "y", str(path))
    assert load_credentials(str(path))["new.example"] == ("x", "y")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_credentials(str(tmp_path / "missing.json")) == {}
    kind, params = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"')
    assert kind == "bearer" and params == {"realm": "https://auth.example/token", "service": "reg",
                                          "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
