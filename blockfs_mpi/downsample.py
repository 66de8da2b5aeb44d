"""Add mip levels 2, 4, 8 ... to a blockfs volume, for Neuroglancer (2x2x2 mean or mode).

Usage:
  blockfs-downsample <blockfs-file> --levels=<n> [options]
  blockfs-downsample --help | --version

<blockfs-file> is level 1 of a pyramid, <dest>/1_1_1/precomputed.blockfs (the
layout of precomputed-tif); levels go to <dest>/2_2_2/precomputed.blockfs ...
and the precomputed info to <dest>/info. With --output, <blockfs-file> is any
volume (format 1 or 2): it is first copied, or with --move moved, to
<output>/1_1_1/precomputed.blockfs, as blockfs-cp and blockfs-mv would.

Options:
  --levels=<n>         Number of levels in all, level 1 included; more than halve the
                       volume down to one voxel are capped, with a warning.
  --output=<folder>    The pyramid folder (created if missing) to put <blockfs-file> in
                       as level 1 before the levels are made.
  --move               With --output: move the volume there instead of copying it
                       (hard links within one filesystem; the source is then gone).
  --voxel-size=<xyz>   Level 1 voxel size x,y,z with a unit, e.g. 1.8,1.8,2.0um (numbers
                       alone are nm), for the info (which takes nm); default: the voxel
                       size level 1 records (blockfs-write --voxel-size), else 1,1,1 nm.
  --unit=<unit>        The unit of the --voxel-size numbers: nm, um, mm or a UDUNITS name.
  --labels             Integer labels: downsample by mode, not mean; info type segmentation.
  --overwrite          Replace levels that exist already (with --output, level 1 too).
  --break-lock         Take over a lock that a job on another host left on a level it writes
                       (see blockfs-write).
  --silent             No progress bar.
  -h --help            Show this text.

Under `mpiexec -n N` the ranks split the blocks of each new level (and the
copy of level 1); each rank reads only the blocks below that it needs, and
every level is committed before the next is made.
"""

from . import export, parallel
from .errors import BlockfsError
from .options import number_in_range, parse_command_line, voxel_size_option
from .pyramid import build, capped_levels, place_level1, pyramid_folder
from .voxel_size import VoxelSize, from_metadata


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    levels = number_in_range("--levels", args["--levels"], 1, 32)
    size = voxel_size_option(args["--voxel-size"], args["--unit"])
    comm = parallel.world()
    with export.open_volume(args["<blockfs-file>"], comm) as level1:
        levels = capped_levels(levels, level1.shape, comm)
        size = size or from_metadata(level1.metadata) or VoxelSize(1, 1, 1)
    if args["--output"]:
        dest = args["--output"]
        place_level1(args["<blockfs-file>"], dest, levels, args["--move"], comm,
                     overwrite=args["--overwrite"], silent=args["--silent"],
                     break_lock=args["--break-lock"])
    elif args["--move"]:
        raise parallel.everywhere(BlockfsError("--move needs --output <pyramid folder>"))
    else:
        dest = pyramid_folder(args["<blockfs-file>"])
    build(dest, levels, size.in_nanometers(), "mode" if args["--labels"] else "mean", comm,
          overwrite=args["--overwrite"], silent=args["--silent"], break_lock=args["--break-lock"])


if __name__ == "__main__":
    main()
