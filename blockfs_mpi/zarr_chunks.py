"""A zarr v3 source's inner chunks read as stored, for blockfs-write to copy as blocks.

blockfs2zarr's reverse: where a local zarr v3 array's chunks (a sharded array's inner
chunks) have the target volume's block shape and its codecs (zarr_metadata.chunk_codecs:
`bytes` + `blosc` with the same cname, clevel, shuffle and typesize), every stored chunk
of an interior block is a payload such as the volume stores, and blockfs-write copies it
byte for byte: no decoding, no compressing. Blocks cut by the volume's edge (a chunk is
stored padded to full shape) and absent chunks (the fill value) are read as voxels, as
any source is. A shard's index is read as the zarr v3 sharding spec lays it out and
zarr_shards writes it (index_codecs bytes + crc32c, at the end).
"""
from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .compression import blosc_sizes
from .format import Header
from .open_files import OpenFiles, descriptor_budget
from .reader import pread_exact
from .sources import Source, SourceError, ZarrArray
from .zarr_metadata import chunk_codecs, chunk_key, sharding_codec
from .zarr_shards import ABSENT, read_index

OPEN_SHARDS = 64  # shards a rank keeps open with their indexes (a unit's row of shards)
DEFAULT_KEYS = {"name": "default", "configuration": {"separator": "/"}}
BLOSC_TYPESIZE = 3  # the byte of a Blosc header that holds the typesize

Shard = tuple[int | None, npt.NDArray[np.uint64] | None]  # descriptor, index; None: absent


def normalised(codecs: Sequence[dict[str, Any]], itemsize: int) -> list[dict[str, Any]]:
    """Codecs (JSON) as zarr_metadata writes them, to compare: a `bytes` codec of one-byte
    voxels may leave out its endian (zarr-python does), which is then little's."""
    result = []
    for codec in codecs:
        configuration = dict(codec.get("configuration", {}))
        if codec.get("name") == "bytes" and itemsize == 1:
            configuration.setdefault("endian", "little")
        result.append({"name": codec.get("name"), "configuration": configuration}
                      if configuration else {"name": codec.get("name")})
    return result


