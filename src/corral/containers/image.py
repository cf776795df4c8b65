"""An image as the daemon holds it: its record, its platform manifest, its config, and the
chain ID of its top layer (the committed snapshot a container's rootfs is prepared on)."""

import json

try:
    from _sha256 import sha256  # CPython's own; hashlib would load OpenSSL's libcrypto (~2-3 ms)
except ImportError:  # Python 3.12+: _sha2
    from hashlib import sha256


class ImageNotFound(Exception):
    pass


_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def normalize(name):
    """docker's normalization: `busybox` -> docker.io/library/busybox:latest.

    An official image's short name (`busybox`, `alpine:3.19`: one lowercase alphanumeric
    component, an optional tag) is done here without corral.images.reference, whose regular
    expressions and dataclass cost `corral run` a few ms to import; anything else goes there."""
    repo, _, tag = name.partition(":")
    if (repo and _LOWER_ALNUM.issuperset(repo) and len(tag) <= 128
            and (not _ or (tag and tag[0] not in ".-" and _TAG_CHARS.issuperset(tag)))):
        return f"docker.io/library/{repo}:{tag or 'latest'}"
    from corral.images.reference import parse
    return str(parse(name))


def _is_index(media_type):
    from corral.images import mediatypes as mt
    return mt.is_index(media_type)


def chain_id(diff_ids):
    chain = ""
    for d in diff_ids:
        chain = d if not chain else "sha256:" + sha256(f"{chain} {d}".encode()).hexdigest()
    return chain


class Image:
    """Wraps an images.v1 Image message; reads manifest and config through the content API."""

    def __init__(self, client, record):
        self.client = client
        self.record = record
        self._manifest = None
        self._config = None

    @property
    def name(self):
        return self.record.name

    @property
    def digest(self):
        return self.record.target.digest

    @property
    def labels(self):
        return dict(self.record.labels)

    def _json(self, digest):
        return json.loads(self.client.read_content(digest))

    def manifest(self, platform=None):
        """The image manifest (dict) for `platform` (default: this host)."""
        if self._manifest is None or platform is not None:
            doc = self._json(self.record.target.digest)
            # an index has "manifests" (a manifest has "layers" and cannot be one: no import
            # of corral.images.mediatypes for it)
            if "manifests" in doc or ("layers" not in doc and _is_index(doc.get("mediaType") or self.record.target.media_type)):
                from corral.images import mediatypes as mt
                desc = mt.select_manifest(doc, mt.parse_platform(platform) if platform else None)
                if desc is None:
                    raise ImageNotFound(f"image {self.name} has no manifest for "
                                        f"{platform or 'this platform'}")
                doc = self._json(desc["digest"])
            if platform is not None:
                return doc
            self._manifest = doc
        return self._manifest

    def config(self):
        """The image config (dict): architecture, os, config{Entrypoint, Cmd, Env...}, rootfs."""
        if self._config is None:
            self._config = self._json(self.manifest()["config"]["digest"])
        return self._config

    def chain_id(self):
        return chain_id(self.config().get("rootfs", {}).get("diff_ids", []))

    def size(self):
        m = self.manifest()
        return sum(layer.get("size", 0) for layer in m.get("layers", [])) + m["config"].get("size", 0)
