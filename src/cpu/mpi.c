/* mpi.c - placeholder until the MPI transport lands. */
#include "cpu/cpu.h"

bool gc_cpu_mpi_available(void) { return false; }

gc_status_t gc_cpu_mpi_world(double timeout_s, gc_cpu_group_t **out) {
  (void)timeout_s;
  (void)out;
  return gc_error(GC_ERR_UNSUPPORTED,
                  "the mpi CPU transport is not built in (configure --with-mpi)");
}

void gc_cpu_mpi_finalize(void) {}
