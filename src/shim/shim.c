/*
 * shim.c - the exported NCCL API of libgcshim.so: one wrapper per line of
 * nccl_api.def, all with the anatomy described in shim.h. Only the ncclX
 * names are exported (never pncclX); everything else stays hidden.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/stats.h"
#include "shim/shim.h"

GC_TLS_HOT _Thread_local gc_shim_tls_t gc_shim_tls;

uint32_t gc_shim_time_every = GC_SHIM_TIME_EVERY_DEFAULT;

int gc_shim_switches_init(void) {
  int sw = GC_SW_READ;
  if (gc_param_GCSHIM_DISABLE()) sw |= GC_SW_DISABLE;
  if (gc_param_check_shim()) sw |= GC_SW_CHECK;
  if (!gc_param_GCSHIM_CAPTURED()) sw |= GC_SW_NO_CAPTURE_QUERY;
  if (gc_trace_on()) sw |= GC_SW_TRACE;
  gc_shim_time_every = (uint32_t)gc_param_GCSHIM_TIME_EVERY();
  int zero = 0; /* a GC_SW_NO_CUDA set meanwhile stays */
  if (!atomic_compare_exchange_strong(&GC_SHIM_SWITCHES, &zero, sw))
    return atomic_load(&GC_SHIM_SWITCHES);
  return sw;
}

/* ---- the slow path: the real entry point is not there -------------------- */

static _Atomic unsigned char warned[GC_NCCL_API_COUNT];

/* Sets the message (gc_last_error) and warns once per entry point. */
static GC_NOINLINE gc_status_t unavailable(gc_nccl_id_t id) {
  gc_status_t s = gc_nccl_require(id);
  if (!atomic_exchange_explicit(&warned[id], 1, memory_order_relaxed))
    GC_WARN("%s: %s", gc_nccl_api[id].name, gc_last_error());
  return s;
}

static GC_NOINLINE ncclResult_t unavailable_res(gc_nccl_id_t id) {
  switch (unavailable(id)) {
    case GC_ERR_UNSUPPORTED:
      return ncclInvalidUsage;
    case GC_ERR_NOT_FOUND:
      return ncclSystemError;
    default:
      return ncclInternalError;
  }
}

static GC_NOINLINE const char *unavailable_str(gc_nccl_id_t id) {
  static _Thread_local char text[512];
  unavailable(id);
  snprintf(text, sizeof text, "gcshim: %s", gc_last_error());
  return text;
}

static GC_NOINLINE void unavailable_void(gc_nccl_id_t id) { unavailable(id); }

/* ---- the wrappers ----------------------------------------------------------- */

/* ---- what the hooks see of each call -------------------------------------
 * GC_SHIM_ARGS_<category>(name, c) fills the gc_shim_call_t from the
 * wrapper's own parameters: nothing for queries, memory, groups and
 * reduction operators; per entry point for the rest. */
#define GC_SHIM_ARGS_query(name, c)
#define GC_SHIM_ARGS_mem(name, c)
#define GC_SHIM_ARGS_group(name, c)
#define GC_SHIM_ARGS_redop(name, c)
#define GC_SHIM_ARGS_init(name, c) GC_SHIM_ARGS_##name(c)
#define GC_SHIM_ARGS_comm(name, c) GC_SHIM_ARGS_##name(c)

/* Collectives and point-to-point, one row each: F(c, shortest path, count,
 * datatype, redop, root). The shortest path (shim.h gc_shim_fast_ok) holds
 * no depth across the call, so it serves only the entry points NCCL never
 * calls itself through an exported name (ncclBcast calls ncclBroadcast;
 * AlltoAll, Gather and Scatter may be made of Send/Recv). */
