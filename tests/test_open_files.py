"""OpenFiles: a bounded cache of open things, the least recently used closed first."""
import gc
import os

import pytest

from blockfs_mpi.open_files import OpenFiles, descriptor_budget


def opened_log():
    """A cache of fake open things (their keys) recording what it opened and closed."""
    log = {"open": [], "closed": []}

    def open_(key):
        log["open"].append(key)
        return key

    return log, open_, log["closed"].append


def test_least_recently_used_is_closed_first():
    log, open_, close = opened_log()
    cache = OpenFiles(2, open_, close)
    for key in ("a", "b", "a", "c", "a", "b"):
        assert cache.get(key) == key
    assert log["open"] == ["a", "b", "c", "b"]  # "a", used again, stayed open
    assert log["closed"] == ["b", "c"]
    assert len(cache) == 2 and cache.opens == 4
    cache.close()
    assert sorted(log["closed"]) == ["a", "b", "b", "c"] and len(cache) == 0


def test_descriptors_are_closed_when_the_cache_is_collected(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(b"x")
    cache = OpenFiles(8, lambda path: os.open(path, os.O_RDONLY), os.close)
    opened = {cache.get(path): os.stat(path).st_ino for path in paths}
    del cache
    gc.collect()
    for fd, inode in opened.items():
        try:
            still = os.fstat(fd).st_ino == inode  # a number reused since refers to another file
        except OSError:
            still = False
        assert not still, f"descriptor {fd} still open"


def test_room_for_one_at_least():
    with pytest.raises(ValueError, match="room for one"):
        OpenFiles(0, str, print)
    assert descriptor_budget() >= 8


def test_what_is_in_use_stays_open_and_is_closed_when_released():
    log, open_, close = opened_log()
    cache = OpenFiles(1, open_, close)
    assert cache.acquire("a") == "a" and cache.acquire("b") == "b"  # both in use: both open
    assert log["closed"] == [] and len(cache) == 2
    assert cache.get("a") == "a" and log["open"] == ["a", "b"]
    cache.release("a")
    assert log["closed"] == ["a"] and len(cache) == 1  # back within the limit
    cache.release("b")
    assert cache.get("c") == "c" and log["closed"] == ["a", "b"]


def test_a_forked_child_opens_its_own_and_closes_none_of_its_parents(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    cache = OpenFiles(4, lambda key: os.open(path, os.O_RDONLY), os.close)
    parent = cache.get("f")
    pid = os.fork()
    if pid == 0:  # the child: a descriptor of its own, the parent's left alone
        ok = cache.get("f") != parent and cache.opens == 2
        cache.close()
        os._exit(0 if ok and os.fstat(parent) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("f") == parent and os.fstat(parent).st_size == 1
    cache.close()
