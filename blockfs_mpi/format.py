"""Bytes of the on-disk formats: directory headers, index entries and frames.

Format 2 (written by blockfs_mpi; spec in docs/FORMAT.md) and format 1 (the
original blockfs, read and rewritten in place). Pure encoding and decoding,
no I/O policy: callers hand in bytes and the file size, and get values or a
FormatError that says what is wrong. What differs between the two formats is
asked of the Header (has_frames, frame_size, decode_entries, encode_head ...),
so that no other module tests the version.
"""
from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast, overload

import crc32c as _crc32c
import numpy as np
import numpy.typing as npt

from .compression import Compression, check_codec
from .errors import CorruptBlockError, FormatError, OptionError
from .geometry import Geometry

if TYPE_CHECKING:
    from typing_extensions import Buffer

# Bytes read from a file and handed in to be decoded: any of them has a length and a buffer.
RawBytes = bytes | bytearray | memoryview
# read_at(offset, n): up to n bytes of a file from offset (parse_directory).
ReadAt = Callable[[int, int], RawBytes]

FORMAT1_MAGIC = b"BlockFS\0"
FORMAT2_MAGIC = b"BlockFS2"
FORMAT1_VERSION = "1.0.0"
FORMAT2_VERSION = 2

# Format 2 directory header: magic, metadata length, index offset, entries,
# crc32c of the metadata, crc32c of the 28 bytes before it.
HEADER2 = struct.Struct("<8sIIQI")
HEADER2_SIZE = HEADER2.size + 4
INDEX_ALIGNMENT = 16

# One index entry per block: payload offset, payload size, data file number.
ENTRY = np.dtype([("offset", "<u8"), ("size", "<u4"), ("file", "<u4")])
ONE_ENTRY = struct.Struct("<QII")  # the same layout, for reading a single entry quickly
MISSING_FILE = 0xFFFFFFFF  # file number of a never-written block
MISSING_ENTRY = (0, 0, MISSING_FILE)  # (offset, size, file) of a never-written block

# Frame header before every payload in a format 2 data file.
FRAME_MAGIC = b"BFRM"
FRAME = struct.Struct("<4sIQQI")  # magic, payload size, block number, sequence, payload crc32c
FRAME_SIZE = FRAME.size + 4  # + crc32c of the header's first 28 bytes

# Where a frame went, one row per frame (in memory, never on disk): what a writer reports at
# close and a scan of a data file finds, and what a commit builds the index from.
WRITTEN = np.dtype([("block", "<u8"), ("offset", "<u8"), ("size", "<u4"), ("file", "<u4"),
                    ("sequence", "<u8")])

FORMAT1_KEYS = {"XBlockSize", "YBlockSize", "ZBlockSize", "DType", "NOffsetBits",
                "NSizeBits", "XExtent", "YExtent", "ZExtent", "BlockFilenames",
                "XStride", "YStride", "ZStride", "Compression", "CompressionLvl", "Version"}


