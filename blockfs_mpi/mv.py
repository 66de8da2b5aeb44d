"""`python -m blockfs_mpi.mv`: the same program as blockfs-mv (main(argv), as every program)."""
from .relocate import mv_main as main

__all__ = ["main"]

if __name__ == "__main__":
    main()
