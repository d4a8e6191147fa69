"""Datasets for nncore: MNIST, image folders, and the preprocessing they share.

- :func:`load_mnist` / :func:`read_idx` / :func:`download_mnist`: MNIST IDX files.
- :func:`preprocess_image`: any picture -> MNIST-style uint8 (28, 28).
- :func:`load_image_folder`: ``root/<class>/<images>`` -> arrays.
- :func:`extract_image_folder`: such a tree -> a dataset with train/val/test
  splits (the one extraction of ``extract_data.py folders`` and ``--dataset symbols``).
- :func:`stratified_split`, :func:`save_dataset`, :func:`load_dataset`,
  :func:`mnist_dataset`: .npz datasets with train/val/test splits.
- :func:`load_data`: a dataset by name (``mnist``, ``symbols``, ``PATH.npz``)
  for the scripts; the symbols extraction is cached per data root.
- :func:`data_root`: the ``root`` argument, else ``$NNCORE_DATA_DIR``, else ``data/``.
"""

from .dataset import load_dataset, mnist_dataset, save_dataset, save_dataset_dict, split_counts, stratified_split
from .extract import extract_image_folder
from .folders import (
    ImageFolder,
    folder_content_digest,
    folder_fingerprint,
    list_classes,
    list_image_files,
    load_image_folder,
)
from .loading import dataset_name, load_data, load_symbols
from .mnist import MIRRORS, MNIST_FILES, download_mnist, load_mnist, md5_file, read_idx, verify_mnist
from .paths import ENV_VAR, data_root, dataset_dir
from .preprocess import ImageReadError, load_image, preprocess_image, preprocess_images

__all__ = [
    "ENV_VAR", "MIRRORS", "MNIST_FILES", "ImageFolder", "ImageReadError",
    "data_root", "dataset_dir", "dataset_name", "download_mnist", "extract_image_folder",
    "folder_content_digest", "folder_fingerprint",
    "list_classes", "list_image_files", "load_data", "load_dataset", "load_image", "load_image_folder",
    "load_mnist", "load_symbols", "md5_file", "mnist_dataset",
    "preprocess_image", "preprocess_images", "read_idx", "save_dataset", "save_dataset_dict",
    "split_counts", "stratified_split", "verify_mnist",
]
