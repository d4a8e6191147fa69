"""Self-describing ``.npz`` weights files: save, load, and rebuild the model.

One file holds everything needed to use a trained model without the code
that trained it:

* ``__nncore__``: a JSON header (as a unicode array): format name and
  version, the architecture (each layer's type and config), the input shape,
  class names and symbols, the input scaling, and free-form metadata
  (training command, accuracy, dates...);
* ``layers.<i>.<name>``: every parameter and buffer (BatchNorm statistics),
  in host memory, whatever device the model trained on;
* ``extra.<name>``: optional extra arrays (training checkpoints keep the
  optimizer state and the best weights here).

Files are written atomically (temporary file, then rename), so an
interrupted save leaves the previous file intact.

Reading untrusted files
-----------------------
A weights file is something people download, so :func:`load_model` trusts
nothing in it. It opens the ``.npz`` as a zip archive and decides from sizes
*declared* in the file, before reading any array data, whether the file can
be what it claims; only then does it read exactly the bytes it expects. A
file that declares gigabytes of data (a compressed run of zeros, a ``.npy``
header claiming 2**40 floats) is refused in milliseconds with one
:class:`~nncore.errors.CorruptInputError` line (exit code 4 in the scripts).
In order:

1. the zip's central directory: its size as the end record declares it (read
   from the file's last 64 KiB, before zipfile parses the directory) at most
   :data:`MAX_DIRECTORY_BYTES`; then at most :data:`MAX_MEMBERS` entries, no name
   twice, and each entry that will be read is stored or deflated (what
   numpy writes; bzip2 and lzma members, whose decompressors cannot be
   bounded, and encrypted members are refused);
2. the ``__nncore__`` header: its zip entry declares at most
   :data:`MAX_HEADER_BYTES` (about a million characters of JSON), its
   ``.npy`` header says a unicode scalar, then the JSON: format name,
   version, the fields' types, a float32/float64 dtype, an input scaling
   whose mean and std lie within 1e6 (the std at least 1e-6), at most
   :data:`MAX_LAYERS` layers, and parameters and buffers (counted from the
   layers' configs, before any layer is built) of at most
   :data:`MAX_SCALARS` numbers;
3. the layers are built; the file must hold exactly the ``layers.`` arrays
   the architecture has (names only, nothing read yet);
4. each array's ``.npy`` header (read alone from the member stream, at most
   :data:`NPY_HEADER_LIMIT` bytes, format version 1.0 or 2.0): parameters
   and buffers must have exactly the shape the architecture needs and a
   float16/32/64 dtype, extra arrays a plain numeric or string dtype (never
   object, structured or void) and, all together, at most
   :data:`EXTRA_FACTOR` times the model's own bytes plus
   :data:`EXTRA_SLACK` (a checkpoint needs at most three times: Adam's two
   moments and the best weights); Fortran order is fine; and the zip
   entry's declared size must equal the ``.npy`` header plus the bytes its
   shape and dtype need;
5. only then the data, in 1 MiB chunks, exactly the expected bytes, with
   the zip's CRC-32 checked; then the values must be finite.

Nothing is ever unpickled (object arrays are refused from their header).
Members other than the header, ``layers.`` and ``extra.`` arrays are never
read. Stored and deflated reads are bounded by the sizes checked above, so
no member can inflate past what its header was allowed to declare.
Files written by :func:`save_model` always fit these limits: it refuses,
with a UsageError, a model or metadata too large to load back.
"""

import contextlib
import io
import json
import math
import os
import struct
import tokenize
import warnings
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from . import backend
from .atomic import atomic_write
from .errors import CorruptInputError, MissingInputError, NncoreError, UsageError
from .layers import layer_from_config
from .sequential import Sequential

FORMAT = "nncore-weights"
VERSION = 1
HEADER_KEY = "__nncore__"
#: the weights/ folder of the checkout nncore runs from (a clone or an editable install): the shipped files
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")

