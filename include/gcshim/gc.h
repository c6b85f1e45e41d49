/*
 * gc.h - the GroupCoordinator API of gcshim.
 *
 * The operations of vLLM's GroupCoordinator for C programs: named process
 * groups with a CPU group (barriers, object exchange over shared memory or
 * MPI) and a device communicator (NCCL for CUDA tensors, the CPU group for
 * host tensors). Every function returning gc_status_t sets its outputs only
 * on success and, on failure, leaves a human message for gc_last_error().
 */
#ifndef GCSHIM_GC_H
#define GCSHIM_GC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GC_EXPORT __attribute__((visibility("default")))
#else
#define GC_EXPORT
#endif

/* ---- status and errors ------------------------------------------------ */

typedef enum {
  GC_OK = 0,
  GC_ERR_INVALID_ARG,
  GC_ERR_NOT_FOUND,
  GC_ERR_STATE,
  GC_ERR_TIMEOUT,
  GC_ERR_PEER_LOST,
  GC_ERR_NO_MEMORY,
  GC_ERR_SYSTEM,
  GC_ERR_NCCL,
  GC_ERR_CUDA,
  GC_ERR_UNSUPPORTED,
  GC_ERR_TRUNCATED,
  GC_ERR_CANCELLED,
  GC_ERR_INTERNAL
} gc_status_t;

/* The name of a status ("GC_ERR_TIMEOUT"); "GC_ERR_UNKNOWN" for other values. */
GC_EXPORT const char *gc_status_string(gc_status_t s);
/* The message of the last failure on this thread; "" when none. Never NULL. */
GC_EXPORT const char *gc_last_error(void);

/* ---- tensors ------------------------------------------------------------ */

typedef enum {
  GC_INT8,
  GC_UINT8,
  GC_INT32,
  GC_INT64,
  GC_FLOAT16,
  GC_BFLOAT16,
  GC_FLOAT32,
  GC_FLOAT64
} gc_dtype_t;
/* Bytes per element; 0 for an invalid value. */
GC_EXPORT size_t gc_dtype_size(gc_dtype_t t);

typedef enum { GC_SUM, GC_PROD, GC_MAX, GC_MIN, GC_AVG } gc_redop_t;

typedef enum { GC_DEVICE_HOST = 0, GC_DEVICE_CUDA = 1 } gc_device_type_t;
typedef struct {
  gc_device_type_t type;
  int index;
} gc_device_t;

#define GC_MAX_DIMS 8
typedef struct { /* contiguous, row-major */
  void *data;
  gc_dtype_t dtype;
  int ndim; /* 0..GC_MAX_DIMS; 0 is a scalar */
  int64_t shape[GC_MAX_DIMS];
  gc_device_t device;
} gc_tensor_t;
/* Number of elements; -1 for a malformed tensor (bad ndim, negative dim,
 * overflow of int64). */
GC_EXPORT int64_t gc_tensor_numel(const gc_tensor_t *t);
/* Bytes of the tensor; (size_t)-1 for a malformed tensor or overflow. */
GC_EXPORT size_t gc_tensor_nbytes(const gc_tensor_t *t);

typedef struct { /* where outputs the library allocates come from */
  void *(*alloc)(size_t bytes, gc_device_t dev, void *stream, void *ctx);
  void (*free)(void *p, gc_device_t dev, void *stream, void *ctx);
  void *ctx;
} gc_allocator_t; /* default: malloc / cudaMallocAsync */
/* Sets the allocator for library-allocated outputs; NULL restores the default. */
GC_EXPORT gc_status_t gc_set_allocator(const gc_allocator_t *a);
/* Frees a tensor's data that the library allocated and sets data to NULL. */
GC_EXPORT gc_status_t gc_tensor_free(gc_tensor_t *t, void *stream);

/* ---- world and groups ------------------------------------------------------ */

typedef struct {
  int rank, world_size, local_rank; /* -1: read from the environment */
  const char *cpu_transport;        /* "shm" (default, one host) or "mpi" */
  const char *rendezvous;           /* shm namespace; NULL: from env or a default */
  double timeout_s;                 /* <= 0: GCSHIM_TIMEOUT or 300 */
} gc_init_options_t;
/* Joins the world: every rank calls it with the same transport and
 * rendezvous. NULL: all from the environment. GC_ERR_STATE if already
 * initialised. */
