"""Check a blockfs volume, and with --repair rebuild its index from the data files' frames.

Checks every index entry (in range, inside its data file, frame and payload
checksums, decompresses to the block's size) and scans every data file's
frames (format 2) for blocks that are damaged, not committed (a killed job)
or orphaned. One line per problem (up to --max-listed of each kind, the
others counted), then a summary; exit status 0 only if the volume is clean and
complete: a volume whose writer did not finish (a killed job) is reported as
incomplete, with the command that completes it, even after a repair.
With --repair it commits a new index in which the newest intact frame of
each block wins; it never deletes data. Format 1 volumes have no frames:
their entries are checked and decoded, and they cannot be repaired.

Run under `mpiexec -n N` to split the data files across ranks.

Usage:
  blockfs-fsck <blockfs-file> [--repair] [--break-lock] [--quick] [--n-workers <n>]
               [--max-listed <n>] [--silent]
  blockfs-fsck -h | --help | --version

Arguments:
  <blockfs-file>  The volume's directory file.

Options:
  --repair           Rebuild and commit the index from the frames if a problem is found.
                     The volume is locked meanwhile: refused while another job changes it.
  --break-lock       With --repair: take over a lock that a job on another host left.
  --quick            Verify each block's frame, checksum and sizes without decompressing
                     it: several times faster; misses only a block stored undecodable.
  --n-workers <n>    Worker processes when run without mpiexec (default: one per core
                     this process may use). Under mpiexec every rank is one worker and
                     this option is not used.
  --max-listed <n>   Problems of each kind listed, lowest block numbers first; the rest
                     are counted in one line per kind [default: 1000].
  --silent           No progress bar.
  -h --help          Show this text.
"""
import sys

from . import export, parallel
from .check import fsck
from .options import number_in_range, parse_command_line


@parallel.program
def main(argv=None):
    args = parse_command_line(__doc__, argv)
    n_workers = export.check_workers(args["--n-workers"]) or parallel.usable_cores()
    listed = number_in_range("--max-listed", args["--max-listed"], 0, 10**9)
    status = fsck(args["<blockfs-file>"], parallel.world(), n_workers,
                  fix=args["--repair"], silent=args["--silent"], listed=listed,
                  quick=args["--quick"], break_lock=args["--break-lock"])
    sys.exit(status)


if __name__ == "__main__":
    main()