#: Most zip entries a weights file may have, and most bytes their central directory may take.
MAX_MEMBERS = 10_000
MAX_DIRECTORY_BYTES = 2 * 2**20
#: Most bytes of the JSON header's array data (4 bytes per character: about a million characters).
MAX_HEADER_BYTES = 4 * 2**20
#: Most layers an architecture may have.
MAX_LAYERS = 1_000
#: Most parameters and buffers (numbers) a model may have: 256 MiB in float32.
MAX_SCALARS = 2**26
#: Extra arrays, together, hold at most EXTRA_FACTOR times the model's bytes plus EXTRA_SLACK bytes.
EXTRA_FACTOR = 4
EXTRA_SLACK = 16 * 2**20
#: Most bytes of one ``.npy`` header (numpy's own parsing limit).
NPY_HEADER_LIMIT = 10_000
#: dtype kinds an extra array may have: bool, integers, floats, complex, bytes and unicode strings.
EXTRA_KINDS = "biufcSU"
_FLOAT_SIZES = (2, 4, 8)
_CHUNK = 2**20


# -- writing -------------------------------------------------------------------------------------------

def save_model(model, path, metadata=None, extra_arrays=None):
    """Write ``model`` (and optional metadata / extra arrays) to ``path`` atomically.

    Raises UsageError, before writing anything, for what :func:`load_model`
    would refuse: a model over :data:`MAX_SCALARS` numbers, metadata over
    :data:`MAX_HEADER_BYTES`, extra arrays of another dtype kind than
    :data:`EXTRA_KINDS` or over the extra arrays' cap.
    """
    arrays = model.state_dict()
    model_bytes = _check_model_size(arrays)
    extra_bytes = 0
    for name, arr in (extra_arrays or {}).items():
        arr = backend.to_numpy(arr)
        _check_extra_dtype(arr.dtype, f"extra array {name!r}", UsageError)
        arrays[f"extra.{name}"] = arr
        extra_bytes += arr.nbytes
    if extra_bytes > _extra_budget(model_bytes):
        raise UsageError(f"the extra arrays hold {extra_bytes:,} bytes, over the {_extra_budget(model_bytes):,} "
                         f"a weights file of this model may hold (EXTRA_FACTOR in nncore/weights.py)")
    text = json.dumps(_header_dict(model, metadata), ensure_ascii=False)
    if 4 * len(text) > MAX_HEADER_BYTES:
        raise UsageError(f"the header (architecture and metadata) takes {4 * len(text):,} bytes, over the "
                         f"{MAX_HEADER_BYTES:,} limit of weights files; store less metadata")
    arrays[HEADER_KEY] = np.array(text)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _header_dict(model, metadata):
    return {
        "format": FORMAT,
        "version": VERSION,
        "architecture": [{"type": type(layer).__name__, **layer.config()} for layer in model.layers],
        "input_shape": list(model.input_shape),
        "class_names": list(model.class_names),
        "symbols": list(model.symbols),
        "input_scaling": model.input_scaling,
        "dtype": np.dtype(model.dtype).name,
        "metadata": metadata or {},
    }


def _check_model_size(arrays):
    """Total bytes of a state dict; UsageError when it holds more than MAX_SCALARS numbers."""
    scalars = sum(a.size for a in arrays.values())
    if scalars > MAX_SCALARS:
        raise UsageError(f"the model has {scalars:,} parameters and buffers; weights files hold at most "
                         f"{MAX_SCALARS:,} (MAX_SCALARS in nncore/weights.py)")
    return sum(a.nbytes for a in arrays.values())


def _extra_budget(model_bytes):
    return EXTRA_FACTOR * model_bytes + EXTRA_SLACK


# -- the zip archive and its .npy members -------------------------------------------------------------

class _Npy(NamedTuple):
    """What a member's ``.npy`` header declares, and where its data starts."""

    dtype: np.dtype
    shape: tuple
    fortran_order: bool
    offset: int

    @property
    def nbytes(self):
        return math.prod(self.shape) * self.dtype.itemsize


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _reading(path, key):
    """Turn what a damaged zip member can raise into one CorruptInputError line."""
    try:
        yield
    except NncoreError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise CorruptInputError(f"{path} is truncated or corrupt (array {key!r}: {_one_line(exc)}); "
                                "re-download or re-train it") from None


