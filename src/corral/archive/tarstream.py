"""A one-pass reader of tar streams, for applying layers.

tarfile's stream mode copies every byte through its own buffer joins; this reader hands
member data straight from the (decompressing) source. Headers are parsed by tarfile.TarInfo
(ustar, GNU and base-256 numbers, checksums); PAX extended headers (per file and global) and
GNU long names are applied here. Sparse members are refused: image layers do not use them.
"""

import tarfile

BLOCK = 512
_PAX_FIELDS = {"path": "name", "linkpath": "linkname", "uname": "uname", "gname": "gname"}
_PAX_NUMBERS = {"size": "size", "uid": "uid", "gid": "gid"}


class TarStreamError(Exception):
    pass


def _parse_pax(data):
    out = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise TarStreamError("bad PAX header record length") from None
        if length <= 0 or pos + length > len(data):
            raise TarStreamError("bad PAX header record")
        record = data[sp + 1:pos + length - 1]     # drop the trailing newline
        key, eq, value = record.partition(b"=")
        if not eq:
            raise TarStreamError("bad PAX header record (no '=')")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarStream:
    def __init__(self, f):
        self.f = f
        self._left = 0          # unread data bytes of the current member
        self._pad = 0           # padding after it
        self._global = {}

    def _read_exact(self, n):
        chunks = []
        while n > 0:
            b = self.f.read(n)
            if not b:
                raise TarStreamError("unexpected end of data: the layer is truncated")
            chunks.append(b)
            n -= len(b)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _skip(self, n):
        while n > 0:
            n -= len(self._read_exact(min(n, 1 << 20)))

    def _data(self, size, limit=1 << 20):
        if size > limit:
            raise TarStreamError(f"tar extension header of {size} bytes is too large")
        data = self._read_exact(size)
        self._skip(-size % BLOCK)
        return data

    def __iter__(self):
        pax, longname, longlink = {}, None, None
        while True:
            self._skip(self._left + self._pad)
            self._left = self._pad = 0
            hdr = self.f.read(BLOCK)
            if not hdr:
                return          # no end-of-archive blocks: tolerated, as tar does
            if len(hdr) < BLOCK:
                hdr += self._read_exact(BLOCK - len(hdr))
            if hdr == bytes(BLOCK):
                return
            try:
                info = tarfile.TarInfo.frombuf(hdr, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise TarStreamError(f"bad tar header: {e}") from None
            t = info.type
            if t in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                pax.update(_parse_pax(self._data(info.size)))
                continue
            if t == tarfile.XGLTYPE:
                self._global.update(_parse_pax(self._data(info.size)))
                continue
            if t == tarfile.GNUTYPE_LONGNAME:
                longname = self._data(info.size).rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if t == tarfile.GNUTYPE_LONGLINK:
                longlink = self._data(info.size).rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if t == tarfile.GNUTYPE_SPARSE or "GNU.sparse.major" in pax or "GNU.sparse.size" in pax:
                raise TarStreamError(f"sparse tar member {info.name!r} is not supported in layers")
            if longname is not None:
                info.name = longname
            if longlink is not None:
                info.linkname = longlink
            headers = {**self._global, **pax}
            for key, value in headers.items():
                if key in _PAX_FIELDS:
                    setattr(info, _PAX_FIELDS[key], value)
                elif key in _PAX_NUMBERS:
                    try:
                        setattr(info, _PAX_NUMBERS[key], int(value))
                    except ValueError:
                        raise TarStreamError(f"bad PAX {key} {value!r}") from None
                elif key == "mtime":
                    try:
                        info.mtime = float(value)
                    except ValueError:
                        raise TarStreamError(f"bad PAX mtime {value!r}") from None
            info.pax_headers = headers
            pax, longname, longlink = {}, None, None
            # as tarfile: only regular files (and unknown types) carry data
            size = info.size if info.isreg() or info.type not in tarfile.SUPPORTED_TYPES else 0
            self._left = size
            self._pad = -size % BLOCK
            yield info

    def extractfile(self, member):
        return _Member(self)


class _Member:
    def __init__(self, stream):
        self.s = stream

    def read(self, n):
        n = min(n, self.s._left)
        if n <= 0:
            return b""
        b = self.s.f.read(n)
        if not b:
            raise TarStreamError("unexpected end of data: the layer is truncated")
        self.s._left -= len(b)
        return b

    def readinto(self, b):
        """Read into the caller's buffer (no new bytes object per chunk)."""
        n = min(len(b), self.s._left)
        if n <= 0:
            return 0
        readinto = getattr(self.s.f, "readinto", None)
        if readinto is None:
            data = self.s.f.read(n)
            got = len(data)
            b[:got] = data
        else:
            got = readinto(memoryview(b)[:n])
        if not got:
            raise TarStreamError("unexpected end of data: the layer is truncated")
        self.s._left -= got
        return got
