"""One rank cannot create its data file: every rank gets the same error naming it."""
import os

import numpy as np

from blockfs_mpi import Directory, WriterError
from common import comm, say, shared_path

path = shared_path("volume.blockfs")
names = [f"{path}.{r}" for r in range(comm.size)]
names[-1] = os.path.join(os.path.dirname(path), "no-such-folder", "data")
try:
    Directory(64, 64, 64, np.uint16, path, block_filenames=names).create()
    raised = None
except WriterError as e:
    raised = str(e)
assert raised is not None and f"rank {comm.size - 1}: cannot create" in raised, raised
assert not os.path.exists(path), "a directory file was committed despite the failure"
say("ok")
