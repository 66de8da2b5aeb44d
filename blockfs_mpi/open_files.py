"""A bounded cache of open files: at most `limit` kept open, the least recently used closed
to make room, so that a program reading thousands of files (TIFF planes) opens each about
once without holding a descriptor for every one of them.
"""
import resource
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Opened = TypeVar("Opened")


def descriptor_budget(share: float = 0.25) -> int:
    """A share of this process's soft limit on open descriptors (RLIMIT_NOFILE), at least 8:
    what one cache may hold and leave the rest of the program its descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 16
    return max(8, int(soft * share))


def _close_all(items: OrderedDict, close: Callable) -> None:
    while items:
        _, item = items.popitem()
        close(item)


class OpenFiles(Generic[Opened]):
    """Open things by key (open_(key) makes one, close(item) ends it), at most limit at once.

    Closed by close() and when the cache is garbage-collected, so that one nobody closed
    leaks nothing."""

    def __init__(self, limit: int, open_: Callable[[Hashable], Opened],
                 close: Callable[[Opened], None]) -> None:
        if limit < 1:
            raise ValueError(f"an OpenFiles cache needs room for one file, not {limit}")
        self.limit = limit
        self.opens = 0  # how many times open_ was called: what the cache saves is measurable
        self._open, self._close = open_, close
        self._items: OrderedDict[Hashable, Opened] = OrderedDict()
        self._finalizer = weakref.finalize(self, _close_all, self._items, close)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Opened:
        """The open thing for key, opened now if it is not open (closing the least recently
        used one if the cache is full)."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        item = self._open(key)
        self.opens += 1
        self._items[key] = item
        if len(self._items) > self.limit:
            _, oldest = self._items.popitem(last=False)
            self._close(oldest)
        return item

    def close(self) -> None:
        """Close everything open; the cache can be used again after."""
        _close_all(self._items, self._close)
