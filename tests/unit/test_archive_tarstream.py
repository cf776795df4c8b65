"""The one-pass tar reader against tarfile and GNU tar: long names, PAX, links, devices."""

import io
import os
import subprocess
import tarfile

import pytest

from corral.archive.tarstream import TarStream, TarStreamError

LONG = "d" * 120 + "/" + "f" * 150


def facts_ours(data):
    s = TarStream(io.BytesIO(data))
    out = []
    for m in s:
        body = s.extractfile(m).read(1 << 30) if m.isreg() else b""
        out.append((m.name.rstrip("/"), m.type, m.linkname, m.size if m.isreg() else 0, m.mode, m.uid,
                    int(m.mtime), body, {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY")}))
    return out


def facts_tarfile(data):
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            body = t.extractfile(m).read() if m.isreg() else b""
            out.append((m.name.rstrip("/"), m.type, m.linkname, m.size if m.isreg() else 0, m.mode, m.uid,
                        int(m.mtime), body, {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY")}))
    return out


def build(fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, extra in [("dir", tarfile.DIRTYPE, None), (LONG, tarfile.REGTYPE, b"x" * 1000),
                                  ("sym", tarfile.SYMTYPE, "/" + "t" * 200), ("hl", tarfile.LNKTYPE, LONG),
                                  ("empty", tarfile.REGTYPE, b""), ("big", tarfile.REGTYPE, os.urandom(70000))]:
            i = tarfile.TarInfo(name)
            i.type = kind
            i.uid, i.mtime, i.mode = 3000000 if fmt == tarfile.PAX_FORMAT else 1000, 1700000000, 0o4755
            if kind == tarfile.REGTYPE:
                i.size = len(extra)
            elif extra:
                i.linkname = extra
            if fmt == tarfile.PAX_FORMAT and name == "big":
                i.pax_headers = {"SCHILY.xattr.user.k": "v\u00e9"}
            t.addfile(i, io.BytesIO(extra) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_same_as_tarfile(fmt):
    data = build(fmt)
    assert facts_ours(data) == facts_tarfile(data)


def test_gnu_tar(tmpdir_root):
    src = os.path.join(tmpdir_root, "src")
    os.makedirs(os.path.join(src, "a" * 110, "b" * 60))
    with open(os.path.join(src, "a" * 110, "b" * 60, "c" * 90), "wb") as f:
        f.write(b"content")
    os.link(os.path.join(src, "a" * 110, "b" * 60, "c" * 90), os.path.join(src, "hard"))
    os.mkfifo(os.path.join(src, "fifo"))
    for fmt in ("gnu", "posix"):
        data = subprocess.run(["tar", "-C", src, f"--format={fmt}", "-cf", "-", "."], check=True,
                              capture_output=True).stdout
        assert facts_ours(data) == facts_tarfile(data)


def test_truncated_and_garbage():
    data = build(tarfile.PAX_FORMAT)
    with pytest.raises(TarStreamError, match="truncated"):
        for m in (s := TarStream(io.BytesIO(data[:2000]))):
            s.extractfile(m).read(1 << 30)
    with pytest.raises(TarStreamError, match="header"):
        list(TarStream(io.BytesIO(b"x" * 1024)))


def test_member_data_through_readinto_and_through_read_only_sources():
    import tarfile as tf
    buf = io.BytesIO()
    body = os.urandom(300000)
    with tf.open(fileobj=buf, mode="w", format=tf.PAX_FORMAT) as t:
        info = tf.TarInfo("big")
        info.size = len(body)
        t.addfile(info, io.BytesIO(body))
        info = tf.TarInfo("small")
        info.size = 5
        t.addfile(info, io.BytesIO(b"small"))
    data = buf.getvalue()

    class ReadOnly:                 # a source without readinto
        def __init__(self, b):
            self.f = io.BytesIO(b)

        def read(self, n=-1):
            return self.f.read(min(n, 7000) if n and n > 0 else n)

    for src in (io.BytesIO(data), ReadOnly(data)):
        s = TarStream(src)
        out = {}
        for m in s:
            f = s.extractfile(m)
            got = bytearray()
            chunk = bytearray(65536)
            while n := f.readinto(chunk):
                got += chunk[:n]
            out[m.name] = bytes(got)
        assert out == {"big": body, "small": b"small"}

    s = TarStream(io.BytesIO(data[:5000]))
    m = next(iter(s))
    with pytest.raises(TarStreamError, match="truncated"):
        while s.extractfile(m).readinto(bytearray(65536)):
            pass
