"""A zarr v3 / OME-Zarr 0.5 view of a blockfs volume or pyramid: keys to bytes, nothing copied.

A volume is a zarr array whose chunks are its blocks (zarr_metadata.py says
why that works): the key `c/z/y/x` of a block stored at its full shape gives
the block's stored payload, read with one pread and its frame checksum
verified, never decoded. A block clipped at the volume's edge is decoded,
padded with zeros to the chunk shape and encoded again with the volume's Blosc
settings (zarr stores every chunk at full shape); those are kept in a bounded
cache. A block never written is an absent key (zarr fills it with 0), a
damaged one raises CorruptBlockError. A pyramid folder is an OME-Zarr 0.5
multiscale image whose arrays "0", "1", ... are its levels.

A view reads the commit its volumes had when it was opened, whatever is
committed later. The zarr-python store (zarr_store.py) and blockfs-serve both
read through it; this module imports no zarr.
"""
import collections
import json
import os
import re
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from . import voxel_size, zarr_metadata
from .directory import Directory
from .zarr_export import level_paths, pyramid_info_size
from .zarr_shards import Chunk, inner_chunk

METADATA_KEY = "zarr.json"
CHUNK_KEY = re.compile(r"c/(\d{1,9})/(\d{1,9})/(\d{1,9})")
LEVEL_KEY = re.compile(r"(0|[1-9]\d{0,3})/(.*)", re.DOTALL)
EDGE_CACHE_BYTES = 64 << 20  # re-encoded edge chunks kept per volume
DEFAULT_VOXEL_SIZE = voxel_size.VoxelSize(1, 1, 1, "micrometer")


class EdgeChunks:
    """Re-encoded edge chunks by block number, least recently used dropped beyond a size."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.size = capacity, 0
        self._chunks: collections.OrderedDict[int, Chunk] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, number: int) -> Chunk | None:
        with self._lock:
            chunk = self._chunks.get(number)
            if chunk is not None:
                self._chunks.move_to_end(number)
            return chunk

    def put(self, number: int, chunk: Chunk) -> None:
        if len(chunk) > self.capacity:
            return
        with self._lock:
            if number in self._chunks:
                return
            self._chunks[number] = chunk
            self.size += len(chunk)
            while self.size > self.capacity:
                self.size -= len(self._chunks.popitem(last=False)[1])


class VolumeView:
    """One volume as a zarr v3 array: its zarr.json and one chunk per stored block."""

    def __init__(self, directory: Directory, edge_cache_bytes: int = EDGE_CACHE_BYTES) -> None:
        self.directory = directory
        self.reader = directory.reader  # its header and index are the commit this view reads
        self.geometry = directory.geometry
        self.metadata = json.dumps(zarr_metadata.array_metadata(self.reader.header)).encode()
        self._edges = EdgeChunks(edge_cache_bytes)

    @classmethod
    def open(cls, path: str) -> "VolumeView":
        """The view of the volume whose directory file is at path (closed when collected)."""
        view = cls(Directory.open(path))
        weakref.finalize(view, view.reader.close)
        return view

    def __repr__(self) -> str:
        return f"<VolumeView of {self.directory!r}>"

    def block(self, key: str) -> tuple[int, tuple[int, int, int]] | None:
        """(block number, clipped (z, y, x) shape) of the chunk key 'c/z/y/x', or None if
        the key names no chunk of the array."""
        match = CHUNK_KEY.fullmatch(key)
        if match is None:
            return None
        g = self.geometry
        z, y, x = (int(i) for i in match.groups())
        if z >= g.n_z_blocks or y >= g.n_y_blocks or x >= g.n_x_blocks:
            return None
        origin = (x * g.x_block_size, y * g.y_block_size, z * g.z_block_size)
        return g.block_number(*origin), g.block_shape(*origin)

    def chunk(self, number: int, shape: tuple[int, int, int]) -> Chunk | None:
        """The bytes of a block as a zarr chunk (its stored payload when it has the full
        shape), or None if it was never written."""
        full = self.geometry.block_size
        if shape == full:
            payload = self.reader.payload(number)  # a buffer of its own; checksum verified
            if payload is not None:
                self.reader.check_sizes(payload, shape, number)
            return payload
        chunk = self._edges.get(number)
        if chunk is None:
            chunk = inner_chunk(self.reader, number, shape, full)
            if chunk is not None:
                self._edges.put(number, chunk)
        return chunk

    def get(self, key: str) -> Chunk | None:
        """The bytes (bytes-like) stored under key, or None if there are none."""
        if key == METADATA_KEY:
            return self.metadata
        block = self.block(key)
        return None if block is None else self.chunk(*block)

    def exists(self, key: str) -> bool:
        if key == METADATA_KEY:
            return True
        block = self.block(key)
        return block is not None and self.reader.entry(block[0]) is not None

    def keys(self) -> Iterator[str]:
        """zarr.json, then the key of every stored block (one index read per block)."""
        yield METADATA_KEY
        g = self.geometry
        for x, y, z in g.block_origins():
            if self.reader.entry(g.block_number(x, y, z)) is not None:
                yield zarr_metadata.chunk_key((z // g.z_block_size, y // g.y_block_size,
                                               x // g.x_block_size))


class PyramidView:
    """A pyramid's levels as an OME-Zarr 0.5 multiscale image: zarr.json, arrays "0", "1"..."""

    def __init__(self, levels: list[VolumeView], size: voxel_size.VoxelSize,
                 method: str = "mean", name: str = "") -> None:
        self.levels = levels
        self.metadata = image_metadata(len(levels), size, method, name)

    @classmethod
    def open(cls, folder: str) -> "PyramidView":
        """The view of the pyramid folder (precomputed-tif's layout, levels 1_1_1, 2_2_2 ...)."""
        levels = [VolumeView.open(path) for path in level_paths(folder)]
        info = read_info(folder)
        return cls(levels, pyramid_voxel_size(folder, levels[0].reader.header.metadata),
                   downsampling_method(info), os.path.basename(os.path.normpath(folder)))

    def __repr__(self) -> str:
        return f"<PyramidView of {len(self.levels)} levels from {self.levels[0].directory!r}>"

    def _split(self, key: str) -> tuple[VolumeView, str] | None:
        """(level view, key inside it), or None for a key of no level."""
        level, inside = level_key(key)
        if level is None or level >= len(self.levels):
            return None
        assert inside is not None  # level_key gives a level with the key inside it
        return self.levels[level], inside

    def get(self, key: str) -> Chunk | None:
        if key == METADATA_KEY:
            return self.metadata
        split = self._split(key)
        return None if split is None else split[0].get(split[1])

    def exists(self, key: str) -> bool:
        if key == METADATA_KEY:
            return True
        split = self._split(key)
        return split is not None and split[0].exists(split[1])

    def keys(self) -> Iterator[str]:
        yield METADATA_KEY
        for number, level in enumerate(self.levels):
            for key in level.keys():
                yield f"{number}/{key}"


