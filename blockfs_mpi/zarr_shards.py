"""Shard files of a zarr v3 `sharding_indexed` array, made from a blockfs volume's blocks.

A shard holds shard_blocks^3 inner chunks, one per block, in the C order of
its (z, y, x) chunk grid, followed by its index: (offset, nbytes) as
little-endian u64 per inner chunk, both 2^64-1 for an absent one, then the
crc32c of those index bytes (little-endian u32), as the zarr v3 sharding spec
lays it out with index_codecs bytes + crc32c. A stored block's payload is
already a valid inner chunk, so a full block is copied as stored (its frame
checksum checked when read); a block clipped at the volume's edge is decoded,
padded with zeros to the full chunk shape and encoded again with the volume's
Blosc settings, since zarr expects every chunk at full shape.

A shard is written whole under a temporary name, fsynced and renamed (its
folder fsynced), so a shard under its final name is complete and `complete()`
can tell by its index alone.
"""
import itertools
import logging
import os
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .atomic import replace_durably
from .errors import BlockfsError, CorruptBlockError, DataFileNotFoundError
from .export import partial_path
from .geometry import Geometry
from .reader import BlockReader, pread_exact
from .zarr_metadata import chunk_key

log = logging.getLogger("blockfs_mpi")

ABSENT = 2 ** 64 - 1  # offset and nbytes of an inner chunk the shard does not hold
CHECKSUM = struct.Struct("<I")
Chunk = bytes | memoryview  # an inner chunk: a stored payload as read, or re-encoded


@dataclass(frozen=True)
class ShardGrid:
    """The shards of a volume's array: shard_blocks^3 blocks each, clipped at its edges."""

    geometry: Geometry
    shard_blocks: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shards along (z, y, x)."""
        g, s = self.geometry, self.shard_blocks
        return -(-g.n_z_blocks // s), -(-g.n_y_blocks // s), -(-g.n_x_blocks // s)

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    @property
    def chunks_per_shard(self) -> int:
        return self.shard_blocks ** 3

    @property
    def index_size(self) -> int:
        """Bytes of a shard's index with its checksum."""
        return index_bytes(self.chunks_per_shard)

    def position(self, number: int) -> tuple[int, int, int]:
        """(z, y, x) grid position of shard number (C order)."""
        z, y, x = (int(i) for i in np.unravel_index(number, self.shape))
        return z, y, x

    def key(self, number: int) -> str:
        """The shard's key in its array ('c/z/y/x')."""
        return chunk_key(self.position(number))

    def block_count(self, number: int) -> int:
        """Blocks of shard number that lie in the volume."""
        g, s = self.geometry, self.shard_blocks
        counts = (g.n_z_blocks, g.n_y_blocks, g.n_x_blocks)
        return int(np.prod([min(s, n - p * s) for p, n in zip(self.position(number), counts)]))

    def blocks(self, number: int) -> list[tuple[int, int, tuple[int, int, int]]]:
        """(slot, block number, clipped (z, y, x) shape) of each block of the shard that lies
        in the volume, in slot order (C order of the shard's chunk grid)."""
        g, s = self.geometry, self.shard_blocks
        first = [p * s for p in self.position(number)]
        counts = (g.n_z_blocks, g.n_y_blocks, g.n_x_blocks)
        result = []
        for dz, dy, dx in itertools.product(range(s), repeat=3):
            bz, by, bx = first[0] + dz, first[1] + dy, first[2] + dx
            if bz >= counts[0] or by >= counts[1] or bx >= counts[2]:
                continue
            x, y, z = bx * g.x_block_size, by * g.y_block_size, bz * g.z_block_size
            result.append(((dz * s + dy) * s + dx, g.block_number(x, y, z),
                           g.block_shape(x, y, z)))
        return result


def encode_index(index: np.ndarray) -> bytes:
    """The index bytes of a shard: (offset, nbytes) u64 little-endian rows, then crc32c."""
    raw = np.ascontiguousarray(index, "<u8").tobytes()
    return raw + CHECKSUM.pack(fmt.crc32c(raw))