@contextlib.contextmanager
def _open(path):
    """The weights file as an open :class:`zipfile.ZipFile` (missing, folder, not a zip: refused)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"weights file {path} does not exist; train one with experiments/train.py "
                                "or pass the path of a shipped file such as weights/mnist_cnn.npz")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder; give the path of a .npz weights file")
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise CorruptInputError(f"{path} is a single .npy array, not an nncore weights file")
            directory = _declared_directory_size(f)
        if directory > MAX_DIRECTORY_BYTES:
            raise CorruptInputError(f"{path} declares a zip directory of {directory:,} bytes, more than the "
                                    f"{MAX_DIRECTORY_BYTES:,} of a weights file; refusing it")
        archive = zipfile.ZipFile(path)
    except NncoreError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CorruptInputError(f"{path} is not an nncore weights file "
                                f"(not a readable .npz: {_one_line(exc)})") from None
    with archive:
        yield archive


def _declared_directory_size(f):
    """The central directory's size as the zip's end record (or its zip64 record) declares it; 0 where
    there is no end record (zipfile then says what is wrong).

    Finds the record as zipfile does (the last 22 bytes, else the last signature in
    the final 64 KiB) so that both read the same one: zipfile parses exactly this
    many bytes of directory into ZipInfo objects (about 600 bytes of memory for each
    46 bytes of file) before any check of ours could run.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - 22 - 2**16))
    tail = f.read()
    at = len(tail) - 22 if tail[-22:-18] == b"PK\x05\x06" and tail[-2:] == b"\0\0" else tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return 0
    declared = struct.unpack_from("<I", tail, at + 12)[0]
    z64 = size - (len(tail) - at) - 20 - 56         # zip64 end record, then its locator, then the end record
    if z64 >= 0:
        f.seek(z64)
        record = f.read(56 + 20)
        if record[56:60] == b"PK\x06\x07" and record[:4] == b"PK\x06\x06":
            declared = struct.unpack_from("<Q", record, 40)[0]
    return declared


def _members(archive, path):
    """``{key: ZipInfo}``, keys without the ``.npy`` suffix (as numpy names them); checks the count and
    duplicates from the central directory alone."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CorruptInputError(f"{path} has {len(infos):,} entries, more than the {MAX_MEMBERS:,} a weights "
                                "file may have; refusing it")
    members = {}
    for info in infos:
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in members:
            raise CorruptInputError(f"{path} holds array {key!r} twice; the file is corrupt or crafted")
        members[key] = info
    return members


def _check_entry(info, key, path, max_data_bytes):
    """Before opening a member: a compression nncore can bound, no encryption, a sane declared size."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CorruptInputError(f"{path}: array {key!r} uses zip compression method {info.compress_type}; "
                                "weights files are stored or deflated (as numpy writes them)")
    if info.flag_bits & 0x1:
        raise CorruptInputError(f"{path}: array {key!r} is encrypted; weights files are not")
    limit = NPY_HEADER_LIMIT + max_data_bytes
    if info.file_size > limit:
        raise CorruptInputError(f"{path}: array {key!r} declares {info.file_size:,} bytes, more than the "
                                f"{limit:,} it may hold; refusing the file")


def _read_exact(stream, n, what):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError(f"{what} ends after {len(data)} of {n} bytes")
        data += chunk
    return data


