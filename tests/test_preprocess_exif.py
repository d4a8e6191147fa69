"""EXIF orientation is honoured whether a photo arrives as a path or as an opened PIL image."""

import numpy as np
from PIL import Image

from nncore.data import preprocess_image


def test_exif_rotation_applies_to_paths_and_pil_images(tmp_path):
    upright = np.full((60, 40), 255, np.uint8)
    upright[10:50, 18:22] = 0          # a vertical bar...
    upright[10:14, 10:30] = 0          # ...with a cap on top: a "T"
    stored = Image.fromarray(upright).transpose(Image.ROTATE_90)   # saved sideways
    exif = Image.Exif()
    exif[0x0112] = 6                                               # "rotate 90 degrees clockwise to view"
    path = tmp_path / "t.jpg"
    stored.save(path, quality=95, exif=exif)
    expected = preprocess_image(upright)
    for given in (path, Image.open(path)):
        got = preprocess_image(given)
        assert np.corrcoef(got.ravel().astype(float), expected.ravel().astype(float))[0, 1] > 0.9