GC_EXPORT gc_status_t gc_init(const gc_init_options_t *opts);
/* Leaves the world, destroying every group still alive. */
GC_EXPORT gc_status_t gc_finalize(void);
/* This process's world rank and the world's size; -1 before gc_init. */
GC_EXPORT int gc_world_rank(void);
GC_EXPORT int gc_world_size(void);

typedef struct gc_group gc_group_t;
typedef struct {
  const int *group_ranks; /* every group's world ranks, concatenated */
  const int *group_sizes; /* size of each group */
  int num_groups;         /* every process passes the same layout */
  int local_rank;         /* CUDA device index for this process */
  const char *backend;    /* "nccl" or "host": device communicator */
  bool use_device_communicator;
  bool use_message_queue_broadcaster;
  const char *group_name; /* base name; NULL -> "anonymous" */
} gc_group_options_t;

/* Collective over the world: creates the group of the layout this rank is
 * in, with its CPU group (and device communicator when asked). */
GC_EXPORT gc_status_t gc_group_new(const gc_group_options_t *opts, gc_group_t **out);
/* Destroys a group; its unique name stays reserved. */
GC_EXPORT gc_status_t gc_group_destroy(gc_group_t *g);
/* GC_ERR_NOT_FOUND for an unknown name, GC_ERR_STATE for a destroyed group. */
GC_EXPORT gc_status_t gc_group_lookup(const char *unique_name, gc_group_t **out);
GC_EXPORT const char *gc_group_name(const gc_group_t *g); /* unique: "tp:0" */
GC_EXPORT int gc_group_rank(const gc_group_t *g);         /* world rank */
GC_EXPORT int gc_group_rank_in_group(const gc_group_t *g);
GC_EXPORT int gc_group_world_size(const gc_group_t *g);
GC_EXPORT const int *gc_group_ranks(const gc_group_t *g); /* world ranks, group order */
GC_EXPORT int gc_group_first_rank(const gc_group_t *g);
GC_EXPORT int gc_group_last_rank(const gc_group_t *g);
GC_EXPORT bool gc_group_is_first_rank(const gc_group_t *g);
GC_EXPORT bool gc_group_is_last_rank(const gc_group_t *g);
GC_EXPORT int gc_group_next_rank(const gc_group_t *g); /* world rank, wraps */
GC_EXPORT int gc_group_prev_rank(const gc_group_t *g);

/* ---- operations ---------------------------------------------------------------
 * src, dst, reader_rank_in_group, writer_rank are ranks in the group. stream
 * is a cudaStream_t for CUDA tensors and ignored for host tensors. An output
 * whose data is NULL is allocated by the library; otherwise dtype, shape and
 * device must match exactly or the call fails with GC_ERR_INVALID_ARG before
 * any communication. Out-of-place ops never modify their input. */

GC_EXPORT gc_status_t gc_all_reduce(gc_group_t *g, const gc_tensor_t *in, gc_tensor_t *out,
                                    gc_redop_t op, void *stream);
GC_EXPORT gc_status_t gc_all_reduce_by_name(const char *group_name, const gc_tensor_t *in,
                                            gc_tensor_t *out, gc_redop_t op, void *stream);
/* dim < 0 counts from the end */
GC_EXPORT gc_status_t gc_all_gather(gc_group_t *g, const gc_tensor_t *in, int dim, gc_tensor_t *out,
                                    void *stream);
/* sizes[i] rows from group rank i; NULL: equal */
GC_EXPORT gc_status_t gc_all_gatherv(gc_group_t *g, const gc_tensor_t *in, int dim,
                                     const int64_t *sizes, gc_tensor_t *out, void *stream);
/* sum */
GC_EXPORT gc_status_t gc_reduce_scatter(gc_group_t *g, const gc_tensor_t *in, int dim,
                                        gc_tensor_t *out, void *stream);
GC_EXPORT gc_status_t gc_reduce_scatterv(gc_group_t *g, const gc_tensor_t *in, int dim,
                                         const int64_t *sizes, gc_tensor_t *out, void *stream);
/* out used at dst only */
GC_EXPORT gc_status_t gc_gather(gc_group_t *g, const gc_tensor_t *in, int dst, int dim,
                                gc_tensor_t *out, void *stream);
