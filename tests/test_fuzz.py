"""Property tests of the parsers with arbitrary bytes: only BlockfsError subclasses come out,
no read is ever larger than the format allows, every scan ends."""
import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockfs_mpi import BlockfsError, FormatError
from blockfs_mpi import format as fmt
from blockfs_mpi.scan import iter_frames

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAGICS = st.sampled_from([fmt.FORMAT1_MAGIC, fmt.FORMAT2_MAGIC, b"", b"BlockFS", b"\0" * 8])


def parse(data, claimed_size=None):
    """parse_directory over bytes, recording the largest read; FormatError or a Header."""
    reads = []

    def read_at(offset, n):
        reads.append(n)
        return data[offset:offset + n]

    try:
        return fmt.parse_directory(read_at, len(data) if claimed_size is None else claimed_size,
                                   "fuzz"), reads
    except FormatError:
        return None, reads


def head2(md_size, index_offset, n_entries, md_crc):
    head = fmt.HEADER2.pack(fmt.FORMAT2_MAGIC, md_size, index_offset, n_entries, md_crc)
    return head + struct.pack("<I", fmt.crc32c(head))


@FUZZ
@given(MAGICS, st.binary(max_size=400))
def test_arbitrary_directory_bytes(magic, rest):
    header, reads = parse(magic + rest)
    assert max(reads) <= fmt.MAX_METADATA


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 2**32 - 1), st.binary(max_size=200), st.integers(0, 2**40))
def test_format2_header_with_valid_checksum(md_size, index_offset, n_entries, md_crc, rest,
                                            claimed_size):
    """Past the header checksum: any lengths and offsets, any claimed file size."""
    header, reads = parse(head2(md_size, index_offset, n_entries, md_crc) + rest, claimed_size)
    assert max(reads) <= fmt.MAX_METADATA


def test_4gb_metadata_length_is_refused_before_reading():
    for data in (head2(2**32 - 100, 2**32 - 1, 0, 0),
                 fmt.FORMAT1_MAGIC + struct.pack("<II", 2**32 - 100, 2**32 - 1)):
        header, reads = parse(data, claimed_size=2**33)
        assert header is None and max(reads) == fmt.HEADER2_SIZE


NASTY = st.sampled_from([float("inf"), float("-inf"), float("nan"), -5, 0, 1, 2**70, 1.5, "",
                         "x", "u2", None, True, [], {}, ["a", "b"], {"a": 1}])
JSON = NASTY | st.recursive(st.none() | st.integers() | st.floats() | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                            max_leaves=4)
KEYS2 = ["x_extent", "y_extent", "z_extent", "x_block_size", "y_block_size", "z_block_size",
         "dtype", "data_files", "compression", "compression_level", "shuffle", "metadata"]
KEYS1 = sorted(fmt.FORMAT1_KEYS)
GOOD = {"x_extent": 64, "y_extent": 64, "z_extent": 64, "x_block_size": 32, "y_block_size": 32,
        "z_block_size": 32, "dtype": "<u2", "data_files": ["a"], "compression": "zstd",
        "compression_level": 5, "shuffle": "byte", "metadata": {},
        "XExtent": 64, "YExtent": 64, "ZExtent": 64, "XBlockSize": 32, "YBlockSize": 32,
        "ZBlockSize": 32, "XStride": 1, "YStride": 2, "ZStride": 4, "DType": "uint16",
        "NOffsetBits": 40, "NSizeBits": 24, "BlockFilenames": ["a"], "Compression": "zstd",
        "CompressionLvl": 5, "Version": "1.0.0"}


@FUZZ
@given(st.booleans(), st.dictionaries(st.sampled_from(KEYS2 + KEYS1), JSON, max_size=4),
       st.integers(0, 16), st.binary(max_size=64))
def test_metadata_values(format2, changes, n_entries, index):
    """Well-formed headers around JSON metadata with arbitrary values in the known keys."""
    meta = dict(GOOD, **changes)
    raw = json.dumps(meta).encode()
    if format2:
        offset = fmt.HEADER2_SIZE + len(raw)
        data = head2(len(raw), offset, n_entries, fmt.crc32c(raw)) + raw + index
    else:
        data = fmt.FORMAT1_MAGIC + struct.pack("<II", len(raw), 16 + len(raw)) + raw + index
    header, reads = parse(data)
    if header is not None and header.version == 1:
        fmt.decode_entries1(header, index)  # the entries of a parsed header always decode


FRAMES = st.lists(st.one_of(st.binary(max_size=40),
                            st.builds(lambda b, p, s: fmt.encode_frame_header(b, p, s) + p,
                                      st.integers(0, 2**64 - 1), st.binary(max_size=40),
                                      st.integers(0, 2**64 - 1))), max_size=8)


@FUZZ
@given(FRAMES, st.lists(st.integers(0, 10**6), max_size=4))
def test_frames_in_arbitrary_bytes(pieces, flips):
    """iter_frames ends, covers the bytes in order, and every intact frame it yields is real."""
    data = bytearray(b"".join(pieces))
    for flip in flips:
        if data:
            data[flip % len(data)] ^= 0xFF
    data = bytes(data)
    position, yielded = 0, 0
    for offset, block, size, _ in iter_frames(data, "fuzz"):
        assert offset >= position
        yielded += 1
        assert yielded <= len(data)
        if block is not None:
            header = fmt.decode_frame_header(data[offset:offset + fmt.FRAME_SIZE], "fuzz")
            assert header[:2] == (block, size)
            position = offset + fmt.FRAME_SIZE + size
        else:
            position = offset + 1


@FUZZ
@given(st.binary(max_size=64))
def test_frame_header_arbitrary_bytes(raw):
    try:
        fmt.decode_frame_header(raw, "fuzz")
    except BlockfsError:
        pass


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.integers(1, 7), st.integers(1, 60))
def test_format1_entries_arbitrary_bytes(raw, entry_bytes, offset_bits):
    offset_bits = min(offset_bits, entry_bytes * 8 - 1)
    header = fmt.Header(geometry=None, dtype=np.dtype("u2"), data_files=["a"], version=1,
                        n_offset_bits=offset_bits, n_size_bits=entry_bytes * 8 - offset_bits)
    offsets, sizes = fmt.decode_entries1(header, raw)
    assert len(offsets) == len(raw) // entry_bytes
    assert (offsets < 2**offset_bits).all() and (sizes < 2**header.n_size_bits).all()