def index_bytes(chunks: int) -> int:
    """Bytes of the index, with its checksum, of a shard of chunks inner chunks."""
    return 16 * chunks + CHECKSUM.size


def read_index(fd: int, chunks: int) -> tuple[npt.NDArray[np.uint64], int] | None:
    """The index of the shard open at fd, which holds chunks inner chunks: its (offset,
    nbytes) rows and the bytes before it; None if the file is too short to hold one or the
    index checksum is wrong."""
    size, index_size = os.fstat(fd).st_size, index_bytes(chunks)
    if size < index_size:
        return None
    raw = pread_exact(fd, index_size, size - index_size)
    body, (checksum,) = raw[:-CHECKSUM.size], CHECKSUM.unpack(raw[-CHECKSUM.size:])
    if len(raw) != index_size or fmt.crc32c(body) != checksum:
        return None
    return np.frombuffer(body, "<u8").reshape(-1, 2), size - index_size


def complete(path: str, grid: ShardGrid) -> bool:
    """True if the file at path is a whole shard: its index checksum is right and its inner
    chunks exactly fill the bytes before the index."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        found = read_index(fd, grid.chunks_per_shard)
    finally:
        os.close(fd)
    if found is None:
        return False
    index, data = found
    present = index[(index[:, 0] != ABSENT) | (index[:, 1] != ABSENT)]
    ends = present[:, 0] + present[:, 1]
    return bool(len(present)) and int(present[:, 1].sum()) == data and int(ends.max()) <= data


def inner_chunk(reader: BlockReader, number: int, shape: tuple[int, int, int],
                full: tuple[int, int, int]) -> Chunk | None:
    """A block's bytes as a full-shape inner chunk, or None if it was never written: its
    stored payload (verified, sizes checked) when it has the full shape, else re-encoded
    from its voxels padded with zeros."""
    payload = reader.payload(number, reuse=True)
    if payload is None:
        return None
    if tuple(shape) == tuple(full):
        reader.check_sizes(payload, shape, number)
        return payload
    padded = np.zeros(full, reader.header.dtype)
    padded[:shape[0], :shape[1], :shape[2]] = reader.decode(payload, shape, number)
    encoded: bytes = reader.codec.encode(padded)  # numcodecs is untyped: Any to mypy
    return encoded


@dataclass
class ShardResult:
    """What writing one shard did: blocks stored and their voxel bytes."""

    blocks: int = 0
    nbytes: int = 0


def write_shard(path: str, reader: BlockReader, grid: ShardGrid, number: int,
                skip_damaged: bool = False) -> ShardResult:
    """Write shard number of grid to path from the volume reader reads. A shard none of
    whose blocks is stored is not written (zarr reads it as fill value 0). A damaged block
    raises CorruptBlockError naming it, or with skip_damaged is left absent and logged."""
    full = grid.geometry.block_size
    index = np.full((grid.chunks_per_shard, 2), ABSENT, np.uint64)
    result = ShardResult()
    temporary = partial_path(path)
    try:
        with open(temporary, "wb") as f:
            offset = 0
            for slot, block, shape in grid.blocks(number):
                try:
                    chunk = inner_chunk(reader, block, shape, full)
                except (CorruptBlockError, DataFileNotFoundError) as e:
                    if not skip_damaged:
                        raise
                    log.warning("%s; left absent from shard %s (--skip-damaged)", e, path)
                    continue
                if chunk is None:
                    continue
                f.write(chunk)
                index[slot] = (offset, len(chunk))
                offset += len(chunk)
                result.blocks += 1
                result.nbytes += int(np.prod(shape)) * reader.header.dtype.itemsize
            if result.blocks:
                f.write(encode_index(index))
                f.flush()
                os.fsync(f.fileno())
        if result.blocks:
            replace_durably(temporary, path)
        else:
            os.unlink(temporary)
    except OSError as e:
        _remove(temporary)
        if isinstance(e, BlockfsError):
            raise
        raise BlockfsError(f"{path}: cannot write shard: {e.strerror or e}") from None
    except BaseException:
        _remove(temporary)
        raise
    return result


def _remove(path: str) -> None:
    """Remove a temporary file, if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
