"""MNIST: read the original IDX files, check them, and download them if absent.

The four files (``train-images-idx3-ubyte.gz`` and friends) live in
``<data root>/mnist/`` (see :mod:`nncore.data.paths`). The IDX format is a
big-endian header followed by raw unsigned bytes:

- images: int32 magic 2051, int32 count N, int32 rows, int32 cols, then
  N*rows*cols uint8 pixels, row-major; 0 = background, 255 = full ink.
- labels: int32 magic 2049, int32 count N, then N uint8 labels 0-9.

:func:`load_mnist` verifies each .gz file against the md5 sums published with
MNIST, so a truncated or tampered download is caught before training on it.
"""

import hashlib
import io
import os
import struct
import urllib.request
import zlib

import numpy as np

from ..atomic import atomic_write
from ..errors import CorruptInputError, MissingInputError
from .paths import data_root, dataset_dir

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# file name -> md5 of the .gz file, as published on the MNIST home page.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Tried in order; each URL is the folder holding the four files.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_REFETCH = "delete it and run `python experiments/extract_data.py mnist` to download it again"


def read_idx(path):
    """Read one IDX file (gzip-compressed or raw) into a numpy array.

    Inputs:
    - path: a ``.gz`` or uncompressed IDX file (images or labels).

    Returns:
    - images file: uint8 array of shape (N, rows, cols), e.g. (60000, 28, 28);
    - labels file: uint8 array of shape (N,).

    Raises MissingInputError if the file is absent, CorruptInputError if the
    gzip stream is damaged or truncated, the magic number is unknown, or the
    number of bytes does not match the header.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"MNIST file {path} not found; "
                                "check the data root (data_dir=<folder> or NNCORE_DATA_DIR)")
    try:
        stored = os.path.getsize(path)
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            shape, out, got, extra = (_read_gzip if compressed else _read_raw)(raw, stored, path)
    except (OSError, EOFError, zlib.error) as exc:
        reason = "truncated gzip" if isinstance(exc, EOFError) else "damaged gzip"
        raise CorruptInputError(f"cannot read {path}: {reason} ({exc}); {_REFETCH}") from None
    n = _data_bytes(shape)
    if got != n or extra:
        raise CorruptInputError(f"{path}: header says {'x'.join(map(str, shape))} = {n} bytes of data "
                                f"but the file holds {got if got != n else 'more'}; {_REFETCH}")
    return out.reshape(shape)


def _data_bytes(shape):
    """The bytes of pixels (or labels) an IDX header of ``shape`` announces."""
    return int(np.prod(shape, dtype=np.int64))


def _refuse_oversize(shape, limit, path):
    """CorruptInputError, before anything is allocated, if the header claims more bytes than ``limit``."""
    if _data_bytes(shape) > limit:
        raise CorruptInputError(f"{path}: header says {'x'.join(map(str, shape))} = {_data_bytes(shape)} bytes "
                                f"of data, more than the file can hold; {_REFETCH}")


def _read_raw(f, stored, path):
    """(shape, data, bytes read, whether more follow) of an uncompressed IDX file, read straight into
    its array."""
    shape, offset = _idx_header(f, path)
    _refuse_oversize(shape, stored - offset, path)
    out = np.empty(_data_bytes(shape), dtype=np.uint8)
    return shape, out, f.readinto(memoryview(out)), len(f.read(1)) > 0


def _read_gzip(f, stored, path):
    """(shape, data, bytes inflated, whether more follow) of a gzip-compressed IDX file ``f`` of
    ``stored`` bytes.

    Inflated in one call, not streamed in 8 KB pieces: zlib lets go of the interpreter for the whole
    file, so another thread (numba setting itself up while train.py reads its data) runs meanwhile;
    in pieces, the two threads took turns. zlib checks the gzip header and CRC. Nothing larger than
    the header justifies is read or allocated: a size the file cannot hold (gzip packs at most
    ~1030:1) is refused first, and at most what deflate can take to store that many bytes is read.
    """
    inflate = zlib.decompressobj(wbits=31)          # 31: one gzip member, header and trailer
    head = inflate.decompress(f.read(1 << 16), 16)
    shape, offset = _idx_header(io.BytesIO(head), path)
    _refuse_oversize(shape, stored * 1100, path)
    n, first = _data_bytes(shape), head[offset:]
    # deflate stores incompressible data in blocks of up to 65,535 bytes with 5 bytes each of overhead
    compressed = inflate.unconsumed_tail + f.read(n + n // 10000 + (1 << 16))
    rest = inflate.decompress(compressed, max(1, n - len(first) + 1))   # one byte more shows excess
    got = len(first) + len(rest)
    if got <= n and not inflate.eof:
        raise EOFError("the compressed stream ends before its end marker")
    out, k, end = np.empty(n, dtype=np.uint8), min(n, len(first)), min(n, got)
    out[:k] = np.frombuffer(first, dtype=np.uint8)[:k]
    out[k:end] = np.frombuffer(rest, dtype=np.uint8)[:end - k]
    more = got > n or bool(inflate.unconsumed_tail or inflate.unused_data) or len(f.read(1)) > 0
    return shape, out, end, more


def _idx_header(f, path):
    """(shape, header length) of the IDX stream ``f``; CorruptInputError for a short or unknown header."""
    head = f.read(8)
    if len(head) < 8:
        raise CorruptInputError(f"{path} is too short to be an IDX file ({len(head)} bytes); {_REFETCH}")
    magic, count = struct.unpack(">ii", head)
    if magic == IMAGES_MAGIC:
        dims = f.read(8)
        if len(dims) < 8:
            raise CorruptInputError(f"{path}: IDX image header is truncated; {_REFETCH}")
        rows, cols = struct.unpack(">ii", dims)
        shape, offset = (count, rows, cols), 16
    elif magic == LABELS_MAGIC:
        shape, offset = (count,), 8
    else:
        raise CorruptInputError(
            f"{path} is not an MNIST IDX file (magic number {magic}, expected "
            f"{IMAGES_MAGIC} or {LABELS_MAGIC}); {_REFETCH}"
        )
    if min(shape) < 0:
        raise CorruptInputError(f"{path}: IDX header has a negative size {shape}; {_REFETCH}")
    return shape, offset


def md5_file(path, chunk=1 << 20):
    """Return the hex md5 digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_mnist(folder):
    """Check the md5 of the four .gz files in ``folder``; raise CorruptInputError on mismatch."""
    for name, expected in MNIST_FILES.items():
        path = os.path.join(folder, name)
        got = md5_file(path)
        if got != expected:
            raise CorruptInputError(
                f"{path} has md5 {got}, expected {expected} (corrupt or incomplete download); {_REFETCH}"
            )


