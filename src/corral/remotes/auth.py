"""Registry credentials and auth challenges.

Stored credentials use docker's config.json shape: {"auths": {"host": {"auth": base64("user:pass")}}}
(or "username"/"password" fields); the default file is ~/.config/corral/auth.json.
"""

import base64
import json
import os
import re

DEFAULT_AUTH_FILE = os.path.join("~", ".config", "corral", "auth.json")


def default_auth_path():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "corral", "auth.json")


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
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"bad 'auth' value for {host} in {path}: want base64 of user:password") from None
            out[host] = (user, pw)
        elif entry.get("username"):
            out[host] = (entry["username"], entry.get("password", ""))
    return out


def save_credentials(host, user, password, path=None):
    """Add or replace one host's credentials (the file is created 0600)."""
    path = path or default_auth_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        doc = {}
    doc.setdefault("auths", {})[host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def basic_header(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


_PARAM = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header):
    """'Bearer realm="x",service="y",scope="z"' → ('bearer', {'realm': 'x', ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params
