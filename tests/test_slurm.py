"""The sbatch templates in slurm/, linted and run on a real single-node SLURM cluster.

The cluster (munged, slurmctld, slurmd on localhost, a slurm.conf written
here) is started by the tests and stopped by PID at the end. Tests that need
it are marked `slurm` and skip, saying why, without root or the daemons.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import Directory
from blockfs_mpi.synthetic import SyntheticVolume
from conftest import ROOT, mpiexec, run_checked

TEMPLATES = sorted((ROOT / "slurm").glob("*.sbatch"))
SLURM_CONF = """\
ClusterName=blockfs-test
FirstJobId={first_job}
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=20
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
ReturnToService=2
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_template_lints(template):
    subprocess.run(["bash", "-n", str(template)], check=True)
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    result = subprocess.run(["shellcheck", "-x", "-s", "bash", str(template.relative_to(ROOT)),
                             "slurm/common.sh"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# Every variable a template reads, set empty in the runs below: an empty value must work as unset.
TEMPLATE_VARIABLES = ("SOURCE", "OUTPUT", "OPTIONS", "REQUEUE_MARGIN", "SLURM_RESTART_COUNT",
                      "VOLUME", "REPAIR", "QUICK", "DEST", "DATASET", "COMPRESSION", "OVERWRITE",
                      "PATTERN", "PSNR", "LEVEL", "SRC", "MODE", "FORCE", "THREADS", "SHARD")


def test_arrays_expand_on_bash_before_4_4():
    """Under set -u, bash 4.2 and 4.3 stop at "${A[@]}" of an empty array (unbound variable):
    every array in the templates is expanded as ${A[@]+"${A[@]}"}, which also keeps quoting."""
    for path in [*TEMPLATES, ROOT / "slurm" / "common.sh"]:
        code = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        text = re.sub(r'\$\{(\w+)\[@\]\+"\$\{\1\[@\]\}"\}', "", code)
        assert not re.search(r"\$\{\w+\[@\]\}", text), f"{path.name}: an unguarded array expansion"


def run_template(template, cwd, expect_failure=False, **variables):
    """Run a template as a one-task job would, with bash itself and no cluster (LAUNCHER=mpiexec):
    its own shell code under set -euo pipefail; the template variables not given are empty."""
    env = {name: "" for name in TEMPLATE_VARIABLES}
    env.update({name: str(value) for name, value in variables.items()},
               BLOCKFS_HOME=str(ROOT), BLOCKFS_VENV=sys.prefix, LAUNCHER="mpiexec",
               MPIEXEC=mpiexec(), SLURM_NTASKS="1")
    return run_checked(["bash", str(ROOT / "slurm" / template)], env=env, cwd=cwd,
                       expect_failure=expect_failure)


def test_templates_with_empty_and_spaced_options(tmp_path):
    """OPTIONS holding values with spaces reach the program word by word as a shell would
    quote them; every other template runs with its optional variables empty."""
    folder = tmp_path / "with space"
    folder.mkdir()
    volume = folder / "v.blockfs"
    run_template("write.sbatch", folder, SOURCE="synthetic:20x70x90", OUTPUT=volume,
                 OPTIONS="--block-size 16 --metadata 'Source=scope 2, run 7' "
                         "--metadata Note=\"it's *.tif\"")
    directory = Directory.open(volume)
    assert directory.metadata == {"Source": "scope 2, run 7", "Note": "it's *.tif"}
    assert directory.block_size == (16, 16, 16)
    expected = SyntheticVolume((20, 70, 90))[:, :, :]
    np.testing.assert_array_equal(directory[:, :, :], expected)
    run_template("write.sbatch", folder, SOURCE="synthetic:20x70x90", OUTPUT=folder / "w.blockfs")
    np.testing.assert_array_equal(Directory.open(folder / "w.blockfs")[:, :, :], expected)
    run_template("fsck.sbatch", folder, VOLUME=volume)
    run_template("copy.sbatch", folder, SRC=volume, DEST=folder / "copy")
    np.testing.assert_array_equal(Directory.open(folder / "copy" / "v.blockfs")[:, :, :], expected)
    run_template("tif.sbatch", folder, VOLUME=volume, PATTERN=folder / "tif" / "z_%02d.tiff")
    run_template("tif.sbatch", folder, VOLUME=volume, PATTERN=folder / "striped" / "z_%02d.tiff",
                 OPTIONS="--y-stripe 16")
    import tifffile
    for name in ("tif", "striped"):
        np.testing.assert_array_equal(tifffile.imread(folder / name / "z_07.tiff"), expected[7])
    run_template("hdf.sbatch", folder, VOLUME=volume, DEST=folder / "v.h5", DATASET="/raw")
    import h5py
    with h5py.File(folder / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["/raw"][:], expected)
    run_template("jp2k.sbatch", folder, VOLUME=volume, PATTERN=folder / "jp2" / "z_%02d.jp2")
    import glymur
    np.testing.assert_array_equal(glymur.Jp2k(str(folder / "jp2" / "z_11.jp2"))[:], expected[11])
    run_template("zarr.sbatch", folder, VOLUME=volume, DEST=folder / "v.ome.zarr",
                 OPTIONS="--voxel-size '1.8,1.8,2.0 um'")
    zarr = pytest.importorskip("zarr")
    np.testing.assert_array_equal(zarr.open_array(str(folder / "v.ome.zarr" / "0"))[:], expected)
    scale = zarr.open_group(str(folder / "v.ome.zarr")).attrs["ome"]["multiscales"][0]
    assert scale["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 1.8, 1.8]


def test_unbalanced_quote_in_options_stops_the_job(tmp_path):
    result = run_template("write.sbatch", tmp_path, expect_failure=True, SOURCE="synthetic:8x8x8",
                          OUTPUT=tmp_path / "v.blockfs", OPTIONS="--metadata 'A=b")
    assert "error: OPTIONS=\"--metadata 'A=b\": No closing quotation" in result.stderr
    assert not (tmp_path / "v.blockfs").exists()


def _missing_pieces():
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (munged, slurmd)"
    missing = [d for d in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(d)
               and not os.path.exists(f"/usr/sbin/{d}")]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian slurmctld slurmd slurm-client munge)"
    return None


def _daemon(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Environment variables of a running single-node cluster; stopped afterwards."""
    reason = _missing_pieces()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    conf = state / "slurm.conf"
    # Job ids must not repeat across test runs: MPICH names its shared memory after
    # the job id, and a killed job's leftover segment would be reused by its namesake.
    conf.write_text(SLURM_CONF.format(state=state, first_job=int(time.time()) % 50_000_000 + 1000))
    env = dict(os.environ, SLURM_CONF=str(conf))
    started = []
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not os.path.exists("/etc/munge/munge.key"):
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", _daemon("munged")], check=True)
        # The daemon's own pid: pgrep also lists the exited process that launched it.
        started.append(int(Path("/run/munge/munged.pid").read_text()))
    subprocess.run([_daemon("slurmctld"), "-f", str(conf)], check=True, env=env)
    subprocess.run([_daemon("slurmd"), "-f", str(conf), "-N", "localhost"], check=True, env=env)
    deadline = time.monotonic() + 60
    while subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                         env=env).stdout.strip() not in ("idle", "mix", "alloc"):
        if time.monotonic() > deadline:
            pytest.fail("the SLURM node did not become idle in 60 s:\n"
                        + (state / "slurmctld.log").read_text()[-3000:])
        time.sleep(0.5)
    try:
        yield env
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        time.sleep(1)
        for pidfile in ("slurmd.pid", "slurmctld.pid"):
            try:
                started.append(int((state / pidfile).read_text()))
            except (OSError, ValueError):
                pass
        for pid in started:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def sbatch(cluster, template, variables, *options, wait=True, cwd=None):
    """Submit a template with --export variables; (job id, exit status when waited)."""
    export = ",".join(["ALL", f"BLOCKFS_HOME={ROOT}", f"BLOCKFS_VENV={sys.prefix}",
                       *(f"{k}={v}" for k, v in variables.items())])
    command = ["sbatch", "--parsable", f"--export={export}", *options]
    if wait:
        command.append("--wait")
    result = subprocess.run([*command, str(ROOT / "slurm" / template)], capture_output=True,
                            text=True, env=cluster, cwd=cwd, timeout=600)
    job = result.stdout.strip().split(";")[0]
    if not job:
        pytest.fail(f"sbatch refused {template}: {result.stderr}")
    return job, result.returncode


def job_log(folder, prefix, job):
    return (Path(folder) / f"{prefix}-{job}.out").read_text()


@pytest.mark.slurm
def test_pipeline_with_dependencies(cluster, tmp_path):
    """write -> fsck -> blockfs2hdf, and blockfs2tif, blockfs2jp2k, blockfs2zarr and a copy after
    the write, chained with --dependency=afterok; every output checked voxel by voxel."""
    import h5py
    import tifffile
    (tmp_path / "scratch").mkdir()
    output = tmp_path / "scratch" / "v.blockfs"
    shape = (70, 90, 110)
    jobs = {}
    jobs["write"], _ = sbatch(cluster, "write.sbatch",
                              {"SOURCE": "synthetic:" + "x".join(map(str, shape)),
                               "OUTPUT": output, "OPTIONS": "--block-size 32"},
                              "--ntasks=2", wait=False, cwd=tmp_path)
    after_write = f"--dependency=afterok:{jobs['write']}"
    jobs["fsck"], _ = sbatch(cluster, "fsck.sbatch", {"VOLUME": output, "QUICK": 1},
                             "--ntasks=2", after_write, wait=False, cwd=tmp_path)
    jobs["tif"], _ = sbatch(cluster, "tif.sbatch",
                            {"VOLUME": output, "PATTERN": tmp_path / "tif" / "z_%03d.tiff"},
                            "--ntasks=2", after_write, wait=False, cwd=tmp_path)
    jobs["jp2k"], _ = sbatch(cluster, "jp2k.sbatch",
                             {"VOLUME": output, "PATTERN": tmp_path / "jp2" / "z_%03d.jp2"},
                             "--ntasks=2", after_write, wait=False, cwd=tmp_path)
    jobs["zarr"], _ = sbatch(cluster, "zarr.sbatch",
                             {"VOLUME": output, "DEST": tmp_path / "v.ome.zarr", "SHARD": 2},
                             "--ntasks=2", after_write, wait=False, cwd=tmp_path)
    jobs["copy"], _ = sbatch(cluster, "copy.sbatch", {"SRC": output, "DEST": tmp_path / "copy",
                                                      "THREADS": 3},
                             "--ntasks=2", after_write, wait=False, cwd=tmp_path)
    jobs["hdf"], status = sbatch(cluster, "hdf.sbatch",
                                 {"VOLUME": output, "DEST": tmp_path / "v.h5",
                                  "DATASET": "/raw/ch0"},
                                 "--ntasks=2", f"--dependency=afterok:{jobs['fsck']}",
                                 cwd=tmp_path)
    for job in jobs.values():  # the others ran before the last one in the chain
        subprocess.run(["scontrol", "wait_job", job], env=cluster, capture_output=True)
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.out"))
    states = {name: subprocess.run(["scontrol", "show", "job", job], capture_output=True,
                                   text=True, env=cluster).stdout for name, job in jobs.items()}
    assert status == 0 and all("JobState=COMPLETED" in s for s in states.values()), logs
    assert "on 2 rank(s), 3 thread(s) on rank 0" in logs  # THREADS reached blockfs-cp
    assert "verified (quick: not decompressed)" in logs  # QUICK reached blockfs-fsck
    expected = SyntheticVolume(shape)[:, :, :]
    np.testing.assert_array_equal(Directory.open(output)[:], expected)
    np.testing.assert_array_equal(Directory.open(tmp_path / "copy" / "v.blockfs")[:], expected)
    with h5py.File(tmp_path / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["/raw/ch0"][:], expected)
    for z in (0, 37, 69):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "tif" / f"z_{z:03d}.tiff"),
                                      expected[z])
    import glymur
    np.testing.assert_array_equal(glymur.Jp2k(str(tmp_path / "jp2" / "z_042.jp2"))[:],
                                  expected[42])
    zarr = pytest.importorskip("zarr")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "v.ome.zarr" / "0"))[:], expected)


@pytest.mark.slurm
def test_missing_variable_fails_the_job(cluster, tmp_path):
    job, status = sbatch(cluster, "write.sbatch", {"SOURCE": "synthetic:8x8x8"}, "--ntasks=1",
                         cwd=tmp_path)
    assert status != 0
    assert "OUTPUT is not set" in job_log(tmp_path, "blockfs-write", job)


@pytest.mark.slurm
def test_failing_program_fails_the_job_and_its_dependents(cluster, tmp_path):
    job, status = sbatch(cluster, "fsck.sbatch", {"VOLUME": tmp_path / "none.blockfs"},
                         "--ntasks=2", cwd=tmp_path)
    assert status != 0
    assert "no such blockfs directory file" in job_log(tmp_path, "blockfs-fsck", job)


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_time_limit_requeues_and_resumes(cluster, tmp_path):
    """A one-minute job requeues itself 30 s before its limit (REQUEUE_MARGIN, timed by
    the job from squeue's time left) and the next run goes on with --resume until the
    volume is complete.

    The write takes ~68 s (--level 9, 2 ranks, a quiet 2-core machine), 2.5 times what a
    run does (~27 s: 30 s less start-up), so a machine twice as fast is still cut off; the
    job runs again once a minute, so 3 runs here and ~13 (of the 14 minutes allowed) on one
    four times slower.

    Slurm holds a requeued job until the credentials of its killed run expire: two
    minutes by default, 20 s on the test cluster (AuthInfo=cred_expire=20; releasing
    it sooner makes slurmd refuse the launch, "Job credential revoked").
    LAUNCHER=mpiexec: the MPICH wheel names its node-local shared memory after the
    PMI job and step, which a requeued job reuses under srun, and the killed step
    leaves that segment behind.
    """
    output = tmp_path / "v.blockfs"
    shape = (512, 512, 512)
    job, _ = sbatch(cluster, "write.sbatch",
                    {"SOURCE": "synthetic:" + "x".join(map(str, shape)), "OUTPUT": output,
                     "OPTIONS": "--level 9", "LAUNCHER": "mpiexec", "REQUEUE_MARGIN": "30"},
                    "--ntasks=2", "--time=1", wait=False, cwd=tmp_path)
    deadline = time.monotonic() + 840
    log = tmp_path / f"blockfs-write-{job}.out"
    while True:
        state = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                               env=cluster).stdout
        if any(f"JobState={end}" in state for end in ("COMPLETED", "FAILED", "TIMEOUT",
                                                       "CANCELLED")):
            break
        assert time.monotonic() < deadline, f"job {job} did not finish in 14 minutes:\n{state}"
        time.sleep(1)
    text = log.read_text()
    assert "JobState=COMPLETED" in state, f"{state}\n{text}"
    assert "requeueing job" in text, "the job was never cut off by its time limit:\n" + text
    resumed = [line for line in text.splitlines() if "already present" in line]
    assert resumed and " 0 already present" not in resumed[-1], text
    directory = Directory.open(output)
    volume = SyntheticVolume(shape)
    for z in range(0, shape[0], 64):
        np.testing.assert_array_equal(directory[z:z + 64], volume[z:z + 64])
