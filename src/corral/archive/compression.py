"""Streaming decompression of layers: gzip (isal's igzip when installed), zstd, none."""

import gzip

try:
    from isal import igzip as _igzip
except ImportError:         # isal is a dependency, but a plain zlib fallback keeps us working
    _igzip = None


def decompressor(kind, fileobj):
    """A file-like reader of the uncompressed bytes of `fileobj`."""
    if kind == "gzip":
        if _igzip is not None:
            return _igzip.IGzipFile(fileobj=fileobj, mode="rb")
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=True)
    if kind == "":
        return fileobj
    raise ValueError(f"unsupported compression {kind!r}")


def detect(head):
    """Compression of a blob from its first bytes."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return ""


def compress(kind, data, level=None):
    if kind == "gzip":
        if _igzip is not None:
            return _igzip.compress(data, compresslevel=1 if level is None else min(level, 3), mtime=0)
        return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=level or 3).compress(data)
    return data
