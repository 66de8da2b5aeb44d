"""Whether a volume's writer finished, and how to finish it.

Never-written blocks read as zeros, which is right for a sparse volume and
wrong for a killed job; the `writer` record of a format 2 directory file
(docs/FORMAT.md) tells the two apart: `create()` commits it with complete
false, the final `close()` with complete true.
"""
import logging
import shlex

from .format import Header

log = logging.getLogger("blockfs_mpi")


def is_incomplete(header: Header) -> bool:
    """True if the volume's writer committed its start but not its end (a killed job).
    Format 1 volumes and volumes written before the record existed say nothing: False."""
    return header.writer.get("complete") is False


def how_to_complete(path: str, header: Header) -> str:
    """The command that completes an incomplete volume, or what to do when there is none."""
    source = header.writer.get("source", {}).get("spec")
    if source:
        return (f"complete it with: blockfs-write {shlex.quote(source)} {shlex.quote(path)} "
                f"--resume")
    program = header.writer.get("program", "its program")
    return f"complete it by running {program} again (blockfs-fsck --repair commits what it wrote)"


def incomplete_line(path: str, header: Header, written: int | None = None) -> str:
    """One line saying that the volume at path is incomplete, with how many blocks were
    written when known, and how to complete it."""
    program = header.writer.get("program", "its writer")
    blocks = header.geometry.n_blocks
    told = (f"{written} of {blocks} blocks written by {program}" if written is not None
            else f"{program} did not finish writing it")
    return f"{path}: incomplete: {told}; {how_to_complete(path, header)}"


def warn_if_incomplete(path: str, header: Header) -> None:
    """Log a warning for an incomplete volume: its missing blocks will read as zeros."""
    if is_incomplete(header):
        log.warning("%s (blocks not written read as zeros)", incomplete_line(path, header))
