/*
 * params.h - the settings of params.def, each read from the environment
 * once, at its first use, and cached: gc_param_GCSHIM_TIMEOUT() and so on,
 * one getter per line of params.def. After the first read a getter is one
 * acquire load and one load, no lock; the first read of each takes a
 * mutex. A malformed value is said once on stderr, whatever GCSHIM_DEBUG
 * says, naming the variable, the value, the accepted form and the value
 * used instead (the default); it is never an error.
 */
#ifndef GC_PARAMS_H
#define GC_PARAMS_H

#include <stdio.h>

#include "core/core.h"

/* A default that is none: the reader decides (params.def's doc says how). */
#define GC_PARAM_AUTO (-1)

typedef enum {
  GC_PARAM_BOOL,
  GC_PARAM_INT,
  GC_PARAM_SIZE,
  GC_PARAM_DOUBLE,
  GC_PARAM_ENUM,
  GC_PARAM_STRING
} gc_param_type_t;

typedef enum {
#define GC_PARAM(name, ...) GC_P_##name,
#include "core/params.def"
#undef GC_PARAM
  GC_PARAM_COUNT
} gc_param_id_t;

/* One line of params.def. */
typedef struct {
  const char *name;
  gc_param_type_t type;
  double dflt, lo, hi;
  const char *words; /* ENUM: the words, space-separated */
  const char *readers, *doc;
} gc_param_info_t;
extern GC_INTERNAL const gc_param_info_t gc_param_info[GC_PARAM_COUNT];

/* BOOL, INT, SIZE, ENUM: i (BOOL 0/1, ENUM the word's index, GC_PARAM_AUTO
 * when unset with no default); DOUBLE: d; STRING: s (NULL when unset). */
typedef union {
  long i;
  double d;
  const char *s;
} gc_param_value_t;
extern GC_INTERNAL gc_param_value_t gc_param_values[GC_PARAM_COUNT];
extern GC_INTERNAL _Atomic unsigned char gc_param_ready[GC_PARAM_COUNT];

/* Reads, parses and caches one setting (said once when malformed). */
GC_INTERNAL gc_param_value_t gc_param_load(gc_param_id_t id) GC_NOINLINE;

static inline gc_param_value_t gc_param_get(gc_param_id_t id) {
  if (GC_LIKELY(atomic_load_explicit(&gc_param_ready[id], memory_order_acquire)))
    return gc_param_values[id];
  return gc_param_load(id);
}

/* The getters: gc_param_NAME() of the type's C type (BOOL: int, since a
 * GC_PARAM_AUTO one answers -1 while unset). */
#define GC_PARAM_C_BOOL int
#define GC_PARAM_C_INT long
#define GC_PARAM_C_SIZE long
#define GC_PARAM_C_ENUM long
#define GC_PARAM_C_DOUBLE double
#define GC_PARAM_C_STRING const char *
#define GC_PARAM_F_BOOL(v) (int)(v).i
#define GC_PARAM_F_INT(v) (v).i
#define GC_PARAM_F_SIZE(v) (v).i
#define GC_PARAM_F_ENUM(v) (v).i
#define GC_PARAM_F_DOUBLE(v) (v).d
#define GC_PARAM_F_STRING(v) (v).s
#define GC_PARAM(name, type, ...)                         \
  static inline GC_PARAM_C_##type gc_param_##name(void) { \
    return GC_PARAM_F_##type(gc_param_get(GC_P_##name));  \
  }
#include "core/params.def"
#undef GC_PARAM

/* GCSHIM_CHECK, the one setting whose default depends on its reader: off
 * for the preloaded shim's NCCL calls (an unchanged program pays nothing
 * unasked), on for the API's operations. */
static inline bool gc_param_check_shim(void) { return gc_param_GCSHIM_CHECK() == 1; }
static inline bool gc_param_check_api(void) { return gc_param_GCSHIM_CHECK() != 0; }

/* The host for %h in paths: GCSHIM_TEST_HOST, else gethostname's. */
GC_INTERNAL void gc_param_host(char *out, size_t len);

/* Parses s as id's type and range. False when malformed: *out is then the
 * default, and why (NULL to skip) says, in one line, what was wrong and
 * what is used instead. s NULL or empty: the default, true. */
GC_INTERNAL bool gc_param_parse(gc_param_id_t id, const char *s, gc_param_value_t *out, char *why,
                                size_t why_len);

/* The log is ready (log.c, once): says a malformed GCSHIM_DEBUG, which
 * the log's own setup could not, and at INFO writes every setting as in
 * effect, one line each. */
GC_INTERNAL void gc_params_log_ready(void);

/* README.md's table of settings, in Markdown. */
GC_INTERNAL void gc_params_markdown(FILE *f);

/* Tests only: forget every cached value, so that the next read of each
 * sees the environment again. No other thread may read settings meanwhile. */
GC_INTERNAL void gc_params_reset(void);

#endif /* GC_PARAMS_H */
