"""Reading a format 2 data file frame by frame: what a killed job left, what fsck checks.

Frames are self-describing (magic, block number, size, sequence, checksums),
so the index of a volume can always be rebuilt from its data files. A torn
or damaged frame is skipped by searching for the next frame magic.
"""
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .errors import CorruptBlockError
from .format import WRITTEN

# What iter_frames yields: (offset, block, size, sequence) of an intact frame, or
# (offset, None, reason, None) of a damaged stretch.
Frame = tuple[int, int, int, int] | tuple[int, None, str, None]


@dataclass
class Scan:
    """What one data file holds."""

    path: str
    file_number: int
    size: int = 0
    frames: int = 0  # intact frames, superseded ones included
    rows: npt.NDArray[np.void] = field(  # WRITTEN: the newest intact frame of each block
        default_factory=lambda: np.zeros(0, WRITTEN))
    # (offset, reason) of each bad stretch
    damaged: list[tuple[int, str]] = field(default_factory=list)


def iter_frames(view: bytes | mmap.mmap, where: str) -> Iterator[Frame]:
    """Yield (offset, block, size, sequence) of intact frames in bytes or an mmap, or
    (offset, None, reason, None) for each damaged stretch that was skipped."""
    position, end = 0, len(view)
    while position < end:
        reason = None
        try:
            if end - position < fmt.FRAME_SIZE:
                raise CorruptBlockError(f"{where}: torn frame header at {position}")
            block, size, sequence, crc = fmt.decode_frame_header(
                view[position:position + fmt.FRAME_SIZE], f"{where} at {position}")
            payload_end = position + fmt.FRAME_SIZE + size
            if payload_end > end:
                raise CorruptBlockError(f"{where}: frame at {position} runs past the end of "
                                        f"the file (torn write)")
            if fmt.crc32c(view[position + fmt.FRAME_SIZE:payload_end]) != crc:
                raise CorruptBlockError(f"{where}: checksum mismatch in the frame of block "
                                        f"{block} at {position}")
        except CorruptBlockError as e:
            reason = str(e)
        if reason is None:
            yield position, block, size, sequence
            position = payload_end
        else:
            following = view.find(fmt.FRAME_MAGIC, position + 1)
            yield position, None, reason, None
            position = end if following < 0 else following


def scan_data_file(path: str, file_number: int, n_blocks: int | None = None) -> Scan:
    """Scan a data file; missing or empty files hold nothing."""
    scan = Scan(path=path, file_number=file_number)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        scan.damaged.append((0, f"{path}: data file is missing"))
        return scan
    try:
        scan.size = os.fstat(fd).st_size
        if scan.size == 0:
            return scan
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            newest: dict[int, tuple[int, int, int]] = {}
            for frame in iter_frames(view, path):
                if frame[1] is None:
                    scan.damaged.append((frame[0], frame[2]))
                    continue
                offset, block, size, sequence = frame
                if n_blocks is not None and block >= n_blocks:
                    scan.damaged.append((offset, f"{path}: frame at {offset} names block {block}, "
                                                 f"outside the volume's {n_blocks} blocks"))
                else:
                    scan.frames += 1
                    if block not in newest or sequence >= newest[block][2]:
                        newest[block] = (offset + fmt.FRAME_SIZE, size, sequence)
    finally:
        os.close(fd)
    rows = np.zeros(len(newest), WRITTEN)
    if newest:
        rows["block"] = list(newest)
        rows["offset"], rows["size"], rows["sequence"] = zip(*newest.values())
    rows["file"] = file_number
    scan.rows = rows
    return scan
