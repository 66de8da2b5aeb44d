"""Describe a blockfs volume: format, extents, dtype, blocks, codec, data files, metadata.

Works on format 1 (original blockfs) and format 2 volumes. Reads only the
directory file and the sizes of the data files.

Usage:
  blockfs-info <blockfs-file> [--json]
  blockfs-info -h | --help | --version

Arguments:
  <blockfs-file>  The volume's directory file.

Options:
  --json     Print one JSON object (for scripts) instead of text.
  -h --help  Show this text.
"""
import json

from . import parallel
from .check import format_info, volume_info
from .options import parse_command_line


@parallel.program
def main(argv=None):
    args = parse_command_line(__doc__, argv)
    info = volume_info(args["<blockfs-file>"])
    print(json.dumps(info, indent=1) if args["--json"] else "\n".join(format_info(info)))


if __name__ == "__main__":
    main()
