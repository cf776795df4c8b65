"""Where the registry client goes for a host, and where credentials come from."""

import base64
import json
import os
import stat

from corral.client_images import normalize_host
from corral.remotes import auth
from corral.remotes.registry import HostConfig, Registry


def test_docker_io_is_served_by_the_hub_registry_endpoint():
    r = Registry(credentials={})
    assert r._host("docker.io")[:2] == ("https", "registry-1.docker.io")
    assert r._host("quay.example:5000")[:2] == ("https", "quay.example:5000")
    plain = Registry(hosts={"127.0.0.1:5000": HostConfig(plain_http=True)}, credentials={})
    assert plain._host("127.0.0.1:5000")[:2] == ("http", "127.0.0.1:5000")
    mirror = Registry(hosts={"docker.io": HostConfig(endpoint="http://127.0.0.1:5001")}, credentials={})
    assert mirror._host("docker.io")[:2] == ("http", "127.0.0.1:5001")


def test_credentials_file_default_and_docker_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CORRAL_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert auth.default_auth_path() == str(tmp_path / ".corral" / "auth.json")
    assert auth.lookup("reg.example") is None
    os.makedirs(tmp_path / ".docker")
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "reg.example": {"auth": base64.b64encode(b"d:1").decode()}}}))
    assert auth.lookup("docker.io") == ("hub", "pw")
    assert auth.lookup("reg.example") == ("d", "1")
    auth.save_credentials("reg.example", "c", "2")
    assert auth.lookup("reg.example") == ("c", "2")       # corral's own file first
    path = tmp_path / ".corral" / "auth.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert auth.remove_credentials("reg.example") is True
    assert auth.remove_credentials("reg.example") is False
    assert auth.lookup("reg.example") == ("d", "1")


def test_normalize_host():
    assert normalize_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert normalize_host("") == "docker.io"
