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
  optimizer state here).

Files are read with ``allow_pickle=False``, so a file holding object arrays
is refused without unpickling anything, and written atomically (temporary
file, then rename), so an interrupted save leaves the previous file intact.
"""

import json
import os
import zipfile
import zlib

import numpy as np

from . import backend
from .atomic import atomic_write
from .errors import CorruptInputError, MissingInputError, UsageError
from .layers import layer_from_config
from .sequential import Sequential

FORMAT = "nncore-weights"
VERSION = 1
HEADER_KEY = "__nncore__"


def save_model(model, path, metadata=None, extra_arrays=None):
    """Write ``model`` (and optional metadata / extra arrays) to ``path`` atomically."""
    arrays = model.state_dict()
    for name, arr in (extra_arrays or {}).items():
        arrays[f"extra.{name}"] = backend.to_numpy(arr)
    header = {
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
    arrays[HEADER_KEY] = np.array(json.dumps(header, ensure_ascii=False))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"weights file {path} does not exist; train one with experiments/train.py "
                                "or pass the path of a shipped file such as weights/mnist_cnn.npz")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder; give the path of a .npz weights file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptInputError(f"{path} is not an nncore weights file (not a readable .npz: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CorruptInputError(f"{path} is a single .npy array, not an nncore weights file")
    return data


def _read(data, key, path):
    try:
        return data[key]
    except KeyError:
        raise CorruptInputError(f"{path} has no array {key!r}: not an nncore weights file or made by another version") from None
    except ValueError as exc:  # object arrays with allow_pickle=False
        raise CorruptInputError(f"{path}: array {key!r} cannot be loaded safely ({exc}); refusing it") from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CorruptInputError(f"{path} is truncated or corrupt (array {key!r}: {exc}); re-download or re-train it") from None


def read_header(path):
    """The JSON header of a weights file, as a dict (validated)."""
    with _open(path) as data:
        return _header(data, path)


def _header(data, path):
    raw = _read(data, HEADER_KEY, path)
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError:
        raise CorruptInputError(f"{path} has a damaged header; re-download or re-train it") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptInputError(f"{path} is not an nncore weights file")
    if header.get("version") != VERSION:
        raise CorruptInputError(f"{path} has weights format version {header.get('version')}, "
                                f"this nncore reads version {VERSION}; upgrade nncore")
    return header


def load_model(path, return_extra=False):
    """Rebuild a :class:`~nncore.sequential.Sequential` from a weights file.

    The model comes back in evaluation mode on the CPU, with its class names,
    symbols and input scaling, so ``model.predict(images)`` works on raw
    images straight away. With ``return_extra=True`` returns
    ``(model, header, extra)`` where ``extra`` maps names to the extra arrays.
    """
    with _open(path) as data:
        header = _header(data, path)
        try:
            layers = [layer_from_config(spec) for spec in header["architecture"]]
            model = Sequential(layers, header["input_shape"], class_names=header["class_names"],
                               input_scaling=header["input_scaling"], symbols=header.get("symbols"))
        except (KeyError, TypeError, UsageError) as exc:
            raise CorruptInputError(f"{path}: the stored architecture is invalid ({exc})") from None
        dtype = np.dtype(header.get("dtype", "float32"))
        model.astype(dtype)
        arrays = {k: _read(data, k, path) for k in data.files if k.startswith("layers.")}
        try:
            model.load_state_dict(arrays)
        except UsageError as exc:
            raise CorruptInputError(f"{path}: {exc}; the file does not fit its architecture") from None
        extra = {k[len("extra."):]: _read(data, k, path) for k in data.files if k.startswith("extra.")}
    model.eval()
    if return_extra:
        return model, header, extra
    return model
