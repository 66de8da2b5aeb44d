"""blockfs-cp (also `python -m blockfs_mpi.cp`): copy a volume, over relocate.relocate."""
from . import parallel
from .relocate_cli import DESTINATION, REPLACING, THREADS, run

USAGE = f"""Copy a blockfs volume (directory file and data files) to another place.

The data files are copied by the kernel, split across the ranks of
`mpiexec -n N`; the directory file is written last, so a copy that did not
finish has none. The source is never changed. Format 1 volumes stay
format 1, with their data file names rewritten.

Usage:
  blockfs-cp [--overwrite | --force] [--break-lock] [--no-fsync] [--threads <n>] [--silent]
             <src> <dest>
  blockfs-cp -h | --help | --version

Arguments:
  <src>   The volume's directory file.
  <dest>  The folder to copy it into{DESTINATION}
Options:
{REPLACING}  --no-fsync       Leave the copy (data and directory file) in the page cache for the
                   kernel to write back, as cp does (several times faster on a local
                   disk). A crash soon after can leave a copy with lost blocks or
                   without its directory file; blockfs-fsck finds lost blocks, and the
                   source is untouched either way.
{THREADS}"""


@parallel.program
def main(argv: list[str] | None = None) -> None:
    run(USAGE, False, argv)


if __name__ == "__main__":
    main()
