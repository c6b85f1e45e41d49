/*
 * core.h - the core layer: errors, logging, settings, clock, dtype math and
 * the group registry. Everything above (cpu, device, coord, shim, plugin)
 * includes this; it includes nothing of theirs.
 */
#ifndef GC_CORE_H
#define GC_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gcshim/gc.h"

#define GC_INTERNAL __attribute__((visibility("hidden")))
/* Thread-local variables read on hot paths: one __tls_get_addr for the
 * module's block serves every such variable a function reads (the general
 * model calls it once per variable); still dlopen-safe, unlike
 * initial-exec. */
#define GC_TLS_HOT __attribute__((tls_model("local-dynamic")))

/* The words every intercepted call reads, on one cache line (env.c): each
 * is known by its own name through the macros below. */
typedef struct {
  _Atomic int shim_switches;        /* GC_SHIM_SWITCHES (shim.h) */
  _Atomic int nccl_state;           /* GC_NCCL_STATE (gc_nccl.h) */
  _Atomic int stats_current_wanted; /* gc_stats_current_wanted (stats.h) */
  _Atomic uint32_t shim_map_gen;    /* GC_SHIM_MAP_GEN (shim.h) */
  char pad[48];                     /* the line to itself: nothing written often beside it */
} gc_hot_t;
extern GC_INTERNAL gc_hot_t gc_hot;
#define GC_LIKELY(x) __builtin_expect(!!(x), 1)
#define GC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define GC_NOINLINE __attribute__((noinline, cold))
#define GC_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- hashing --------------------------------------------------------------
 * FNV-1a, 64 bits: the one hash of keys, names, segment names and call
 * signatures. Start from GC_FNV_INIT (or another seed where two independent
 * hashes of one input are wanted) and chain calls. */
#define GC_FNV_INIT 1469598103934665603ull
static inline uint64_t gc_fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}
static inline uint64_t gc_fnv_str(uint64_t h, const char *s) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Writes "2.28.9" for an NCCL version code (22809, or 2804 for 2.8.4) into
 * buf (len bytes); returns buf. */
GC_INTERNAL const char *gc_nccl_version_string(int code, char *buf, size_t len);

/* ---- errors -------------------------------------------------------------
 * The first place that detects a failure calls gc_error(), which records the
 * message for gc_last_error() and logs it at INFO; callers only propagate. */
GC_INTERNAL gc_status_t gc_error(gc_status_t s, const char *fmt, ...) GC_PRINTF(2, 3) GC_NOINLINE;
GC_INTERNAL void gc_error_clear(void);

/* ---- logging ------------------------------------------------------------ */
typedef enum { GC_LOG_NONE = 0, GC_LOG_WARN = 1, GC_LOG_INFO = 2, GC_LOG_TRACE = 3 } gc_log_level_t;
/* Level from GCSHIM_DEBUG, read once and cached. */
extern GC_INTERNAL _Atomic int gc_log_level_cached;
GC_INTERNAL int gc_log_level_init(void);
static inline int gc_log_level(void) {
  int l = atomic_load_explicit(&gc_log_level_cached, memory_order_relaxed);
  return GC_LIKELY(l >= 0) ? l : gc_log_level_init();
}
GC_INTERNAL void gc_log_write(int level, const char *file, int line, const char *fmt, ...)
    GC_PRINTF(4, 5) GC_NOINLINE;
/* Rank shown in the log prefix; -1 hides it. */
GC_INTERNAL void gc_log_set_rank(int rank);

