"""Datasets by name for the scripts: ``mnist``, ``symbols`` (extracted once, cached) or a ``.npz`` path.

``symbols`` is the image-folder tree ``<data root>/symbols``, extracted with
:func:`~nncore.data.extract.extract_image_folder` (split 70/15/15, seed 0)
and cached as ``data/symbols.npz`` in the working folder. The cache records
its source folder and that folder's fingerprint (file names, sizes and
modification times); it is used only when both match the data root asked
for, and re-extracted otherwise, so two data roots never share an extraction.
A folder whose files only have new modification times (copied, synced or
touched) is recognised by its contents' digest, also recorded, and keeps its
extraction: a few seconds of reading instead of minutes of extracting.
"""

import os
import sys

import numpy as np

from ..errors import CorruptInputError, MissingInputError, OutputError, SettingError
from .dataset import load_dataset, mnist_dataset, save_dataset_dict
from .extract import extract_image_folder
from .folders import folder_content_digest, folder_fingerprint
from .paths import dataset_dir

SYMBOLS_CACHE = os.path.join("data", "symbols.npz")
SYMBOLS_SPLIT = {"fractions": (0.7, 0.15, 0.15), "seed": 0}


def dataset_name(spec):
    """A short name for a dataset spec: 'mnist' -> 'mnist', 'symbols' -> 'symbols', 'path/to/foo.npz' -> 'foo'."""
    spec = str(spec)
    if spec.lower() in ("mnist", "symbols"):
        return spec.lower()
    return os.path.splitext(os.path.basename(spec))[0] or "dataset"


def load_data(spec, data_dir=None, val_size=5000, log=print):
    """Load a dataset for training or evaluation.

    spec: ``"mnist"`` (the IDX files under the data root, with a stratified
    validation split of ``val_size``), ``"symbols"`` (see :func:`load_symbols`),
    or the path of a ``.npz`` made by ``experiments/extract_data.py``.
    log: function taking one line (None for silence).

    Returns the dataset dict (x_train, y_train, x_val, y_val, x_test, y_test:
    uint8 (N, 28, 28) / int64 (N,); class_names, symbols, meta) with
    ``meta["is_mnist"]`` telling whether MNIST's input scaling applies.
    """
    key = str(spec)
    if key.lower() == "mnist":
        d = mnist_dataset(data_dir, val_size=val_size, seed=0)
        d["meta"]["is_mnist"] = True
        return d
    if key.lower() == "symbols":
        d = load_symbols(data_dir, log=log)
    else:
        if not key.endswith(".npz") and not os.path.isfile(key):
            raise SettingError("dataset", f"must be mnist, symbols or the path of a .npz dataset, got {spec!r}")
        d = load_dataset(key)
    d["meta"]["is_mnist"] = d["meta"].get("source") == "mnist"
    return d


def load_symbols(data_dir=None, cache=SYMBOLS_CACHE, log=print):
    """The symbols set of ``<data root>/symbols``: from ``cache`` when it was extracted from that
    folder as it is now, else extracted again (and the cache rewritten). Same dict as :func:`load_data`."""
    log = log or (lambda line: None)
    root = dataset_dir("symbols", data_dir)
    source = os.path.abspath(root)
    if not os.path.isdir(root) and os.path.isfile(cache):
        raise MissingInputError(f"symbols folder {root} not found (the data root has no symbols/); "
                                f"to use the extraction cached in {cache}, give that path as the dataset")
    fingerprint = folder_fingerprint(root)
    if os.path.isfile(cache):
        try:
            d = load_dataset(cache)
            stale = _stale(d["meta"], source, fingerprint)
        except CorruptInputError as exc:
            stale = f"cannot be read ({exc})"
        if stale is None:
            log(f"using {cache}, extracted from {source} (unchanged since)")
            return d
        # only when the files changed (then the cache was read); none in a cache from before the digest
        content = d["meta"].get("content") if stale == FILES_CHANGED else None
        if content and content == folder_content_digest(root):
            d["meta"]["fingerprint"] = fingerprint      # new modification times, the same bytes: keep it
            try:
                save_dataset_dict(cache, d)
            except OutputError as exc:
                log(f"note: could not update the cached dataset ({exc})")
            log(f"using {cache}, extracted from {source} (its files have new modification times, the same contents)")
            return d
        log(f"extracting {source} into {cache}: the cached file {stale}...")
    else:
        log(f"extracting {source} (first use; cached as {cache})...")
    d, _ = extract_image_folder(root, SYMBOLS_SPLIT["fractions"], SYMBOLS_SPLIT["seed"], workers=2,
                                progress=sys.stderr.isatty())
    try:
        save_dataset_dict(cache, d)
    except OutputError as exc:
        log(f"note: could not cache the extracted dataset ({exc})")
    return d


#: :func:`_stale`'s phrase when only the fingerprint differs (a file changed, or only its modification time)
FILES_CHANGED = "does not match the files now in the folder"


def _stale(meta, source, fingerprint):
    """Why a cached dataset with ``meta`` is not the extraction of ``source`` as it is now (a phrase), or None.

    The fingerprint is compared last: :data:`FILES_CHANGED` means that all else matches."""
    made_from = str(meta.get("source"))
    if os.path.realpath(made_from) != os.path.realpath(source):
        return f"was extracted from {made_from}"
    fractions = meta.get("fractions")
    try:
        same_split = meta.get("seed") == SYMBOLS_SPLIT["seed"] and np.allclose(fractions, SYMBOLS_SPLIT["fractions"])
    except (TypeError, ValueError):
        same_split = False
    if not same_split:
        return f"has another split (seed {meta.get('seed')}, fractions {fractions})"
    if not meta.get("fingerprint"):
        return "records no file fingerprint"
    return FILES_CHANGED if meta["fingerprint"] != fingerprint else None
