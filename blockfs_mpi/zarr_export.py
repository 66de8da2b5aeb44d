"""A volume or pyramid as an OME-Zarr 0.5 image, shard by shard (the library of blockfs2zarr;
its usage tells how: stored blocks copied into sharded zarr v3 arrays, each shard written
whole under a temporary name, the metadata last, --resume keeping the complete shards)."""
import json
import logging
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import atomic, export, parallel, pyramid, voxel_size, zarr_metadata
from . import format as fmt
from .completion import warn_if_incomplete
from .errors import BlockfsError, OptionError
from .identify import describe
from .reader import BlockReader, read_header
from .zarr_shards import ShardGrid, complete, write_shard

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("blockfs_mpi")

RECORD = ".blockfs2zarr.json"  # the export's plan while it runs; removed when it completes
PROVENANCE = "blockfs_mpi"  # the group attribute saying which volumes the export holds

Plan = dict[str, Any]  # {"group": the image's zarr.json, "arrays": {"0": zarr.json, ...}}
Shard = tuple[int, int]  # (level, shard number)


class ExportError(BlockfsError):
    """An export that cannot start or go on: bad input, output in the way, other settings."""


def level_paths(path: str) -> list[str]:
    """The directory files to export: the volume at path, or every level of the pyramid
    folder at path (1_1_1, 2_2_2, ... while they exist)."""
    if os.path.isdir(path):
        paths: list[str] = []
        while os.path.exists(pyramid.level_path(path, len(paths) + 1)):
            paths.append(pyramid.level_path(path, len(paths) + 1))
        if not paths:
            raise ExportError(f"{path} is {describe(path)}, not a blockfs volume or pyramid "
                              f"folder (none has {pyramid.level_path(path, 1)})")
        return paths
    if not os.path.exists(path):
        raise ExportError(f"{path}: no such blockfs volume or pyramid folder")
    read_header(path)  # anything but a directory file is refused here, saying what it is
    return [path]


