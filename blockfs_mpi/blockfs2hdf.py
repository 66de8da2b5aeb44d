"""Copy a blockfs volume into a dataset of an HDF5 file, chunked like its blocks.

The dataset <name> (a path; missing groups are created) goes into <dest>,
which may exist (its other datasets are kept) or not (it is created). Two ways
to run, chosen by the h5py in use and logged at the start:

  - h5py built for MPI (h5py.get_config().mpi) under mpiexec: every rank
    writes its pieces (export.Pieces) as hyperslabs, in collective rounds.
  - stock (serial) h5py, or no mpiexec: every rank reads and compresses the
    chunks of its pieces and sends them to rank 0, which writes them as they
    come with write_direct_chunk (with lzf, rank 0 also compresses). A rank
    sends one piece at a time and waits until rank 0 has taken it, so rank 0
    holds its own piece and one received, never more. The file is an
    ordinary chunked HDF5 dataset either way.

Pieces are one block deep and one block row high, as many blocks wide as the
memory budget (--memory) allows, so every rank stays within it for any plane
size.

See docs/export.md for how to get a parallel h5py on a cluster.

Usage:
  blockfs2hdf <src> <dest> <name> [--compression <compression>] [--compression-opts <opts>] [--memory <size>] [--overwrite] [--silent]
  blockfs2hdf -h | --help | --version

Options:
  -h --help                      Show this text.
  --compression <compression>    The HDF5 filter of the dataset's chunks: gzip, lzf or none [default: gzip].
  --compression-opts <opts>      Filter options as in h5py: the gzip level 0-9 (default 4); none for lzf.
  --memory <size>                Memory budget per rank with its unit, e.g. 512M or 4G [default: 1G].
  --overwrite                    Replace an existing dataset <name> in <dest>.
  --silent                       Do not show the progress bar.
"""
from . import export, parallel
from .export_hdf import export_hdf, hdf_filter
from .options import parse_command_line


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    hdf_filter(args["--compression"], args["--compression-opts"])  # bad options fail first
    memory = export.memory_option(args["--memory"])
    directory = export.open_volume(args["<src>"], parallel.world())
    export_hdf(directory, args["<dest>"], args["<name>"], args["--compression"],
               args["--compression-opts"], args["--overwrite"], parallel.world(), args["--silent"],
               memory)


if __name__ == "__main__":
    main()
