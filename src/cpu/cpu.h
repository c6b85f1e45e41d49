/*
 * cpu.h - CPU groups: the control plane every group has.
 *
 * One interface, two transports chosen once at creation: "shm" (one host,
 * a segment in /dev/shm) and "mpi" (Open MPI, many hosts). Ranks here are
 * ranks in the CPU group (0..size-1). Every call is collective over the
 * ranks it names, bounded by the group's timeout (GC_ERR_TIMEOUT) and
 * notices dead peers (GC_ERR_PEER_LOST).
 */
#ifndef GC_CPU_H
#define GC_CPU_H

#include "core/core.h"

typedef struct gc_cpu_group gc_cpu_group_t;

typedef struct gc_cpu_ops {
  const char *name; /* "shm", "mpi" */
  /* allreduce/reduce_scatter reduce every element over all ranks at once
   * with gc_reduce_multi in rank order: fp16/bf16 sums and products then
   * accumulate in float32 and round once (no widening needed). */
  bool reduce_multi;
  gc_status_t (*barrier)(gc_cpu_group_t *g);
  /* len bytes of buf at root to every rank's buf. */
  gc_status_t (*broadcast)(gc_cpu_group_t *g, void *buf, size_t len, int root);
  /* Point to point, matched in order per (src, dst) pair. */
  gc_status_t (*send)(gc_cpu_group_t *g, const void *buf, size_t len, int dst);
  gc_status_t (*recv)(gc_cpu_group_t *g, void *buf, size_t len, int src);
  /* lens[i] bytes from rank i, packed in rank order into recv (at root only
   * for gatherv; recv may be NULL elsewhere). lens is the same on every rank. */
  gc_status_t (*gatherv)(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv,
                         int root);
  gc_status_t (*allgatherv)(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv);
  /* Equal sizes: len bytes from each rank. */
  gc_status_t (*allgather)(gc_cpu_group_t *g, const void *send, size_t len, void *recv);
  /* Element-wise reductions; NULL -> the generic version in cpu.c. send may
   * equal recv. reduce_scatter: counts[i] elements go to rank i. */
  gc_status_t (*allreduce)(gc_cpu_group_t *g, const void *send, void *recv, size_t count,
                           gc_dtype_t dt, gc_redop_t op);
  gc_status_t (*reduce_scatter)(gc_cpu_group_t *g, const void *send, void *recv,
                                const size_t *counts, gc_dtype_t dt, gc_redop_t op);
  /* Collective over the members named: ranks (parent ranks, in the new
   * group's order) of n members; tag tells apart groups made at once. */
  gc_status_t (*subgroup)(gc_cpu_group_t *parent, const int *ranks, int n, const char *tag,
                          gc_cpu_group_t **out);
  void (*destroy)(gc_cpu_group_t *g);
  /* Optional (NULL when round_cap is 0): one all-gather round read in
   * place, records of at most round_cap bytes. round_begin returns where
   * this rank writes its record (16-byte aligned); round_exchange publishes
   * it, waits for every rank's and points all[r] at rank r's record;
   * round_end gives the records back. Nothing else may run on the group
   * between begin and end. Records start 16 bytes into a page, as
   * small allgather data does: the round is an allgather of up to round_cap
   * bytes, so ranks may mix the two in one round (each reader sees the
   * start of every writer's bytes, whatever length the writer used). */
  gc_status_t (*round_begin)(gc_cpu_group_t *g, void **mine);
  gc_status_t (*round_exchange)(gc_cpu_group_t *g, const void **all);
  void (*round_end)(gc_cpu_group_t *g);
} gc_cpu_ops_t;

struct gc_cpu_group {
  const gc_cpu_ops_t *ops;
  int rank, size;
  double timeout_s;
  void *impl;       /* the transport's own state */
  size_t round_cap; /* bytes of an in-place round (ops->round_*); 0: none */
};

/* A shm group from a rendezvous key (any string; made into a /dev/shm name)
 * and a member count. Every member calls it with the same key and size and
 * its own rank; returns once all have attached (the segment is then
 * unlinked), or GC_ERR_TIMEOUT / GC_ERR_PEER_LOST. */
GC_INTERNAL gc_status_t gc_cpu_shm_create(const char *key, int rank, int size, double timeout_s,
                                          gc_cpu_group_t **out);
/* The same, with every member's pid known beforehand (expect[rank], 0 for
 * unknown): a member that dies before it attaches is noticed at once
 * (GC_ERR_PEER_LOST), not at the timeout. */
GC_INTERNAL gc_status_t gc_cpu_shm_create_expect(const char *key, int rank, int size,
                                                 double timeout_s, const pid_t *expect,
                                                 gc_cpu_group_t **out);
/* The MPI world (MPI_Init_thread when MPI is not initialised yet).
 * GC_ERR_UNSUPPORTED when built without MPI. */
GC_INTERNAL gc_status_t gc_cpu_mpi_world(double timeout_s, gc_cpu_group_t **out);
/* True when the MPI transport is built in. */
GC_INTERNAL bool gc_cpu_mpi_available(void);
/* Finalises MPI if gc_cpu_mpi_world initialised it. */
GC_INTERNAL void gc_cpu_mpi_finalize(void);

/* Dispatch: these check arguments (ranks in range, NULL buffers with
 * non-zero length) and call the transport, or the generic versions. */
GC_INTERNAL gc_status_t gc_cpu_barrier(gc_cpu_group_t *g);
GC_INTERNAL gc_status_t gc_cpu_broadcast(gc_cpu_group_t *g, void *buf, size_t len, int root);
GC_INTERNAL gc_status_t gc_cpu_send(gc_cpu_group_t *g, const void *buf, size_t len, int dst);
GC_INTERNAL gc_status_t gc_cpu_recv(gc_cpu_group_t *g, void *buf, size_t len, int src);
GC_INTERNAL gc_status_t gc_cpu_gatherv(gc_cpu_group_t *g, const void *send, const size_t *lens,
                                       void *recv, int root);
GC_INTERNAL gc_status_t gc_cpu_allgather(gc_cpu_group_t *g, const void *send, size_t len,
                                         void *recv);
GC_INTERNAL gc_status_t gc_cpu_allgatherv(gc_cpu_group_t *g, const void *send, const size_t *lens,
                                          void *recv);
GC_INTERNAL gc_status_t gc_cpu_allreduce(gc_cpu_group_t *g, const void *send, void *recv,
                                         size_t count, gc_dtype_t dt, gc_redop_t op);
GC_INTERNAL gc_status_t gc_cpu_reduce_scatter(gc_cpu_group_t *g, const void *send, void *recv,
                                              const size_t *counts, gc_dtype_t dt, gc_redop_t op);
GC_INTERNAL gc_status_t gc_cpu_subgroup(gc_cpu_group_t *parent, const int *ranks, int n,
                                        const char *tag, gc_cpu_group_t **out);
GC_INTERNAL void gc_cpu_destroy(gc_cpu_group_t *g);

#endif /* GC_CPU_H */
