"""`python -m blockfs_mpi.cp`: the same program as blockfs-cp."""
from .relocate import cp_main

if __name__ == "__main__":
    cp_main()