def image_metadata(levels: int, size: voxel_size.VoxelSize, method: str, name: str) -> bytes:
    """The zarr.json of a pyramid of levels as an OME-Zarr 0.5 image."""
    return json.dumps(zarr_metadata.multiscale_group(levels, size, method, name)).encode()


def level_key(key: str) -> tuple[int | None, str | None]:
    """(level, key inside its array) of a key of an image ('1/c/0/0/0' -> (1, 'c/0/0/0')),
    or (None, None)."""
    match = LEVEL_KEY.fullmatch(key)
    return (int(match.group(1)), match.group(2)) if match else (None, None)


def open_view(path: str) -> VolumeView | PyramidView:
    """The view of a volume (its directory file) or of a pyramid folder."""
    if os.path.isdir(path):
        return PyramidView.open(path)
    level_paths(path)  # anything but a directory file is refused, saying what it is
    return VolumeView.open(path)


def read_info(folder: str) -> object:
    """A pyramid folder's precomputed info, or None if it has none that reads."""
    try:
        with open(os.path.join(folder, "info")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def downsampling_method(info: object) -> str:
    """How the pyramid's levels were made: mode for a segmentation, else mean."""
    return "mode" if isinstance(info, dict) and info.get("type") == "segmentation" else "mean"


def pyramid_voxel_size(folder: str | None,
                       metadata: Mapping[str, Any]) -> voxel_size.VoxelSize:
    """The voxel size of a pyramid's level 1 (or of a volume, with folder None): what the
    volume records, else the resolution of the pyramid's precomputed info (nm), else 1
    micrometre."""
    return (voxel_size.from_metadata(metadata)
            or (pyramid_info_size(folder) if folder is not None else None)
            or DEFAULT_VOXEL_SIZE)
