"""blockfs-write's plan: units computed from their number, runs of them, a rank's share --
the same as listing them, without listing the whole job (issue 21, item 8)."""
import tracemalloc

import pytest

from blockfs_mpi.convert import RUNS_PER_RANK, UnitGrid, my_share, plan_units, runs_of
from blockfs_mpi.format import Geometry


class Ranks:
    """A stand-in communicator of a given size seen from one rank (only its size and rank
    are read by the plan)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


def listed(shape, extent):
    """The units a plan used to list whole: every box of extent, clipped, z then y then x."""
    (z_extent, y_extent, x_extent), (zs, ys, xs) = shape, extent
    return [(z, min(z + zs, z_extent), y, min(y + ys, y_extent), x, min(x + xs, x_extent))
            for z in range(0, z_extent, zs)
            for y in range(0, y_extent, ys)
            for x in range(0, x_extent, xs)]


@pytest.mark.parametrize("shape, extent", [((333, 201, 97), (64, 64, 64)),
                                           ((64, 64, 64), (64, 64, 64)),
                                           ((5, 130, 1000), (16, 32, 320))])
def test_a_grid_is_the_list_it_replaces(shape, extent):
    grid = UnitGrid(shape, extent)
    assert list(grid) == listed(shape, extent) == grid[:]
    assert grid[-1] == listed(shape, extent)[-1]
    assert grid[1:7:2] == listed(shape, extent)[1:7:2]
    with pytest.raises(IndexError):
        grid[len(grid)]


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_runs_and_shares_cover_every_unit_once(size):
    units = UnitGrid((333, 201, 97), (32, 32, 64))
    runs = runs_of(units, Ranks(0, size) if size > 1 else None)
    assert len(runs) == min(len(units), size * RUNS_PER_RANK)
    assert [unit for run in runs for unit in run] == list(units)
    assert max(map(len, runs)) - min(map(len, runs)) <= 1
    shares = [my_share(units, Ranks(rank, size) if size > 1 else None) for rank in range(size)]
    assert sorted(unit for share in shares for unit in share) == sorted(units)


def test_a_100_tb_plan_lists_only_a_ranks_share():
    """10^4 planes of 64k x 64k uint16 on 4096 ranks: 1.6 * 10^8 blocks. The plan of the
    whole job and its runs cost next to nothing; a rank's share is 1/4096 of the units."""
    geometry = Geometry(65536, 65536, 10000, 64, 64, 64)
    tracemalloc.start()
    try:
        units = plan_units(geometry, 2, 1 << 30)
        runs = runs_of(units, Ranks(4095, 4096))
        share = my_share(units, Ranks(4095, 4096))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(runs) == 4096 * RUNS_PER_RANK
    assert len(units) // 4096 <= len(share) <= -(-len(units) // 4096) + RUNS_PER_RANK
    assert peak < 64 * len(share) * 8 + (1 << 20), f"the plan took {peak} bytes"