GC_EXPORT gc_status_t gc_broadcast(gc_group_t *g, gc_tensor_t *t, int src, void *stream);
/* dst -1: next rank */
GC_EXPORT gc_status_t gc_send(gc_group_t *g, const gc_tensor_t *t, int dst, void *stream);
/* t gives dtype, shape, device; src -1: previous rank */
GC_EXPORT gc_status_t gc_recv(gc_group_t *g, gc_tensor_t *t, int src, void *stream);
/* CPU group only */
GC_EXPORT gc_status_t gc_barrier(gc_group_t *g);

/* Objects are byte strings; received ones are malloc'd, caller frees.
   At src, out/out_len may be NULL and are left untouched. In a group made
   with use_message_queue_broadcaster, gc_broadcast_object goes through its
   queue (rank 0 writes): src must be 0, and rank 0 does not wait for the
   others. */
GC_EXPORT gc_status_t gc_broadcast_object(gc_group_t *g, const void *buf, size_t len, int src,
                                          void **out, size_t *out_len);
GC_EXPORT gc_status_t gc_broadcast_object_list(gc_group_t *g, const void *const *bufs,
                                               const size_t *lens, int n, int src, void ***out,
                                               size_t **out_lens);
GC_EXPORT gc_status_t gc_send_object(gc_group_t *g, const void *buf, size_t len, int dst);
GC_EXPORT gc_status_t gc_recv_object(gc_group_t *g, int src, void **out, size_t *out_len);

/* ---- tensor dicts ------------------------------------------------------------ */

typedef struct gc_tensor_dict gc_tensor_dict_t; /* ordered; owns keys and byte values */
typedef enum {
  GC_VALUE_TENSOR,
  GC_VALUE_BYTES,
  GC_VALUE_INT,
  GC_VALUE_FLOAT,
  GC_VALUE_NONE
} gc_value_kind_t;
GC_EXPORT gc_status_t gc_tensor_dict_new(gc_tensor_dict_t **out);
GC_EXPORT void gc_tensor_dict_free(gc_tensor_dict_t *d); /* frees tensors it allocated */
GC_EXPORT gc_status_t gc_tensor_dict_set_tensor(gc_tensor_dict_t *d, const char *key,
                                                const gc_tensor_t *t);
GC_EXPORT gc_status_t gc_tensor_dict_set_bytes(gc_tensor_dict_t *d, const char *key, const void *b,
                                               size_t n);
GC_EXPORT gc_status_t gc_tensor_dict_set_int(gc_tensor_dict_t *d, const char *key, int64_t v);
GC_EXPORT gc_status_t gc_tensor_dict_set_float(gc_tensor_dict_t *d, const char *key, double v);
GC_EXPORT gc_status_t gc_tensor_dict_set_none(gc_tensor_dict_t *d, const char *key);
GC_EXPORT size_t gc_tensor_dict_size(const gc_tensor_dict_t *d);
GC_EXPORT const char *gc_tensor_dict_key(const gc_tensor_dict_t *d, size_t i);
GC_EXPORT gc_value_kind_t gc_tensor_dict_kind(const gc_tensor_dict_t *d, size_t i);
GC_EXPORT gc_status_t gc_tensor_dict_get_tensor(const gc_tensor_dict_t *d, const char *key,
                                                gc_tensor_t *out);
GC_EXPORT gc_status_t gc_tensor_dict_get_bytes(const gc_tensor_dict_t *d, const char *key,
                                               const void **b, size_t *n);
GC_EXPORT gc_status_t gc_tensor_dict_get_int(const gc_tensor_dict_t *d, const char *key,
                                             int64_t *v);
GC_EXPORT gc_status_t gc_tensor_dict_get_float(const gc_tensor_dict_t *d, const char *key,
                                               double *v);

/* src: d filled; out may be NULL and is untouched. others: d NULL, *out a new dict. */
GC_EXPORT gc_status_t gc_broadcast_tensor_dict(gc_group_t *g, const gc_tensor_dict_t *d, int src,
                                               gc_group_t *metadata_group, gc_tensor_dict_t **out,
                                               void *stream);
/* all_gather_group: the slicing optimisation; NULL disables it.
   overrides: keys whose slicing is forced on/off, or NULL. */
typedef struct {
  const char *key;
  bool use_all_gather;
} gc_ag_override_t;
GC_EXPORT gc_status_t gc_send_tensor_dict(gc_group_t *g, const gc_tensor_dict_t *d, int dst,
                                          gc_group_t *all_gather_group,
                                          const gc_ag_override_t *overrides, int n_overrides,
                                          void *stream);
