/*
 * shim.h - the interposer's seams. Every exported ncclX wrapper (shim.c,
 * expanded from nccl_api.def) has one anatomy:
 *
 *   depth guard     a call made from inside NCCL (or from a hook) through an
 *                   exported name goes straight to the real function,
 *                   uncounted
 *   fast path       GCSHIM_DISABLE=1 (read once): straight through
 *   capture check   gc_shim_enter(): stream capture status, adoption, ...
 *   real call       the loaded NCCL's pncclX
 *   record          gc_shim_leave(): statistics, trace
 *
 * Return values and error strings are NCCL's own. The hooks are filled in by
 * the coordinator work (adoption, statistics); they must not call NCCL
 * through the exported names expecting to be counted.
 */
#ifndef GC_SHIM_H
#define GC_SHIM_H

#include "nccl/gc_nccl.h"

/* State a wrapper keeps between its two hooks, on its own stack. */
typedef struct {
  uint64_t t0;   /* gc_now_ns() at entry, 0 when not timed */
  bool captured; /* the call's stream was capturing */
} gc_shim_call_t;

/* Before the real call of entry point id (not for nested or disabled calls). */
GC_INTERNAL void gc_shim_enter(gc_nccl_id_t id, gc_shim_call_t *call);
/* After it; result is the ncclResult_t returned (0 for entry points that
 * return no ncclResult_t). */
GC_INTERNAL void gc_shim_leave(gc_nccl_id_t id, gc_shim_call_t *call, int result);

/* True when GCSHIM_DISABLE asks for pure pass-through (read once). */
GC_INTERNAL bool gc_shim_disabled_init(void);
extern GC_INTERNAL _Atomic int gc_shim_disabled_cached;
static inline bool gc_shim_disabled(void) {
  int d = atomic_load_explicit(&gc_shim_disabled_cached, memory_order_relaxed);
  return GC_LIKELY(d >= 0) ? d != 0 : gc_shim_disabled_init();
}

#endif /* GC_SHIM_H */
