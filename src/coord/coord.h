/* coord.h - state of the coordinator layer shared by its files. */
#ifndef GC_COORD_H
#define GC_COORD_H

#include "core/core.h"
#include "core/group.h"
#include "cpu/cpu.h"
#include "device/device.h"

typedef struct {
  bool initialized;
  int rank, size, local_rank;
  double timeout_s;
  char transport[8];
  char rendezvous[GC_NAME_MAX];
  gc_cpu_group_t *cpu;  /* the world's CPU group */
  uint64_t groups_made; /* tags subgroups made one after another */
} gc_world_t;

extern GC_INTERNAL gc_world_t gc_world;

/* GC_ERR_INVALID_ARG for NULL, GC_ERR_STATE for a destroyed group. */
GC_INTERNAL gc_status_t gc_group_check(const gc_group_t *g, const char *what);

/* ---- outputs (alloc.c) ---------------------------------------------------- */
/* Allocates t->data (gc_tensor_nbytes(t) bytes on t->device) through the
 * allocator; numel 0 leaves data NULL. */
GC_INTERNAL gc_status_t gc_coord_alloc(gc_tensor_t *t, void *stream);
/* Frees what gc_coord_alloc returned and sets t->data to NULL. */
GC_INTERNAL void gc_coord_release(gc_tensor_t *t, void *stream);

/* ---- argument checks and the agreement round (agree.c) ------------------- */
/* A valid input tensor: gc_tensor_check plus data for numel > 0. */
GC_INTERNAL gc_status_t gc_coord_check_input(const gc_tensor_t *t, const char *what);
/* An output: NULL data (to be allocated) or exactly want's dtype, shape
 * and device (then data must be non-NULL for numel > 0). */
/* sizes (one per rank of g; the rows each holds on the dim): non-negative,
 * summing without overflow into *total; this rank's equal to mine when
 * mine >= 0 (its input's rows). GC_ERR_INVALID_ARG naming what otherwise. */
GC_INTERNAL gc_status_t gc_coord_check_sizes(const gc_group_t *g, const int64_t *sizes,
                                             int64_t mine, int64_t *total, const char *what);
GC_INTERNAL gc_status_t gc_coord_check_output(const gc_tensor_t *out, const gc_tensor_t *want,
                                              const char *what);
/* Sets an output to allocate: want's dtype, shape and device, data NULL. */
GC_INTERNAL void gc_coord_shape_output(gc_tensor_t *out, const gc_tensor_t *want);

/* Signatures: a 64-bit hash of what must agree across ranks. */
#define GC_SIG_INIT GC_FNV_INIT
static inline uint64_t gc_sig_add(uint64_t h, const void *p, size_t n) { return gc_fnv(h, p, n); }
static inline uint64_t gc_sig_i64(uint64_t h, int64_t v) { return gc_sig_add(h, &v, sizeof v); }

/* The agreement round: every rank of g contributes (local, sig); all get
 * every rank's pair through one all-gather of 16 bytes per rank over the
 * CPU group. Returns local's error (its message kept) when this rank
 * failed, else an error naming the first rank that failed or whose
 * signature differs from rank 0's, else GC_OK. Skipped (returns local)
 * for one rank, while dev reports the stream capturing, or with
 * GCSHIM_CHECK=0. g must be valid (gc_group_check). */
GC_INTERNAL gc_status_t gc_coord_agree(gc_group_t *g, const gc_device_ops_t *dev, gc_status_t local,
                                       uint64_t sig, const char *what, void *stream);
/* True when the agreement round is on: GCSHIM_CHECK as the API reads it
 * (core/params.h: on unless set off). */
GC_INTERNAL bool gc_coord_agree_enabled(void);

/* The header every rank contributes to an agreement round: its verdict,
 * whether it fused the round into the data round, its signature. */
typedef struct {
  int32_t status;
  int32_t mode; /* 0: a round of its own; 1: fused with the data */
  uint64_t sig;
} gc_vote_t;

/* Every rank's header is at votes[r]. Returns local's error with msg when
 * local failed, else the same verdict as gc_coord_agree, else an error when
 * a rank's mode differs from mode. */
