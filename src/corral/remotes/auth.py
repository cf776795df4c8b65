"""Registry credentials and auth challenges.

Stored credentials use docker's config.json shape: {"auths": {"host": {"auth": base64("user:pass")}}}
(or "username"/"password" fields). corral's own file is ~/.corral/auth.json (0600, in a 0700
directory; CORRAL_AUTH_FILE overrides it); docker's ~/.docker/config.json is read too, after it.
"""

import base64
import json
import os
import re


def default_auth_path():
    return os.environ.get("CORRAL_AUTH_FILE") or os.path.join(os.path.expanduser("~"), ".corral", "auth.json")


def docker_config_path():
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def lookup(host, path=None):
    """(user, password) for `host` from corral's file, else docker's config.json; None if neither."""
    for p in (path or default_auth_path(), docker_config_path()):
        creds = load_credentials(p).get(host)
        if creds:
            return creds
    return None


def load_credentials(path=None):
    """{host: (user, password)} from an auth file; {} when the file is missing."""
    path = path or default_auth_path()
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read registry credentials from {path}: {e}; fix or remove the file") from None
    out = {}
    for host, entry in (doc.get("auths") or {}).items():
        host = re.sub(r"^https?://", "", host).rstrip("/")
        if host.endswith("/v1") or host.endswith("/v2"):
            host = host[:-3]
        if host in ("index.docker.io", "registry-1.docker.io"):     # docker keeps Docker Hub's this way
            host = "docker.io"
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"bad 'auth' value for {host} in {path}: want base64 of user:password") from None
            out[host] = (user, pw)
        elif entry.get("username"):
            out[host] = (entry["username"], entry.get("password", ""))
    return out


def _read_doc(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read registry credentials from {path}: {e}; fix or remove the file") from None
    if not isinstance(doc, dict):
        raise ValueError(f"registry credentials file {path} is not a JSON object; fix or remove it")
    return doc


def _write_doc(path, doc):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def save_credentials(host, user, password, path=None):
    """Add or replace one host's credentials (the file is created 0600)."""
    path = path or default_auth_path()
    doc = _read_doc(path)
    doc.setdefault("auths", {})[host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write_doc(path, doc)


def remove_credentials(host, path=None):
    """Forget one host's credentials; returns whether there were any."""
    path = path or default_auth_path()
    doc = _read_doc(path)
    if host not in (doc.get("auths") or {}):
        return False
    del doc["auths"][host]
    _write_doc(path, doc)
    return True


def basic_header(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


_PARAM = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header):
    """'Bearer realm="x",service="y",scope="z"' → ('bearer', {'realm': 'x', ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params
