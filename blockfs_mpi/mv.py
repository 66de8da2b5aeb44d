"""`python -m blockfs_mpi.mv`: the same program as blockfs-mv."""
from .relocate import mv_main

if __name__ == "__main__":
    mv_main()