def _parse_npy_header(stream):
    """Read one ``.npy`` header from ``stream`` and nothing more: (dtype, shape, fortran_order, length)."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version[0]}.{version[1]}; numeric arrays use 1.0 or 2.0")
    fmt = "<H" if version == (1, 0) else "<I"
    prefix = _read_exact(stream, struct.calcsize(fmt), ".npy header")
    length = struct.unpack(fmt, prefix)[0]
    if length > NPY_HEADER_LIMIT:
        raise ValueError(f".npy header of {length:,} bytes, over the {NPY_HEADER_LIMIT:,} limit")
    text = io.BytesIO(prefix + _read_exact(stream, length, ".npy header"))
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, then reads, a header it can only parse as Python 2's
            shape, fortran_order, dtype = reader(text)
    except (SyntaxError, TypeError, RecursionError, MemoryError, tokenize.TokenError, Warning) as exc:
        # what numpy's parser (ast.literal_eval, then tokenize for Python 2 headers) raises on garbage
        raise ValueError(f"cannot parse the .npy header ({type(exc).__name__})") from None
    return dtype, tuple(int(d) for d in shape), bool(fortran_order), 8 + len(prefix) + length


def _npy_header(archive, info, key, path):
    """The member's ``.npy`` header, read alone from the member stream (no array data)."""
    with _reading(path, key), archive.open(info) as stream:
        dtype, shape, fortran_order, offset = _parse_npy_header(stream)
    if dtype.hasobject:
        raise CorruptInputError(f"{path}: array {key!r} holds Python objects ({dtype.str}) and cannot be loaded "
                                "safely (that would unpickle them); refusing it")
    if min(shape, default=0) < 0:
        raise CorruptInputError(f"{path}: array {key!r} declares a negative size in shape {shape}")
    return _Npy(dtype, shape, fortran_order, offset)


def _check_declared_size(info, npy, key, path):
    """The zip entry's declared size must be the .npy header plus what its shape and dtype need."""
    need = npy.offset + npy.nbytes
    if info.file_size != need:
        raise CorruptInputError(f"{path}: array {key!r} is {info.file_size:,} bytes in the zip, but its header "
                                f"({npy.dtype.str} {npy.shape}) needs {need:,}; the file is corrupt or crafted")


def _read_data(archive, info, npy, key, path):
    """Exactly the array's bytes, a chunk at a time, into a fresh array (CRC checked by zipfile)."""
    count = math.prod(npy.shape)
    flat = np.empty(count, dtype=npy.dtype)
    raw = flat.view(np.uint8)
    with _reading(path, key), archive.open(info) as stream:
        _read_exact(stream, npy.offset, ".npy header")
        done = 0
        while done < raw.size:
            n = stream.readinto(raw[done:done + _CHUNK])
            if not n:
                raise EOFError(f"array data ends after {done:,} of {raw.size:,} bytes")
            done += n
    return flat.reshape(npy.shape[::-1]).T if npy.fortran_order else flat.reshape(npy.shape)


# -- the JSON header -----------------------------------------------------------------------------------

def _header_text(archive, members, path):
    info = members.get(HEADER_KEY)
    if info is None:
        raise CorruptInputError(f"{path} has no array {HEADER_KEY!r}: not an nncore weights file or made by "
                                "another version")
    _check_entry(info, HEADER_KEY, path, MAX_HEADER_BYTES)
    npy = _npy_header(archive, info, HEADER_KEY, path)
    if npy.dtype.kind != "U" or npy.shape != ():
        raise CorruptInputError(f"{path} has a damaged header ({npy.dtype.str} {npy.shape}, not a JSON string); "
                                "re-download or re-train it")
    if npy.nbytes > MAX_HEADER_BYTES:
        raise CorruptInputError(f"{path} has a header of {npy.nbytes:,} bytes, over the {MAX_HEADER_BYTES:,} "
                                "limit of weights files; refusing it")
    _check_declared_size(info, npy, HEADER_KEY, path)
    return str(_read_data(archive, info, npy, HEADER_KEY, path)[()])


def _parse_header(text, path):
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, an integer of over 4300 digits, deep nesting
        raise CorruptInputError(f"{path} has a damaged header; re-download or re-train it") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptInputError(f"{path} is not an nncore weights file")
    if header.get("version") != VERSION:
        raise CorruptInputError(f"{path} has weights format version {header.get('version')}, "
                                f"this nncore reads version {VERSION}; upgrade nncore")
    return header


def read_header(path):
    """The JSON header of a weights file, as a dict (validated; no array data is read)."""
    with _open(path) as archive:
        return _parse_header(_header_text(archive, _members(archive, path), path), path)


