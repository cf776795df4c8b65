"""A client of the OCI distribution API (stdlib http.client; one connection per thread).

    reg = Registry(hosts={"127.0.0.1:5000": HostConfig(plain_http=True)})
    desc = reg.resolve(parse("127.0.0.1:5000/app:v1"))
    data = reg.fetch_manifest(ref, desc["digest"])
    reg.fetch_blob(ref, desc, sink)                   # sink has .offset, .write, .truncate

Auth: a 401's WWW-Authenticate decides: Bearer (token from the realm, with stored
credentials if any, cached per scope until it expires) or Basic. Redirects are followed (the
Authorization header is dropped when the host changes). 5xx, 429 and dropped connections are
retried with backoff; blob downloads resume where they stopped with a Range request.
"""

import hashlib
import http.client
import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

from corral.images import mediatypes
from corral.remotes import auth as _auth

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
RETRIES = 5
BACKOFF = 0.2
TIMEOUT = 60
CHUNK = 1 << 20


class RegistryError(Exception):
    """A request to a registry failed; the message says which and what to do."""

    def __init__(self, message, status=0, code=""):
        super().__init__(message)
        self.status = status
        self.code = code


class NotFoundError(RegistryError):
    pass


class _Retry(Exception):
    pass


@dataclass
class HostConfig:
    plain_http: bool = False        # talk http instead of https (an insecure registry)
    endpoint: str = ""              # host[:port] to contact instead of the reference's host
    skip_verify: bool = False       # https without certificate checks
    ca_file: str = ""


def hosts_from_config(table):
    """{host: {plain_http, endpoint, skip_verify, ca_file}} (e.g. a TOML table) → {host: HostConfig}."""
    out = {}
    for host, opts in (table or {}).items():
        unknown = set(opts) - set(HostConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"registry host {host}: unknown setting(s) {', '.join(sorted(unknown))}")
        out[host] = HostConfig(**opts)
    return out


def _error_text(body):
    try:
        errs = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errs), \
            (errs[0].get("code", "") if errs else "")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace").strip(), ""


def _range_start(value):
    """The first byte of a Content-Range ("bytes 100-199/1000"), or None if it has none."""
    unit, _, rest = (value or "").strip().partition(" ")
    first = rest.split("-", 1)[0].strip()
    if unit.lower() != "bytes" or not first.isdigit():
        return None
    return int(first)