def _missing(folder):
    return [n for n in MNIST_FILES if not os.path.isfile(os.path.join(folder, n))]


def load_mnist(root=None, download=True, verify=True):
    """Load MNIST as numpy arrays.

    Inputs:
    - root: the data root (a folder holding ``mnist/``), or None for
      ``$NNCORE_DATA_DIR`` / ``data/`` (see :func:`nncore.data.paths.data_root`).
      A folder that itself holds the .gz files is accepted too.
    - download: if the files are missing, fetch them into ``<root>/mnist/``.
    - verify: check the md5 of each .gz file against the published sums.

    Returns a dict:
    - x_train: uint8 (60000, 28, 28), y_train: uint8 (60000,)
    - x_test:  uint8 (10000, 28, 28), y_test:  uint8 (10000,)
    """
    base = data_root(root)
    if os.path.exists(base) and not os.path.isdir(base):
        raise MissingInputError(f"the data root {base} is a file, not a folder; point data_dir=<folder> or "
                                "NNCORE_DATA_DIR at the folder holding mnist/")
    folder = dataset_dir("mnist", root)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise MissingInputError(f"{folder} is a file, not a folder holding the MNIST .gz files")
    if root is not None and not _missing(os.fspath(root)):
        folder = os.fspath(root)  # the user pointed straight at the mnist folder
    missing = _missing(folder)
    if missing:
        if not download:
            raise MissingInputError(
                f"MNIST files missing in {folder}: {', '.join(missing)}; "
                "set NNCORE_DATA_DIR (or data_dir=<folder>) to the folder holding mnist/, or allow the download"
            )
        download_mnist(folder, names=missing)
    if verify:
        verify_mnist(folder)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"))
        if x.ndim != 3 or y.ndim != 1:
            raise CorruptInputError(f"MNIST {split} files in {folder} are swapped (images vs labels); {_REFETCH}")
        if len(x) != len(y):
            raise CorruptInputError(
                f"MNIST {split} set in {folder} has {len(x)} images but {len(y)} labels; {_REFETCH}"
            )
        if y.size and y.max() > 9:
            raise CorruptInputError(f"MNIST {split} labels in {folder} contain {int(y.max())} (expected 0-9); "
                                    f"{_REFETCH}")
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def _fetch(url, opener, timeout, progress):
    """Return the bytes at ``url``, updating a tqdm bar; any failure raises OSError/ValueError."""
    with opener(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
        total = int(total) if total else None
        chunks = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
        try:
            while True:
                block = resp.read(1 << 16)
                if not block:
                    break
                chunks.append(block)
                if bar is not None:
                    bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise OSError(f"connection closed after {len(data)} of {total} bytes")
    return data


def download_mnist(dest, names=None, mirrors=MIRRORS, opener=None, timeout=60, progress=True):
    """Download the MNIST .gz files into ``dest``, trying each mirror in order.

    Inputs:
    - dest: folder to write into (created if needed).
    - names: which files to fetch (default: all four in MNIST_FILES).
    - mirrors: base URLs tried in order for each file.
    - opener: ``urlopen``-like callable ``opener(url, timeout=...)`` returning
      a context manager with ``.read(n)`` (injectable for tests; default
      ``urllib.request.urlopen``).

    A file is written (atomically) only after its md5 matches the published
    sum, so an interrupted or corrupt download never leaves a file behind.
    Raises MissingInputError listing every mirror and its failure if no
    mirror serves a good copy; OutputError if ``dest`` is not writable.
    """
    opener = opener or urllib.request.urlopen
    names = list(MNIST_FILES) if names is None else list(names)
    dest = os.fspath(dest)
    for name in names:
        expected = MNIST_FILES[name]
        failures = []
        for base in mirrors:
            url = base + name
            try:
                data = _fetch(url, opener, timeout, progress)
            except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
                failures.append(f"{url} ({exc})")
                continue
            got = hashlib.md5(data).hexdigest()
            if got != expected:
                failures.append(f"{url} (md5 {got} != {expected})")
                continue
            with atomic_write(os.path.join(dest, name), "wb") as f:
                f.write(data)
            break
        else:
            raise MissingInputError(
                f"could not download {name}; tried: {'; '.join(failures)}; "
                f"copy the MNIST files into {dest} by hand or set NNCORE_DATA_DIR"
            )
    return dest
