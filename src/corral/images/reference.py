"""Image references, normalized the way docker does (`busybox` → docker.io/library/busybox:latest)."""

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


class ReferenceError(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str           # repository path inside the registry, e.g. library/busybox
    tag: str = ""
    digest: str = ""

    @property
    def repository(self):
        return f"{self.domain}/{self.path}"

    @property
    def object(self):
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag

    def __str__(self):
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_digest(self, digest):
        return Reference(self.domain, self.path, self.tag, digest)

    def familiar(self):
        """The short form people type: busybox:latest, user/app:1, host:5000/x:y."""
        s = str(self)
        if self.domain == DEFAULT_DOMAIN:
            s = s[len(DEFAULT_DOMAIN) + 1:]
            if s.startswith(OFFICIAL_PREFIX):
                s = s[len(OFFICIAL_PREFIX):]
        return s


def _split_domain(name):
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return DEFAULT_DOMAIN, name


def parse(text):
    """Parse and normalize a reference; raises ReferenceError with the reason."""
    if not text or len(text) > 512 or text != text.strip():
        raise ReferenceError(f"invalid image reference {text!r}: empty or malformed")
    rest, digest = text, ""
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise ReferenceError(f"invalid image reference {text!r}: bad digest {digest!r}")
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and not re.fullmatch(r"[a-f0-9]{64}", hexpart):
            raise ReferenceError(f"invalid image reference {text!r}: sha256 digest must be 64 hex digits")
    tag = ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        if not _TAG.match(tag):
            raise ReferenceError(f"invalid image reference {text!r}: bad tag {tag!r}")
    domain, path = _split_domain(rest)
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if not _DOMAIN.match(domain):
        raise ReferenceError(f"invalid image reference {text!r}: bad registry host {domain!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if not path:
        raise ReferenceError(f"invalid image reference {text!r}: no repository name")
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            raise ReferenceError(f"invalid image reference {text!r}: repository name must be lowercase"
                                 f" letters, digits and separators (got {comp!r})")
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)
