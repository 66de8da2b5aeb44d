"""What every benchmark prints and does before it measures: the machine, the versions, a quiet CPU.

The project's machines are shared 2-core VMs: other engineers' test suites
and compile jobs come and go. Figures taken under a load average of 3 mean
little, so each benchmark waits (bounded) for the 1-minute load average to
fall below a threshold and prints the load it measured under.
"""
import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time


def load():
    """The 1-minute load average."""
    return os.getloadavg()[0]


def wait_for_quiet(limit=1.5, max_wait=600, poll=15):
    """Sleep until the 1-minute load average is below limit (at most max_wait s); return it."""
    deadline = time.monotonic() + max_wait
    while load() >= limit and time.monotonic() < deadline:
        print(f"# load {load():.2f} >= {limit}: waiting", flush=True)
        time.sleep(poll)
    return load()


def compile_package():
    """Compile blockfs_mpi's modules to bytecode, untimed, as pip does on install: where
    PYTHONDONTWRITEBYTECODE is set (this machine), each timed process would compile them
    again (0.16 s a process), a start-up no installed copy pays."""
    import compileall

    import blockfs_mpi
    compileall.compile_dir(os.path.dirname(blockfs_mpi.__file__), quiet=1)


def cpu_model():
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line():
    """One line naming date, host, cores, CPU, Python and the load average now."""
    return (f"{time.strftime('%Y-%m-%d %H:%M')} {platform.node()}: {os.cpu_count()} cores "
            f"({cpu_model()}), {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def versions(names=("numpy", "numcodecs", "mpi4py", "zarr", "tensorstore", "h5py", "hdf5plugin")):
    """'name version' for each importable package, plus Blosc, HDF5 and the MPI library."""
    found = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            found.append(f"{name} (not installed)")
            continue
        found.append(f"{name} {importlib.metadata.version(name)}")
        if name == "numcodecs":
            from numcodecs import blosc
            found.append(f"c-blosc {blosc.VERSION_STRING}")
        if name == "h5py":
            found.append(f"HDF5 {module.version.hdf5_version}")
        if name == "mpi4py":  # asked in a child: MPI is never initialised in a process that forks
            found.append(subprocess.run(
                [sys.executable, "-c", "from mpi4py import MPI; "
                 "print(' '.join(MPI.Get_library_version().split()[:3]))"],
                capture_output=True, text=True).stdout.strip())
    return ", ".join(found)
