"""Media types of the OCI image spec and Docker schema2, and what each one is."""

import json
import platform as _platform

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(INDEXES + MANIFESTS) + ", */*;q=0.1"


def is_manifest(mt):
    return mt in MANIFESTS


def is_index(mt):
    return mt in INDEXES


def compression(mt):
    """'gzip', 'zstd' or '' (uncompressed) for a layer media type; raises on unknown ones."""
    if mt in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER, OCI_LAYER_ND + "+gzip"):
        return "gzip"
    if mt in (OCI_LAYER_ZSTD, OCI_LAYER_ND + "+zstd", DOCKER_LAYER + ".zstd"):
        return "zstd"
    if mt in (OCI_LAYER, DOCKER_LAYER, OCI_LAYER_ND):
        return ""
    raise ValueError(f"unsupported layer media type {mt!r}")


def detect(data, declared=""):
    """The media type of a manifest document: the declared one, else its own field, else by shape."""
    doc = json.loads(data) if isinstance(data, (bytes, str)) else data
    mt = doc.get("mediaType") or declared
    if mt and mt not in ("application/json", "text/plain"):
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise ValueError("not an image manifest or index (no mediaType, layers or manifests)")


# --- platforms ---------------------------------------------------------------------------

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform():
    m = _platform.machine()
    p = {"os": "linux", "architecture": _ARCH.get(m, m)}
    if m == "aarch64":
        p["variant"] = "v8"
    elif m.startswith("armv"):
        p["variant"] = "v" + m[4]
    return p


def parse_platform(text):
    """'linux/arm64/v8' → dict."""
    parts = text.split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"invalid platform {text!r}: want os/arch[/variant]")
    if len(parts) == 1:
        return {"os": "linux", "architecture": parts[0]}
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        p["variant"] = parts[2]
    return p


def _norm_variant(arch, variant):
    if arch == "arm64" and variant in ("", "v8"):
        return "v8"
    return variant or ""


def platform_matches(want, have):
    if (have.get("os") or "") != want.get("os") or (have.get("architecture") or "") != want.get("architecture"):
        return False
    wv = _norm_variant(want["architecture"], want.get("variant", ""))
    hv = _norm_variant(want["architecture"], have.get("variant", ""))
    return not wv or not hv or wv == hv


def select_manifest(index, want=None):
    """The descriptor in an index that fits platform `want` (default: this host), or None.
    An exact variant match wins over one with no variant."""
    want = want or host_platform()
    best = None
    for desc in index.get("manifests", []):
        plat = desc.get("platform")
        if plat is None or not platform_matches(want, plat):
            continue
        if best is None or (plat.get("variant") and plat.get("variant") == want.get("variant")):
            best = desc
    if best is None:
        # an index that names no platforms at all (some tools write one): take its only image
        ms = index.get("manifests", [])
        if len(ms) == 1 and "platform" not in ms[0]:
            return ms[0]
    return best
