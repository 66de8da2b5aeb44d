"""NumPy-style keys on a 3-D volume: which voxels a key picks and which blocks hold them.

A key is what `volume[...]` gets: integers (negative ones count from the end), slices
with any step, and at most one Ellipsis, for up to three axes (missing axes are taken
whole). Fancy indexing (arrays, booleans, None) is refused: read a region, then index
the numpy array it gives.
"""
import itertools
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

Piece = tuple[int, slice, slice]  # (block origin, where in the output, where in the block)


def _expand(key: object, ndim: int) -> tuple[Any, ...]:
    """key as a tuple of exactly ndim integers or slices (Ellipsis and missing axes filled);
    its parts are as the caller gave them (Any), checked one by one by selection()."""
    key = key if isinstance(key, tuple) else (key,)
    ellipses = sum(k is Ellipsis for k in key)
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if len(key) - ellipses > ndim:
        raise IndexError(f"too many indices for a {ndim}-D volume: {len(key) - ellipses}")
    if ellipses:
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
    return key + (slice(None),) * (ndim - len(key))


def selection(key: object, shape: tuple[int, ...]) -> tuple[list[range], tuple[int, ...]]:
    """(picked, squeeze): the voxel indices key picks along each axis, as ranges in the order
    of the result (a negative step runs backwards), and the axes an integer removes."""
    picked, squeeze = [], []
    for axis, (k, n) in enumerate(zip(_expand(key, len(shape)), shape)):
        if isinstance(k, slice):
            picked.append(range(*k.indices(n)))
            continue
        try:
            i = None if isinstance(k, (bool, np.bool_)) else operator.index(k)
        except TypeError:
            i = None
        if i is None:
            raise IndexError(f"only integers, slices and '...' index a blockfs volume, not "
                             f"{k!r} (read a region first, then index the numpy array)")
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
        i %= n
        picked.append(range(i, i + 1))
        squeeze.append(axis)
    return picked, tuple(squeeze)


def ascending(picked: range) -> range:
    """The same indices in increasing order."""
    return picked[::-1] if picked.step < 0 else picked


def pieces(picked: range, block: int) -> Iterator[Piece]:
    """For increasing voxel indices along one axis, one (origin, output slice, block slice)
    per block of size `block` that holds any of them: blocks between two picked voxels
    (a step longer than a block) are skipped."""
    step, done, total = picked.step, 0, len(picked)
    while done < total:
        index = picked[done]
        origin = index - index % block
        count = min(total - done, -(-(origin + block - index) // step))
        local = index - origin
        yield origin, slice(done, done + count), slice(local, local + (count - 1) * step + 1, step)
        done += count


def block_pieces(picked: list[range], block_size: tuple[int, ...]) -> list[tuple[Piece, ...]]:
    """For a selection (picked, as selection() gives it), one ((z origin, output slice, block
    slice), (y ...), (x ...)) per block holding voxels it picks, z outermost: where each
    block's voxels go in the result (numbered in increasing order along every axis)."""
    return list(itertools.product(*(pieces(ascending(p), size)
                                    for p, size in zip(picked, block_size))))


def step_one_bounds(picked: list[range], refusal: str) -> list[tuple[int, int]]:
    """(start, stop) along each axis of a selection whose steps are all 1 (an empty range's
    stop is its start); IndexError(refusal) for any other step."""
    if any(p.step != 1 for p in picked):
        raise IndexError(refusal)
    return [(p.start, max(p.start, p.stop)) for p in picked]
