"""Names of the files of a volume that replaces another, and what a killed replacement leaves.

A new volume's data files are `<name>.<n>` beside its directory file `<name>`.
Replacing a committed volume (an overwrite, or `Directory.create()` over one)
writes generation k instead: data files `<name>.g<k>.<n>`, and until its final
commit the directory file `<name>.g<k>` (the new version in progress, which a
resume continues). The final commit renames the new directory file over
`<name>`; only then are `<name>.g<k>` and the old data files removed, so the
old version stays whole and readable until the new one is committed (a
reader that opened it keeps its descriptors). See docs/FORMAT.md.
"""
import glob
import os
import re
from collections.abc import Iterable

from . import format as fmt
from .identify import is_volume, leading_bytes
from .reader import read_header

NUMBERED = re.compile(r"(.+)\.(\d+)")
GENERATION = re.compile(r"(.+)\.g(\d+)")


def stem(directory_file: str, data_files: list[str]) -> str:
    """The absolute prefix that the volume's numbered data files share beside its directory
    file: `<name>` for `<name>.0, <name>.1 ...`, `<name>.g2` for `<name>.g2.0 ...` (data file
    0's name decides; the directory file's own path if it is not numbered). A job with more
    ranks than the volume has data files adds `<stem>.<n>`."""
    folder = os.path.dirname(os.path.abspath(directory_file))
    match = NUMBERED.fullmatch(os.path.basename(data_files[0])) if data_files else None
    return os.path.join(folder, match.group(1)) if match else os.path.abspath(directory_file)


def generation(directory_file: str, data_files: list[str]) -> int:
    """The generation of a volume's data files: k for `<name>.g<k>.<n>`, else 0."""
    match = GENERATION.fullmatch(stem(directory_file, data_files))
    return int(match.group(2)) if match else 0


def with_generation(path: str, k: int) -> str:
    """A data file path of generation k: `.g<k>` before its number (`v.blockfs.3` ->
    `v.blockfs.g<k>.3`), or at its end if it has none; an older generation's is replaced."""
    match = NUMBERED.fullmatch(path)
    base, number = (match.group(1), f".{match.group(2)}") if match else (path, "")
    old = GENERATION.fullmatch(base)
    return f"{old.group(1) if old else base}.g{k}{number}"


def in_progress_path(directory_file: str, k: int) -> str:
    """The directory file of generation k while it is being written."""
    return f"{os.path.abspath(directory_file)}.g{k}"


def in_progress(directory_file: str, committed_files: list[str]) -> str | None:
    """The directory file of a new version a killed replacement left (the newest, if several),
    or None. One naming the committed volume's own data files was committed already."""
    best, best_k = None, -1
    for path in _beside(directory_file):
        match = GENERATION.fullmatch(path)
        if match and is_volume(path) and int(match.group(2)) > best_k:
            try:
                if read_header(path).data_files == list(committed_files):
                    continue
            except (OSError, ValueError):
                continue
            best, best_k = path, int(match.group(2))
    return best


def leftovers(directory_file: str, keep_stems: set[str], keep: set[str]) -> list[str]:
    """Files beside directory_file that a killed replacement or an interrupted clean-up left:
    directory files `<name>.g<k>` and data files `<name>.<n>`, `<name>.g<k>.<n>` holding
    frames (or empty) whose stem is not in keep_stems; never a path in keep, never a file of
    anything else."""
    found = []
    for path in _beside(directory_file):
        if path in keep or path == os.path.abspath(directory_file):
            continue
        if GENERATION.fullmatch(path) and is_volume(path):
            found.append(path)
            continue
        match = NUMBERED.fullmatch(path)
        if match and match.group(1) not in keep_stems and os.path.isfile(path) and \
                leading_bytes(path, 4) in (b"", fmt.FRAME_MAGIC):
            found.append(path)
    return sorted(found)


def _beside(directory_file: str) -> list[str]:
    """Paths in directory_file's folder whose names start with its name and a dot (not the
    lock file's: that is never a data file)."""
    path = os.path.abspath(directory_file)
    return [p for p in glob.glob(glob.escape(path) + ".*") if not p.endswith(".lock")]


def remove(paths: Iterable[str]) -> list[str]:
    """Remove files; the messages of those that could not be (a warning, not an error: the
    committed volume does not need them)."""
    failed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            failed.append(f"{path}: {e.strerror or e}")
    return failed
