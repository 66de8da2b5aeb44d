# Sourced by every blockfs_mpi sbatch template: environment, checks, launching.
#
#   BLOCKFS_HOME   the blockfs_mpi checkout (default: the folder you ran sbatch in)
#   BLOCKFS_VENV   its virtual environment (default: $BLOCKFS_HOME/.venv, made by scripts/setup.sh)
#   LAUNCHER       srun (default) or mpiexec, for sites where srun is not wired to the MPI
#   MPIEXEC        the mpiexec for LAUNCHER=mpiexec (default: $BLOCKFS_VENV/bin/mpiexec)
#   SRUN_MPI       the srun --mpi plugin (default: pmi2; pmix on many Open MPI sites)

BLOCKFS_HOME=${BLOCKFS_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
BLOCKFS_VENV=${BLOCKFS_VENV:-$BLOCKFS_HOME/.venv}

# require NAME...: stop with a clear message unless every named variable is set.
require() {
    local name
    for name in "$@"; do
        if [ -z "${!name:-}" ]; then
            echo "error: $name is not set; submit with sbatch --export=ALL,$name=..." >&2
            exit 2
        fi
    done
}

# split_options: the words of $OPTIONS into the array OPTION_WORDS, split as a shell would
# ("--memory 4G --metadata 'Source=scan 7'" is four words) but by Python's shlex: nothing in
# OPTIONS is run or expanded. Expand it as ${OPTION_WORDS[@]+"${OPTION_WORDS[@]}"}: bash
# before 4.4 calls a plain "${OPTION_WORDS[@]}" of no words an unbound variable under set -u.
split_options() {
    local quoted
    quoted=$(python -c 'import shlex, sys
try:
    print(" ".join(shlex.quote(word) for word in shlex.split(sys.argv[1])))
except ValueError as e:
    sys.exit(f"error: OPTIONS={sys.argv[1]!r}: {e}")' "${OPTIONS:-}") || exit 2
    eval "OPTION_WORDS=($quoted)"
}

# launch PROGRAM ARGS...: run an MPI program on every task of the job, in the background
# (so that the batch shell can take signals), and wait for it; returns its exit status.
launch() {
    case "${LAUNCHER:-srun}" in
        srun) srun --mpi="${SRUN_MPI:-pmi2}" "$@" & ;;
        mpiexec) "${MPIEXEC:-$BLOCKFS_VENV/bin/mpiexec}" -n "${SLURM_NTASKS:-1}" "$@" & ;;
        *) echo "error: LAUNCHER must be srun or mpiexec, not $LAUNCHER" >&2; return 2 ;;
    esac
    LAUNCHED=$!
    wait "$LAUNCHED"
}

if [ ! -x "$BLOCKFS_VENV/bin/python" ]; then
    echo "error: no blockfs_mpi environment at $BLOCKFS_VENV; run scripts/setup.sh or set BLOCKFS_VENV" >&2
    exit 2
fi
# shellcheck source=/dev/null
source "$BLOCKFS_VENV/bin/activate"
echo "blockfs_mpi job ${SLURM_JOB_ID:-(none)} on ${SLURM_NTASKS:-1} task(s), ${LAUNCHER:-srun}, $(date)"
