"""`python -m blockfs_mpi.cp`: the same program as blockfs-cp (main(argv), as every program)."""
from .relocate import cp_main as main

__all__ = ["main"]

if __name__ == "__main__":
    main()
