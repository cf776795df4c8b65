"""`corral images/pull/push/tag/rmi/load/save/login/logout` as a user runs them, against the
session's corrald and a real registry (Debian's docker-registry) on 127.0.0.1. Each test works
in its own namespace so the session's busybox image stays as it is."""

import json
import os
import stat
import subprocess
import uuid

import pytest

from tests.helpers.registry import AuthProxy, LocalRegistry


@pytest.fixture(scope="module")
def registry():
    reg = LocalRegistry().start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def ns():
    return "img-" + uuid.uuid4().hex[:8]


@pytest.fixture
def home(tmp_path):
    """A HOME of the test's own, so credentials never touch the real ~/.corral or ~/.docker."""
    env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_AUTH_FILE", "DOCKER_CONFIG")}
    env["HOME"] = str(tmp_path)
    return env


def run(corral, *args, input=None, env=None, ns="default"):
    return subprocess.run(corral.argv("-n", ns, *args), capture_output=True, input=input, env=env, timeout=120)


def ok(res):
    assert res.returncode == 0, (res.returncode, res.stdout[-2000:], res.stderr.decode(errors="replace"))
    return res.stdout.decode(errors="replace")


def fails(res, code, text):
    err = res.stderr.decode(errors="replace")
    assert res.returncode == code, (res.returncode, res.stdout[-2000:], err)
    assert text in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def images(corral, ns):
    """{name: (target digest, image id)} from `corral images --format json`."""
    out = ok(run(corral, "images", "--format", "json", ns=ns))
    rows = [json.loads(line) for line in out.splitlines()]
    return {r["Name"]: (r["Digest"], r["ID"]) for r in rows}


def snapshot_names(corrald, ns):
    out = corrald.ctr("snapshots", "--snapshotter", "overlayfs", "ls", namespace=ns).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def seed(corral, ns, name="docker.io/library/busybox:latest"):
    """busybox in namespace `ns` (through save | load from the session's default namespace)."""
    res = run(corral, "save", "--format", "oci", "busybox")
    ok(res)
    ok(run(corral, "load", input=res.stdout, ns=ns))
    if name != "docker.io/library/busybox:latest":
        ok(run(corral, "tag", "busybox", name, ns=ns))
    return images(corral, ns)["docker.io/library/busybox:latest"]


def test_images_lists_the_session_busybox(corral):
    out = ok(run(corral, "images"))
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["REPOSITORY", "TAG"]
    assert any(r.split()[:2] == ["busybox", "latest"] for r in rows), out
    ids = ok(run(corral, "images", "-q")).split()
    assert ids and all(len(i) == 12 for i in ids)
    digests = ok(run(corral, "images", "--digests"))
    assert "DIGEST" in digests.splitlines()[0] and "sha256:" in digests
    assert ok(run(corral, "images", "--format", "{{.Repository}}:{{.Tag}}", "busybox")).split() == ["busybox:latest"]


