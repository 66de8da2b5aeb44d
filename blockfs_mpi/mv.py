"""blockfs-mv (also `python -m blockfs_mpi.mv`): move a volume, over relocate.relocate."""
from . import parallel
from .relocate_cli import DESTINATION, REPLACING, THREADS, run

USAGE = f"""Move a blockfs volume (directory file and data files) to another place.

Within one filesystem the data files are hard-linked, not copied. Across
filesystems they are copied (split across the ranks of `mpiexec -n N`),
checked (sizes; format 2 frame checksums), the directory file is written,
and only then is the source removed. Format 1 volumes stay format 1, with
their data file names rewritten.

Usage:
  blockfs-mv [--overwrite | --force] [--break-lock] [--threads <n>] [--silent] <src> <dest>
  blockfs-mv -h | --help | --version

Arguments:
  <src>   The volume's directory file.
  <dest>  The folder to move it into{DESTINATION}
Options:
{REPLACING}{THREADS}"""


@parallel.program
def main(argv: list[str] | None = None) -> None:
    run(USAGE, True, argv)


if __name__ == "__main__":
    main()
