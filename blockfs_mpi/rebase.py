"""Make a blockfs directory file name the data files in the folder it now lives in.

For volumes moved or renamed by hand: format 1 data file names are absolute
and are rewritten; format 2 names are relative and need no change unless
they are absolute. The directory file is replaced atomically.

Usage:
  blockfs-rebase <blockfs-file> [--index-chunk <bytes> | --block-size <bytes>] [--break-lock]
  blockfs-rebase -h | --help | --version

Options:
  --index-chunk <bytes>  Bytes of the index read and written at a time [default: 16777216].
  --block-size <bytes>   The old name of --index-chunk: bytes, not the voxels per block
                         edge that blockfs-write's --block-size means.
  --break-lock           Take over a lock that a job on another host left (see blockfs-write).
  -h --help  Show this text.
"""
import os

from . import parallel
from .data_files import rebase
from .options import number_in_range, parse_command_line


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    option = "--block-size" if args["--block-size"] is not None else "--index-chunk"
    piece_bytes = number_in_range(option, args[option], 1, 1 << 30)
    path = args["<blockfs-file>"]
    if rebase(path, piece_bytes, args["--break-lock"]):
        parallel.log.info("%s now names the data files in %s", path,
                          os.path.dirname(os.path.abspath(path)))
    else:
        parallel.log.info("%s: data file names already point to its folder; nothing changed",
                          path)


if __name__ == "__main__":
    main()
