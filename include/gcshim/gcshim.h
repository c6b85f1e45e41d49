/*
 * gcshim.h - control of the preloaded shim (libgcshim.so). Every function
 * here is exported by libgcshim.so and is also reachable with
 * dlsym(RTLD_DEFAULT, "gcshim_...") from a program that did not link it.
 */
#ifndef GCSHIM_GCSHIM_H
#define GCSHIM_GCSHIM_H

#include <nccl.h>

#include "gcshim/gc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The unique name of the group the shim made of comm ("tp:0"); NULL if the
 * communicator is unknown (not adopted, destroyed, or still initialising). */
GC_EXPORT const char *gcshim_comm_name(ncclComm_t comm);
/* The communicator adopted under unique_name; NULL if none (or destroyed). */
GC_EXPORT ncclComm_t gcshim_comm_lookup(const char *unique_name);
/* The adopted group of comm, usable with gc.h; NULL if unknown. */
GC_EXPORT gc_group_t *gcshim_comm_group(ncclComm_t comm);
/* A barrier of comm's ranks over its CPU group (never on the GPU):
 * ncclSuccess; ncclInvalidArgument for an unknown comm; ncclInvalidUsage
 * when the group has no CPU group (ranks on several hosts); ncclRemoteError
 * when a peer died; ncclSystemError on a timeout (GCSHIM_TIMEOUT). */
GC_EXPORT ncclResult_t gcshim_barrier(ncclComm_t comm);
/* Writes the reports now (GCSHIM_REPORT), merged over the job like the one
 * at exit; statistics keep counting. Collective over the job's ranks for a
 * merged report: each rank calls it once per flush. */
GC_EXPORT void gcshim_report_flush(void);

#ifdef __cplusplus
}
#endif

#endif /* GCSHIM_GCSHIM_H */
