"""blockfs-serve keeps the data files it holds open within its descriptor limit: the volumes
it keeps open share half of it (catalog.Catalog.files_per_volume), each reader keeping at
most its part open (issue 21, item 3)."""
import http.client
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from blockfs_mpi import pyramid
from volumes import big_volume

pytestmark = pytest.mark.timeout(180)

LIMIT = 64  # the server's RLIMIT_NOFILE: below the 6 x 24 data files it serves
FILES = 24  # data files of each volume
N_BLOCKS = 48  # blocks of each volume, two in each data file
CACHE = 8  # volumes the server keeps open: all of them
NAMES = "abcdef"


def limited():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def data_files_open(pid, root):
    """How many of the process's descriptors are data files under root."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(root)) and ".blockfs." in target
    return count


def test_served_data_files_stay_within_the_descriptor_limit(tmp_path):
    """Six volumes of 24 data files each, served under a limit of 64 descriptors, all kept
    open: every chunk is served right, with at most 32 data files open, 4 a volume (before:
    a reader's own bound, a quarter of the limit, 16 a volume: 96, past the limit)."""
    root = tmp_path / "served"
    for name in NAMES:
        path = pyramid.level_path(str(root / name), 1)
        os.makedirs(os.path.dirname(path))
        big_volume(path, N_BLOCKS, n_files=FILES, block=(16, 16, 16))
        pyramid.build(str(root / name), 1, silent=True)
    noise = np.random.default_rng(0).integers(0, 65536, (16, 16, 16), np.uint16)
    server = subprocess.Popen([sys.executable, "-m", "blockfs_mpi.serve", str(root), "--port=0",
                               f"--cache={CACHE}", "--silent"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=limited,
                              start_new_session=True)
    try:
        line = server.stdout.readline()
        assert " at http://" in line, line + server.stderr.read()
        host, port = line.split(" at http://")[1].strip().rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        most = 0
        for name in NAMES:
            for k in range(N_BLOCKS):
                connection.request("GET", f"/{name}/1_1_1/0-16_0-16_{16 * k}-{16 * (k + 1)}")
                response = connection.getresponse()
                body = response.read()
                assert response.status == 200, body
                assert body == (noise + np.uint16(k)).astype("<u2").tobytes(), (name, k)
            most = max(most, data_files_open(server.pid, root))
        connection.close()
        per_volume = max(1, LIMIT // 2 // CACHE)
        assert most <= len(NAMES) * per_volume, (f"{most} data files open, over "
                                                 f"{len(NAMES)} x {per_volume}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        server.stdout.close()
        server.stderr.close()
