"""Hand-made ``.npz`` files for the weights-file safety tests: crafted ``.npy`` headers, declared zip
sizes that lie, and zip bombs built without ever holding their inflated size.

:func:`write_zip` writes the zip structure itself (local headers, central directory, zip64 size
fields), so that a member's declared size, CRC and compressed bytes can each be chosen freely, and a
member's compressed bytes can come from a generator: :func:`deflate_zeros` yields a valid deflate
stream of gigabytes of zeros in a few megabytes, and :func:`crc32_zeros` gives its true CRC-32
without reading the zeros.
"""

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

STORED, DEFLATED = 0, 8


def npy_header(descr, shape, fortran_order=False, version=(1, 0), text=None):
    """The bytes of a ``.npy`` header (magic, length, dict), padded like numpy pads it.

    ``descr`` is written with ``repr`` (a dtype string such as ``'<f4'`` or a structured list);
    ``text`` replaces the whole dict literal, to write a damaged header.
    """
    body = text if text is not None else repr({"descr": descr, "fortran_order": fortran_order,
                                               "shape": tuple(shape)})
    fmt = "<H" if version[0] == 1 else "<I"
    start = 6 + 2 + struct.calcsize(fmt)
    pad = -(start + len(body) + 1) % 64
    raw = (body + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(raw)) + raw


@dataclass
class Member:
    """One zip entry. ``chunks``: its compressed bytes (an iterable); the sizes and CRC are what the
    zip declares, whatever the bytes are."""

    name: str
    chunks: object
    file_size: int
    compress_size: int
    crc: int
    method: int = STORED
    flags: int = 0
    extra_central: bytes = field(default=b"")


def member(name, data, method=STORED, file_size=None, crc=None):
    """A member holding ``data`` (stored or deflated); ``file_size`` / ``crc`` override the truth."""
    payload = data if method == STORED else _deflate(data)
    return Member(name, [payload], len(data) if file_size is None else file_size, len(payload),
                  zlib.crc32(data) if crc is None else crc, method)


def _deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def write_zip(path, members):
    """Write ``members`` as a zip archive (every size field in zip64 form) to ``path``."""
    central = []
    with open(path, "wb") as f:
        for m in members:
            offset = f.tell()
            name = m.name.encode("utf-8")
            local64 = struct.pack("<HHQQ", 1, 16, m.file_size, m.compress_size)
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, m.flags, m.method, 0, 0x21, m.crc,
                                0xFFFFFFFF, 0xFFFFFFFF, len(name), len(local64)) + name + local64)
            for chunk in m.chunks:
                f.write(chunk)
            extra = struct.pack("<HHQQQ", 1, 24, m.file_size, m.compress_size, offset) + m.extra_central
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, m.flags, m.method, 0, 0x21,
                                       m.crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0,
                                       0xFFFFFFFF) + name + extra)
        start = f.tell()
        f.write(b"".join(central))
        size, n = f.tell() - start, len(members)
        if n > 0xFFFF:  # zip64 end record and its locator; the end record then says "see zip64"
            end64 = f.tell()
            f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, size, start))
            f.write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
            n, size, start = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, size, start, 0))


def members_of(npz_path):
    """The members of an existing (numpy-written) ``.npz``, as stored :class:`Member` records."""
    import zipfile
    with zipfile.ZipFile(npz_path) as zf:
        return [member(info.filename, zf.read(info)) for info in zf.infolist()]


def replace(members, name, new):
    """``members`` with the one called ``name`` replaced by ``new`` (appended when absent)."""
    out = [m for m in members if m.name != name]
    return out + [new]


def deflate_zeros(prefix, n_zeros, block=1 << 20):
    """Yield a raw deflate stream of ``prefix`` followed by ``n_zeros`` zero bytes, a block at a time.

    After a full flush the compressor starts afresh, so every later block of zeros compresses to
    the same bytes: they are computed once and repeated (about 1 KB per MiB of zeros).
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = min(block, n_zeros)
    yield c.compress(prefix) + c.compress(bytes(first)) + c.flush(zlib.Z_FULL_FLUSH)
    left = n_zeros - first
    if left >= block:
        again = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
        assert again == c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
        for _ in range(left // block):
            yield again
        left %= block
    yield c.compress(bytes(left)) + c.flush()


def _gf2_apply(op, v):
    out, i = 0, 0
    while v:
        if v & 1:
            out ^= op[i]
        v >>= 1
        i += 1
    return out


def _gf2_compose(a, b):
    return [_gf2_apply(a, col) for col in b]


def crc32_zeros(crc, n):
    """``zlib.crc32(bytes(n), crc)`` without the n bytes.

    For a zero byte the CRC register update is linear over GF(2), so ``n`` zero bytes apply its
    n-th power, computed by repeated squaring (what zlib's ``crc32_combine`` does).
    """
    one_bit = [0xEDB88320] + [1 << (i - 1) for i in range(1, 32)]  # shift right, feed back bit 0
    op = one_bit
    for _ in range(2):
        op = _gf2_compose(op, op)                                  # 4 bits
    op = _gf2_compose(op, op)                                      # 8 bits: one zero byte
    reg, power = crc ^ 0xFFFFFFFF, n
    while power:
        if power & 1:
            reg = _gf2_apply(op, reg)
        op = _gf2_compose(op, op)
        power >>= 1
    return reg ^ 0xFFFFFFFF


def zeros_bomb(name, descr, shape):
    """A deflated member ``name`` whose ``.npy`` header declares ``shape`` of ``descr`` and whose data
    is that many zero bytes: true sizes, true CRC, a few KB per GB on disk."""
    header = npy_header(descr, shape)
    n = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize
    chunks = list(deflate_zeros(header, n))
    return Member(name, chunks, len(header) + n, sum(map(len, chunks)), crc32_zeros(zlib.crc32(header), n),
                  DEFLATED)
