"""A bounded cache of open files: at most `limit` kept open, the least recently used closed
to make room, so that a program reading thousands of files (TIFF planes, data files) opens
each about once without holding a descriptor for every one of them.
"""
import os
import resource
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Opened = TypeVar("Opened")
_NONE = object()  # no key (None is one)


def descriptor_budget(share: float = 0.25) -> int:
    """A share of this process's soft limit on open descriptors (RLIMIT_NOFILE), at least 8:
    what one cache may hold and leave the rest of the program its descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 16
    return max(8, int(soft * share))


class _Held(Generic[Opened]):
    """What a cache holds in one process: its open things (least recently used first), how
    many users each has, and the process that opened them."""

    def __init__(self) -> None:
        self.items: OrderedDict[Hashable, Opened] = OrderedDict()
        self.users: dict[Hashable, int] = {}
        self.pid = os.getpid()


def _close_all(held: _Held[Opened], close: Callable[[Opened], None]) -> None:
    """Close what held has open, in the process that opened it; a forked child only forgets
    its parent's (their numbers may name other files in the child)."""
    items, held.items, held.users = held.items, OrderedDict(), {}
    if held.pid == os.getpid():
        while items:
            close(items.popitem()[1])
    held.pid = os.getpid()


class OpenFiles(Generic[Opened]):
    """Open things by key (open_(key) makes one, close(item) ends it), at most limit at once;
    more only while more than limit of them are in use (acquire) at the same time.

    Thread-safe. Per process: after a fork the child opens its own and never closes its
    parent's. Closed by close() and when the cache is garbage-collected, so that one nobody
    closed leaks nothing."""

    def __init__(self, limit: int, open_: Callable[[Hashable], Opened],
                 close: Callable[[Opened], None]) -> None:
        if limit < 1:
            raise ValueError(f"an OpenFiles cache needs room for one file, not {limit}")
        self.limit = limit
        self.opens = 0  # how many times open_ was called: what the cache saves is measurable
        self._open, self._close = open_, close
        self._lock = threading.Lock()
        self._held: _Held[Opened] = _Held()
        self._finalizer = weakref.finalize(self, _close_all, self._held, close)

    def __len__(self) -> int:
        return len(self._held.items)

    def get(self, key: Hashable) -> Opened:
        """The open thing for key, opened now if it is not open (closing the least recently
        used one if the cache is full). Another thread's get or acquire may close it: a cache
        shared by threads is used through acquire and release."""
        with self._lock:
            item = self._get(key)
            self._evict(key)
            return item

    def acquire(self, key: Hashable) -> Opened:
        """Like get, and the thing stays open until the matching release(key)."""
        with self._lock:
            item = self._get(key)
            users = self._held.users
            users[key] = users.get(key, 0) + 1
            self._evict()
            return item

    def release(self, key: Hashable) -> None:
        """End one use of key begun by acquire (in this process)."""
        with self._lock:
            users = self._held.users
            if key in users:  # not after a fork or a close()
                users[key] -= 1
                if not users[key]:
                    del users[key]
                self._evict()

    def _get(self, key: Hashable) -> Opened:
        held = self._held
        if held.pid != os.getpid():
            _close_all(held, self._close)
        if key in held.items:
            held.items.move_to_end(key)
            return held.items[key]
        item = self._open(key)
        self.opens += 1
        held.items[key] = item
        return item

    def _evict(self, keep: object = _NONE) -> None:
        """Close the least recently used things not in use (nor keep, just asked for) until
        at most limit are open."""
        held = self._held
        while len(held.items) > self.limit:
            oldest = next((key for key in held.items
                           if key not in held.users and key != keep), None)
            if oldest is None:
                return
            self._close(held.items.pop(oldest))

    def close(self) -> None:
        """Close everything open; the cache can be used again after."""
        with self._lock:
            _close_all(self._held, self._close)