#define GC_SHIM_COLL_Reduce(F, c) F(c, 1, count, datatype, op, root)
#define GC_SHIM_COLL_Bcast(F, c) F(c, 0, count, datatype, -1, root)
#define GC_SHIM_COLL_Broadcast(F, c) F(c, 1, count, datatype, -1, root)
#define GC_SHIM_COLL_AllReduce(F, c) F(c, 1, count, datatype, op, -1)
#define GC_SHIM_COLL_ReduceScatter(F, c) F(c, 1, recvcount, datatype, op, -1)
#define GC_SHIM_COLL_AllGather(F, c) F(c, 1, sendcount, datatype, -1, -1)
#define GC_SHIM_COLL_AlltoAll(F, c) F(c, 0, count, datatype, -1, -1)
#define GC_SHIM_COLL_Gather(F, c) F(c, 0, count, datatype, -1, root)
#define GC_SHIM_COLL_Scatter(F, c) F(c, 0, count, datatype, -1, root)
#define GC_SHIM_COLL_Send(F, c) F(c, 1, count, datatype, -1, peer)
#define GC_SHIM_COLL_Recv(F, c) F(c, 1, count, datatype, -1, peer)
#define GC_SHIM_COLL_ARGS(c, fast, n, dt, op, rt)                                      \
  ((c)->comm = comm, (c)->count = (n), (c)->dtype = (int)(dt), (c)->redop = (int)(op), \
   (c)->root = (rt), (c)->stream = (void *)stream)
#define GC_SHIM_COLL_FAST(c, fast, n, dt, op, rt) (fast)
#define GC_SHIM_COLL_BYTES(c, fast, n, dt, op, rt) ((uint64_t)(n)*gc_shim_dt_size(dt))
#define GC_SHIM_ARGS_coll(name, c) GC_SHIM_COLL_##name(GC_SHIM_COLL_ARGS, c)
#define GC_SHIM_ARGS_p2p(name, c) GC_SHIM_COLL_##name(GC_SHIM_COLL_ARGS, c)

#define GC_SHIM_ARGS_GetUniqueId(c)
#define GC_SHIM_ARGS_CommInitRank(c) \
  ((c)->newcomm = comm, (c)->nranks = nranks, (c)->rank = rank, (c)->uid = &commId)
#define GC_SHIM_ARGS_CommInitRankConfig(c) (GC_SHIM_ARGS_CommInitRank(c), (c)->config = config)
#define GC_SHIM_ARGS_CommInitRankScalable(c)                         \
  ((c)->newcomm = newcomm, (c)->nranks = nranks, (c)->rank = myrank, \
   (c)->uid = nId > 0 ? commIds : NULL, (c)->config = config)
#define GC_SHIM_ARGS_CommInitAll(c) \
  ((c)->newcomm = comm, (c)->nranks = ndev, (c)->devlist = devlist)
#define GC_SHIM_ARGS_CommSplit(c)                                                \
  ((c)->comm = comm, (c)->color = color, (c)->key = key, (c)->newcomm = newcomm, \
   (c)->config = config)
#define GC_SHIM_ARGS_CommShrink(c)                                                        \
  ((c)->comm = comm, (c)->exclude = excludeRanksList, (c)->n_exclude = excludeRanksCount, \
   (c)->newcomm = newcomm, (c)->config = config, (c)->shrink_flags = shrinkFlags)
#define GC_SHIM_ARGS_CommFinalize(c) ((c)->comm = comm)
#define GC_SHIM_ARGS_CommDestroy(c) ((c)->comm = comm)
#define GC_SHIM_ARGS_CommAbort(c) ((c)->comm = comm)
#define GC_SHIM_ARGS_CommRevoke(c) ((c)->comm = comm)
#define GC_SHIM_ARGS_CommGetAsyncError(c) ((c)->comm = comm, (c)->async_error = asyncError)

/* ---- the wrappers ----------------------------------------------------------- */

/* The call record: collectives and point-to-point set only what their hooks
 * read (zeroing the whole record costs more than the rest of the hot path);
 * everything else starts from a full initializer. */
#define GC_SHIM_PREP_FAST(c, s) \
  ((c)->sw = (s), (c)->t0 = 0, (c)->captured = false, (c)->sc = NULL, (c)->e = NULL)