GC_EXPORT gc_status_t gc_recv_tensor_dict(gc_group_t *g, int src, gc_group_t *all_gather_group,
                                          const gc_ag_override_t *overrides, int n_overrides,
                                          gc_tensor_dict_t **out, void *stream);

/* ---- graph capture, buffers, message queues, MoE ------------------------------ */

typedef struct {
  void *stream;
  /* Added after the contract's first field (zero-initialise the struct):
   * when gc_graph_capture_begin started the capture itself (the stream was
   * not capturing yet), gc_graph_capture_end ends it and leaves the
   * instantiated graph here (cudaGraphExec_t / cudaGraph_t). When the caller
   * captures on its own (begin found the stream capturing), both stay NULL. */
  void *graph_exec;
  void *graph;
  int flags;          /* internal: what begin created */
} gc_graph_capture_t; /* stream NULL: one is created */
GC_EXPORT gc_status_t gc_graph_capture_begin(gc_group_t *g, gc_graph_capture_t *ctx);
GC_EXPORT gc_status_t gc_graph_capture_end(gc_group_t *g, gc_graph_capture_t *ctx);
/* Launches the graph gc_graph_capture_end made on stream (NULL: ctx->stream). */
GC_EXPORT gc_status_t gc_graph_replay(const gc_graph_capture_t *ctx, void *stream);
/* Destroys the graph and the stream begin created; ctx can be reused. */
GC_EXPORT gc_status_t gc_graph_release(gc_graph_capture_t *ctx);

typedef struct {
  size_t max_all_reduce_bytes; /* largest all-reduce issued under capture */
  size_t max_dispatch_bytes;   /* largest dispatch/combine payload */
} gc_buffer_plan_t;
GC_EXPORT gc_status_t gc_group_prepare_buffers(gc_group_t *g, const gc_buffer_plan_t *plan);

/* Message queues: one writer, any number of readers on this host, over a
 * ring of chunks in a shared-memory segment the writer makes (vLLM's
 * MessageQueue; docs/MQ.md). Every message reaches every reader, in order;
 * messages of any size (larger ones stream through several chunks). An
 * end is used by one thread at a time; gc_mq_cancel may come from another.
 * The ring is GCSHIM_MQ_CHUNKS (16) chunks of GCSHIM_MQ_CHUNK_BYTES (256 KiB)
 * unless gc_mq_create is told otherwise.
 *
 * blocking (per end): true, enqueue/dequeue wait up to timeout_s for room
 * or a message; false, they never wait for one to start and return
 * GC_ERR_TIMEOUT ("would block") at once, whatever timeout_s says. Either
 * way a message already under way is completed (waiting up to
 * GCSHIM_TIMEOUT per chunk), and a failure in its middle (timeout, cancel,
 * a dead peer) leaves the queue unusable for every end (the failure's
 * status from then on). Creation always returns with every reader attached
 * (vLLM's wait_until_ready), blocking or not. */
#define GC_MQ_MAX_READERS 1024
typedef struct gc_mq gc_mq_t;
typedef struct {
  unsigned char bytes[256];
} gc_mq_handle_t; /* opaque, copyable */
/* Collective over g. Without external_writer_handle, group rank writer_rank
 * creates the queue and every other rank attaches as a reader (reader
 * slots in group order, skipping the writer). With one (read at
 * writer_rank; others may pass NULL), the queue exists already (made by a
 * process outside the group with gc_mq_create and at least
 * gc_group_world_size(g) readers) and every rank attaches as reader
 * rank_in_group. A failure on any rank fails the call on every rank. */
GC_EXPORT gc_status_t gc_group_create_mq_broadcaster(gc_group_t *g, int writer_rank,
                                                     const gc_mq_handle_t *external_writer_handle,
                                                     bool blocking, gc_mq_t **out);
/* Collective over g: every rank but reader_rank_in_group creates a queue it
 * writes, with exactly one reader; the reader attaches to all of them.
 * At a writer: out[0] is its queue and *handles (when handles is not NULL)
 * is set to NULL. At the reader: out must have gc_group_world_size(g)
 * entries; out[i] is the reading end of rank i's queue (out[reader] NULL);
 * *handles (when not NULL) is a malloc'd array of that many handles,
 * handles[i] of rank i's queue (the reader's own zeroed); free() it. */
