/* api.c - include/gcshim/gcshim.h: control of the preloaded shim. */
#include "core/report.h"
#include "cpu/cpu.h"
#include "gcshim/gcshim.h"
#include "shim/shim.h"

static gc_shim_comm_t *adopted(ncclComm_t comm) {
  gc_shim_comm_t *sc = gc_shim_lookup(comm);
  return sc && atomic_load_explicit(&sc->state, memory_order_acquire) == GC_SHIM_ADOPTED ? sc
                                                                                         : NULL;
}

const char *gcshim_comm_name(ncclComm_t comm) {
  gc_shim_comm_t *sc = adopted(comm);
  return sc ? sc->g.name : NULL;
}

ncclComm_t gcshim_comm_lookup(const char *unique_name) {
  gc_shim_comm_t *sc = gc_shim_by_name(unique_name);
  return sc ? sc->comm : NULL;
}

gc_group_t *gcshim_comm_group(ncclComm_t comm) {
  gc_shim_comm_t *sc = adopted(comm);
  return sc ? &sc->g : NULL;
}

ncclResult_t gcshim_barrier(ncclComm_t comm) {
  gc_shim_comm_t *sc = adopted(comm);
  if (!sc) {
    gc_error(GC_ERR_INVALID_ARG, "gcshim_barrier: communicator %p is not adopted", (void *)comm);
    return ncclInvalidArgument;
  }
  if (sc->g.size == 1) return ncclSuccess;
  if (!sc->g.cpu) {
    gc_error(GC_ERR_STATE, "gcshim_barrier: group %s has no CPU group", sc->g.name);
    return ncclInvalidUsage;
  }
  switch (gc_cpu_barrier(sc->g.cpu)) {
    case GC_OK:
      return ncclSuccess;
    case GC_ERR_PEER_LOST:
      return ncclRemoteError;
    default:
      return ncclSystemError;
  }
}

void gcshim_report_flush(void) {
  if (gc_shim_disabled()) return;
  gc_report_flush(false, true);
}
