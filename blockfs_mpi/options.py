"""Reading a program's command line: docopt against its usage, numbers checked against their
range with an error naming the option."""
from docopt import docopt

from . import parallel
from .errors import OptionError


def parse_command_line(usage, argv=None):
    """The options of argv as docopt reads them against usage; --help prints the usage and
    --version blockfs_mpi's version, and both exit."""
    from . import __version__  # here: the package imports this module while it loads
    return docopt(usage, argv, version=f"blockfs_mpi {__version__}")


def number_in_range(name, value, low, high, kind=int):
    """value (a string from the command line) as a number of kind from low to high, or a
    one-line OptionError naming the option.

    Every rank parses the same command line, so every rank raises the same error.
    """
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise parallel.everywhere(
            OptionError(f"{name} must be a number from {low} to {high}, not {value!r}"))
    return number
