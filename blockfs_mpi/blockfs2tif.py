"""Write every z plane of a blockfs volume to a TIFF file of its own.

Under mpiexec the ranks share the work by z-slabs one block deep: a rank reads
the blocks of its slab and writes its planes. Run without mpiexec, --n-workers
local processes do the same. A rank writes the planes of a slab at once by
strips of whole block rows and stays within --memory for any plane size (see
export.PlaneStripes); each strip is one TIFF strip. Planes over 4 GiB are written
as BigTIFF. Each plane is written under a hidden temporary name and renamed when
complete, so an interrupted run leaves no partial plane under a final name;
existing planes are refused unless --overwrite (replace them) or --resume (keep
them and write the rest).

Usage:
  blockfs2tif <blockfs-file> <pattern> [options]
  blockfs2tif --input <blockfs-file> --output-pattern <pattern> [options]
  blockfs2tif -h | --help | --version

Arguments:
  <blockfs-file>              The volume's directory file (blockfs format 1 or 2); --input is an alias.
  <pattern>                   printf pattern of the z index, e.g. out/img_%04d.tiff; missing folders are created; --output-pattern is an alias.

Options:
  -h --help                   Show this text.
  --input <blockfs-file>      Same as <blockfs-file> (the older spelling).
  --output-pattern <pattern>  Same as <pattern> (the older spelling).
  --overwrite                 Replace output planes that exist already.
  --resume                    Keep the output planes that exist already (complete by construction) and write the others.
  --n-workers <n>             Worker processes when run without mpiexec (default: one per core this process may use). Under mpiexec every rank is one worker and this option is not used.
  --compression <level>       The zlib (deflate) level of the TIFF planes, 0 (uncompressed) to 9: a level here, where blockfs-write's --compression names a Blosc compressor [default: 3].
  --memory <size>             Memory budget per rank with its unit, e.g. 512M or 4G: a rank holds a few strips of the planes it writes within it [default: 1G].
  --y-stripe <rows>           At most this many rows per strip (rounded up to whole blocks); 0 = as many as --memory allows [default: 0].
  --start <n>                 The number of the first plane in the output names: plane z is written as pattern % (z + n) [default: 0].
  --silent                    Do not show the progress bar.
"""
from . import export, parallel
from .export_tiff import export_tiff
from .options import number_in_range, parse_command_line


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    start = number_in_range("--start", args["--start"], 0, 10 ** 12)
    pattern = export.PlanePattern(
        export.check_pattern(args["<pattern>"] or args["--output-pattern"]), start)
    level = number_in_range("--compression", args["--compression"], 0, 9)
    y_stripe = number_in_range("--y-stripe", args["--y-stripe"], 0, 2 ** 31)
    memory = export.memory_option(args["--memory"])
    n_workers = export.check_workers(args["--n-workers"])
    directory = export.open_volume(args["<blockfs-file>"] or args["--input"], parallel.world())
    export_tiff(directory, pattern, level, parallel.world(), n_workers, y_stripe,
                args["--silent"], args["--overwrite"], args["--resume"], memory)


if __name__ == "__main__":
    main()