#define GC_LOG(level, ...)                                    \
  do {                                                        \
    if (GC_UNLIKELY(gc_log_level() >= (level)))               \
      gc_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define GC_WARN(...) GC_LOG(GC_LOG_WARN, __VA_ARGS__)
#define GC_INFO(...) GC_LOG(GC_LOG_INFO, __VA_ARGS__)
#ifdef GC_ENABLE_TRACE
#define GC_TRACE(...) GC_LOG(GC_LOG_TRACE, __VA_ARGS__)
#else
#define GC_TRACE(...) \
  do {                \
  } while (0)
#endif

/* GC_CHECK(call): return its status on failure, showing the path at INFO. */
#define GC_CHECK(call)                                                           \
  do {                                                                           \
    gc_status_t gc_check_s_ = (call);                                            \
    if (GC_UNLIKELY(gc_check_s_ != GC_OK)) {                                     \
      GC_INFO("%s:%d -> %s", __FILE__, __LINE__, gc_status_string(gc_check_s_)); \
      return gc_check_s_;                                                        \
    }                                                                            \
  } while (0)
#define GC_CHECK_GOTO(call, status, label)                                  \
  do {                                                                      \
    (status) = (call);                                                      \
    if (GC_UNLIKELY((status) != GC_OK)) {                                   \
      GC_INFO("%s:%d -> %s", __FILE__, __LINE__, gc_status_string(status)); \
      goto label;                                                           \
    }                                                                       \
  } while (0)

/* ---- settings (core/params.def, read once from the environment) --------- */
/* GCSHIM_TIMEOUT in seconds (gc_param_GCSHIM_TIMEOUT(), for who does not
 * include core/params.h). */
GC_INTERNAL double gc_env_timeout(void);
/* Parses a decimal integer; false on garbage, overflow or out of [lo, hi]. */
GC_INTERNAL bool gc_parse_int(const char *s, long lo, long hi, long *out);

typedef struct {
  int rank, world_size, local_rank;
  const char *source; /* "GCSHIM", "torchrun", "mpirun", "PMI" */
} gc_env_ranks_t;
/* The first complete launcher convention of API.md. GC_ERR_NOT_FOUND when
 * none is set, GC_ERR_INVALID_ARG for garbage or an inconsistent set. */
GC_INTERNAL gc_status_t gc_env_ranks(gc_env_ranks_t *out);

/* ---- clock -------------------------------------------------------------- */
GC_INTERNAL uint64_t gc_now_ns(void); /* CLOCK_MONOTONIC */

/* True when pid no longer runs (gone, or a zombie). */
GC_INTERNAL bool gc_pid_dead(pid_t pid);
/* pid is stopped (SIGSTOP, a debugger's stop): alive, but nothing it
 * would do comes while it stays so. */
GC_INTERNAL bool gc_pid_stopped(pid_t pid);

/* ---- dtypes and tensors -------------------------------------------------- */
GC_INTERNAL const char *gc_dtype_name(gc_dtype_t t);
GC_INTERNAL bool gc_dtype_valid(gc_dtype_t t);
/* Checks a tensor's fields (dtype, ndim, shape, data for numel > 0). */
GC_INTERNAL gc_status_t gc_tensor_check(const gc_tensor_t *t, const char *what);
/* Normalises dim against ndim (negative from the end); INVALID_ARG if out of range. */
GC_INTERNAL gc_status_t gc_dim_normalize(int ndim, int dim, int *out);
/* Overflow-checked arithmetic. */
static inline bool gc_mul_overflow_size(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out);
}

/* ---- the registry ---------------------------------------------------------
 * Unique names the vLLM way: base "tp" -> "tp:0", "tp:1", ... per process, in
 * creation order. Lookup by unique name is one hash probe under a read lock.
 * A destroyed group keeps its name: lookup answers GC_ERR_STATE. */
#define GC_NAME_MAX 128
/* Reserves the next unique name for base (NULL -> "anonymous") and binds it
 * to obj. Writes the unique name to name_out (GC_NAME_MAX bytes). */
GC_INTERNAL gc_status_t gc_registry_add(const char *base, void *obj, char *name_out);
/* NOT_FOUND (unknown) or STATE (destroyed); else *out = obj. */
GC_INTERNAL gc_status_t gc_registry_lookup(const char *name, void **out);
/* Marks the name's group destroyed; the name stays reserved. */
GC_INTERNAL gc_status_t gc_registry_retire(const char *name);
/* Calls fn on every live object (in creation order). */
GC_INTERNAL void gc_registry_foreach(void (*fn)(void *obj, void *arg), void *arg);
/* Forgets everything (gc_finalize, tests); release (or NULL) gets what
 * each retired name's object was, to free what its destroy kept. */
GC_INTERNAL void gc_registry_reset(void (*release)(void *gone));

#endif /* GC_CORE_H */
