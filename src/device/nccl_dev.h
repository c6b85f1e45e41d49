/* nccl_dev.h - what the nccl backend (nccl.c) offers beyond gc_device_ops_t:
 * for gc_group_prepare_buffers, graph capture and the tests. */
#ifndef GC_NCCL_DEV_H
#define GC_NCCL_DEV_H

#include "core/core.h"

/* True while stream is capturing a CUDA graph (false when the driver cannot
 * say). One driver query, no synchronization. */
GC_INTERNAL bool gc_nccl_capturing(void *stream);

/* p[i] /= d for n integers of dtype dt on CUDA device `device`, truncating
 * toward zero, enqueued on stream (capture-safe: one kernel launch). The
 * integer half of GC_AVG. GC_ERR_CUDA when the kernels cannot be loaded. */
GC_INTERNAL gc_status_t gc_nccl_divide(void *p, size_t n, gc_dtype_t dt, long long d, int device,
                                       void *stream);

/* The group's ncclComm_t (as void *) when g's device communicator is the nccl
 * backend's, else NULL: for benchmarks comparing against direct NCCL calls. */
struct gc_group;
GC_INTERNAL void *gc_nccl_group_comm(const struct gc_group *g);

#endif
