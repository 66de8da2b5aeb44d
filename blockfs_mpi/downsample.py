"""Add mip levels 2, 4, 8 ... to a blockfs volume, for Neuroglancer (2x2x2 mean or mode).

Usage:
  blockfs-downsample <blockfs-file> --levels=<n> [options]
  blockfs-downsample --help | --version

<blockfs-file> is level 1 of a pyramid, <dest>/1_1_1/precomputed.blockfs (the
layout of precomputed-tif); levels go to <dest>/2_2_2/precomputed.blockfs ...
and the precomputed info to <dest>/info.

Options:
  --levels=<n>         Number of levels in all, level 1 included.
  --voxel-size=<xyz>   Level 1 voxel size x,y,z in nm, for the info.  [default: 1,1,1]
  --labels             Integer labels: downsample by mode, not mean; info type segmentation.
  --overwrite          Replace levels that exist already.
  --silent             No progress bar.
  -h --help            Show this text.

Under `mpiexec -n N` the ranks split the blocks of each new level; each rank
reads only the blocks below that it needs, and every level is committed
before the next is made.
"""

from . import parallel
from .options import check_level, parse_command_line
from .pyramid import build, parse_voxel_size, pyramid_folder


@parallel.program
def main(argv=None):
    args = parse_command_line(__doc__, argv)
    levels = check_level("--levels", args["--levels"], 1, 32)
    build(pyramid_folder(args["<blockfs-file>"]), levels, parse_voxel_size(args["--voxel-size"]),
          "mode" if args["--labels"] else "mean", parallel.world(),
          overwrite=args["--overwrite"], silent=args["--silent"])


if __name__ == "__main__":
    main()
