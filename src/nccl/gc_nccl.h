/*
 * gc_nccl.h - the real NCCL, resolved once at first use (DESIGN.md "Real
 * NCCL"): ids, names and categories of every entry point of nccl_api.def,
 * and the table of the loaded library's functions.
 *
 * Order of resolution: GCSHIM_NCCL_LIBRARY (dlopen of that path), else the
 * next object after ours (dlsym(RTLD_NEXT)), else an already loaded
 * libnccl.so.2 (RTLD_NOLOAD), else dlopen("libnccl.so.2"). In each, the
 * strong "pncclX" alias is preferred over the weak "ncclX". An entry point
 * the loaded NCCL lacks (an older release) stays NULL in the table and
 * gc_nccl_require() answers GC_ERR_UNSUPPORTED for it.
 */
#ifndef GC_NCCL_H
#define GC_NCCL_H

#include "core/core.h"
#include "nccl/nccl_types.h"

/* Categories of entry points (the category column of nccl_api.def). */
typedef enum {
  GC_NCCL_CAT_init,  /* unique id, communicator creation, split, shrink */
  GC_NCCL_CAT_comm,  /* finalize, destroy, abort, revoke, async error */
  GC_NCCL_CAT_query, /* version, error strings, count, device, rank */
  GC_NCCL_CAT_coll,  /* collectives */
  GC_NCCL_CAT_p2p,   /* send, recv */
  GC_NCCL_CAT_group, /* group start, end, simulate */
  GC_NCCL_CAT_mem,   /* memory allocation, buffer and window registration */
  GC_NCCL_CAT_redop, /* user reduction operators */
  GC_NCCL_CAT_COUNT
} gc_nccl_cat_t;

/* GC_NCCL_ID_AllReduce, ...: one id per line of nccl_api.def. */
typedef enum {
#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor) GC_NCCL_ID_##name,
#include "nccl/nccl_api.def"
  GC_NCCL_API_COUNT
} gc_nccl_id_t;

typedef struct {
  const char *name;  /* "ncclAllReduce" */
  const char *pname; /* "pncclAllReduce" */
  gc_nccl_cat_t cat;
  int version; /* NCCL version code of the release that introduced it */
} gc_nccl_api_info_t;
extern GC_INTERNAL const gc_nccl_api_info_t gc_nccl_api[GC_NCCL_API_COUNT];

/* The real functions: typed by name (gc_nccl_real.fn.AllReduce) or by id
 * (gc_nccl_real.any[GC_NCCL_ID_AllReduce]). NULL where the loaded NCCL
 * lacks the entry point. Valid once gc_nccl_ready() returned GC_OK. */
typedef union {
  struct {
#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor) ret(*name) params;
#include "nccl/nccl_api.def"
  } fn;
  void (*any[GC_NCCL_API_COUNT])(void);
} gc_nccl_table_t;
extern GC_INTERNAL gc_nccl_table_t gc_nccl_real;

/* 1 loaded, -1 failed, 0 not tried yet. */
#define GC_NCCL_STATE (gc_hot.nccl_state)

/* Resolves the real NCCL once (thread-safe). GC_OK, or the resolution's
 * failure again on every call: GC_ERR_NOT_FOUND when no NCCL can be found or
 * opened (the message names the library and dlerror()), GC_ERR_STATE when
 * called again from inside the resolution on the same thread. */
GC_INTERNAL gc_status_t gc_nccl_load(void);

/* gc_nccl_load() with a one-load fast path for every call. */
static inline gc_status_t gc_nccl_ready(void) {
  return GC_LIKELY(atomic_load_explicit(&GC_NCCL_STATE, memory_order_acquire) == 1)
             ? GC_OK
             : gc_nccl_load();
}

/* GC_OK when the real entry point id is available; GC_ERR_UNSUPPORTED naming
 * the symbol, the library and both versions when the loaded NCCL lacks it;
 * gc_nccl_load()'s failure; GC_ERR_INVALID_ARG for an id out of range. */
GC_INTERNAL gc_status_t gc_nccl_require(gc_nccl_id_t id);

/* The loaded NCCL's version code (ncclGetVersion; 22809 for 2.28.9), 0 when
 * not loaded or unknown. */
GC_INTERNAL int gc_nccl_version(void);
/* The path of the loaded library ("" when not loaded). */
GC_INTERNAL const char *gc_nccl_library(void);
/* How it was found: "GCSHIM_NCCL_LIBRARY", "RTLD_NEXT", "RTLD_NOLOAD",
 * "dlopen" ("" when not loaded). */
GC_INTERNAL const char *gc_nccl_source(void);
/* "coll", "p2p", ...; "?" out of range. */
GC_INTERNAL const char *gc_nccl_cat_name(gc_nccl_cat_t c);

#endif /* GC_NCCL_H */
