"""The exceptions blockfs_mpi raises; every one names the file, block or rank at fault."""
import re
from collections.abc import Iterable

# A line of MPICH's error stack: "FUNCTION(line)....: message".
MPICH_STACK_LINE = re.compile(r"^\w+\(\d+\)\.*: ")


def brief(error: BaseException) -> str:
    """An exception's message on one line. MPICH's MPI errors carry their whole call stack;
    of those only the innermost message is kept ("Other I/O error No space left on device")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) < 2:
        return str(error).strip()
    return MPICH_STACK_LINE.sub("", lines[-1])


class BlockfsError(Exception):
    """Base class of every error blockfs_mpi raises on purpose."""


class OptionError(BlockfsError, ValueError):
    """A bad argument to the API or a program: an unknown codec or dtype, a number out of range.
    (FormatError, by contrast, means a file is not a blockfs file.)"""


class FormatError(BlockfsError, ValueError):
    """A file is not a blockfs file, or its bytes do not follow the format."""


class CorruptBlockError(FormatError):
    """A block's stored bytes are damaged: bad frame, checksum or size."""


class DataFileNotFoundError(BlockfsError, FileNotFoundError):
    """A data file named in a directory file is in none of the places it may be on this
    machine; the message names the volume, the stored name and every place looked in, and
    `path` is where the file belongs."""

    path: str = ""


class BlockCoordinateError(BlockfsError, IndexError):
    """Coordinates outside the volume or not on a block boundary."""


class BlockShapeError(BlockfsError, ValueError):
    """A block of the wrong shape, or of a dtype that cannot be cast safely."""


class ReadOnlyError(BlockfsError, PermissionError):
    """Writing to a volume that was opened for reading."""


class DuplicateBlockError(BlockfsError):
    """The same block was written by two different writers in one job.

    count and problems (one line per block, at most ten) let the ranks of a
    distributed commit merge what each of them found into one message.
    """

    def __init__(self, message: str, count: int = 0, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.count, self.problems = count, list(problems)


class WriterError(BlockfsError):
    """A writer (an MPI rank or a local writer process) failed."""
