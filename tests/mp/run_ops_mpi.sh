#!/bin/sh
# Runs mp/test_ops_mpi (the coordinator operations against Open MPI's own
# results) the way run_mpi.sh runs mp/test_mpi.
GCSHIM_MPI_PROG=test_ops_mpi exec "$(dirname "$0")/run_mpi.sh"