def pyramid_info_size(path: str) -> voxel_size.VoxelSize | None:
    """The level 1 voxel size of the pyramid folder at path as its info gives it (nm), or
    None."""
    try:
        with open(os.path.join(path, "info")) as f:
            return voxel_size.VoxelSize(*json.load(f)["scales"][0]["resolution"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def choose_voxel_size(text: str | None, unit: str | None, source: str,
                      header: fmt.Header) -> voxel_size.VoxelSize:
    """--voxel-size (with --unit), else what the volume records, else the pyramid's info,
    else 1 micrometre (logged)."""
    if text:
        return voxel_size.parse(text, unit)
    if unit:
        raise OptionError("--unit gives the unit of the --voxel-size numbers: pass both")
    found = voxel_size.from_metadata(header.metadata) or (
        pyramid_info_size(source) if os.path.isdir(source) else None)
    if found is None:
        found = voxel_size.VoxelSize(1, 1, 1, "micrometer")
        if parallel.rank_of(parallel.world()) == 0:
            log.warning("%s records no voxel size: writing 1 micrometre; pass --voxel-size",
                        source)
    return found


def directory_checksum(path: str) -> str:
    """crc32c of a whole directory file (header and index): which volume, as written."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = fmt.crc32c(chunk, crc)
    return f"{crc:08x}"


def plan_of(paths: list[str], headers: list[fmt.Header], shard_blocks: int,
            size: voxel_size.VoxelSize) -> Plan:
    """Everything the export writes as metadata, and what it is made from: {"group": the
    image's zarr.json, "arrays": {"0": zarr.json, ...}}. Two exports with the same plan
    write the same bytes."""
    group = zarr_metadata.multiscale_group(len(paths), size)
    group["attributes"][PROVENANCE] = {
        "program": "blockfs2zarr", "shard_blocks": shard_blocks,
        "source": [{"path": os.path.abspath(p), "crc32c": directory_checksum(p)} for p in paths]}
    arrays = {str(level): zarr_metadata.array_metadata(header, shard_blocks)
              for level, header in enumerate(headers)}
    return {"group": group, "arrays": arrays}


def differences(old: Plan, new: Plan) -> list[str]:
    """What differs between the plan of an earlier export and this one, in words."""
    said = []
    source_old = old.get("group", {}).get("attributes", {}).get(PROVENANCE, {})
    source_new = new["group"]["attributes"][PROVENANCE]
    for key, what in (("source", "another volume (or the volume changed since)"),
                      ("shard_blocks", "another --shard")):
        if source_old.get(key) != source_new.get(key):
            said.append(what)
    if old.get("group", {}).get("attributes", {}).get("ome") != new["group"]["attributes"]["ome"]:
        said.append("other levels or voxel size")
    for name, array in new["arrays"].items():
        before = old.get("arrays", {}).get(name, {})
        keys = [k for k in array if before.get(k) != array[k]]
        if keys:
            said.append(f"array {name}: {', '.join(keys)} differ")
    return said


def earlier_plan(output: str) -> Plan | None:
    """The plan of the export at output: its record while unfinished, else its metadata;
    None if output holds neither."""
    try:
        with open(os.path.join(output, RECORD)) as f:
            record: Plan = json.load(f)
            return record
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(output, "zarr.json")) as f:
            group = json.load(f)
        if PROVENANCE not in group["attributes"]:
            return None
        arrays = {}
        for dataset in group["attributes"]["ome"]["multiscales"][0]["datasets"]:
            with open(os.path.join(output, dataset["path"], "zarr.json")) as f:
                arrays[dataset["path"]] = json.load(f)
        return {"group": group, "arrays": arrays}
    except (FileNotFoundError, ValueError, KeyError, IndexError, TypeError):
        return None


def prepare_output(output: str, plan: Plan, overwrite: bool, resume: bool) -> None:
    """Make output ready for the export (rank 0): refuse what is in the way unless
    overwrite (replace a zarr folder) or resume (the same export, unfinished or done)
    allows it, then record the plan. Nothing is removed before every check passed."""
    if overwrite and resume:
        raise ExportError("--overwrite and --resume exclude each other")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ExportError(f"{output} is {describe(output)}, not a zarr folder: "
                          f"refusing to replace it")
    entries = os.listdir(output) if os.path.isdir(output) else []
    if entries and resume:
        earlier = earlier_plan(output)
        if earlier is None:
            raise ExportError(f"--resume: {output} is not an export of blockfs2zarr "
                              f"(no {RECORD} or zarr.json of one)")
        said = differences(earlier, plan)
        if said:
            raise ExportError(f"--resume: {output} is an export of {'; '.join(said)}: use "
                              f"--overwrite to replace it")
        removed = leftovers(output)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run, e.g. %s",
                     len(removed), removed[0])
    elif entries:
        if not overwrite:
            raise ExportError(f"{output} exists ({describe(output)}): use --overwrite to "
                              f"replace it or --resume to finish an interrupted export")
        if not {"zarr.json", RECORD} & set(entries):
            raise ExportError(f"{output} is {describe(output)}, not a zarr folder: refusing "
                              f"to replace it")
        log.info("replacing the zarr folder %s", output)
        shutil.rmtree(output)
    os.makedirs(output, exist_ok=True)
    atomic.write_atomically(os.path.join(output, RECORD), json.dumps(plan, indent=2).encode())


def leftovers(output: str) -> list[str]:
    """Remove the temporary shard files an interrupted run left in output; their paths."""
    removed = []
    for folder, _, files in os.walk(output):
        for name in files:
            if export.partial_of(name) is not None:
                os.unlink(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def kept_shards(output: str, grids: list[ShardGrid], comm: "MPI.Comm | None") -> set[Shard]:
    """(level, shard) of every shard already complete in output (collective: each rank
    checks its share of the shard files)."""
    every = [(level, n) for level, grid in enumerate(grids) for n in range(grid.count)]
    mine = every[parallel.rank_of(comm)::parallel.size_of(comm)]
    found = [(level, n) for level, n in mine
             if complete(shard_path(output, level, grids[level], n), grids[level])]
    if comm is not None:
        found = [item for part in comm.allgather(found) for item in part]
    return set(found)


def shard_path(output: str, level: int, grid: ShardGrid, number: int) -> str:
    """The file of shard number of level's array in output."""
    return os.path.join(output, str(level), grid.key(number))


class ShardWork:
    """work(i) of export.run: write the i-th shard left to write. Picklable (local worker
    processes): each process opens its own readers."""

    def __init__(self, paths: list[str], headers: list[fmt.Header], grids: list[ShardGrid],
                 items: list[Shard], output: str, skip_damaged: bool) -> None:
        self.paths, self.headers, self.grids = paths, headers, grids
        self.items = items  # (level, shard number) of every shard to write
        self.output = output
        self.skip_damaged = skip_damaged
        self._readers: dict[int, BlockReader] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}}

    def blocks(self) -> int:
        """Blocks in the shards to write (the progress bar's total)."""
        return sum(self.grids[level].block_count(n) for level, n in self.items)

    def _reader(self, level: int) -> BlockReader:
        if level not in self._readers:
            self._readers[level] = BlockReader(self.paths[level], self.headers[level])
        return self._readers[level]

    def __call__(self, i: int) -> Iterator[tuple[int, int]]:
        level, number = self.items[i]
        grid = self.grids[level]
        path = shard_path(self.output, level, grid, number)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        result = write_shard(path, self._reader(level), grid, number, self.skip_damaged)
        yield grid.block_count(number), result.nbytes


def finish(output: str, plan: Plan) -> None:
    """Write the arrays' zarr.json, then the image's, then drop the record (rank 0)."""
    for name, array in plan["arrays"].items():
        os.makedirs(os.path.join(output, name), exist_ok=True)
        atomic.write_atomically(os.path.join(output, name, "zarr.json"),
                                json.dumps(array, indent=2).encode())
    atomic.write_atomically(os.path.join(output, "zarr.json"),
                            json.dumps(plan["group"], indent=2).encode())
    os.unlink(os.path.join(output, RECORD))


def export_zarr(source: str, output: str, shard_blocks: int = 8,
                comm: "MPI.Comm | None" = None, size: voxel_size.VoxelSize | None = None,
                overwrite: bool = False, resume: bool = False, skip_damaged: bool = False,
                n_workers: int | None = None, silent: bool = False) -> tuple[int, int, float]:
    """Export the volume or pyramid folder source as the OME-Zarr image output (collective);
    (blocks, bytes, seconds) of the job. size: a VoxelSize (default: as recorded)."""
    paths = level_paths(source)
    headers = [read_header(p) for p in paths]
    if parallel.rank_of(comm) == 0:
        for path, header in zip(paths, headers):
            warn_if_incomplete(path, header)
    size = size or choose_voxel_size(None, None, source, headers[0])
    grids = [ShardGrid(h.geometry, shard_blocks) for h in headers]
    plan = parallel.on_rank0(comm, lambda: prepared(output, paths, headers, shard_blocks, size,
                                                    overwrite, resume), BlockfsError)
    kept = kept_shards(output, grids, comm) if resume else set()
    items = [(level, n) for level, grid in enumerate(grids) for n in range(grid.count)
             if (level, n) not in kept]
    if resume and parallel.rank_of(comm) == 0:
        log.info("--resume: %d of the %d shards are complete and kept; writing %d",
                 len(kept), len(kept) + len(items), len(items))
    work = ShardWork(paths, headers, grids, items, output, skip_damaged)
    totals: tuple[int, int, float] = export.run(
        work, len(items), work.blocks(), comm, n_workers, desc="blockfs2zarr", unit="block",
        silent=silent)

    def finish_on_rank0() -> None:
        assert plan is not None  # rank 0 made it
        finish(output, plan)

    parallel.on_rank0(comm, finish_on_rank0, BlockfsError)
    export.report(comm, "blockfs2zarr", "block", *totals)
    return totals


def prepared(output: str, paths: list[str], headers: list[fmt.Header], shard_blocks: int,
             size: voxel_size.VoxelSize, overwrite: bool, resume: bool) -> Plan:
    """Rank 0's part before any shard: the plan, checked against output and recorded."""
    plan = plan_of(paths, headers, shard_blocks, size)
    prepare_output(output, plan, overwrite, resume)
    return plan
