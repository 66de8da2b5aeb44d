"""zarr v3 and OME-Zarr 0.5 metadata for blockfs volumes and pyramids, as plain JSON dicts.

A stored block's payload is a Blosc buffer of the block's (z, y, x) C-order
voxels in the volume's dtype: exactly what a zarr v3 array with codecs
`bytes` + `blosc` stores for a chunk of the block's shape. So a volume is a
zarr array whose chunk grid is its block shape, and a pyramid an OME-Zarr
multiscale image of such arrays; a shard of blockfs2zarr is a
`sharding_indexed` chunk whose inner chunks are the blocks. The zarr view and
blockfs2zarr both build their metadata here, so the two always agree.
"""
from collections.abc import Mapping
from typing import Any

from .format import Header
from .voxel_size import VoxelSize

AXES = ("z", "y", "x")
BLOSC_SHUFFLE = {"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle"}
OME_VERSION = "0.5"


def bytes_codec(header: Header) -> dict[str, Any]:
    """The `bytes` codec of the volume's voxels (byte order from its dtype)."""
    endian = "big" if header.dtype.byteorder == ">" else "little"
    return {"name": "bytes", "configuration": {"endian": endian}}


def blosc_codec(header: Header) -> dict[str, Any]:
    """The `blosc` codec that decodes the volume's stored payloads as they are."""
    return {"name": "blosc", "configuration": {
        "cname": header.compression.name, "clevel": int(header.compression_level),
        "shuffle": BLOSC_SHUFFLE[header.shuffle], "typesize": header.dtype.itemsize,
        "blocksize": 0}}


def chunk_codecs(header: Header) -> list[dict[str, Any]]:
    """The codecs of one chunk (= one block): bytes, then blosc."""
    return [bytes_codec(header), blosc_codec(header)]


def sharding_codec(header: Header) -> dict[str, Any]:
    """A `sharding_indexed` codec whose inner chunks are the volume's blocks, with its index
    (offset, size u64 per inner chunk) at the end, checked by crc32c."""
    return {"name": "sharding_indexed", "configuration": {
        "chunk_shape": list(header.geometry.block_size),
        "codecs": chunk_codecs(header),
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                         {"name": "crc32c"}],
        "index_location": "end"}}


def array_metadata(header: Header, shard_blocks: int | None = None,
                   attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `zarr.json` of a zarr v3 array holding the volume: one chunk per block, or with
    shard_blocks one shard per shard_blocks^3 blocks (clipped at the volume's edges)."""
    block = list(header.geometry.block_size)
    if shard_blocks:
        chunk_shape = [b * shard_blocks for b in block]
        codecs = [sharding_codec(header)]
    else:
        chunk_shape, codecs = block, chunk_codecs(header)
    return {
        "zarr_format": 3, "node_type": "array",
        "shape": list(header.geometry.shape),
        "data_type": header.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": dict(attributes if attributes is not None else header.metadata),
        "dimension_names": list(AXES),
    }


def chunk_key(block_index: tuple[int, int, int]) -> str:
    """The key of the chunk (z, y, x grid position) under the default encoding: 'c/z/y/x'."""
    return "c/" + "/".join(str(i) for i in block_index)


def multiscale_group(levels: int, voxel_size: VoxelSize, method: str = "mean",
                     name: str = "") -> dict[str, Any]:
    """The `zarr.json` of an OME-Zarr 0.5 image whose arrays "0" .. levels-1 are mip levels,
    each twice the voxel size of the one before (level 0 has voxel_size)."""
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [v * 2 ** level for v in voxel_size.zyx]}]}
        for level in range(levels)]
    multiscale = {"name": name, "axes": [{"name": axis, "type": "space", "unit": voxel_size.unit}
                                         for axis in AXES],
                  "datasets": datasets, "type": method}
    return {"zarr_format": 3, "node_type": "group",
            "attributes": {"ome": {"version": OME_VERSION, "multiscales": [multiscale]}}}
