"""Blosc codecs by name, as both formats store them (numcodecs does the work)."""
import enum
import functools
import operator
import struct
import warnings
from typing import TYPE_CHECKING, Any, SupportsIndex

from .errors import OptionError

if TYPE_CHECKING:
    from numcodecs.abc import Codec


class Compression(enum.Enum):
    """The Blosc compressors a volume may use (the original blockfs names)."""

    zstd = 1
    blosclz = 2
    lz4 = 3
    lz4hc = 4
    zlib = 5

    @classmethod
    def parse(cls, value: "Compression | str") -> "Compression":
        """A Compression from an enum member or its name; OptionError otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls[str(value)]
        except KeyError:
            names = ", ".join(member.name for member in cls)
            raise OptionError(
                f"unknown compression {value!r}: expected one of {names}") from None


SHUFFLES = {"none": 0, "byte": 1, "bit": 2}  # Blosc's own shuffle codes

# Blosc splits a buffer into pieces it compresses one by one; left to itself it takes 32 KiB at
# zstd-1, 128 KiB at zstd-3, 256 KiB at zstd-5 and more above. On 64^3 uint16 blocks 256 KiB
# pieces at zstd-1 to 4 encode 10-30 % and decode 20-50 % faster and store ~1 % fewer bytes
# (benchmarks/blosc_blocksize.py). Each buffer records its piece size: any Blosc decodes it.
ZSTD_BLOSC_BLOCKSIZE = 256 << 10


@functools.cache
def numcodecs_blosc() -> Any:  # the numcodecs.blosc module, which ships no type hints
    """numcodecs.blosc, imported on first use: programs that only move bytes (blockfs-cp,
    blockfs-mv, blockfs-info) start a tenth of a second sooner without it.

    numcodecs warns at import whenever the crc32c package is installed (it prefers
    google_crc32c, and installs a filter of its own that shows the warning); blockfs_mpi
    needs crc32c, which checksums writable buffers in place. That one warning is dropped,
    any other passed on.
    """
    with warnings.catch_warnings(record=True) as caught:
        from numcodecs import blosc
    for warning in caught:
        if not str(warning.message).startswith("crc32c usage is deprecated"):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    return blosc


def check_codec(compression: Compression | str, level: SupportsIndex,
                shuffle: str = "byte") -> tuple[Compression, int]:
    """(Compression, level) for a compression, level 0-9 and shuffle name, or OptionError."""
    compression = Compression.parse(compression)
    try:
        number = operator.index(level)
    except TypeError:
        number = None
    if number is None or not 0 <= number <= 9:
        raise OptionError(f"compression level must be a whole number from 0 to 9, not {level!r}")
    if shuffle not in SHUFFLES:
        raise OptionError(f"unknown shuffle {shuffle!r}: expected one of {', '.join(SHUFFLES)}")
    return compression, number


def make_codec(compression: Compression | str, level: SupportsIndex,
               shuffle: str = "byte") -> "Codec":
    """The numcodecs Blosc codec for a compression, level 0-9 and shuffle name."""
    compression, level = check_codec(compression, level, shuffle)
    blocksize = ZSTD_BLOSC_BLOCKSIZE if compression is Compression.zstd and 0 < level < 5 else 0
    return numcodecs_blosc().Blosc(cname=compression.name, clevel=level, shuffle=SHUFFLES[shuffle],
                                   blocksize=blocksize)


def single_threaded() -> None:
    """Make Blosc use one thread in this process: one writer per core is our parallelism."""
    blosc = numcodecs_blosc()
    blosc.use_threads = False
    blosc.set_nthreads(1)


BLOSC_HEADER = struct.Struct("<4xIII")  # version, flags, typesize; nbytes, blocksize, cbytes


def blosc_sizes(payload: bytes | bytearray | memoryview) -> tuple[int, int] | tuple[None, None]:
    """(uncompressed, compressed) sizes a Blosc buffer announces in its 16-byte header.

    Checked before decoding so that a damaged buffer can never make Blosc
    allocate or read more than the block it claims to be.
    """
    if len(payload) < BLOSC_HEADER.size:
        return None, None
    nbytes, _blocksize, cbytes = BLOSC_HEADER.unpack_from(payload)
    return nbytes, cbytes
