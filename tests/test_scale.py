"""Bounded per-rank resources at sizes the rest of the suite does not reach (issue 21).

Simulated on a small machine: a wide volume (2 x 4096 x 8192 uint16, one z-slab) with a
small --memory, real mpiexec jobs run through tests/mpi/measure.py, which prints each
rank's peak RSS (getrusage) and its counts of opens and data-file syncs. Each assertion
is a bound in terms of the budget or the rank's share, and fails on the code before it.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from blockfs_mpi import Directory
from conftest import mpiexec, run_checked
from volumes import big_volume

HERE = Path(__file__).parent
WIDE = (2, 4096, 8192)  # (z, y, x): 128 MiB, one z-slab of 64^3 blocks, planes of 64 MiB
BUDGET = 64  # MiB, --memory of the jobs
# What a rank holds beyond its budget: the interpreter with numpy, mpi4py, h5py, tifffile
# and glymur loaded (55-75 MiB measured), block decoding buffers and allocator slack.
OVERHEAD = 100  # MiB


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """(path, voxels) of the wide volume."""
    path = tmp_path_factory.mktemp("scale") / "wide.blockfs"
    z, y, x = WIDE
    voxels = (np.arange(x, dtype=np.uint16)[None, None, :]
              + np.arange(y, dtype=np.uint16)[None, :, None] * 3
              + np.arange(z, dtype=np.uint16)[:, None, None] * 7)
    directory = Directory(x, y, z, np.uint16, str(path), n_filenames=2, x_block_size=64,
                          y_block_size=64, z_block_size=64)
    directory.create()
    directory[:, :, :] = voxels
    directory.close()
    return path, voxels


def measure(n, module, *args, under):
    """Run blockfs_mpi.<module> on n ranks through measure.py; its per-rank figures by rank."""
    command = [mpiexec(), "-n", str(n), sys.executable, str(HERE / "mpi" / "measure.py"),
               module, *map(str, args)]
    out = run_checked(command, env={"MEASURE_UNDER": str(under)}).stdout
    figures = [json.loads(line) for line in out.splitlines() if line.startswith('{"rank"')]
    assert len(figures) == n, out
    return {f["rank"]: f for f in figures}


def assert_within_budget(figures):
    for rank, f in figures.items():
        mib = f["peak_rss_kib"] / 1024
        assert mib <= BUDGET + OVERHEAD, (f"rank {rank} peaked at {mib:.0f} MiB, over --memory "
                                          f"{BUDGET}M + {OVERHEAD} MiB")


@pytest.mark.mpi
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_blockfs2hdf_stock_h5py_within_memory(wide, tmp_path, compression):
    """Stock h5py: rank 0 writes pieces as they come, holding one of its own and one received
    (before: every rank's slab gathered, rank 0 at 4.6x the volume: 587 MiB here)."""
    import h5py
    path, voxels = wide
    dest = tmp_path / "out.h5"
    figures = measure(2, "blockfs2hdf", path, dest, "/v", "--compression", compression,
                      "--memory", f"{BUDGET}M", "--silent", under=path.parent)
    assert_within_budget(figures)
    with h5py.File(dest, "r") as f:
        assert f["/v"].chunks == (2, 64, 64)
        np.testing.assert_array_equal(f["/v"][...], voxels)


@pytest.mark.mpi
def test_blockfs2tif_within_memory(wide, tmp_path):
    """Default mode writes by strips of whole block rows (before: one slab per rank, 191 MiB
    here); the one slab is split into groups of planes so that both ranks have work."""
    path, voxels = wide
    figures = measure(2, "blockfs2tif", path, tmp_path / "p_%d.tif", "--memory", f"{BUDGET}M",
                      "--silent", under=path.parent)
    assert_within_budget(figures)
    for z in range(WIDE[0]):
        with tifffile.TiffFile(tmp_path / f"p_{z}.tif") as tif:
            page = tif.pages[0]
            assert page.rowsperstrip < WIDE[1]  # written by strips, not whole
            np.testing.assert_array_equal(page.asarray(), voxels[z])


@pytest.mark.mpi
def test_blockfs2jp2k_within_memory(wide, tmp_path):
    """Planes are written by tiles of whole block rows (before: whole planes through
    OpenJPEG, 479 MiB per rank here); lossless still."""
    glymur = pytest.importorskip("glymur")
    from blockfs_mpi.export_jp2k import require_glymur
    try:
        require_glymur()
    except RuntimeError as e:
        pytest.skip(str(e))
    path, voxels = wide
    figures = measure(2, "blockfs2jp2k", path, tmp_path / "p_%d.jp2", "--memory",
                      f"{BUDGET}M", "--silent", under=path.parent)
    assert_within_budget(figures)
    for z in range(WIDE[0]):
        np.testing.assert_array_equal(glymur.Jp2k(str(tmp_path / f"p_{z}.jp2"))[:], voxels[z])


def test_memory_too_small_for_one_block_row(wide, tmp_path):
    """A budget below one block row of one plane is refused, saying what to give."""
    from blockfs_mpi import export
    from blockfs_mpi.errors import BlockfsError
    directory = Directory.open(str(wide[0]))
    with pytest.raises(BlockfsError, match=r"too small for planes 8192 voxels wide.*at least"):
        export.PlaneStripes(directory, str(tmp_path / "p_%d.tif"), None, 4 << 20)


@pytest.mark.mpi
@pytest.mark.parametrize("layout", [{}, {"compression": "zlib", "rowsperstrip": 16}])
def test_blockfs_write_opens_each_plane_once_a_rank(tmp_path, layout):
    """TIFF planes stay open across a rank's units (a bounded cache) and their layout is parsed
    once a rank (before: each plane opened twice per unit, 144 opens a rank here). With
    16-voxel blocks and --memory 80M a unit spans 10,912 of the 16,384 columns: the wide
    unit's rows are read a segment each, the narrow one's with the rows between."""
    planes = tmp_path / "planes"
    planes.mkdir()
    voxels = (np.arange(16384, dtype=np.uint16)[None, None, :]
              + np.arange(64, dtype=np.uint16)[None, :, None] * 5
              + np.arange(32, dtype=np.uint16)[:, None, None] * 11)
    for z, plane in enumerate(voxels):
        tifffile.imwrite(planes / f"img_{z}.tif", plane, **layout)
    command = [mpiexec(), "-n", "2", sys.executable, str(HERE / "mpi" / "measure.py"), "write",
               planes / "img_*.tif", tmp_path / "v.blockfs", "--block-size", "16",
               "--memory", "80M", "--silent"]
    out = run_checked(command, env={"MEASURE_UNDER": str(planes)}).stdout
    opens = [json.loads(line)["opens"] for line in out.splitlines() if line.startswith('{"rank"')]
    assert len(opens) == 2, out
    assert all(n <= 32 + 1 for n in opens), f"opens of TIFF planes by rank: {opens}"
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "v.blockfs"))[:], voxels)