def stored_chunks(source: Source, header: Header) -> StoredChunks | None:
    """The chunks of source to copy as the blocks of the volume header describes, or None
    where they are not stored as its blocks are (see the module's docstring): then every
    block is read as voxels."""
    if not (isinstance(source, ZarrArray) and source.zarr_format == 3
            and "://" not in source.path):
        return None
    if np.dtype(source.dtype) != header.dtype or \
            tuple(source.shape) != tuple(header.geometry.shape):
        return None
    try:
        with open(os.path.join(source.array_path, "zarr.json")) as f:
            meta: dict[str, Any] = json.load(f)  # JSON
    except (OSError, ValueError) as e:
        raise SourceError(f"{source.array_path}: cannot open zarr: {e}") from None
    block = list(header.geometry.block_size)
    grid = meta.get("chunk_grid", {})
    keys = meta.get("chunk_key_encoding", {})
    if grid.get("name") != "regular" or meta.get("storage_transformers") or \
            keys.get("name") != "default" or \
            keys.get("configuration", {}).get("separator", "/") != "/":
        return None
    chunk_shape = list(grid.get("configuration", {}).get("chunk_shape", []))
    itemsize = header.dtype.itemsize
    target = normalised(chunk_codecs(header), itemsize)
    codecs = meta.get("codecs", [])
    if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        sharding = codecs[0].get("configuration", {})
        index_codecs = sharding_codec(header)["configuration"]["index_codecs"]
        if list(sharding.get("chunk_shape", [])) != block or \
                normalised(sharding.get("codecs", []), itemsize) != target or \
                normalised(sharding.get("index_codecs", []), itemsize) != index_codecs or \
                sharding.get("index_location", "end") != "end" or len(chunk_shape) != 3 or \
                any(c % b for c, b in zip(chunk_shape, block)):
            return None
        shard = (chunk_shape[0] // block[0], chunk_shape[1] // block[1],
                 chunk_shape[2] // block[2])
        return StoredChunks(source.array_path, header, shard)
    if chunk_shape != block or normalised(codecs, itemsize) != target:
        return None
    return StoredChunks(source.array_path, header, None)


def _close_shard(shard: Shard) -> None:
    if shard[0] is not None:
        os.close(shard[0])


class StoredChunks:
    """The stored chunks of a local zarr v3 array that stored_chunks found to be the blocks
    of a volume, one chunk or shard file each `c/z/y/x`; sharded, shard_blocks inner chunks
    along (z, y, x) in each shard, whose files and indexes are kept open (OPEN_SHARDS)."""

    def __init__(self, path: str, header: Header,
                 shard_blocks: tuple[int, int, int] | None) -> None:
        self.path, self.header, self.shard_blocks = path, header, shard_blocks
        self._shards: OpenFiles[Shard] = OpenFiles(min(OPEN_SHARDS, descriptor_budget()),
                                                   self._open_shard, _close_shard)

    def close(self) -> None:
        self._shards.close()

    def _open_shard(self, position: Hashable) -> Shard:
        """The shard at a (z, y, x) shard grid position: its descriptor and index, or
        (None, None) if it is not stored (all its chunks are the fill value)."""
        assert isinstance(position, tuple) and self.shard_blocks is not None  # sharded only
        path = os.path.join(self.path, chunk_key(position))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None, None
        except OSError as e:
            raise SourceError(f"{path}: cannot read shard: {e}") from None
        try:
            found = read_index(fd, int(np.prod(self.shard_blocks)))
            if found is None:
                raise SourceError(f"{path}: shard index is damaged (checksum or size wrong)")
            index, data = found
            present = index[index[:, 0] != ABSENT]
            if len(present) and int((present[:, 0] + present[:, 1]).max()) > data:
                raise SourceError(f"{path}: shard index points past the shard's chunks")
        except BaseException:
            os.close(fd)
            raise
        return fd, index

    def stored_block(self, z_block: int, y_block: int, x_block: int) -> bytes | None:
        """The stored chunk of the block at (z, y, x) block grid position, its Blosc header
        checked, or None where the block is read as voxels: cut by the volume's edge, or
        its chunk absent (the fill value)."""
        g = self.header.geometry
        origin = (x_block * g.x_block_size, y_block * g.y_block_size, z_block * g.z_block_size)
        shape = g.block_shape(*origin)
        if shape != g.block_size:
            return None
        if self.shard_blocks is None:
            path = os.path.join(self.path, chunk_key((z_block, y_block, x_block)))
            try:
                with open(path, "rb") as f:
                    payload = f.read()
            except FileNotFoundError:
                return None
            except OSError as e:
                raise SourceError(f"{path}: cannot read chunk: {e}") from None
        else:
            sz, sy, sx = self.shard_blocks
            position = (z_block // sz, y_block // sy, x_block // sx)
            fd, index = self._shards.get(position)
            if fd is None or index is None:
                return None
            slot = ((z_block % sz) * sy + y_block % sy) * sx + x_block % sx
            offset, nbytes = (int(n) for n in index[slot])
            if offset == ABSENT:
                return None
            path = os.path.join(self.path, chunk_key(position))
            try:
                payload = pread_exact(fd, nbytes, offset)
            except OSError as e:
                raise SourceError(f"{path}: cannot read shard: {e}") from None
        self._check(payload, path, (z_block, y_block, x_block))
        return payload

    def _check(self, payload: bytes, path: str, block: tuple[int, int, int]) -> None:
        """SourceError unless payload's Blosc header gives the block's byte size, payload's
        length and the voxels' size: what a Blosc chunk of the volume's blocks must say."""
        expected = int(np.prod(self.header.geometry.block_size)) * self.header.dtype.itemsize
        itemsize = self.header.dtype.itemsize
        nbytes, cbytes = blosc_sizes(payload)
        typesize = payload[BLOSC_TYPESIZE] if len(payload) > BLOSC_TYPESIZE else None
        if (nbytes, cbytes, typesize) != (expected, len(payload), itemsize):
            raise SourceError(
                f"{path}: the chunk of block (z, y, x) {block} is damaged: its Blosc header "
                f"says {nbytes} bytes in {cbytes} stored, typesize {typesize}; expected "
                f"{expected} in {len(payload)}, typesize {itemsize}")
