"""Numbers from the command line, checked against their range with an error naming the option."""
from . import parallel


def check_level(name, value, low, high, kind=int):
    """value (a string from the command line) as kind, or a one-line error naming the option.

    Every rank parses the same command line, so every rank raises the same error.
    """
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise parallel.everywhere(
            ValueError(f"{name} must be a number from {low} to {high}, not {value!r}"))
    return number