class Registry:
    def __init__(self, hosts=None, credentials=None, auth_file=None, user_agent="corral/0.1"):
        self.hosts = dict(hosts or {})
        self._creds = credentials if credentials is not None else _auth.load_credentials(auth_file)
        self._tokens = {}           # (host, scope) -> (header, expires_at)
        self._basic = set()         # hosts that asked for Basic auth
        self._lock = threading.Lock()
        self._local = threading.local()
        self.user_agent = user_agent

    # --- connections -----------------------------------------------------------------------

    def _host(self, domain):
        cfg = self.hosts.get(domain) or HostConfig()
        host = cfg.endpoint or domain
        if "://" in host:
            scheme, _, host = host.partition("://")
            return ("http" if scheme == "http" else "https"), host.rstrip("/"), cfg
        if domain == "docker.io":
            host = DOCKER_HUB_ENDPOINT     # docker.io names a registry whose API lives elsewhere
        return ("http" if cfg.plain_http else "https"), host, cfg

    def _conn(self, scheme, host, cfg):
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (scheme, host)
        c = conns.get(key)
        if c is None:
            if scheme == "http":
                c = http.client.HTTPConnection(host, timeout=TIMEOUT)
            else:
                ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
                if cfg.skip_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                c = http.client.HTTPSConnection(host, timeout=TIMEOUT, context=ctx)
            conns[key] = c
        return c

    def _drop_conn(self, scheme, host):
        c = getattr(self._local, "conns", {}).pop((scheme, host), None)
        if c is not None:
            c.close()

    def close(self):
        for c in getattr(self._local, "conns", {}).values():
            c.close()
        self._local.conns = {}

    # --- requests --------------------------------------------------------------------------

    def _raw(self, method, url, headers, body=None):
        """One request, following redirects. Returns an open response (read it fully)."""
        for _ in range(6):
            u = urllib.parse.urlsplit(url)
            scheme, host = u.scheme, u.netloc
            cfg = next((c for d, c in self.hosts.items() if (c.endpoint or d) == host), HostConfig())
            conn = self._conn(scheme, host, cfg)
            path = u.path + ("?" + u.query if u.query else "")
            h = {"User-Agent": self.user_agent, **headers}
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
            except ssl.SSLCertVerificationError as e:
                self._drop_conn(scheme, host)
                raise RegistryError(f"{method} {url}: the TLS certificate of {host} is not trusted "
                                    f"({e.verify_message}); give its CA file in the host config, or "
                                    "mark the host plain-http if it has no TLS") from None
            except (OSError, http.client.HTTPException) as e:
                self._drop_conn(scheme, host)
                raise _Retry(f"{method} {url}: {e}") from None
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                resp.read()
                new = urllib.parse.urljoin(url, resp.getheader("Location"))
                if urllib.parse.urlsplit(new).netloc != host:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if resp.status == 303:
                    method, body = "GET", None
                url = new
                continue
            return resp
        raise RegistryError(f"{method} {url}: too many redirects")

    def request(self, ref, method, path, headers=None, body=None, scope_actions="pull",
                ok=(200,), extra_scopes=(), stream=False):
        """An API request on `ref`'s registry with auth, retries and error mapping.
        `path` is under /v2/. Returns (response, body) — body None when stream=True."""
        scheme, host, cfg = self._host(ref.domain)
        url = f"{scheme}://{host}/v2/{path}"
        scope = " ".join([f"repository:{ref.path}:{scope_actions}", *extra_scopes])
        headers = dict(headers or {})
        authed_once = False
        for attempt in range(RETRIES + 1):
            hdrs = dict(headers)
            a = self._auth_header(ref.domain, scope)
            if a:
                hdrs["Authorization"] = a
            try:
                if hasattr(body, "seek"):
                    body.seek(0)
                resp = self._raw(method, url, hdrs, body)
            except _Retry as e:
                if attempt == RETRIES:
                    raise RegistryError(f"{e} (gave up after {RETRIES + 1} tries); check that the "
                                        f"registry at {host} is up") from None
                time.sleep(BACKOFF * 2 ** attempt)
                continue
            if resp.status == 401 and not authed_once:
                challenge = resp.getheader("WWW-Authenticate", "")
                resp.read()
                authed_once = True
                self._answer_challenge(ref.domain, scope, challenge)
                continue
            if resp.status in (429, 500, 502, 503, 504) and attempt < RETRIES:
                resp.read()
                time.sleep(BACKOFF * 2 ** attempt)
                continue
            if resp.status not in ok:
                text, code = _error_text(resp.read())
                msg = f"{method} {url}: {resp.status} {resp.reason}" + (f" ({text})" if text else "")
                if resp.status == 401:
                    msg += "; check the credentials for " + ref.domain
                cls = NotFoundError if resp.status == 404 else RegistryError
                raise cls(msg, resp.status, code)
            if stream:
                return resp, None
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self._drop_conn(scheme, host)
                if attempt == RETRIES:
                    raise RegistryError(f"{method} {url}: {e}") from None
                continue
            return resp, data
        raise RegistryError(f"{method} {url}: failed after {RETRIES + 1} tries")

    def _auth_header(self, domain, scope):
        with self._lock:
            tok = self._tokens.get((domain, scope))
            if tok and tok[1] > time.monotonic():
                return tok[0]
            if domain in self._basic and domain in self._creds:
                return _auth.basic_header(*self._creds[domain])
        return None

    def _answer_challenge(self, domain, scope, challenge):
        kind, params = _auth.parse_challenge(challenge)
        creds = self._creds.get(domain)
        if kind == "basic":
            if not creds:
                raise RegistryError(f"registry {domain} wants a user name and password: log in first",
                                    401)
            with self._lock:
                self._basic.add(domain)
            return
        if kind != "bearer" or not params.get("realm"):
            raise RegistryError(f"registry {domain} sent an auth challenge corral does not know: "
                                f"{challenge!r}", 401)
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if creds:
            headers["Authorization"] = _auth.basic_header(*creds)
        try:
            resp = self._raw("GET", url, headers)
            body = resp.read()
        except _Retry as e:
            raise RegistryError(f"token request to {params['realm']} failed: {e}") from None
        if resp.status != 200:
            raise RegistryError(f"token request to {params['realm']} for {domain} failed: {resp.status}"
                                f" {resp.reason}; check the credentials", 401)
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            expires = int(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            raise RegistryError(f"token server {params['realm']} sent no token", 401)
        with self._lock:
            self._tokens[(domain, scope)] = ("Bearer " + token, time.monotonic() + max(expires - 5, 1))

    def check_auth(self, domain):
        """Check the stored credentials for `domain` the way a login does: GET /v2/ and answer
        its challenge (Basic, or a Bearer token without a scope). Raises RegistryError."""
        scheme, host, _ = self._host(domain)
        url = f"{scheme}://{host}/v2/"
        creds = self._creds.get(domain)
        try:
            resp = self._raw("GET", url, {})
            resp.read()
            if resp.status == 401:
                kind, params = _auth.parse_challenge(resp.getheader("WWW-Authenticate", ""))
                if not creds:
                    raise RegistryError(f"registry {domain} wants a user name and password", 401)
                if kind == "bearer" and params.get("realm"):
                    query = {"account": creds[0]}
                    if params.get("service"):
                        query["service"] = params["service"]
                    token_url = params["realm"] + ("&" if "?" in params["realm"] else "?") + \
                        urllib.parse.urlencode(query)
                    resp = self._raw("GET", token_url, {"Authorization": _auth.basic_header(*creds)})
                else:
                    resp = self._raw("GET", url, {"Authorization": _auth.basic_header(*creds)})
                resp.read()
        except _Retry as e:
            raise RegistryError(f"{e}; check that the registry at {host} is up") from None
        if resp.status in (401, 403):
            raise RegistryError(f"login to {domain} refused: {resp.status} {resp.reason}; check the user "
                                "name and password", resp.status)
        if resp.status != 200:
            raise RegistryError(f"login to {domain}: GET {url} answered {resp.status} {resp.reason}",
                                resp.status)
        return "authenticated" if creds else "no authentication needed"

    # --- pull side -------------------------------------------------------------------------

    def resolve(self, ref):
        """The descriptor (mediaType, digest, size) that `ref` names."""
        resp, _ = self.request(ref, "HEAD", f"{ref.path}/manifests/{ref.object}",
                               {"Accept": mediatypes.ACCEPT})
        digest = resp.getheader("Docker-Content-Digest")
        mt = (resp.getheader("Content-Type") or "").split(";")[0]
        size = int(resp.getheader("Content-Length") or 0)
        if not digest or not size or mt not in mediatypes.MANIFESTS + mediatypes.INDEXES:
            data, mt, digest = self.fetch_manifest(ref, ref.object)
            size = len(data)
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"registry returned {digest} for {ref}: digest mismatch")
        return {"mediaType": mt, "digest": digest, "size": size}

    def fetch_manifest(self, ref, obj, limit=4 << 20):
        """(bytes, media type, digest) of a manifest by tag or digest; verifies a digest."""
        _, data = self.request(ref, "GET", f"{ref.path}/manifests/{obj}", {"Accept": mediatypes.ACCEPT})
        if len(data) > limit:
            raise RegistryError(f"manifest {ref.path}@{obj} is larger than {limit} bytes: refusing it")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if obj.startswith("sha256:") and digest != obj:
            raise RegistryError(f"manifest {ref.path}@{obj}: the registry sent bytes with digest "
                                f"{digest}; refusing them")
        try:
            mt = mediatypes.detect(data)
        except ValueError as e:
            raise RegistryError(f"manifest {ref.path}@{obj}: {e}") from None
        return data, mt, digest

    def fetch_blob_bytes(self, ref, digest, limit=64 << 20):
        _, data = self.request(ref, "GET", f"{ref.path}/blobs/{digest}")
        if len(data) > limit:
            raise RegistryError(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"blob {digest} from {ref.repository}: bytes do not match the digest")
        return data

    def fetch_blob(self, ref, desc, sink, progress=None):
        """Stream a blob into `sink` (.offset, .write(b), .truncate(n)) starting at sink.offset,
        resuming with Range after a dropped connection. The caller verifies the digest.
        write() gets a memoryview of a buffer that is reused for the next chunk."""
        size = desc.get("size") or 0
        tries = 0
        # one buffer for the whole download: a fresh 1 MiB per chunk costs page faults (the
        # allocator hands memory back and takes it again), which show in a pull's CPU time
        buf = memoryview(bytearray(CHUNK))
        while True:
            headers = {}
            start = sink.offset
            if size and start >= size:
                return
            if start:
                headers["Range"] = f"bytes={start}-"
            resp, _ = self.request(ref, "GET", f"{ref.path}/blobs/{desc['digest']}", headers,
                                   ok=(200, 206), stream=True)
            if resp.status == 200 and start:
                sink.truncate(0)        # the server ignored the range: start over
            elif resp.status == 206 and _range_start(resp.getheader("Content-Range")) != start:
                # a part we did not ask for would land at the wrong offset: drop it (and the
                # connection, its body unread) and fetch the whole blob again
                got = resp.getheader("Content-Range")
                resp.close()
                scheme, host, _ = self._host(ref.domain)
                self._drop_conn(scheme, host)
                sink.truncate(0)
                tries += 1
                if tries > RETRIES:
                    raise RegistryError(f"blob {desc['digest']}: asked for bytes from {start}, the "
                                        f"registry kept answering with Content-Range {got!r}")
                continue
            try:
                while True:
                    n = resp.readinto(buf)
                    if not n:
                        break
                    sink.write(buf[:n])         # sinks copy what they keep
                    if progress:
                        progress(n)
                    if size and sink.offset > size:
                        raise RegistryError(f"blob {desc['digest']}: the registry sent more than "
                                            f"the {size} bytes the manifest declares")
            except (OSError, http.client.HTTPException) as e:
                scheme, host, _ = self._host(ref.domain)
                self._drop_conn(scheme, host)
                tries += 1
                if tries > RETRIES:
                    raise RegistryError(f"blob {desc['digest']}: download kept failing ({e})") from None
                time.sleep(BACKOFF * 2 ** (tries - 1))
                continue
            if size and sink.offset < size:
                tries += 1
                if tries > RETRIES:
                    raise RegistryError(f"blob {desc['digest']}: got {sink.offset} of {size} bytes")
                continue
            return

    # --- push side -------------------------------------------------------------------------

    def blob_exists(self, ref, digest):
        try:
            self.request(ref, "HEAD", f"{ref.path}/blobs/{digest}", scope_actions="pull,push")
            return True
        except NotFoundError:
            return False

    def push_blob(self, ref, desc, open_blob, chunk_size=0, mount_from=None):
        """Upload a blob unless the registry has it. open_blob() returns a fresh binary file.
        chunk_size > 0: chunked upload (POST, PATCH..., PUT); else monolithic (POST, PUT).
        mount_from: a repository path on the same registry to mount the blob from.
        Returns 'exists', 'mounted' or 'uploaded'."""
        digest = desc["digest"]
        if self.blob_exists(ref, digest):
            return "exists"
        path = f"{ref.path}/blobs/uploads/"
        extra = ()
        if mount_from:
            path += "?" + urllib.parse.urlencode({"mount": digest, "from": mount_from})
            extra = (f"repository:{mount_from}:pull",)
        resp, _ = self.request(ref, "POST", path, {"Content-Length": "0"}, b"",
                               scope_actions="pull,push", ok=(201, 202), extra_scopes=extra)
        if resp.status == 201:
            return "mounted"
        location = self._location(ref, resp)
        with open_blob() as f:
            if chunk_size:
                offset = 0
                while True:
                    data = f.read(chunk_size)
                    if not data:
                        break
                    resp, _ = self._upload_req(ref, "PATCH", location, data, {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(data) - 1}"}, ok=(202, 204))
                    offset += len(data)
                    location = self._location(ref, resp)
                self._upload_req(ref, "PUT", location, b"", {}, ok=(201,), digest=digest)
            else:
                # the file itself is the body: http.client streams it, a retry rewinds it
                self._upload_req(ref, "PUT", location, f, {"Content-Type": "application/octet-stream"},
                                 ok=(201,), digest=digest, size=desc["size"])
        return "uploaded"

    def _location(self, ref, resp):
        loc = resp.getheader("Location")
        if not loc:
            raise RegistryError(f"registry for {ref.repository} sent no upload Location")
        scheme, host, _ = self._host(ref.domain)
        return urllib.parse.urljoin(f"{scheme}://{host}/v2/", loc)

    def _upload_req(self, ref, method, location, data, headers, ok, digest=None, size=None):
        u = urllib.parse.urlsplit(location)
        q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
        if digest:
            q.append(("digest", digest))
        path = u.path[len("/v2/"):] if u.path.startswith("/v2/") else u.path
        if q:
            path += "?" + urllib.parse.urlencode(q)
        headers = {**headers, "Content-Length": str(len(data) if size is None else size)}
        return self.request(ref, method, path, headers, data, scope_actions="pull,push", ok=ok)

    def push_manifest(self, ref, obj, data, media_type):
        """PUT a manifest by tag or digest; returns the digest the registry reports."""
        resp, _ = self.request(ref, "PUT", f"{ref.path}/manifests/{obj}",
                               {"Content-Type": media_type, "Content-Length": str(len(data))}, data,
                               scope_actions="pull,push", ok=(201, 200, 202))
        return resp.getheader("Docker-Content-Digest") or "sha256:" + hashlib.sha256(data).hexdigest()
