"""A deterministic microscopy-like volume: smooth background, bright blobs, shot noise.

Any sub-volume can be generated on its own and equals the same region of
the whole, so every rank makes just its part. Used as the `synthetic:ZxYxX`
source of blockfs-write, by the benchmarks and by the tests; it compresses
like real light-sheet data (about 2x with Blosc zstd), unlike uniform noise.
"""
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from . import indexing

BLOB_DENSITY = 3000 / 512 ** 3  # a few thousand blobs in a 512^3 volume
BLOB_SIGMA = 2.5
BLOB_RADIUS = 8


def _blobs(shape: tuple[int, ...],
           seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    count = max(1, int(round(BLOB_DENSITY * np.prod(shape, dtype=np.float64))))
    centres = rng.uniform(0, 1, (count, 3)) * np.array(shape)
    brightness = rng.uniform(300, 3000, count)
    return centres, brightness


NOISE_PERIODS = (61, 67, 71)  # primes, so the noise never lines up with the blocks


class SyntheticVolume:
    """The volume of a given (z, y, x) shape and seed; index it like an array."""

    def __init__(self, shape: Iterable[int], dtype: npt.DTypeLike = np.uint16,
                 seed: int = 0) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.ndim = 3
        self._centres, self._brightness = _blobs(self.shape, seed)
        self._noise = np.random.default_rng(seed + 1).standard_normal(NOISE_PERIODS).astype(
            np.float32)

    def region(self, z0: int, z1: int, y0: int, y1: int, x0: int,
               x1: int) -> npt.NDArray[Any]:
        """Voxels [z0:z1, y0:y1, x0:x1] as an array of the volume's dtype."""
        z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
        signal: npt.NDArray[np.float32] = (
            400.0 + 150.0 * np.sin(x / 41.0) * np.cos(y / 53.0) + 100.0 * np.sin(z / 67.0)
        ).astype(np.float32)
        signal = np.broadcast_to(signal, (z1 - z0, y1 - y0, x1 - x0)).copy()
        low = np.array([z0, y0, x0]) - BLOB_RADIUS
        high = np.array([z1, y1, x1]) + BLOB_RADIUS
        near = np.all((self._centres >= low) & (self._centres < high), axis=1)
        for (cz, cy, cx), peak in zip(self._centres[near], self._brightness[near]):
            lo = np.maximum([int(cz) - BLOB_RADIUS, int(cy) - BLOB_RADIUS, int(cx) - BLOB_RADIUS],
                            [z0, y0, x0])
            hi = np.minimum([int(cz) + BLOB_RADIUS + 1, int(cy) + BLOB_RADIUS + 1,
                             int(cx) + BLOB_RADIUS + 1], [z1, y1, x1])
            if np.any(lo >= hi):
                continue
            bz, by, bx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            d2 = (bz - cz) ** 2 + (by - cy) ** 2 + (bx - cx) ** 2
            signal[lo[0] - z0:hi[0] - z0, lo[1] - y0:hi[1] - y0, lo[2] - x0:hi[2] - x0] += \
                (peak * np.exp(-d2 / (2 * BLOB_SIGMA ** 2))).astype(np.float32)
        # Shot noise with the variance of Poisson(signal), from a periodic noise tile.
        pz, py, px = NOISE_PERIODS
        signal += np.sqrt(signal) * self._noise[z % pz, y % py, x % px]
        info = np.iinfo(self.dtype) if self.dtype.kind in "ui" else None
        if info is not None:
            np.clip(signal, info.min, info.max, out=signal)
        return signal.astype(self.dtype)

    def __getitem__(self, key: object) -> npt.NDArray[Any]:
        """The voxels a key of integers and step 1 slices picks, as numpy would index the
        whole (see indexing.py)."""
        picked, squeeze = indexing.selection(key, self.shape)
        (z0, z1), (y0, y1), (x0, x1) = indexing.step_one_bounds(
            picked, "only step 1 slices are supported")
        out = self.region(z0, z1, y0, y1, x0, x1)
        return out.squeeze(squeeze) if squeeze else out
