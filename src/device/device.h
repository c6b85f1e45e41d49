/*
 * device.h - device backends: the primitives the coordinator (src/coord)
 * builds every GroupCoordinator operation from.
 *
 * The coordinator owns argument checking, dims, output allocation, the
 * agreement round across ranks and the algorithms (all-gather on dim d =
 * all-gatherv of contiguous blocks + one strided copy per rank, ...). A
 * backend only moves contiguous buffers between the ranks of a group and
 * handles memory of its device type. Two backends:
 *   "host" (host.c): host memory, over the group's CPU group (gc_cpu_*).
 *   "nccl" (issue 4): CUDA memory, over an NCCL communicator.
 *
 * A group's backend is chosen once, at creation (struct gc_group's dev and
 * dev_state). Host tensors always move through the host backend over the
 * group's CPU group, whether or not the group has a device communicator
 * (as vLLM moves CPU tensors over its cpu_group); CUDA tensors need a
 * group whose dev is a CUDA backend. gc_device_for() makes that choice.
 *
 * Conventions for every primitive:
 *  - ranks (root, peer) are ranks in the group (0..g->size-1);
 *  - buffers are contiguous, of the backend's device type, already checked
 *    by the coordinator (sizes agree on every rank, no NULL with bytes > 0);
 *  - stream is the caller's stream (cudaStream_t) and ignored by "host";
 *  - they are collective over the group where the name says so, and report
 *    failures through gc_error() like every other internal function;
 *  - a group's operations are not called concurrently from several threads.
 */
#ifndef GC_DEVICE_H
#define GC_DEVICE_H

#include "core/core.h"
#include "core/group.h"

typedef struct gc_device_ops {
  const char *name;             /* "host", "nccl" */
  gc_device_type_t device_type; /* the memory its buffers live in */

  /* ---- group lifecycle: collective over the group, after g->cpu exists.
   * create stores the backend's state in *state (may be NULL). */
  gc_status_t (*create)(gc_group_t *g, void **state);
  void (*destroy)(gc_group_t *g, void *state);

  /* ---- communication on contiguous buffers ---- */
  /* count elements; every redop, AVG included (integers truncate toward
   * zero); fp16/bf16 accumulate in float32. send may equal recv. */
  gc_status_t (*allreduce)(gc_group_t *g, const void *send, void *recv, size_t count, gc_dtype_t dt,
                           gc_redop_t op, void *stream);
  /* bytes[i] from rank i, packed in rank order into recv (same bytes[] on
   * every rank). send never aliases recv. */
  gc_status_t (*allgatherv)(gc_group_t *g, const void *send, const size_t *bytes, void *recv,
                            void *stream);
  /* counts[i] elements of the reduction go to rank i; send holds
   * sum(counts) elements in rank order. */
  gc_status_t (*reduce_scatterv)(gc_group_t *g, const void *send, void *recv, const size_t *counts,
                                 gc_dtype_t dt, gc_redop_t op, void *stream);
  gc_status_t (*broadcast)(gc_group_t *g, void *buf, size_t bytes, int root, void *stream);
  /* Point to point, matched in order per (src, dst) pair. */
  gc_status_t (*send)(gc_group_t *g, const void *buf, size_t bytes, int peer, void *stream);
  gc_status_t (*recv)(gc_group_t *g, void *buf, size_t bytes, int peer, void *stream);
  /* bytes[i] from rank i into recv at root only (recv unused elsewhere). */
  gc_status_t (*gatherv)(gc_group_t *g, const void *send, const size_t *bytes, void *recv, int root,
                         void *stream);

  /* ---- memory of device_type (no group needed) ---- */
  /* The default allocator for outputs (gc_set_allocator(NULL)). */
  void *(*alloc)(size_t bytes, gc_device_t dev, void *stream);
  void (*free)(void *p, gc_device_t dev, void *stream);
  /* A scratch buffer of at least bytes, owned by the backend (g's state or
   * per thread), valid until the next scratch call with the same slot on
   * the same group and thread. Slots 0-1 are the coordinator's, 2-3 the
   * backend's own. Under CUDA graph capture it must come from buffers
   * prepared before capture. */
  gc_status_t (*scratch)(gc_group_t *g, int slot, size_t bytes, gc_device_t dev, void *stream,
                         void **out);
  /* height rows of width bytes: row i from src + i*spitch to dst + i*dpitch. */
  gc_status_t (*copy2d)(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                        size_t height, gc_device_t dev, void *stream);
  gc_status_t (*copy)(void *dst, const void *src, size_t bytes, gc_device_t dev, void *stream);
  gc_status_t (*memset)(void *dst, int value, size_t bytes, gc_device_t dev, void *stream);
  /* Waits until work queued on stream is done (host: nothing to wait for). */
  gc_status_t (*sync)(gc_device_t dev, void *stream);

  /* ---- optional (NULL: never) ----
   * True while stream is being captured into a CUDA graph: the coordinator
   * then skips every CPU-group step (agreement round, p2p handshake). */
  bool (*capturing)(void *stream);
  /* n0 x n1 rows of width bytes in one step: row (i, j) from
   * src + i*s0 + j*s1 to dst + i*d0 + j*d1 (every rank's block of a dim-1
   * all-gather at once). NULL: the coordinator calls copy2d per i. */
  gc_status_t (*copy3d)(void *dst, size_t d0, size_t d1, const void *src, size_t s0, size_t s1,
                        size_t width, size_t n1, size_t n0, gc_device_t dev, void *stream);
} gc_device_ops_t;

/* The backends built in. */
extern GC_INTERNAL const gc_device_ops_t gc_device_host;
extern GC_INTERNAL const gc_device_ops_t gc_device_nccl; /* nccl.c */

/* The backend named by gc_group_options_t.backend ("host", "nccl").
 * GC_ERR_UNSUPPORTED for a backend not built, GC_ERR_INVALID_ARG for an
 * unknown name. */
GC_INTERNAL gc_status_t gc_device_by_name(const char *name, const gc_device_ops_t **out);

/* The backend that moves g's tensors on dev: host memory -> gc_device_host
 * (over g's CPU group); CUDA -> g->dev when it is a CUDA backend, else
 * GC_ERR_UNSUPPORTED naming the group. */
GC_INTERNAL gc_status_t gc_device_for(const gc_group_t *g, gc_device_t dev,
                                      const gc_device_ops_t **out);

/* The backend that owns memory of dev.type, for allocation and freeing
 * without a group (gc_tensor_free). GC_ERR_UNSUPPORTED when none is built. */
GC_INTERNAL gc_status_t gc_device_memory(gc_device_t dev, const gc_device_ops_t **out);

#endif /* GC_DEVICE_H */
