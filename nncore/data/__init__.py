"""Datasets for nncore: MNIST, image folders, and the preprocessing they share.

- :func:`load_mnist` / :func:`read_idx` / :func:`download_mnist`: MNIST IDX files.
- :func:`preprocess_image`: any picture -> MNIST-style uint8 (28, 28).
- :func:`load_image_folder`: ``root/<class>/<images>`` -> arrays.
- :func:`stratified_split`, :func:`save_dataset`, :func:`load_dataset`,
  :func:`mnist_dataset`: .npz datasets with train/val/test splits.
- :func:`data_root`: ``--data-dir``, else ``$NNCORE_DATA_DIR``, else ``data/``.
"""

from .dataset import load_dataset, mnist_dataset, save_dataset, split_counts, stratified_split
from .folders import ImageFolder, list_classes, load_image_folder
from .mnist import MIRRORS, MNIST_FILES, download_mnist, load_mnist, md5_file, read_idx, verify_mnist
from .paths import ENV_VAR, data_root, dataset_dir
from .preprocess import ImageReadError, load_image, preprocess_image, preprocess_images

__all__ = [
    "ENV_VAR", "MIRRORS", "MNIST_FILES", "ImageFolder", "ImageReadError",
    "data_root", "dataset_dir", "download_mnist", "list_classes", "load_dataset",
    "load_image", "load_image_folder", "load_mnist", "md5_file", "mnist_dataset",
    "preprocess_image", "preprocess_images", "read_idx", "save_dataset",
    "split_counts", "stratified_split", "verify_mnist",
]