def _as_int(value):
    """``int(value)`` as the layers' constructors take it, or 0 where they would refuse it."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _kernel_area(value):
    if isinstance(value, (int, np.integer)):
        return _as_int(value) ** 2
    try:
        sides = [int(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        return 0
    return sides[0] * sides[1] if len(sides) == 2 else 0


def declared_scalars(spec):
    """Parameters and buffers (numbers) that the constructor of layer ``spec`` allocates, from the spec alone.

    Lets :func:`load_model` refuse a huge architecture before building (and
    allocating) it. Configs a constructor refuses before allocating count 0.
    """
    kind = spec.get("type")
    if kind in ("Conv2D", "ConvReLUPool", "ConvBNReLUPool"):
        out = _as_int(spec.get("out_channels"))
        n = _as_int(spec.get("in_channels")) * out * _kernel_area(spec.get("kernel_size"))
        extra = 4 * out if kind == "ConvBNReLUPool" else (out if spec.get("bias", True) else 0)
        return max(0, n + extra)
    if kind in ("Dense", "DenseBNReLUDropout"):
        out = _as_int(spec.get("out_features"))
        extra = 4 * out if kind == "DenseBNReLUDropout" else (out if spec.get("bias", True) else 0)
        return max(0, _as_int(spec.get("in_features")) * out + extra)
    if kind == "BatchNorm":
        return max(0, 4 * _as_int(spec.get("num_features")))
    return 0


def _check_header_fields(header, path):
    """Types of the fields the model is built from, and the architecture's size, before building anything."""
    arch = header.get("architecture")
    if not isinstance(arch, list) or not all(isinstance(spec, dict) for spec in arch):
        raise CorruptInputError(f"{path}: the stored architecture is invalid (not a list of layer configs)")
    if len(arch) > MAX_LAYERS:
        raise CorruptInputError(f"{path}: the stored architecture has {len(arch):,} layers, more than the "
                                f"{MAX_LAYERS:,} nncore loads; refusing it")
    scalars = sum(declared_scalars(spec) for spec in arch)
    if scalars > MAX_SCALARS:
        raise CorruptInputError(f"{path}: the stored architecture has {scalars:,} parameters and buffers, more "
                                f"than the {MAX_SCALARS:,} a weights file may hold; refusing it")
    for field, kinds in (("input_shape", list), ("class_names", list), ("symbols", (list, type(None))),
                         ("input_scaling", (dict, type(None)))):
        if not isinstance(header.get(field), kinds):
            raise CorruptInputError(f"{path}: the header's {field!r} is missing or of the wrong type")
    scaling = header["input_scaling"] or {"mean": 0.0, "std": 1.0}
    mean, std = scaling.get("mean"), scaling.get("std")
    if not (all(isinstance(v, (int, float)) and abs(v) <= 1e6 for v in (mean, std)) and std >= 1e-6):
        raise CorruptInputError(f"{path}: the header's input scaling {_one_line(scaling)} is invalid (pixels in [0, 1] "
                                "take a mean and a std within 1e6, the std at least 1e-6)")
    if header.get("dtype", "float32") not in ("float32", "float64"):
        raise CorruptInputError(f"{path}: the header's dtype {header.get('dtype')!r} is not float32 or float64")


def _build_model(header, path):
    try:
        layers = [layer_from_config(spec) for spec in header["architecture"]]
        model = Sequential(layers, header["input_shape"], class_names=header["class_names"],
                           input_scaling=header["input_scaling"], symbols=header.get("symbols"))
    except CorruptInputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, ZeroDivisionError) as exc:
        raise CorruptInputError(f"{path}: the stored architecture is invalid ({_one_line(exc)})") from None
    return model.astype(np.dtype(header.get("dtype", "float32")))


# -- arrays ----------------------------------------------------------------------------------------------

