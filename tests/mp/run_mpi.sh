#!/bin/sh
# Runs mp/test_mpi (or mp/$GCSHIM_MPI_PROG) under mpirun with 4 processes (fewer cores are fine:
# --oversubscribe). Exit 77 (skipped) only when configure found no mpirun
# or the mpi transport is not built (test_mpi then exits 77 itself).
# Settings: MPIRUN (from configure), GCSHIM_MPI_NP (default 4),
# GCSHIM_MPIRUN_ARGS (extra mpirun arguments).
# AM_TESTS_ENVIRONMENT assigns these without exporting them; fall back to
# what make check's working directory (tests/) and PATH give.
name=${GCSHIM_MPI_PROG:-test_mpi}
prog=${top_builddir:-..}/tests/mp/$name
[ -x "$prog" ] || prog=./mp/$name
[ -n "$MPIRUN" ] || MPIRUN=$(command -v mpirun || echo no)
GCSHIM_TIMEOUT=${GCSHIM_TIMEOUT:-60}
export GCSHIM_TIMEOUT
if [ "$MPIRUN" = no ] || [ -z "$MPIRUN" ]; then
  echo "no mpirun found by configure: skipped"
  exit 77
fi
"$prog" --probe || exit $?
np=${GCSHIM_MPI_NP:-4}
root_arg=
[ "$(id -u)" = 0 ] && root_arg=--allow-run-as-root
# Containers often forbid the cross-memory-attach single copy of the vader BTL.
OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
export OMPI_MCA_btl_vader_single_copy_mechanism OMPI_MCA_btl
# Under ASan, leak checking is off for this test only: Open MPI keeps
# allocations past MPI_Finalize in components it has dlclose()d by then, so
# LeakSanitizer can neither attribute nor suppress them. Memory errors are
# still caught.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS
# timeout: a backstop beside the test's own alarm() and GCSHIM_TIMEOUT.
exec timeout -k 5 150 "$MPIRUN" -np "$np" --oversubscribe $root_arg $GCSHIM_MPIRUN_ARGS "$prog"