def test_push_then_pull_back_with_identical_digests(corral, corrald, registry, ns):
    digest, image_id = seed(corral, ns)
    name = f"{registry.host}/e2e/busybox:v1"
    ok(run(corral, "tag", "busybox", name, ns=ns))
    out = ok(run(corral, "push", "--plain-http", name, ns=ns))
    assert f"v1: digest: {digest}" in out, out
    assert "Pushed" in out
    # what the registry holds has the same digest
    import urllib.request
    req = urllib.request.Request(f"http://{registry.host}/v2/e2e/busybox/manifests/v1", method="HEAD", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest

    other = ns + "-pull"
    out = ok(run(corral, "pull", "--plain-http", name, ns=other))
    lines = out.splitlines()
    assert lines[-1] == name
    assert f"Digest: {digest}" in out
    assert any(line.endswith("Download complete") for line in lines), out
    got = images(corral, other)
    assert got[name] == (digest, image_id)
    # unpacked into overlayfs as part of the pull
    assert snapshot_names(corrald, other), "the pull left no committed snapshot"

    # a second pull fetches nothing
    out = ok(run(corral, "pull", "--plain-http", name, ns=other))
    assert "Already exists" in out and "Image is up to date" in out
    # -q prints only the name
    assert ok(run(corral, "pull", "-q", "--plain-http", name, ns=other)).splitlines() == [name]


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_load_round_trip(corral, corrald, tmp_path, ns, fmt):
    digest, image_id = seed(corral, ns)
    archive = tmp_path / f"busybox-{fmt}.tar"
    ok(run(corral, "save", "--format", fmt, "-o", str(archive), "busybox", ns=ns))
    assert archive.stat().st_size > 100_000
    listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True).stdout.split()
    assert ("index.json" in listing) == (fmt == "oci")
    assert ("manifest.json" in listing) == (fmt == "docker")
    # stdout gives the same archive
    assert run(corral, "save", "--format", fmt, "busybox", ns=ns).stdout == archive.read_bytes()

    other = ns + "-" + fmt
    with open(archive, "rb") as f:
        out = ok(subprocess.run(corral.argv("-n", other, "load"), stdin=f, capture_output=True, timeout=120))
    assert out.strip() == "Loaded image: busybox:latest"
    got = images(corral, other)["docker.io/library/busybox:latest"]
    assert got[1] == image_id          # the same config: the same image ID
    if fmt == "oci":
        assert got[0] == digest        # the same manifest too
    assert snapshot_names(corrald, other)
    # -i FILE reads the same
    third = ns + "-i-" + fmt
    assert ok(run(corral, "load", "-i", str(archive), ns=third)).strip() == "Loaded image: busybox:latest"


def test_tag_and_rmi(corral, ns):
    seed(corral, ns)
    ok(run(corral, "tag", "busybox", "example.test/mine/bb:2", ns=ns))
    ok(run(corral, "tag", "busybox", "localcopy", ns=ns))
    got = images(corral, ns)
    assert got["example.test/mine/bb:2"] == got["docker.io/library/localcopy:latest"] == \
        got["docker.io/library/busybox:latest"]
    assert ok(run(corral, "rmi", "example.test/mine/bb:2", "localcopy", ns=ns)).split("\n")[:2] == \
        ["Untagged: example.test/mine/bb:2", "Untagged: localcopy:latest"]
    assert set(images(corral, ns)) == {"docker.io/library/busybox:latest"}
    fails(run(corral, "rmi", "localcopy", ns=ns), 1, "no such image: localcopy")
    fails(run(corral, "tag", "nosuch", "other", ns=ns), 125, "no such image: nosuch")
    fails(run(corral, "tag", "busybox", "Bad:Name:x", ns=ns), 125, "invalid image reference")


def test_errors_are_one_line_with_exit_125(corral, registry, ns, tmp_path):
    fails(run(corral, "pull", "--plain-http", f"{registry.host}/e2e/nothing:here", ns=ns), 125,
          "manifest unknown")
    fails(run(corral, "pull", "UPPER/case", ns=ns), 125, "invalid image reference")
    fails(run(corral, "pull", "--plain-http", "127.0.0.1:1/x:y", ns=ns), 125, "127.0.0.1:1")
    fails(run(corral, "save", "-o", str(tmp_path / "x.tar"), "nosuch", ns=ns), 125, "no such image: nosuch")
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.tmp").exists()
    fails(run(corral, "load", input=b"this is not an archive", ns=ns), 125, "not a tar archive")
    fails(run(corral, "load", input=b"", ns=ns), 125, "empty")
    fails(run(corral, "load", "-i", str(tmp_path / "missing.tar"), ns=ns), 125, "cannot open")
    fails(run(corral, "push", "--plain-http", f"{registry.host}/e2e/nothing:here", ns=ns), 125, "no such image")
    assert images(corral, ns) == {}


