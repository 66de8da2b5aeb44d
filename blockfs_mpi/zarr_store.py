"""zarr-python 3 reading a blockfs volume or pyramid in place: a read-only zarr.abc.store.Store
over its view (zarr_view.py). Needs the `zarr` extra; nothing else imports this module
before it is used.

    import blockfs_mpi
    array = blockfs_mpi.open_zarr("volume.blockfs")     # a zarr.Array
    image = blockfs_mpi.open_zarr("pyramid/")           # a zarr.Group: OME-Zarr 0.5 image
"""
import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import zarr
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from .errors import ReadOnlyError
from .zarr_shards import Chunk
from .zarr_view import PyramidView, VolumeView, open_view

if TYPE_CHECKING:
    from zarr.core.metadata import ArrayV3Metadata


def requested_bytes(data: Chunk, request: ByteRequest | None) -> Chunk:
    """The part of data a zarr ByteRequest asks for."""
    if request is None:
        return data
    if isinstance(request, RangeByteRequest):
        return data[request.start:request.end]
    if isinstance(request, OffsetByteRequest):
        return data[request.offset:]
    if isinstance(request, SuffixByteRequest):
        return data[max(len(data) - request.suffix, 0):]
    raise TypeError(f"unexpected byte range request {request!r}")


class BlockfsStore(Store):
    """The keys of a VolumeView (a zarr array) or PyramidView (an OME-Zarr image), read-only.

    Blocks are read in zarr's asyncio tasks through threads (pread and the checksum release
    the GIL), as zarr's LocalStore reads files.
    """

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, view: VolumeView | PyramidView) -> None:
        super().__init__(read_only=True)
        self.view = view

    @classmethod
    def open_path(cls, path: str) -> "BlockfsStore":
        """The store of the volume (directory file) or pyramid folder at path."""
        return cls(open_view(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockfsStore) and other.view is self.view

    def __hash__(self) -> int:
        return id(self.view)

    def __repr__(self) -> str:
        return f"BlockfsStore({self.view!r})"

    def with_read_only(self, read_only: bool = False) -> "BlockfsStore":
        if not read_only:
            raise ReadOnlyError(f"{self!r}: a blockfs view cannot be written")
        return self

    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        data = await asyncio.to_thread(self.view.get, key)
        if data is None:
            return None
        # from_bytes returns Self, which mypy leaves Any when called on type[Buffer]
        buffer: Buffer = (prototype or default_buffer_prototype()).buffer.from_bytes(
            requested_bytes(data, byte_range))
        return buffer

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]
                                 ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, request)
                                           for key, request in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.view.exists, key)

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    async def list(self) -> AsyncIterator[str]:
        for key in self.view.keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self.view.keys():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """The names one level below prefix (keys and folders alike), each once."""
        prefix = prefix.rstrip("/")
        start = prefix + "/" if prefix else ""
        seen = set()
        for key in self.view.keys():
            if key.startswith(start):
                name = key[len(start):].split("/", 1)[0]
                if name not in seen:
                    seen.add(name)
                    yield name


def open_zarr(path: str) -> "zarr.Array[ArrayV3Metadata] | zarr.Group":
    """A blockfs volume (its directory file) as a read-only zarr.Array, or a pyramid folder
    as a zarr.Group holding an OME-Zarr 0.5 multiscale image (arrays "0", "1", ...)."""
    return zarr.open(store=BlockfsStore.open_path(path), mode="r", zarr_format=3)