GC_INTERNAL gc_status_t gc_coord_verdict(gc_group_t *g, gc_status_t local, const char *msg,
                                         const void *const *votes, int mode, const char *what);

/* ---- the fused agreement (agree.c; docs/HOST_BACKEND.md) -----------------
 * For host tensors on a CPU group with in-place rounds (shm: round_cap),
 * an all-gather whose per-rank payload, or a reduce-scatter whose input,
 * fits gc_coord_fuse_limit(), or an all-reduce whose input fits
 * gc_coord_fuse_reduce_limit() (each rank then reduces n whole vectors),
 * runs ONE round of [gc_vote_t | payload] records written and read in
 * place in the transport's slots, instead of the agreement round followed
 * by the data round. The round is the transport's allgather of up to
 * round_cap bytes whatever lengths the ranks use: a rank whose arguments
 * differ (other lengths, or the plain 16-byte round) is still heard, every
 * header is read before any payload, and nobody hangs. */
#define GC_FUSE_REDUCE_MAX 8192 /* all-reduce: n reads of the vector per rank */
#define GC_FUSE_MAX_RANKS 64
#define GC_FUSE_HDR 16 /* sizeof(gc_vote_t); payloads start 16-aligned */
/* GCSHIM_FUSE_MAX (bytes per rank, 0 disables; default and bounds in
 * core/params.def). */
GC_INTERNAL size_t gc_coord_fuse_max(void);
/* Payload bytes a fused record may carry for d on g: 0 unless d is the host
 * backend, g has 2..64 ranks on a CPU group with in-place rounds and the
 * agreement round is on; else the smaller of gc_coord_fuse_max() and what
 * fits the round. The same on every rank of g with the same environment. */
GC_INTERNAL size_t gc_coord_fuse_limit(const gc_group_t *g, const gc_device_ops_t *d);
/* The same for all-reduce's input: at most GC_FUSE_REDUCE_MAX. */
GC_INTERNAL size_t gc_coord_fuse_reduce_limit(const gc_group_t *g, const gc_device_ops_t *d);

typedef struct {
  char *mine;                         /* this rank's record; payload at gc_fuse_off */
  const void *all[GC_FUSE_MAX_RANKS]; /* every rank's record, once exchanged */
} gc_fuse_t;
/* Where a payload of `bytes` starts in its record. Records start 16 bytes
 * into a page (cpu.h, round_begin): up to 32 bytes share the cache line
 * with the header (and the transport's flag); larger ones start on the
 * next page: a reader polling the flag's line while the writer streams the
 * payload into the lines right after it made 128 KiB copies 2x slower. */
#define GC_FUSE_BULK 4080
static inline size_t gc_fuse_off(size_t bytes) { return bytes <= 32 ? GC_FUSE_HDR : GC_FUSE_BULK; }
static inline const char *gc_fuse_payload(const gc_fuse_t *f, int r, size_t bytes) {
  return (const char *)f->all[r] + gc_fuse_off(bytes);
}
/* Starts the round: f->mine is where this rank writes its record (the
 * payload at gc_fuse_off, up to gc_coord_fuse_limit bytes). Call only when this rank's
 * local check passed; a rank that failed it runs gc_coord_agree instead. */
GC_INTERNAL gc_status_t gc_coord_fuse_begin(gc_group_t *g, gc_fuse_t *f);
/* Writes this rank's header, exchanges the records and returns the verdict;
 * on GC_OK f->all[r] holds rank r's record. Call gc_coord_fuse_end after
 * it whatever it returned, once the payloads were read. */
GC_INTERNAL gc_status_t gc_coord_fuse_exchange(gc_group_t *g, gc_fuse_t *f, uint64_t sig,
                                               const char *what);
GC_INTERNAL void gc_coord_fuse_end(gc_group_t *g);

/* Frees what gc_group_destroy kept of a group (gc_finalize, once every
 * group pointer is void). */
GC_INTERNAL void gc_group_release(void *gone);

#endif