def crc32c(data: Buffer | npt.NDArray[Any], crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of any bytes-like object, without copying it; continues crc, the
    CRC-32C of the bytes before data."""
    # numpy declares an array a Buffer (__buffer__) for Python 3.12 on only; it is one on all
    return _crc32c.crc32c(cast("Buffer", data), crc)


def crc32c_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """CRC-32C of bytes A followed by B, from the CRC-32C of each and B's length alone, so that
    pieces checksummed apart (each rank its slice of the index) need not be read again.

    Continuing a CRC over n bytes changes the CRC it started from by a fixed linear map
    (over GF(2)) that depends only on n: crc32c(B, c) = crc32c(B, 0) ^ shift_n(c).
    """
    return _apply(_shift(length_b), crc_a) ^ crc_b


def _apply(shift: tuple[int, ...], value: int) -> int:
    """A shift (the images of the 32 bits of a CRC) applied to a CRC."""
    result = 0
    for bit, image in enumerate(shift):
        if value >> bit & 1:
            result ^= image
    return result


@functools.lru_cache(maxsize=64)
def _shift(length: int) -> tuple[int, ...]:
    """The map that continuing a CRC-32C over `length` bytes applies to the CRC it starts
    from: the one-byte map (measured with the crc32c package itself) raised to `length` by
    repeated squaring."""
    if length == 0:
        return tuple(1 << bit for bit in range(32))
    if length == 1:
        base = _crc32c.crc32c(b"\0", 0)
        return tuple(_crc32c.crc32c(b"\0", 1 << bit) ^ base for bit in range(32))
    half = _shift(length // 2)
    twice = tuple(_apply(half, image) for image in half)
    return tuple(_apply(_shift(1), image) for image in twice) if length % 2 else twice


@dataclass
class Header:
    """Everything a directory file says about a volume except its index."""

    geometry: Geometry
    dtype: np.dtype[Any]
    data_files: list[str]
    compression: Compression = Compression.zstd
    compression_level: int = 5
    shuffle: str = "byte"  # format 1: always byte, the original's only shuffle
    metadata: dict[str, Any] = field(default_factory=dict)
    # Format 2 only: who writes the volume and whether it finished ({"program", "complete",
    # "source"}); empty for format 1 and for volumes written before it was recorded.
    writer: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT2_VERSION
    index_offset: int = 0
    n_entries: int = 0
    index_crc32c: int | None = None
    n_offset_bits: int | None = None  # format 1 only
    n_size_bits: int | None = None  # format 1 only

    @property
    def entry_size(self) -> int:
        """Bytes of one index entry."""
        if self.version == 1:
            offset_bits, size_bits = self.entry_bits
            return (offset_bits + size_bits + 7) // 8
        return ENTRY.itemsize

    @property
    def entry_bits(self) -> tuple[int, int]:
        """Format 1: the bits of an entry's offset and of its size (NOffsetBits, NSizeBits)."""
        assert self.n_offset_bits is not None and self.n_size_bits is not None  # format 1
        return self.n_offset_bits, self.n_size_bits

    def entry_position(self, block_number: int) -> int:
        """Byte offset of a block's index entry in the directory file."""
        return self.index_offset + block_number * self.entry_size

    @property
    def has_frames(self) -> bool:
        """Whether payloads are framed (format 2): a frame says which block it holds, so the
        index can be rebuilt (fsck --repair), a job resumed and a copy verified."""
        return self.version != 1

    @property
    def frame_size(self) -> int:
        """Bytes of the frame header before each payload (format 1: none)."""
        return FRAME_SIZE if self.has_frames else 0

    @property
    def has_index_checksum(self) -> bool:
        """Whether the metadata records the index's CRC-32C (format 2)."""
        return self.version != 1

    @property
    def relative_data_files(self) -> bool:
        """Whether data file names are relative to the directory file's folder (format 2); see
        relative_data_files()."""
        return relative_data_files(self.version)

    def encode_head(self) -> bytes:
        """Every byte of a directory file before its index, as this header describes it (format
        2: with its entry count and index checksum): a new head for an index copied as is."""
        if self.version == 1:
            return encode_header1(self)
        return encode_head2(self, self.n_entries, self.index_crc32c)

    def decode_entries(self, raw: RawBytes, first: int, count: int) -> npt.NDArray[np.void]:
        """The index entries in raw, of blocks first, first + 1, ..., as an ENTRY array.

        Format 1 is converted: file = block % number of data files, and a never-written block
        (size 0) or one of the `count` wanted past the end of raw (the original stops at the
        last block it wrote) is format 2's MISSING_ENTRY. A format 2 index is never short.
        """
        if self.version != 1:
            n = len(raw) // ENTRY.itemsize
            copied: npt.NDArray[np.void] = np.frombuffer(raw, ENTRY, n).copy()  # numpy: Any
            return copied
        offsets, sizes = decode_entries1(self, raw)
        entries = empty_index(count)
        written = np.flatnonzero(sizes > 0)
        entries["offset"][written] = offsets[written]
        entries["size"][written] = sizes[written]
        entries["file"][written] = (first + written) % len(self.data_files)
        return entries

    def decode_entry(self, raw: RawBytes, block_number: int,
                     name: str) -> tuple[int, int, int] | None:
        """(offset, size, file number) of one block's raw index entry, or None if the block was
        never written. Raises FormatError naming `name` if a format 2 entry is cut short."""
        if self.version == 1:
            if len(raw) < self.entry_size:  # the original stops at the last block it wrote
                return None
            offsets, sizes = decode_entries1(self, raw)
            if sizes[0] == 0:
                return None
            return int(offsets[0]), int(sizes[0]), block_number % len(self.data_files)
        if len(raw) < self.entry_size:
            raise FormatError(f"{name}: truncated directory file (index entry of block "
                              f"{block_number} is past its end)")
        entry = ONE_ENTRY.unpack(raw)
        return None if entry == MISSING_ENTRY else entry


def relative_data_files(version: int) -> bool:
    """Whether a directory file of format `version` names its data files relative to its own
    folder (format 2). The original blockfs (format 1) stored them as it built them from the
    path its user typed: absolute, or relative to the writer's working directory."""
    return version != 1


@overload
def is_missing(entries: np.void) -> np.bool_: ...
@overload
def is_missing(entries: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]: ...
def is_missing(entries: np.void | npt.NDArray[np.void]) -> np.bool_ | npt.NDArray[np.bool_]:
    """True for never-written entries (MISSING_ENTRY); entry or index array."""
    missing: np.bool_ | npt.NDArray[np.bool_] = entries == np.array(MISSING_ENTRY, ENTRY)
    return missing


def empty_index(n_blocks: int) -> npt.NDArray[np.void]:
    """A format 2 index in which no block has been written (every entry MISSING_ENTRY)."""
    index = np.zeros(n_blocks, ENTRY)  # zeros and one field set: twice as fast as np.full
    index["file"] = MISSING_FILE
    return index


# ---------------------------------------------------------------- format 2 --

def _metadata2(header: Header, index_crc: int | None) -> dict[str, Any]:
    g = header.geometry
    return {
        "format": "blockfs", "version": FORMAT2_VERSION,
        "x_extent": g.x_extent, "y_extent": g.y_extent, "z_extent": g.z_extent,
        "x_block_size": g.x_block_size, "y_block_size": g.y_block_size,
        "z_block_size": g.z_block_size,
        "dtype": header.dtype.str,
        "compression": header.compression.name,
        "compression_level": int(header.compression_level),
        "shuffle": header.shuffle,
        "data_files": list(header.data_files),
        "n_blocks": g.n_blocks,
        "index_crc32c": index_crc,
        "metadata": header.metadata,
        "writer": header.writer,
    }


def directory2_parts(header: Header,
                     index: npt.NDArray[np.void]) -> tuple[bytes, npt.NDArray[np.uint8]]:
    """A format 2 directory file as two buffers, header with metadata and then the index,
    the index not copied: a commit of 10^8 blocks holds 1.6 GB of index, once."""
    index = np.ascontiguousarray(index, ENTRY)
    if len(index) != header.geometry.n_blocks:
        raise ValueError(f"index has {len(index)} entries, the volume {header.geometry.n_blocks}")
    index_bytes = index.view(np.uint8)
    return encode_head2(header, len(index), crc32c(index_bytes)), index_bytes


def empty_directory2_parts(header: Header,
                           chunk: int = 1 << 16) -> list[bytes | npt.NDArray[np.uint8]]:
    """A format 2 directory file in which no block is written yet, as buffers that share one
    chunk of missing entries: creating a volume of 10^8 blocks takes 1 MiB, not 1.6 GB."""
    n_blocks = header.geometry.n_blocks
    missing = empty_index(min(n_blocks, chunk)).view(np.uint8)
    pieces = [missing[:min(chunk, n_blocks - start) * ENTRY.itemsize]
              for start in range(0, n_blocks, chunk)]
    crc = 0
    for piece in pieces:
        crc = crc32c(piece, crc)
    return [encode_head2(header, n_blocks, crc)] + pieces


def encode_head2(header: Header, n_entries: int, index_crc: int | None) -> bytes:
    """Header, metadata and padding of a format 2 directory file: every byte before its index.

    Separate from the index so that tools renaming data files can stream the index unchanged.
    """
    metadata = json.dumps(_metadata2(header, index_crc), indent=1).encode()
    index_offset = -(-(HEADER2_SIZE + len(metadata)) // INDEX_ALIGNMENT) * INDEX_ALIGNMENT
    head = HEADER2.pack(FORMAT2_MAGIC, len(metadata), index_offset, n_entries, crc32c(metadata))
    head += struct.pack("<I", crc32c(head))
    return b"".join((head, metadata, b"\0" * (index_offset - len(head) - len(metadata))))


def _decode_header2(prefix: RawBytes, file_size: int,
                    name: str) -> tuple[int, int, int, int]:
    if len(prefix) < HEADER2_SIZE:
        raise FormatError(f"{name}: truncated directory header ({len(prefix)} bytes)")
    magic, md_size, index_offset, n_entries, md_crc = HEADER2.unpack_from(prefix)
    (head_crc,) = struct.unpack_from("<I", prefix, HEADER2.size)
    if crc32c(prefix[:HEADER2.size]) != head_crc:
        raise FormatError(f"{name}: directory header checksum mismatch (damaged header)")
    index_end = index_offset + n_entries * ENTRY.itemsize
    if index_offset < HEADER2_SIZE + md_size or index_end > file_size:
        raise FormatError(f"{name}: truncated directory file ({file_size} bytes; header says "
                          f"index at {index_offset} with {n_entries} entries)")
    return md_size, index_offset, n_entries, md_crc


def _parse_metadata2(raw: RawBytes, md_crc: int, index_offset: int, n_entries: int,
                     name: str) -> Header:
    if crc32c(raw) != md_crc:
        raise FormatError(f"{name}: metadata checksum mismatch (damaged directory file)")
    meta = _load_json(raw, name)
    try:
        geometry = Geometry(meta["x_extent"], meta["y_extent"], meta["z_extent"],
                            meta["x_block_size"], meta["y_block_size"], meta["z_block_size"])
        header = Header(geometry=geometry, dtype=parse_dtype(meta["dtype"], name),
                        data_files=list(meta["data_files"]),
                        compression=Compression.parse(meta["compression"]),
                        compression_level=int(meta["compression_level"]),
                        shuffle=meta.get("shuffle", "byte"),
                        metadata=dict(meta.get("metadata", {})),
                        writer=dict(meta.get("writer", {})), version=FORMAT2_VERSION,
                        index_offset=index_offset, n_entries=n_entries,
                        index_crc32c=meta.get("index_crc32c"))
        check_codec(header.compression, header.compression_level, header.shuffle)
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: Infinity
        raise FormatError(f"{name}: bad metadata: {e}") from None
    if n_entries != geometry.n_blocks:
        raise FormatError(f"{name}: index has {n_entries} entries, the volume needs "
                          f"{geometry.n_blocks}")
    return header


# ---------------------------------------------------------------- format 1 --

def _decode_header1(prefix: RawBytes, file_size: int, name: str) -> tuple[int, int]:
    if len(prefix) < 16:
        raise FormatError(f"{name}: truncated directory header ({len(prefix)} bytes)")
    md_size, index_offset = struct.unpack_from("<II", prefix, 8)
    if 16 + md_size > file_size:
        raise FormatError(f"{name}: truncated directory file ({file_size} bytes; metadata "
                          f"needs {16 + md_size})")
    return md_size, index_offset


def _parse_metadata1(raw: RawBytes, index_offset: int, file_size: int, name: str) -> Header:
    meta = _load_json(raw, name)
    try:
        geometry = Geometry(meta["XExtent"], meta["YExtent"], meta["ZExtent"],
                            meta["XBlockSize"], meta["YBlockSize"], meta["ZBlockSize"],
                            meta["XStride"], meta["YStride"], meta["ZStride"])
        header = Header(geometry=geometry, dtype=parse_dtype(meta["DType"], name),
                        data_files=list(meta["BlockFilenames"]),
                        compression=Compression.parse(meta["Compression"]),
                        compression_level=int(meta["CompressionLvl"]),
                        metadata={k: v for k, v in meta.items() if k not in FORMAT1_KEYS},
                        version=1, index_offset=index_offset,
                        n_offset_bits=int(meta["NOffsetBits"]), n_size_bits=int(meta["NSizeBits"]))
        check_codec(header.compression, header.compression_level)
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: Infinity
        raise FormatError(f"{name}: bad format 1 metadata: {e}") from None
    offset_bits, size_bits = header.entry_bits
    if (not header.data_files or offset_bits <= 0 or size_bits <= 0
            or offset_bits + size_bits > 64):
        raise FormatError(f"{name}: bad format 1 metadata: no data files or bad entry bits")
    header.n_entries = max(0, (file_size - index_offset) // header.entry_size)
    return header


def format1_json(header: Header) -> bytes:
    """The JSON metadata of a format 1 directory file, keys as the original writes them."""
    g = header.geometry
    meta = dict(header.metadata)
    meta.update(XBlockSize=g.x_block_size, YBlockSize=g.y_block_size, ZBlockSize=g.z_block_size,
                DType=header.dtype.name, NOffsetBits=header.n_offset_bits,
                NSizeBits=header.n_size_bits, XExtent=g.x_extent, YExtent=g.y_extent,
                ZExtent=g.z_extent, BlockFilenames=list(header.data_files),
                XStride=g.x_stride, YStride=g.y_stride, ZStride=g.z_stride,
                Compression=header.compression.name, CompressionLvl=header.compression_level,
                Version=FORMAT1_VERSION)
    return json.dumps(meta).encode()


def encode_header1(header: Header) -> bytes:
    """Header and metadata of a format 1 directory file; its index follows directly."""
    metadata = format1_json(header)
    return FORMAT1_MAGIC + struct.pack("<II", len(metadata), 16 + len(metadata)) + metadata


def encode_entries1(header: Header, offsets: npt.ArrayLike, sizes: npt.ArrayLike) -> bytes:
    """Packed format 1 entries (offset | size << NOffsetBits) for arrays of offsets and sizes."""
    offset_bits, _ = header.entry_bits
    packed = (np.asarray(offsets, np.uint64)
              | (np.asarray(sizes, np.uint64) << np.uint64(offset_bits)))
    as_bytes: npt.NDArray[np.uint8] = packed.astype("<u8").view(np.uint8).reshape(-1, 8)
    return as_bytes[:, :header.entry_size].tobytes()


def decode_entries1(header: Header,
                    raw: RawBytes) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Arrays (offsets, sizes) of the packed format 1 entries in raw."""
    n = len(raw) // header.entry_size
    padded = np.zeros((n, 8), np.uint8)
    padded[:, :header.entry_size] = np.frombuffer(raw, np.uint8, n * header.entry_size).reshape(
        n, header.entry_size)
    packed = padded.view("<u8").ravel()
    offset_bits, size_bits = header.entry_bits
    offsets = packed & np.uint64((1 << offset_bits) - 1)
    sizes = (packed >> np.uint64(offset_bits)) & np.uint64((1 << size_bits) - 1)
    return offsets, sizes


# ------------------------------------------------------------------ common --

MAX_METADATA = 64 << 20  # a directory's JSON is kilobytes; refuse absurd lengths


def _load_json(raw: RawBytes, name: str) -> dict[str, Any]:
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{name}: metadata is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{name}: metadata is not a JSON object")
    return meta


def parse_dtype(value: npt.DTypeLike, name: str) -> np.dtype[Any]:
    """The numpy dtype of a volume of name, or OptionError (FormatError where a file's
    metadata is read) if blockfs cannot store it."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise OptionError(f"{name}: unknown dtype {value!r}") from None
    if dtype.kind not in "uifb" or dtype.itemsize > 8:
        raise OptionError(f"{name}: unsupported dtype {value!r} (numeric scalars only)")
    return dtype


def parse_directory(read_at: ReadAt, file_size: int, name: str) -> Header:
    """Parse a directory file (either format) into a Header.

    read_at(offset, n) returns up to n bytes of the file; only the header and
    metadata are read, never the index. Any malformation is a FormatError.
    """
    prefix = read_at(0, HEADER2_SIZE)
    magic = bytes(prefix[:8])
    if magic == FORMAT2_MAGIC:
        md_size, index_offset, n_entries, md_crc = _decode_header2(prefix, file_size, name)
        raw = _read_metadata(read_at, HEADER2_SIZE, md_size, name)
        return _parse_metadata2(raw, md_crc, index_offset, n_entries, name)
    if magic == FORMAT1_MAGIC:
        md_size, index_offset = _decode_header1(prefix, file_size, name)
        raw = _read_metadata(read_at, 16, md_size, name)
        return _parse_metadata1(raw, index_offset, file_size, name)
    raise FormatError(f"{name} is not a blockfs directory file (magic {magic!r})")


def _read_metadata(read_at: ReadAt, offset: int, size: int, name: str) -> RawBytes:
    if size > MAX_METADATA:
        raise FormatError(f"{name}: metadata length {size} is implausible (damaged header)")
    raw = read_at(offset, size)
    if len(raw) != size:
        raise FormatError(f"{name}: truncated metadata")
    return raw


# ------------------------------------------------------------------ frames --

def encode_frame_header(block_number: int, payload: RawBytes, sequence: int) -> bytes:
    """The 32-byte header that precedes a payload in a format 2 data file."""
    head = FRAME.pack(FRAME_MAGIC, len(payload), block_number, sequence, crc32c(payload))
    return head + struct.pack("<I", crc32c(head))


def decode_frame_header(raw: RawBytes, where: str) -> tuple[int, int, int, int]:
    """(block number, payload size, sequence, payload crc) of a frame header.

    Raises CorruptBlockError naming `where` if the bytes are not an intact header.
    """
    if len(raw) < FRAME_SIZE:
        raise CorruptBlockError(f"{where}: truncated frame header")
    magic, size, block_number, sequence, payload_crc = FRAME.unpack_from(raw)
    (head_crc,) = struct.unpack_from("<I", raw, FRAME.size)
    if magic != FRAME_MAGIC or crc32c(bytes(raw[:FRAME.size])) != head_crc:
        raise CorruptBlockError(f"{where}: damaged frame header")
    return block_number, size, sequence, payload_crc