@pytest.mark.parametrize("mode", ["bearer", "basic"])
def test_login_verifies_stores_and_is_used(corral, registry, home, ns, mode):
    digest, _ = seed(corral, ns)
    proxy = AuthProxy(registry, mode, user="alice", password="s3cret").start()
    try:
        auth_file = os.path.join(home["HOME"], ".corral", "auth.json")
        name = f"{proxy.host}/private/bb:1"
        ok(run(corral, "tag", "busybox", name, ns=ns))
        # no credentials: refused the docker way
        fails(run(corral, "push", "--plain-http", name, ns=ns, env=home), 125, "denied")
        # a wrong password is refused and nothing is stored
        fails(run(corral, "login", "--plain-http", "-u", "alice", "-p", "wrong", proxy.host, ns=ns, env=home),
              125, "incorrect username or password")
        assert not os.path.exists(auth_file)
        # the right one (from stdin) is checked and stored, 0600, in docker's config.json shape
        out = ok(run(corral, "login", "--plain-http", "-u", "alice", "--password-stdin", proxy.host,
                     input=b"s3cret\n", ns=ns, env=home))
        assert "Login Succeeded" in out
        st = os.stat(auth_file)
        assert stat.S_IMODE(st.st_mode) == 0o600
        doc = json.load(open(auth_file))
        import base64
        assert base64.b64decode(doc["auths"][proxy.host]["auth"]) == b"alice:s3cret"
        # the stored credentials are used for push and pull
        assert f"digest: {digest}" in ok(run(corral, "push", "--plain-http", name, ns=ns, env=home))
        other = ns + "-auth"
        assert ok(run(corral, "pull", "--plain-http", "-q", name, ns=other, env=home)).strip() == name
        assert images(corral, other)[name][0] == digest
        # logout forgets them; the next pull is refused
        assert "Removing login credentials" in ok(run(corral, "logout", proxy.host, env=home))
        assert proxy.host not in json.load(open(auth_file))["auths"]
        fails(run(corral, "pull", "--plain-http", name, ns=other + "2", env=home), 125, "pull access denied")
    finally:
        proxy.stop()


def test_docker_config_credentials_are_read(corral, registry, home, ns):
    """Credentials that `docker login` stored (~/.docker/config.json) work too."""
    import base64
    digest, _ = seed(corral, ns)
    proxy = AuthProxy(registry, "basic", user="bob", password="pw").start()
    try:
        os.makedirs(os.path.join(home["HOME"], ".docker"))
        with open(os.path.join(home["HOME"], ".docker", "config.json"), "w") as f:
            json.dump({"auths": {proxy.host: {"auth": base64.b64encode(b"bob:pw").decode()}}}, f)
        name = f"{proxy.host}/viadocker/bb:1"
        ok(run(corral, "tag", "busybox", name, ns=ns))
        assert f"digest: {digest}" in ok(run(corral, "push", "--plain-http", name, ns=ns, env=home))
    finally:
        proxy.stop()


def test_registry_hosts_from_the_daemon_config(corral, registry, ns):
    """A plain-http registry named in corrald's config needs no --plain-http on the command line."""
    from tests.helpers.corrald import Corrald
    digest, _ = seed(corral, ns)
    name = f"{registry.host}/e2e/configured:v1"
    ok(run(corral, "tag", "busybox", name, ns=ns))
    ok(run(corral, "push", "--plain-http", name, ns=ns))
    d = Corrald(config_text=f'version = 2\n[plugins."io.containerd.grpc.v1.transfer".hosts."{registry.host}"]\n'
                            'plain_http = true\n', log_level="info")
    try:
        d.start()
        res = subprocess.run([corral.argv()[0], "--address", d.sock, "pull", "-q", name], capture_output=True,
                             timeout=120)
        assert ok(res).strip() == name
        res = subprocess.run([corral.argv()[0], "--address", d.sock, "images", "--digests"], capture_output=True,
                             timeout=60)
        assert digest in ok(res)
    finally:
        d.cleanup()