GC_EXPORT gc_status_t gc_group_create_single_reader_mq_broadcasters(
    gc_group_t *g, int reader_rank_in_group, bool blocking, gc_mq_t **out,
    gc_mq_handle_t **handles /* filled at the reader */);
/* Writer only (a reader gets GC_ERR_INVALID_ARG): copies len bytes in.
 * timeout_s < 0 waits forever (a warning every 60 s), 0 does not wait. */
GC_EXPORT gc_status_t gc_mq_enqueue(gc_mq_t *q, const void *buf, size_t len, double timeout_s);
/* Readers only: the next message as a malloc'd copy (free() it; never NULL,
 * also for 0 bytes) and its length. GC_ERR_TIMEOUT when none came in time,
 * GC_ERR_PEER_LOST when the writer died, GC_ERR_STATE once the writer
 * destroyed its end and every message it wrote was read. */
/* timeout_s < 0: wait forever (with periodic warnings) */
GC_EXPORT gc_status_t gc_mq_dequeue(gc_mq_t *q, void **out, size_t *out_len, double timeout_s);
/* The queue's handle (the same at every end). */
GC_EXPORT gc_status_t gc_mq_get_handle(const gc_mq_t *q, gc_mq_handle_t *out);
/* Wakes this end's waiter (another thread) with GC_ERR_CANCELLED; every
 * later enqueue/dequeue on this end fails the same way until destroy. */
GC_EXPORT gc_status_t gc_mq_cancel(gc_mq_t *q); /* wakes waiters with GC_ERR_CANCELLED */
/* Unmaps this end (no thread may be inside it). The writer's end closes the
 * queue: readers still get what was written, then GC_ERR_STATE; a reader's
 * end leaves it: the writer stops waiting for that reader. The segment's
 * name is gone from /dev/shm once every reader attached, or the writer
 * destroyed its end or died. */
GC_EXPORT gc_status_t gc_mq_destroy(gc_mq_t *q);
/* Added: a queue outside any group. n_readers 0..GC_MQ_MAX_READERS;
 * chunk_bytes 0 / n_chunks 0: the defaults above. This process is the
 * writer; readers attach with gc_mq_attach, or a group with
 * gc_group_create_mq_broadcaster(..., &handle, ...). */
GC_EXPORT gc_status_t gc_mq_create(int n_readers, size_t chunk_bytes, int n_chunks, bool blocking,
                                   gc_mq_t **out);
/* Added: attaches this process as reader slot `reader` of the queue the
 * handle names (same user, same host). GC_ERR_INVALID_ARG for a corrupt or
 * foreign handle or a taken slot, GC_ERR_NOT_FOUND when the segment is
 * gone. */
GC_EXPORT gc_status_t gc_mq_attach(const gc_mq_handle_t *handle, int reader, bool blocking,
                                   gc_mq_t **out);

/* MoE (vLLM's AgRsAll2AllManager). sizes[i]: tokens held by group rank i
 * (all_gatherv / reduce_scatterv rows); NULL: equal. dispatch all-gathers
 * hidden_states, router_logits and each of the n_extra (<= 62) extra tensors on dim
 * 0 (every one has sizes[rank] rows), into out_hidden, out_logits and
 * out_extra[0..n_extra) (allocated when their data is NULL, else checked);
 * combine reduce-scatters (sum) hidden_states on dim 0 (sum(sizes) rows)
 * into out (sizes[rank] rows). Every argument is checked on every rank
 * before any data moves; a wrong call fails on every rank. The caller
 * passes the group (vLLM picks its EP group when is_sequence_parallel,
 * else its DP group): is_sequence_parallel changes nothing here but must
 * be the same on every rank. Under CUDA graph capture the outputs must be
 * allocated; dim-0 gathers and reductions need no scratch memory. */
GC_EXPORT gc_status_t gc_dispatch(gc_group_t *g, const gc_tensor_t *hidden_states,
                                  const gc_tensor_t *router_logits, const gc_tensor_t *extra,
                                  int n_extra, const int64_t *sizes, bool is_sequence_parallel,
                                  gc_tensor_t *out_hidden, gc_tensor_t *out_logits,
                                  gc_tensor_t *out_extra, void *stream);
GC_EXPORT gc_status_t gc_combine(gc_group_t *g, const gc_tensor_t *hidden_states,
                                 const int64_t *sizes, bool is_sequence_parallel, gc_tensor_t *out,
                                 void *stream);

#ifdef __cplusplus
}
#endif
#endif /* GCSHIM_GC_H */
