/*
 * shim.c - the exported NCCL API of libgcshim.so: one wrapper per line of
 * nccl_api.def, all with the anatomy described in shim.h. Only the ncclX
 * names are exported (never pncclX); everything else stays hidden.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/shim.h"

/* Depth of wrapper calls on this thread: NCCL calls some of its own entry
 * points through their exported names (ncclBcast -> ncclBroadcast,
 * ncclCommCount -> ncclCommGetAsyncError, registration, ...), which lands in
 * a wrapper again; those nested calls pass straight through. */
static _Thread_local int depth;

_Atomic int gc_shim_disabled_cached = -1;

bool gc_shim_disabled_init(void) {
  const char *s = getenv("GCSHIM_DISABLE");
  long v = 0;
  if (s && s[0] && !gc_parse_int(s, 0, 1, &v)) {
    GC_WARN("GCSHIM_DISABLE=%s is not 0 or 1; taken as 1", s);
    v = 1;
  }
  atomic_store_explicit(&gc_shim_disabled_cached, (int)v, memory_order_relaxed);
  return v != 0;
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

#define GC_SHIM_RESULT_res(r) ((int)(r))
#define GC_SHIM_RESULT_str(r) 0

#define GC_SHIM_WRAP_VALUE(name, ret, kind, params, args)                  \
  GC_EXPORT ret nccl##name params {                                        \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name))    \
      return unavailable_##kind(GC_NCCL_ID_##name);                        \
    if (depth > 0 || gc_shim_disabled()) return gc_nccl_real.fn.name args; \
    gc_shim_call_t call;                                                   \
    depth++;                                                               \
    gc_shim_enter(GC_NCCL_ID_##name, &call);                               \
    ret r = gc_nccl_real.fn.name args;                                     \
    gc_shim_leave(GC_NCCL_ID_##name, &call, GC_SHIM_RESULT_##kind(r));     \
    depth--;                                                               \
    return r;                                                              \
  }
#define GC_SHIM_WRAP_res(name, ret, params, args) GC_SHIM_WRAP_VALUE(name, ret, res, params, args)
#define GC_SHIM_WRAP_str(name, ret, params, args) GC_SHIM_WRAP_VALUE(name, ret, str, params, args)
#define GC_SHIM_WRAP_void(name, ret, params, args)                        \
  GC_EXPORT void nccl##name params {                                      \
    if (GC_UNLIKELY(gc_nccl_ready() != GC_OK || !gc_nccl_real.fn.name)) { \
      unavailable_void(GC_NCCL_ID_##name);                                \
      return;                                                             \
    }                                                                     \
    if (depth > 0 || gc_shim_disabled()) {                                \
      gc_nccl_real.fn.name args;                                          \
      return;                                                             \
    }                                                                     \
    gc_shim_call_t call;                                                  \
    depth++;                                                              \
    gc_shim_enter(GC_NCCL_ID_##name, &call);                              \
    gc_nccl_real.fn.name args;                                            \
    gc_shim_leave(GC_NCCL_ID_##name, &call, 0);                           \
    depth--;                                                              \
  }

#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor) \
  GC_SHIM_WRAP_##kind(name, ret, params, args)
#include "nccl/nccl_api.def"
