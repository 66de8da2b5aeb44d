"""The original blockfs README example, with blockfs_mpi's import line.

    python scripts/seed_example.py [volume.blockfs] [--size 1024] [--start-method spawn]

The Directory travels to the pool's workers as an argument, so the example
works under every start method (fork, spawn, forkserver), not only fork.
"""
import argparse
import itertools
import multiprocessing

import numpy as np

from blockfs_mpi import Directory


def do_something_awesome(directory, x, y, z):
    block = np.random.randint(0, 65535, (64, 64, 64), np.uint16)
    directory.write_block(block, x, y, z)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="volume.blockfs")
    parser.add_argument("--size", type=int, default=1024, help="cube edge in voxels, multiple of 64")
    parser.add_argument("--start-method", choices=multiprocessing.get_all_start_methods())
    args = parser.parse_args()
    if args.start_method:
        multiprocessing.set_start_method(args.start_method)
    size = args.size

    directory = Directory(size, size, size, np.uint16, args.path,
                          x_block_size=64, y_block_size=64, z_block_size=64)
    directory.create()
    directory.start_writer_processes()  # need this for multithreading setup
    with multiprocessing.Pool() as pool:
        pool.starmap(do_something_awesome,
                     ((directory, x, y, z) for x, y, z in itertools.product(
                         range(0, size, 64), range(0, size, 64), range(0, size, 64))))
    directory.close()

    block_128_64_0 = Directory.open(args.path).read_block(128, 64, 0)
    print(f"{args.path}: block (128, 64, 0) has shape {block_128_64_0.shape}, "
          f"mean {block_128_64_0.mean():.1f}")


if __name__ == "__main__":
    main()