def _check_layer_keys(refs, members, path):
    """The file holds exactly the model's ``layers.`` arrays (from the names alone)."""
    stray = sorted(k for k in members if k.startswith("layers.") and k not in refs)
    if stray:
        raise CorruptInputError(f"{path}: arrays {stray[:3]} do not belong to this model's layers; "
                                "the file does not fit its architecture")
    for key, ref in refs.items():
        if key not in members:
            raise CorruptInputError(f"{path}: no array {key!r} for {type(ref.layer).__name__}; "
                                    "the file does not fit its architecture")


def _plan_layer_array(archive, info, ref, path):
    """Header checks of one parameter or buffer: float dtype, the exact shape, the exact declared size."""
    key, need = ref.key, tuple(ref.value.shape)
    _check_entry(info, key, path, math.prod(need) * max(_FLOAT_SIZES))
    npy = _npy_header(archive, info, key, path)
    if npy.dtype.kind != "f" or npy.dtype.itemsize not in _FLOAT_SIZES:
        raise CorruptInputError(f"{path}: {key} has dtype {npy.dtype.str}, not float16/32/64; "
                                "the file does not fit its architecture")
    if npy.shape != need:
        raise CorruptInputError(f"{path}: {key} has shape {npy.shape} but {type(ref.layer).__name__} needs {need}; "
                                "the file does not fit its architecture")
    _check_declared_size(info, npy, key, path)
    return npy


def _check_extra_dtype(dtype, what, error):
    if dtype.kind not in EXTRA_KINDS or dtype.fields is not None or dtype.subdtype is not None or not dtype.itemsize:
        raise error(f"{what} has dtype {dtype.str}; extra arrays hold numbers or strings (kinds {EXTRA_KINDS})")


def _plan_extras(archive, members, model_bytes, path):
    """Header checks of the ``extra.`` arrays: plain dtypes, their total under the cap, exact sizes."""
    budget, total, plan = _extra_budget(model_bytes), 0, {}
    for key, info in members.items():
        if not key.startswith("extra."):
            continue
        _check_entry(info, key, path, budget - total)
        npy = _npy_header(archive, info, key, path)
        _check_extra_dtype(npy.dtype, f"{path}: array {key!r}", CorruptInputError)
        total += math.prod(max(d, 1) for d in npy.shape) * npy.dtype.itemsize  # a (0, 2**62) array counts 2**62
        if total > budget:
            raise CorruptInputError(f"{path}: the extra arrays declare over {budget:,} bytes, more than a "
                                    f"checkpoint of this model holds ({EXTRA_FACTOR}x its arrays); refusing them")
        _check_declared_size(info, npy, key, path)
        plan[key] = npy
    return plan


def load_model(path, return_extra=False):
    """Rebuild a :class:`~nncore.sequential.Sequential` from a weights file.

    The model comes back in evaluation mode on the CPU, with its class names,
    symbols, input scaling and ``metadata`` (a dict; empty when the file has none),
    so ``model.predict(images)`` works on raw images straight away. With ``return_extra=True`` returns
    ``(model, header, extra)`` where ``extra`` maps names to the extra arrays.

    Every file is checked from its declared sizes before any array data is
    read (see the module docstring for the checks and limits); a file that
    does not pass raises :class:`~nncore.errors.CorruptInputError`.
    """
    with _open(path) as archive:
        members = _members(archive, path)
        header = _parse_header(_header_text(archive, members, path), path)
        _check_header_fields(header, path)
        model = _build_model(header, path)
        refs = {ref.key: ref for ref in model.named_arrays()}
        _check_layer_keys(refs, members, path)
        plan = {key: _plan_layer_array(archive, members[key], ref, path) for key, ref in refs.items()}
        extra_plan = _plan_extras(archive, members, sum(r.value.nbytes for r in refs.values()), path)
        arrays = {key: _read_data(archive, members[key], npy, key, path) for key, npy in plan.items()}
        extra = {key[len("extra."):]: _read_data(archive, members[key], npy, key, path)
                 for key, npy in extra_plan.items()}
    try:
        model.load_state_dict(arrays)
    except UsageError as exc:
        raise CorruptInputError(f"{path}: {exc}; the file does not fit its architecture") from None
    model.eval()
    model.metadata = header.get("metadata") or {}
    if return_extra:
        return model, header, extra
    return model
