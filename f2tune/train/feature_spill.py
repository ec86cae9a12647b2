"""Image features that do not fit in the cache's memory, kept in a file on disk instead of recomputed.

At 768x768 one image's projected features are 577 x 768 values (0.9 MB in bf16, as a bf16-mixed run
keeps them; 1.8 MB at 32-true), so the feature cache's default 8 GiB of memory holds about 9,700
images (4,800 at 32-true), where COCO's training set has 118,000.
Reading those bytes back from a local disk costs far less than the frozen DaViT's forward that would
recompute them.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import IO

import torch

Key = tuple[str, ...]
"""What a cached image is found by: its pixels' digest and the frozen weights' fingerprint."""


class FeatureSpill:
    """An append-only file of feature tensors with their places in memory, up to `max_bytes`.

    The file is anonymous (`tempfile.TemporaryFile` in `folder`, which must be on a disk, not a RAM
    file system): it leaves nothing behind when the process ends, however it ends, and each process
    of a multi-GPU run has its own. It is created at the first spilled tensor.
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.bytes = 0
        self.places: dict[Key, tuple[int, tuple[int, ...], torch.dtype]] = {}
        self._file: IO[bytes] | None = None

    def __contains__(self, key: Key) -> bool:
        return key in self.places

    def put(self, key: Key, features: torch.Tensor) -> bool:
        """Append `features`; False (nothing written) when they would pass `max_bytes`."""
        size = features.numel() * features.element_size()
        if self.bytes + size > self.max_bytes:  # checked first: once full, every miss asks
            return False
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=self.folder, prefix="image-features-")
        data = features.detach().to("cpu").contiguous()
        os.pwrite(self._file.fileno(), data.view(torch.uint8).numpy().tobytes(), self.bytes)
        self.places[key] = (self.bytes, tuple(data.shape), data.dtype)
        self.bytes += size
        return True

    def get(self, key: Key) -> torch.Tensor:
        offset, shape, dtype = self.places[key]
        size = math.prod(shape) * dtype.itemsize
        raw = os.pread(self._file.fileno(), size, offset)
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)

    def clear(self) -> None:
        """Forget every tensor (the frozen weights changed); the file is emptied, not removed."""
        self.places.clear()
        self.bytes = 0
        if self._file is not None:
            self._file.truncate(0)
