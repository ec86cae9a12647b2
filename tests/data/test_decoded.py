"""Decoded images survive the trip from a loader worker whatever their sizes and modes."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from f2tune.data.decoded import DecodedImages


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (30, 20), dtype=np.uint8)),  # grey: mode L
        Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)),
    ]


def _decoded(indices: list[int]) -> DecodedImages:
    return DecodedImages([_images()[i] for i in indices])


def test_each_image_comes_back_as_it_was_from_a_worker():
    (received,) = list(DataLoader([0, 1, 2], batch_size=3, collate_fn=_decoded, num_workers=1))
    assert len(received) == 3
    for row, image in enumerate(_images()):
        back = received.image(row)
        assert (back.mode, back.size) == (image.mode, image.size)
        assert np.array_equal(np.asarray(back), np.asarray(image))
