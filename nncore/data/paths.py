"""Where nncore looks for datasets.

Data is never found through a hard-coded path. The data root is, in order:

1. the ``root`` argument (the scripts' ``--data-dir`` flag), when given;
2. the environment variable ``NNCORE_DATA_DIR``;
3. ``data/`` in the current working directory.

The data root holds one folder per dataset, e.g. ``<root>/mnist/`` (the four
IDX .gz files) and ``<root>/symbols/`` (one sub-folder per class). The data
root may be read-only: nncore writes its outputs (extracted .npz files) to
``data/`` in the working directory, or wherever ``--out`` says, never into it.
"""

import os

ENV_VAR = "NNCORE_DATA_DIR"
DEFAULT_DATA_DIR = "data"


def data_root(root=None):
    """Return the data root folder as a string (it may not exist yet).

    Inputs:
    - root: a folder given explicitly (``--data-dir``), or None.

    Returns the first of: ``root``, ``$NNCORE_DATA_DIR`` (if set and not
    empty), ``"data"`` (relative to the current working directory). ``~`` is
    expanded.
    """
    if root is None or str(root) == "":
        root = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return os.path.expanduser(os.fspath(root))


def dataset_dir(name, root=None):
    """Return ``<data root>/<name>``, e.g. ``dataset_dir("mnist")``."""
    return os.path.join(data_root(root), name)