@pytest.mark.mpi
@pytest.mark.parametrize("interval", [None, str(4 << 20)])
def test_blockfs_write_syncs_per_interval_not_per_append(tmp_path, interval):
    """A rank syncs its data file every BLOCKFS_SYNC_INTERVAL bytes (default 1 GiB) and once
    at close, not after every 8 MiB append (before: 5 syncs a rank here, one a 8 MiB). With
    a 4 MiB interval, one per append again: the setting is honoured."""
    source = tmp_path / "noise.npy"
    np.save(source, np.random.default_rng(1).integers(0, 2 ** 16, (64, 512, 1024), np.uint16))
    env = {} if interval is None else {"BLOCKFS_SYNC_INTERVAL": interval}
    command = [mpiexec(), "-n", "2", sys.executable, str(HERE / "mpi" / "measure.py"),
               "write", source, tmp_path / "v.blockfs", "--silent"]
    out = run_checked(command, env={"MEASURE_UNDER": str(tmp_path), **env}).stdout
    syncs = [json.loads(line)["syncs"] for line in out.splitlines() if line.startswith('{"rank"')]
    assert len(syncs) == 2, out
    appends = (64 * 512 * 1024 * 2 // 2) // (8 << 20)  # a rank's share of the volume in appends
    if interval is None:
        assert syncs == [1, 1]  # at close only: 32 MiB a rank is under 1 GiB
    else:
        assert all(appends <= s <= appends + 2 for s in syncs), syncs
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "v.blockfs"))[:],
                                  np.load(source))


@pytest.mark.mpi
@pytest.mark.parametrize("silent", [True, False])
def test_progress_sends_nothing_when_silent(silent):
    """--silent: no rank sends rank 0 a report (before: one every 0.5 s each, 8,000 a second
    at 4096 ranks); the totals still add up. Shown, a rank reports when due and at the end."""
    from conftest import run_mpi
    out = run_mpi(3, "progress_messages.py", int(silent)).stdout
    lines = sorted(line for line in out.splitlines() if line.startswith("rank "))
    assert len(lines) == 3, out
    for line in lines:
        rank, rest = line.split(": ")
        messages = int(rest.split()[1])
        assert rest.endswith("totals 6 60"), line
        if silent or rank == "rank 0":
            assert messages == 0, line
        else:
            assert messages == 2, line  # the one due after the sleep, and the last


def test_report_interval_grows_with_the_ranks():
    """Rank 0 receives about 32 reports a second at most, at any job size."""
    from blockfs_mpi.progress import report_interval
    assert report_interval(2) == report_interval(16) == 0.5
    for ranks in (256, 4096, 65536):
        assert ranks / report_interval(ranks) <= 32


@pytest.mark.mpi
def test_ranks_open_only_the_data_files_their_share_reads(tmp_path):
    """A rank of an MPI job opens a data file when its share reads from it, not every data
    file of the volume up front (at 4096 ranks: 10^6 opens before any work). 12 z-slabs, the
    block of slab k in data file k, exported by blockfs2tif on 3 ranks: each data file opened
    once in all (before: 12 by every rank), and each rank a directory file or two."""
    volume = tmp_path / "volume"
    volume.mkdir()
    big_volume(str(volume / "v.blockfs"), 12, n_files=12, block=(16, 16, 16))
    (tmp_path / "planes").mkdir()
    command = [mpiexec(), "-n", "3", sys.executable, str(HERE / "mpi" / "measure.py"),
               "blockfs2tif", volume / "v.blockfs", tmp_path / "planes" / "p_%03d.tif",
               "--silent"]
    out = run_checked(command, env={"MEASURE_UNDER": str(volume)}).stdout
    opens = [json.loads(line)["opens"] for line in out.splitlines() if line.startswith('{"rank"')]
    assert len(opens) == 3, out
    assert sum(opens) <= 12 + 2 * 3, f"opens of the volume's files by rank: {opens}"
    for z in (0, 100, 191):
        plane = tifffile.imread(tmp_path / "planes" / f"p_{z:03d}.tif")
        noise = np.random.default_rng(0).integers(0, 65536, (16, 16, 16), np.uint16)
        np.testing.assert_array_equal(plane, noise[z % 16] + np.uint16(z // 16))
