"""A real registry (Debian's `docker-registry`) on 127.0.0.1 for tests, and an auth proxy.

    reg = LocalRegistry().start()      # reg.host == "127.0.0.1:PORT"; reg.stop() removes it all

AuthProxy sits in front of a LocalRegistry on its own port and demands Basic auth or Bearer
tokens (served by itself at /token after checking a user and password), forwarding the rest.
It can also inject faults (5xx answers, connections cut in the middle of a blob) so the
client's retries and Range resume are tested against the real registry behind it.
"""

import base64
import http.client
import http.server
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  relativeurls: true
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    """tls=True serves https with a self-signed certificate for 127.0.0.1 (self.cert)."""

    def __init__(self, tls=False, htpasswd=None):
        """htpasswd=(user, password): the registry itself demands Basic auth (bcrypt hash made
        with the system's crypt(3), as `htpasswd -B` would)."""
        self.dir = tempfile.mkdtemp(prefix="corral-reg-")
        self.port = None
        self.proc = None
        self.cert = None
        self.htpasswd = None
        if htpasswd:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt
            user, password = htpasswd
            self.htpasswd = os.path.join(self.dir, "htpasswd")
            with open(self.htpasswd, "w") as f:
                f.write(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n")
        if tls:
            self.cert = os.path.join(self.dir, "cert.pem")
            self.key = os.path.join(self.dir, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                            "-out", self.cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                           timeout=60)

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=20):
        for _ in range(5):
            self.port = free_port()
            cfg = os.path.join(self.dir, "config.yml")
            with open(cfg, "w") as f:
                f.write(CONFIG.format(root=os.path.join(self.dir, "data"), port=self.port))
                if self.cert:
                    f.write(f"  tls:\n    certificate: {self.cert}\n    key: {self.key}\n")
                if self.htpasswd:
                    f.write(f"auth:\n  htpasswd:\n    realm: corral-test\n    path: {self.htpasswd}\n")
            log = open(os.path.join(self.dir, "registry.log"), "ab")
            self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=log, stderr=log,
                                         start_new_session=True)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.cert:
                        import ssl
                        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                                        context=ssl.create_default_context(cafile=self.cert))
                    else:
                        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                    c.request("GET", "/v2/")
                    if c.getresponse().status in (200, 401):
                        c.close()
                        return self
                except OSError:
                    time.sleep(0.05)
            self._kill()        # port taken in between, or too slow: try another port
        raise RuntimeError("docker-registry did not start: " + self.log_text())

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "registry.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self):
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class AuthProxy:
    """mode: 'basic', 'bearer' or 'none'. faults: a dict the test may change while running:
    {'fail_5xx': n} answers the next n requests with 503; {'cut_blob_after': bytes} cuts the
    next blob GET's connection after that many body bytes; {'corrupt': digest} flips a byte of
    that blob; {'throttle': seconds} sleeps that long per 64 KiB of blob sent;
    {'redirect_blobs': True} answers blob GETs with a 307 to the registry itself;
    {'shift_range': n} answers the next ranged blob GET with a part that starts n bytes before
    the one asked for (a 206 whose Content-Range does not match the request).
    `requests` records (method, path, Range header)."""

    def __init__(self, backend, mode="bearer", user="alice", password="s3cret"):
        self.backend = backend
        self.mode = mode
        self.user, self.password = user, password
        self.token = uuid.uuid4().hex
        self.token_requests = 0
        self.requests = []
        self.faults = {}
        self.server = None
        self.thread = None

    @property
    def host(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, headers=(), body=b""):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _authorized(self):
                a = self.headers.get("Authorization", "")
                if proxy.mode == "basic":
                    want = "Basic " + base64.b64encode(f"{proxy.user}:{proxy.password}".encode()).decode()
                    return a == want
                return a == "Bearer " + proxy.token

            def _handle(self):
                proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.path.startswith("/token"):
                    proxy.token_requests += 1
                    want = "Basic " + base64.b64encode(f"{proxy.user}:{proxy.password}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._send(401, body=b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return self._send(200, [("Content-Type", "application/json")],
                                      ('{"token":"%s","expires_in":300}' % proxy.token).encode())
                if proxy.faults.get("fail_5xx", 0) > 0:
                    proxy.faults["fail_5xx"] -= 1
                    return self._send(503, body=b"try later")
                if proxy.mode != "none" and not self._authorized():
                    if proxy.mode == "basic":
                        ch = 'Basic realm="corral-test"'
                    else:
                        ch = (f'Bearer realm="http://{proxy.host}/token",service="corral-test",'
                              f'scope="repository:x:pull"')
                    return self._send(401, [("WWW-Authenticate", ch), ("Content-Type", "application/json")],
                                      b'{"errors":[{"code":"UNAUTHORIZED","message":"auth required"}]}')
                if proxy.faults.get("redirect_blobs") and self.command == "GET" and "/blobs/sha256:" in self.path:
                    # blob storage elsewhere: the backend itself, on another port
                    return self._send(307, [("Location", f"http://{proxy.backend.host}{self.path}")])
                c = http.client.HTTPConnection("127.0.0.1", proxy.backend.port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("authorization", "host", "connection", "content-length")}
                shift = proxy.faults.get("shift_range")
                if shift and self.command == "GET" and "/blobs/sha256:" in self.path and \
                        (hdrs.get("Range") or "").startswith("bytes="):
                    proxy.faults.pop("shift_range")
                    first = int(hdrs["Range"][6:].split("-")[0])
                    hdrs["Range"] = f"bytes={max(0, first - shift)}-"
                c.request(self.command, self.path, body=body, headers={**hdrs, "Content-Length": str(len(body))})
                r = c.getresponse()
                data = r.read()
                c.close()
                cut = proxy.faults.get("cut_blob_after")
                bad = proxy.faults.get("corrupt")
                if bad and self.command == "GET" and self.path.endswith("/blobs/" + bad) and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                if cut is not None and self.command == "GET" and "/blobs/sha256:" in self.path \
                        and len(data) > cut:
                    proxy.faults.pop("cut_blob_after")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if self.command == "HEAD":
                    self.send_header("Content-Length", r.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    delay = proxy.faults.get("throttle")
                    if delay and "/blobs/sha256:" in self.path:
                        for i in range(0, len(data), 65536):
                            self.wfile.write(data[i:i + 65536])
                            time.sleep(delay)
                    else:
                        self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(10)
            self.server = None
