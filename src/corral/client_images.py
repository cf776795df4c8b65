"""corral.Client's image transfers: pull, push, load, save, login and logout, done inside
corrald by its transfer service (corral.services.transfer.v1); the client sends the request
(with registry options and credentials) and hears progress.

    with Client() as c:
        c.pull("127.0.0.1:5000/app:v1", plain_http=True, progress=print)
        c.push("busybox", "127.0.0.1:5000/busybox:1", plain_http=True)
        with open("img.tar", "rb") as f:
            print(c.load(f))                  # [(name, digest)]
        with open("out.tar", "wb") as f:
            c.save(["busybox"], f, format="oci")
        c.login("127.0.0.1:5000", "alice", "s3cret", plain_http=True)

Credentials: `auth=(user, password)` per call, else what `login` stored (corral's
~/.corral/auth.json, then docker's ~/.docker/config.json).
"""

CHUNK = 1 << 20


class ImageTransfers:
    """Mixed into corral.client.Client."""

    def _transfer_call(self, method, request, stream=False):
        """A call of the transfer service: unary, or a server stream (stream=True); with an
        iterator of requests, a client stream and its one answer."""
        if hasattr(request, "SerializeToString"):
            return self._call("transfer", method, request, stream=stream)
        path, decode = self._method("transfer", method)
        return decode(self._channel.stream_unary(path, (r.SerializeToString() for r in request), self._metadata()))

    def _iterate(self, responses):
        try:
            yield from responses
        finally:
            responses.cancel()

    @staticmethod
    def _registry_options(domain, plain_http, insecure, auth, auth_file=None):
        from corral.api.corral.services.transfer.v1 import transfer_pb2
        if auth is None:
            from corral.remotes import auth as _auth
            auth = _auth.lookup(domain, auth_file)
        user, password = auth or ("", "")
        return transfer_pb2.RegistryOptions(plain_http=plain_http, skip_verify=insecure, username=user,
                                            password=password)

    def pull(self, ref, progress=None, platform="", plain_http=False, insecure=False, auth=None,
             snapshotter="overlayfs", unpack=True):
        """Pull `ref` into the daemon and unpack it. progress(msg) hears each Progress message
        (kind, digest, status, total, offset). Returns {"name", "digest"}."""
        from corral.api.corral.services.transfer.v1 import transfer_pb2
        from corral.images.reference import parse
        r = parse(ref)
        req = transfer_pb2.PullRequest(reference=str(r), platform=platform or "", snapshotter=snapshotter,
                                       skip_unpack=not unpack,
                                       registry=self._registry_options(r.domain, plain_http, insecure, auth))
        return self._follow(self._transfer_call("Pull", req, stream=True), progress)

    def push(self, ref, target=None, progress=None, plain_http=False, insecure=False, auth=None):
        """Push the local image `ref` (as `target`, if given). Returns {"name", "digest"}."""
        from corral.api.corral.services.transfer.v1 import transfer_pb2
        from corral.images.reference import parse
        dest = parse(target or ref)
        parse(ref)
        req = transfer_pb2.PushRequest(reference=ref, target=str(dest),
                                       registry=self._registry_options(dest.domain, plain_http, insecure, auth))
        return self._follow(self._transfer_call("Push", req, stream=True), progress)

    def _follow(self, responses, progress):
        last = None
        for msg in self._iterate(responses):
            if progress:
                progress(msg)
            if msg.kind == "image" and msg.status == "done":
                last = msg
        if last is None:
            from corral.client import ClientError
            raise ClientError("UNKNOWN", "the transfer ended without finishing")
        return {"name": last.name, "digest": last.digest}

    def load(self, source, snapshotter="overlayfs", platform="", base_name=""):
        """Load a docker-archive or OCI archive from a binary file object (or a path).
        Returns [(name, digest)] of the images in it."""
        from corral.api.corral.services.transfer.v1 import transfer_pb2
        f = open(source, "rb") if isinstance(source, str) else source
        try:
            def chunks():
                first = True
                while True:
                    data = f.read(CHUNK)
                    if not data and not first:
                        return
                    if first:
                        yield transfer_pb2.ImportChunk(data=data, snapshotter=snapshotter, platform=platform,
                                                       base_name=base_name)
                        first = False
                        if not data:
                            return
                    else:
                        yield transfer_pb2.ImportChunk(data=data)
            resp = self._transfer_call("Import", chunks(), stream=True)
        finally:
            if f is not source:
                f.close()
        return [(i.name, i.digest) for i in resp.images]

    def save(self, names, out, format="docker", platform=""):
        """Write an archive of the named images to the binary file object `out` (or a path);
        format "docker" (docker-archive) or "oci". Returns the bytes written."""
        from corral.api.corral.services.transfer.v1 import transfer_pb2
        from corral.images.reference import parse
        for n in names:
            parse(n)        # a bad name fails here, before any request
        req = transfer_pb2.ExportRequest(names=list(names), format=format, platform=platform)
        responses = self._transfer_call("Export", req, stream=True)
        if isinstance(out, str):
            import os
            tmp = out + ".tmp"
            try:
                with open(tmp, "wb") as f:
                    n = self._write_chunks(responses, f)
                os.replace(tmp, out)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return n
        return self._write_chunks(responses, out)

    def _write_chunks(self, responses, f):
        n = 0
        for chunk in self._iterate(responses):
            f.write(chunk.data)
            n += len(chunk.data)
        return n

    def check_login(self, host, user, password, plain_http=False, insecure=False):
        """Ask the daemon to check credentials against the registry at `host`; raises
        ClientError (code PERMISSION_DENIED when refused)."""
        from corral.api.corral.services.transfer.v1 import transfer_pb2
        req = transfer_pb2.CheckAuthRequest(host=host, registry=self._registry_options(
            host, plain_http, insecure, (user, password)))
        return self._transfer_call("CheckAuth", req).status

    def login(self, host, user, password, plain_http=False, insecure=False, auth_file=None):
        """Check the credentials, then store them (corral's auth file, 0600)."""
        from corral.remotes import auth as _auth
        host = normalize_host(host)
        self.check_login(host, user, password, plain_http, insecure)
        _auth.save_credentials(host, user, password, auth_file)
        return host

    def logout(self, host, auth_file=None):
        """Forget the stored credentials of `host`; returns whether there were any."""
        from corral.remotes import auth as _auth
        return _auth.remove_credentials(normalize_host(host), auth_file)


def normalize_host(host):
    """A registry host as credentials are keyed: docker.io for Docker Hub's spellings."""
    import re
    host = re.sub(r"^https?://", "", (host or "docker.io").strip()).rstrip("/")
    if host.endswith("/v1") or host.endswith("/v2"):
        host = host[:-3]
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = "docker.io"
    if not host or "/" in host:
        raise ValueError(f"invalid registry host {host!r}: give host[:port]")
    return host
