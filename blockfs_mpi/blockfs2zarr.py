"""Export a blockfs volume or pyramid as an OME-Zarr 0.5 image (zarr v3, sharded).

Every block becomes an inner chunk of a `sharding_indexed` shard of
--shard^3 blocks: full blocks are copied as stored (no recompression), blocks
clipped at the volume's edge are padded to the full chunk shape and encoded
with the volume's Blosc settings. A pyramid folder's levels become the arrays
"0", "1", ...; a single volume the array "0". Under mpiexec the shards are
dealt out to the ranks; without it --n-workers local processes share them.
Each shard is written whole by one rank under a temporary name, fsynced and
renamed, so a killed job leaves only complete shards and --resume writes the
rest. The zarr.json files come last: the output is an OME-Zarr only once the
export completed.

Usage:
  blockfs2zarr <input> <output> [options]
  blockfs2zarr -h | --help | --version

Arguments:
  <input>                 A volume's directory file, or a pyramid folder (<folder>/1_1_1/precomputed.blockfs ...).
  <output>                The OME-Zarr folder to write, e.g. brain.ome.zarr.

Options:
  -h --help               Show this text.
  --shard <n>             Blocks per shard edge: a shard holds n^3 blocks [default: 8].
  --overwrite             Replace an existing zarr folder at <output>.
  --resume                Keep the shards an interrupted export of the same volume with the same settings completed, and write the rest.
  --voxel-size <xyz>      Voxel size x,y,z with an optional unit, e.g. 1.8,1.8,2.0um (numbers alone are nm); default: what the volume records, else the pyramid's info.
  --unit <unit>           Unit of the --voxel-size numbers, e.g. micrometer.
  --skip-damaged          Leave a block that cannot be read absent (zeros) and log it, instead of ending the export.
  --n-workers <n>         Worker processes when run without mpiexec (default: one per core this process may use). Under mpiexec every rank is one worker and this option is not used.
  --silent                Do not show the progress bar.
"""
from . import export, parallel
from .compression import single_threaded
from .options import number_in_range, parse_command_line
from .reader import read_header
from .zarr_export import choose_voxel_size, export_zarr, level_paths


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    shard_blocks = number_in_range("--shard", args["--shard"], 1, 256)
    n_workers = export.check_workers(args["--n-workers"])
    source = args["<input>"]
    paths = level_paths(source)
    size = choose_voxel_size(args["--voxel-size"], args["--unit"], source, read_header(paths[0]))
    single_threaded()
    export_zarr(source, args["<output>"], shard_blocks, parallel.world(), size,
                args["--overwrite"], args["--resume"], args["--skip-damaged"], n_workers,
                args["--silent"])


if __name__ == "__main__":
    main()