#define GC_SHIM_PREP_FULL(c, s) (*(c) = (gc_shim_call_t)GC_SHIM_CALL_INIT, (c)->sw = (s))
#define GC_SHIM_PREP_init GC_SHIM_PREP_FULL
#define GC_SHIM_PREP_comm GC_SHIM_PREP_FULL
#define GC_SHIM_PREP_query GC_SHIM_PREP_FULL
#define GC_SHIM_PREP_mem GC_SHIM_PREP_FULL
#define GC_SHIM_PREP_group GC_SHIM_PREP_FULL
#define GC_SHIM_PREP_redop GC_SHIM_PREP_FULL
#define GC_SHIM_CALL_INIT \
  { .dtype = -1, .redop = -1, .root = -1, .rank = -1, .color = -3 }
#define GC_SHIM_RESULT_res(r) ((int)(r))
#define GC_SHIM_RESULT_str(r) 0

#define GC_SHIM_WRAP_res(name, ret, cat, params, args)                                   \
  GC_EXPORT ret nccl##name params {                                                      \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name))                  \
      return unavailable_res(GC_NCCL_ID_##name);                                         \
    int sw = gc_shim_switches();                                                         \
    if (gc_shim_tls.depth > 0 || (sw & GC_SW_DISABLE)) return gc_nccl_real.fn.name args; \
    gc_shim_call_t call;                                                                 \
    GC_SHIM_PREP_##cat(&call, sw);                                                       \
    GC_SHIM_ARGS_##cat(name, &call);                                                     \
    gc_shim_tls.depth++;                                                                 \
    int veto = gc_shim_enter(GC_NCCL_ID_##name, &call);                                  \
    ret r = veto ? (ret)veto : gc_nccl_real.fn.name args;                                \
    gc_shim_leave(GC_NCCL_ID_##name, &call, (int)r);                                     \
    gc_shim_tls.depth--;                                                                 \
    return r;                                                                            \
  }
/* Collectives and point-to-point: the exported function is the shortest
 * path (below), full_X the full wrapper with shim.h's fast hooks inline
 * (one thread-local access). GC_PIN keeps a thread-local address in a
 * register or the stack (the compiler would otherwise call __tls_get_addr
 * again at each use). */
#define GC_PIN(p) __asm__("" : "+r"(p))
#define GC_SHIM_WRAP_coll(name, ret, cat, params, args)                                            \
  static GC_NOINLINE ret full_##name params {                                                      \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name))                            \
      return unavailable_res(GC_NCCL_ID_##name);                                                   \
    int sw = gc_shim_switches();                                                                   \
    gc_shim_tls_t *t = &gc_shim_tls;                                                               \
    gc_stats_thread_t **self = &gc_stats_self;                                                     \
    GC_PIN(t);                                                                                     \
    GC_PIN(self);                                                                                  \
    if (t->depth > 0 || (sw & GC_SW_DISABLE)) return gc_nccl_real.fn.name args;                    \
    gc_shim_call_t call;                                                                           \
    GC_SHIM_PREP_FAST(&call, sw);                                                                  \
    GC_SHIM_ARGS_##cat(name, &call);                                                               \
    t->depth++;                                                                                    \
    int veto = gc_shim_coll_enter(GC_NCCL_ID_##name, &call, t, *self);                             \
    ret r = veto ? (ret)veto : gc_nccl_real.fn.name args;                                          \
    gc_shim_coll_leave(GC_NCCL_ID_##name, &call, (int)r);                                          \
    t->depth--;                                                                                    \
    return r;                                                                                      \
  }                                                                                                \
  GC_EXPORT ret nccl##name params {                                                                \
    int sw = atomic_load_explicit(&GC_SHIM_SWITCHES, memory_order_relaxed);                        \
    if (GC_UNLIKELY(sw & GC_SW_DISABLE)) {                                                         \
      if (atomic_load_explicit(&GC_NCCL_STATE, memory_order_acquire) == 1 && gc_nccl_real.fn.name) \
        return gc_nccl_real.fn.name args;                                                          \
      return full_##name args; /* loads NCCL, or says why not */                                   \
    }                                                                                              \
    if (GC_SHIM_COLL_##name(GC_SHIM_COLL_FAST, _)) {                                               \
      gc_shim_tls_t *t = &gc_shim_tls;                                                             \
      if (gc_shim_fast_ok(sw, t, comm, GC_NCCL_ID_##name)) {                                       \
        gc_stats_entry_add(t->c_e, GC_SHIM_COLL_##name(GC_SHIM_COLL_BYTES, _), false);             \
        return gc_nccl_real.fn.name args;                                                          \
      }                                                                                            \
    }                                                                                              \
    return full_##name args;                                                                       \
  }
/* The shortest path (shim.h gc_shim_fast_ok): the call is counted before
 * the real one, which is then a tail call (the table's second column).
 * Every way out of the exported function is a tail call (GCSHIM_DISABLE
 * before NCCL is loaded goes through full_X, which loads it), so it calls
 * nothing but the thread-local look-up. The real entry point needs no NULL
 * check there: only full_X, after finding it, fills the thread's cache. */
#define GC_SHIM_WRAP_res_coll GC_SHIM_WRAP_coll
#define GC_SHIM_WRAP_res_p2p GC_SHIM_WRAP_coll
#define GC_SHIM_WRAP_res_init GC_SHIM_WRAP_res
#define GC_SHIM_WRAP_res_comm GC_SHIM_WRAP_res
#define GC_SHIM_WRAP_res_query GC_SHIM_WRAP_res
#define GC_SHIM_WRAP_res_mem GC_SHIM_WRAP_res
/* Groups: the application's depth kept in the thread's block (one
 * thread-local access, no call record); the outermost end hands the
 * creations queued inside it to adopt.c, only when there are some. NCCL
 * leaves the group whatever the end's result. */
#define GC_SHIM_GROUP_AFTER_GroupStart(t, r) \
  ((r) == ncclSuccess ? (void)(t)->group_depth++ : (void)0)
#define GC_SHIM_GROUP_AFTER_GroupEnd gc_shim_group_left
#define GC_SHIM_GROUP_AFTER_GroupSimulateEnd gc_shim_group_left
#define GC_SHIM_WRAP_res_group(name, ret, cat, params, args)                                    \
  GC_EXPORT ret nccl##name params {                                                             \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name))                         \
      return unavailable_res(GC_NCCL_ID_##name);                                                \
    gc_shim_tls_t *t = &gc_shim_tls;                                                            \
    GC_PIN(t);                                                                                  \
    if (t->depth > 0 || (gc_shim_switches() & GC_SW_DISABLE)) return gc_nccl_real.fn.name args; \
    t->depth++;                                                                                 \
    ret r = gc_nccl_real.fn.name args;                                                          \
    t->depth--;                                                                                 \
    GC_SHIM_GROUP_AFTER_##name(t, (int)r);                                                      \
    return r;                                                                                   \
  }
#define GC_SHIM_WRAP_res_redop GC_SHIM_WRAP_res
/* ncclGetLastError answers GCSHIM_CHECK's mismatch while it is the last error. */
#define GC_SHIM_STR_OVERRIDE(id) \
  ((id) == GC_NCCL_ID_GetLastError && GC_UNLIKELY(gc_shim_check_msg[0]) ? gc_shim_check_msg : NULL)
#define GC_SHIM_WRAP_str(name, ret, cat, params, args)                  \
  GC_EXPORT ret nccl##name params {                                     \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name)) \
      return unavailable_str(GC_NCCL_ID_##name);                        \
    const char *o = GC_SHIM_STR_OVERRIDE(GC_NCCL_ID_##name);            \
    return o ? o : gc_nccl_real.fn.name args;                           \
  }
#define GC_SHIM_WRAP_void(name, ret, cat, params, args)                   \
  GC_EXPORT void nccl##name params {                                      \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name)) { \
      unavailable_void(GC_NCCL_ID_##name);                                \
      return;                                                             \
    }                                                                     \
    gc_nccl_real.fn.name args;                                            \
  }

#define GC_SHIM_WRAP_2(kind, cat) GC_SHIM_WRAP_##kind##_##cat
#define GC_SHIM_WRAP_res_of(cat) GC_SHIM_WRAP_2(res, cat)
#define GC_SHIM_WRAP_str_of(cat) GC_SHIM_WRAP_str
#define GC_SHIM_WRAP_void_of(cat) GC_SHIM_WRAP_void
#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor) \
  GC_SHIM_WRAP_##kind##_of(cat)(name, ret, cat, params, args)
#include "nccl/nccl_api.def"
