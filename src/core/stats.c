/* stats.c - per-thread call statistics of groups (see stats.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/group.h"
#include "core/stats.h"

struct gc_stats_thread {
  gc_stats_entry_t *_Atomic g[GC_STATS_MAX_GROUPS]; /* [op] each, NULL until used */
  struct gc_stats_thread *next;
};

_Thread_local gc_stats_thread_t *gc_stats_self;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static gc_stats_thread_t *threads; /* every thread that recorded, never freed before reset */
static gc_stats_group_info_t *groups[GC_STATS_MAX_GROUPS];
static _Atomic int n_groups;
static const char *const *op_names;
static int n_op_names;

gc_status_t gc_stats_group_add(const gc_stats_group_info_t *info, int *id) {
  gc_stats_group_info_t *copy = malloc(sizeof *copy);
  if (!copy) return gc_error(GC_ERR_NO_MEMORY, "statistics: no memory for a group");
  *copy = *info;
  pthread_mutex_lock(&lock);
  int n = atomic_load(&n_groups);
  if (n >= GC_STATS_MAX_GROUPS) {
    pthread_mutex_unlock(&lock);
    free(copy);
    return gc_error(GC_ERR_NO_MEMORY, "statistics: more than %d groups", GC_STATS_MAX_GROUPS);
  }
  groups[n] = copy;
  atomic_store(&n_groups, n + 1);
  pthread_mutex_unlock(&lock);
  *id = n;
  return GC_OK;
}

int gc_stats_group_count(void) { return atomic_load(&n_groups); }

const gc_stats_group_info_t *gc_stats_group_info(int id) {
  return id >= 0 && id < atomic_load(&n_groups) ? groups[id] : NULL;
}

void gc_stats_set_op_names(const char *const *names, int n) {
  op_names = names;
  n_op_names = n;
}

const char *gc_stats_op_name(int op) {
  return op >= 0 && op < n_op_names && op_names[op] ? op_names[op] : "?";
}

gc_stats_entry_t *gc_stats_entry(gc_stats_thread_t *t, int group, int op) {
  if (GC_UNLIKELY((unsigned)group >= GC_STATS_MAX_GROUPS || (unsigned)op >= GC_STATS_MAX_OPS))
    return NULL;
  gc_stats_entry_t *g = atomic_load_explicit(&t->g[group], memory_order_relaxed);
  return g ? &g[op] : NULL;
}

/* First record of this thread, or of this thread on this group. */
gc_stats_entry_t *gc_stats_slow_entry(int group, int op) {
  if ((unsigned)group >= GC_STATS_MAX_GROUPS || (unsigned)op >= GC_STATS_MAX_OPS) return NULL;
  gc_stats_thread_t *t = gc_stats_self;
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_lock(&lock);
    t->next = threads;
    threads = t;
    pthread_mutex_unlock(&lock);
    gc_stats_self = t;
  }
  gc_stats_entry_t *g = atomic_load_explicit(&t->g[group], memory_order_relaxed);
  if (!g) {
    g = calloc(GC_STATS_MAX_OPS, sizeof *g);
    if (!g) return NULL;
    for (int i = 0; i < GC_STATS_MAX_OPS; i++) g[i].t_min_ns = UINT64_MAX;
    atomic_store_explicit(&t->g[group], g, memory_order_release);
  }
  return &g[op];
}

void gc_stats_merge(gc_stats_entry_t *a, const gc_stats_entry_t *b) {
  a->calls += b->calls;
  a->captured += b->captured;
  a->bytes += b->bytes;
  a->t_sum_ns += b->t_sum_ns;
  if (b->t_min_ns < a->t_min_ns) a->t_min_ns = b->t_min_ns;
  if (b->t_max_ns > a->t_max_ns) a->t_max_ns = b->t_max_ns;
  for (int i = 0; i < GC_STATS_BUCKETS; i++) a->hist[i] += b->hist[i];
}

void gc_stats_collect(int group, int op, gc_stats_entry_t *out) {
  memset(out, 0, sizeof *out);
  out->t_min_ns = UINT64_MAX;
  if ((unsigned)group >= GC_STATS_MAX_GROUPS || (unsigned)op >= GC_STATS_MAX_OPS) return;
  pthread_mutex_lock(&lock);
  for (gc_stats_thread_t *t = threads; t; t = t->next) {
    gc_stats_entry_t *g = atomic_load_explicit(&t->g[group], memory_order_acquire);
    if (!g) continue;
    gc_stats_entry_t e;
    const uint64_t *src = (const uint64_t *)&g[op];
    uint64_t *dst = (uint64_t *)&e;
    for (size_t i = 0; i < sizeof e / sizeof(uint64_t); i++)
      dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    gc_stats_merge(out, &e);
  }
  pthread_mutex_unlock(&lock);
}

void gc_stats_reset(void) {
  pthread_mutex_lock(&lock);
  for (gc_stats_thread_t *t = threads, *next; t; t = next) {
    next = t->next;
    for (int i = 0; i < GC_STATS_MAX_GROUPS; i++) free(atomic_load(&t->g[i]));
    free(t);
  }
  threads = NULL;
  gc_stats_self = NULL; /* other threads' pointers dangle: tests reset with one thread */
  int n = atomic_load(&n_groups);
  for (int i = 0; i < n; i++) free(groups[i]);
  atomic_store(&n_groups, 0);
  pthread_mutex_unlock(&lock);
}
