"""Block arithmetic of a volume: block numbers, clipped block shapes, block grids."""
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import SupportsInt

import numpy as np
import numpy.typing as npt

from .errors import BlockCoordinateError


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Geometry:
    """Extents, block sizes and index strides of a volume (all in voxels, x fastest).

    The block at voxel (x, y, z) has number
    (x // xb) * x_stride + (y // yb) * y_stride + (z // zb) * z_stride,
    which is both formats' index position.
    """

    x_extent: int
    y_extent: int
    z_extent: int
    x_block_size: int = 64
    y_block_size: int = 64
    z_block_size: int = 64
    x_stride: int | None = None
    y_stride: int | None = None
    z_stride: int | None = None

    def __post_init__(self) -> None:
        for name in ("x_extent", "y_extent", "z_extent",
                     "x_block_size", "y_block_size", "z_block_size"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
            object.__setattr__(self, name, int(value))
        strides = dict(x_stride=1, y_stride=self.n_x_blocks,
                       z_stride=self.n_x_blocks * self.n_y_blocks)
        for name, default in strides.items():
            value = getattr(self, name)
            object.__setattr__(self, name, default if value is None else int(value))

    @property
    def n_x_blocks(self) -> int:
        return _ceil_div(self.x_extent, self.x_block_size)

    @property
    def n_y_blocks(self) -> int:
        return _ceil_div(self.y_extent, self.y_block_size)

    @property
    def n_z_blocks(self) -> int:
        return _ceil_div(self.z_extent, self.z_block_size)

    @property
    def block_count(self) -> int:
        """Blocks in the volume's grid."""
        return self.n_x_blocks * self.n_y_blocks * self.n_z_blocks

    @property
    def n_blocks(self) -> int:
        """Index entries needed: one past the largest block number."""
        assert self.x_stride is not None and self.y_stride is not None \
            and self.z_stride is not None  # __post_init__ sets every stride
        return ((self.n_x_blocks - 1) * self.x_stride + (self.n_y_blocks - 1) * self.y_stride
                + (self.n_z_blocks - 1) * self.z_stride + 1)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's numpy shape, (z, y, x)."""
        return (self.z_extent, self.y_extent, self.x_extent)

    @property
    def block_size(self) -> tuple[int, int, int]:
        """The full block shape, (z, y, x)."""
        return (self.z_block_size, self.y_block_size, self.x_block_size)

    def check_origin(self, x: int, y: int, z: int) -> None:
        """Raise BlockCoordinateError unless (x, y, z) is a block origin inside the volume."""
        for axis, value, extent, size in (("x", x, self.x_extent, self.x_block_size),
                                          ("y", y, self.y_extent, self.y_block_size),
                                          ("z", z, self.z_extent, self.z_block_size)):
            if not 0 <= value < extent:
                raise BlockCoordinateError(
                    f"block at (x={x}, y={y}, z={z}): {axis}={value} is outside 0..{extent - 1}")
            if value % size:
                raise BlockCoordinateError(
                    f"block at (x={x}, y={y}, z={z}): {axis}={value} is not a multiple "
                    f"of the {axis} block size {size}")

    def block_number(self, x: int, y: int, z: int) -> int:
        """Index position of the block whose origin is (x, y, z) (checked)."""
        self.check_origin(x, y, z)
        assert self.x_stride is not None and self.y_stride is not None \
            and self.z_stride is not None  # __post_init__ sets every stride
        return ((x // self.x_block_size) * self.x_stride + (y // self.y_block_size) * self.y_stride
                + (z // self.z_block_size) * self.z_stride)

    def block_origin(self, number: SupportsInt) -> tuple[int, int, int]:
        """Voxel origin (x, y, z) of the block with this index position (default strides)."""
        number, xi = divmod(int(number), self.n_x_blocks)
        zi, yi = divmod(number, self.n_y_blocks)
        return xi * self.x_block_size, yi * self.y_block_size, zi * self.z_block_size

    def block_shape(self, x: int, y: int, z: int) -> tuple[int, int, int]:
        """The (z, y, x) shape of the block at this origin, clipped at the volume's edge."""
        return (min(self.z_extent - z, self.z_block_size),
                min(self.y_extent - y, self.y_block_size),
                min(self.x_extent - x, self.x_block_size))

    def block_shapes(self, numbers: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """(z, y, x) shapes of many blocks at once, as an (n, 3) array (default strides)."""
        numbers = np.asarray(numbers, np.int64)
        rest, x = np.divmod(numbers, self.n_x_blocks)
        z, y = np.divmod(rest, self.n_y_blocks)
        return np.stack([np.minimum(self.z_extent - z * self.z_block_size, self.z_block_size),
                         np.minimum(self.y_extent - y * self.y_block_size, self.y_block_size),
                         np.minimum(self.x_extent - x * self.x_block_size, self.x_block_size)],
                        axis=-1)

    def block_origins(self) -> Iterator[tuple[int, int, int]]:
        """Every block origin (x, y, z), x fastest."""
        for z, y, x in itertools.product(range(0, self.z_extent, self.z_block_size),
                                         range(0, self.y_extent, self.y_block_size),
                                         range(0, self.x_extent, self.x_block_size)):
            yield x, y, z
