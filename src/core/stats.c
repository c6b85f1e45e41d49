/* stats.c - per-thread call statistics of groups (see stats.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/group.h"
#include "core/outfile.h"
#include "core/params.h"
#include "core/stats.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

bool gc_stats_use_tsc;
static uint64_t tick0, ns0;

/* A tick count and the clock read together: the pair of the closest reads
 * out of a few (a preemption between the two would skew the calibration). */
static void clock_pair(uint64_t *ticks, uint64_t *ns) {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 5; i++) {
    uint64_t a = gc_stats_ticks(), n = gc_now_ns(), b = gc_stats_ticks();
    if (b - a < best) {
      best = b - a;
      *ticks = a + (b - a) / 2;
      *ns = n;
    }
  }
}

__attribute__((constructor)) static void clock_init(void) {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  /* Invariant TSC: CPUID 0x80000007, EDX bit 8. */
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000007u &&
      __get_cpuid(0x80000007u, &a, &b, &c, &d) && (d & (1u << 8)))
    gc_stats_use_tsc = true;
#endif
  clock_pair(&tick0, &ns0);
}

double gc_stats_ns_per_tick(void) {
  if (!gc_stats_use_tsc) return 1.0;
  uint64_t n1, t1;
  clock_pair(&t1, &n1);
  if (n1 - ns0 < 20000000ull) { /* too short to calibrate: wait 20 ms more */
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    clock_pair(&t1, &n1);
  }
  return t1 > tick0 ? (double)(n1 - ns0) / (double)(t1 - tick0) : 1.0;
}

double gc_stats_tick_to_ns(uint64_t t) {
  static double r;
  if (!r) r = gc_stats_ns_per_tick();
  return (double)ns0 + ((double)t - (double)tick0) * r;
}

typedef struct gc_trace_ev {
  uint64_t t0, ns, bytes;
  int16_t group, op;
  uint8_t captured;
} trace_ev_t;

GC_TLS_HOT _Thread_local gc_stats_thread_t *gc_stats_self;

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

static gc_stats_thread_t *self_slow(void) {
  gc_stats_thread_t *t = gc_stats_self;
  if (t) return t;
  t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->tid = (int)syscall(SYS_gettid);
  pthread_mutex_lock(&lock);
  t->next = threads;
  threads = t;
  pthread_mutex_unlock(&lock);
  gc_stats_self = t;
  return t;
}

/* First record of this thread, or of this thread on this group. */
gc_stats_entry_t *gc_stats_slow_entry(int group, int op) {
  if ((unsigned)group >= GC_STATS_MAX_GROUPS || (unsigned)op >= GC_STATS_MAX_OPS) return NULL;
  gc_stats_thread_t *t = self_slow();
  if (!t) return NULL;
  gc_stats_entry_t *g = atomic_load_explicit(&t->g[group], memory_order_relaxed);
  if (!g) {
    /* Cache-line aligned: a call's counters are one line (and a bucket). */
    if (posix_memalign((void **)&g, 64, GC_STATS_MAX_OPS * sizeof *g)) return NULL;
    memset(g, 0, GC_STATS_MAX_OPS * sizeof *g);
    for (int i = 0; i < GC_STATS_MAX_OPS; i++) g[i].t_min_ns = UINT64_MAX;
    atomic_store_explicit(&t->g[group], g, memory_order_release);
  }
  return &g[op];
}

_Thread_local int gc_stats_current = -1;

static gc_stats_entry_t *any_entry(int group, int op) {
  gc_stats_entry_t *e = gc_stats_self != NULL ? gc_stats_entry(gc_stats_self, group, op) : NULL;
  return e ? e : gc_stats_slow_entry(group, op);
}

void gc_stats_record_gpu(int group, int op, uint64_t ns) {
  gc_stats_entry_t *e = any_entry(group, op);
  if (!e) return;
  if (!e->gpu_calls || ns < e->gpu_min_ns) __atomic_store_n(&e->gpu_min_ns, ns, __ATOMIC_RELAXED);
  if (ns > e->gpu_max_ns) __atomic_store_n(&e->gpu_max_ns, ns, __ATOMIC_RELAXED);
  __atomic_store_n(&e->gpu_sum_ns, e->gpu_sum_ns + ns, __ATOMIC_RELAXED);
  __atomic_store_n(&e->gpu_calls, e->gpu_calls + 1, __ATOMIC_RELAXED);
}

void gc_stats_record_algo(int group, int op, int algo, int proto) {
  gc_stats_entry_t *e = any_entry(group, op);
  if (!e) return;
  if (algo < 0 || algo >= GC_STATS_ALGOS) algo = GC_STATS_ALGOS - 1;
  if (proto < 0 || proto >= GC_STATS_PROTOS) proto = GC_STATS_PROTOS - 1;
  __atomic_store_n(&e->algo[algo], e->algo[algo] + 1, __ATOMIC_RELAXED);
  __atomic_store_n(&e->proto[proto], e->proto[proto] + 1, __ATOMIC_RELAXED);
}

const char *gc_stats_algo_name(int algo) {
  static const char *const n[GC_STATS_ALGOS] = {
      "TREE", "RING", "COLLNET_DIRECT", "COLLNET_CHAIN", "NVLS", "NVLS_TREE", "PAT", "other"};
  return algo >= 0 && algo < GC_STATS_ALGOS ? n[algo] : "other";
}

const char *gc_stats_proto_name(int proto) {
  static const char *const n[GC_STATS_PROTOS] = {"LL", "LL128", "SIMPLE", "other"};
  return proto >= 0 && proto < GC_STATS_PROTOS ? n[proto] : "other";
}

const char *gc_stats_decision_name(int kind) {
  static const char *const n[] = {"applied", "unusable", "no_match"};
  return kind >= 0 && kind < 3 ? n[kind] : "?";
}

/* Decisions: open addressing on a packed key (0: empty slot). */
static struct { _Atomic uint64_t key, n; } decisions[GC_STATS_MAX_DECISIONS];
static _Atomic uint64_t decisions_dropped;

static uint64_t dec_pack(int group, const gc_stats_decision_t *d) {
  return 1ull << 63 | (uint64_t)(group & 0x3ff) << 40 | (uint64_t)(d->op & 0x3f) << 34 |
         (uint64_t)(d->bucket & 0x3f) << 28 | (uint64_t)(d->kind & 0x3) << 26 |
         (uint64_t)((d->algo + 1) & 0xf) << 22 | (uint64_t)((d->proto + 1) & 0x7) << 19 |
         (uint64_t)(d->channels & 0x7f) << 12;
}

void gc_stats_record_decision(int group, const gc_stats_decision_t *d) {
  if ((unsigned)group >= GC_STATS_MAX_GROUPS || (unsigned)d->op >= GC_STATS_MAX_OPS ||
      (unsigned)d->bucket >= GC_STATS_BUCKETS || (unsigned)d->kind > 2 || d->algo < -1 ||
      d->algo > 14 || d->proto < -1 || d->proto > 6 || d->channels < 0 || d->channels > 127)
    return;
  uint64_t k = dec_pack(group, d);
  uint64_t h = k * 0x9e3779b97f4a7c15ull;
  for (unsigned i = 0; i < GC_STATS_MAX_DECISIONS; i++) {
    unsigned s = (unsigned)((h >> 40) + i) % GC_STATS_MAX_DECISIONS;
    uint64_t cur = atomic_load_explicit(&decisions[s].key, memory_order_acquire);
    if (cur == 0) {
      uint64_t zero = 0;
      if (atomic_compare_exchange_strong_explicit(&decisions[s].key, &zero, k, memory_order_acq_rel,
                                                  memory_order_acquire))
        cur = k;
      else
        cur = zero;
    }
    if (cur == k) {
      atomic_fetch_add_explicit(&decisions[s].n, 1, memory_order_relaxed);
      return;
    }
  }
  atomic_fetch_add_explicit(&decisions_dropped, 1, memory_order_relaxed);
}

int gc_stats_decisions(int group, gc_stats_decision_t *out, uint64_t *counts, int max) {
  int n = 0;
  for (unsigned s = 0; s < GC_STATS_MAX_DECISIONS && n < max; s++) {
    uint64_t k = atomic_load_explicit(&decisions[s].key, memory_order_acquire);
    if (!k || (int)(k >> 40 & 0x3ff) != group) continue;
    uint64_t c = atomic_load_explicit(&decisions[s].n, memory_order_relaxed);
    if (!c) continue;
    out[n] = (gc_stats_decision_t){(int)(k >> 34 & 0x3f),    (int)(k >> 28 & 0x3f),
                                   (int)(k >> 26 & 0x3),     (int)(k >> 22 & 0xf) - 1,
                                   (int)(k >> 19 & 0x7) - 1, (int)(k >> 12 & 0x7f)};
    counts[n++] = c;
  }
  return n;
}

void gc_stats_merge(gc_stats_entry_t *a, const gc_stats_entry_t *b) {
  if (b->gpu_calls) {
    if (!a->gpu_calls || b->gpu_min_ns < a->gpu_min_ns) a->gpu_min_ns = b->gpu_min_ns;
    if (b->gpu_max_ns > a->gpu_max_ns) a->gpu_max_ns = b->gpu_max_ns;
    a->gpu_calls += b->gpu_calls;
    a->gpu_sum_ns += b->gpu_sum_ns;
  }
  for (int i = 0; i < GC_STATS_ALGOS; i++) a->algo[i] += b->algo[i];
  for (int i = 0; i < GC_STATS_PROTOS; i++) a->proto[i] += b->proto[i];
  a->calls += b->calls;
  a->captured += b->captured;
  a->bytes += b->bytes;
  a->timed_calls += b->timed_calls;
  a->timed_bytes += b->timed_bytes;
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
  if (gc_stats_use_tsc && out->calls) {
    double r = gc_stats_ns_per_tick();
    out->t_sum_ns = (uint64_t)((double)out->t_sum_ns * r);
    out->t_min_ns = (uint64_t)((double)out->t_min_ns * r);
    out->t_max_ns = (uint64_t)((double)out->t_max_ns * r);
  }
}

void gc_stats_reset(void) {
  pthread_mutex_lock(&lock);
  for (gc_stats_thread_t *t = threads, *next; t; t = next) {
    next = t->next;
    for (int i = 0; i < GC_STATS_MAX_GROUPS; i++) free(atomic_load(&t->g[i]));
    free(t->ev);
    free(t);
  }
  threads = NULL;
  gc_stats_self = NULL; /* other threads' pointers dangle: tests reset with one thread */
  atomic_fetch_add(&gc_hot.shim_map_gen, 1); /* the shim's cached entries are gone */
  int n = atomic_load(&n_groups);
  for (int i = 0; i < n; i++) free(groups[i]);
  atomic_store(&n_groups, 0);
  for (unsigned i = 0; i < GC_STATS_MAX_DECISIONS; i++) {
    atomic_store(&decisions[i].key, 0);
    atomic_store(&decisions[i].n, 0);
  }
  pthread_mutex_unlock(&lock);
}

/* ---- the timeline ---------------------------------------------------------------- */

_Atomic int gc_trace_cached = -1;
static char trace_path[1024];
static uint32_t trace_cap; /* GCSHIM_TRACE_EVENTS */

bool gc_trace_init(void) {
  const char *p = gc_param_GCSHIM_TRACE();
  int on = p != NULL;
  if (on) {
    snprintf(trace_path, sizeof trace_path, "%s", p);
    trace_cap = (uint32_t)gc_param_GCSHIM_TRACE_EVENTS();
  }
  atomic_store(&gc_trace_cached, on);
  return on;
}

void gc_trace_record(int group, int op, uint64_t t0_ns, uint64_t ns, uint64_t bytes,
                     bool captured) {
  gc_stats_thread_t *t = gc_stats_self;
  if (GC_UNLIKELY(!t || !t->ev)) {
    if (!t && !(t = self_slow())) return;
    if (!t->ev && !t->dropped) {
      t->ev = malloc((size_t)trace_cap * sizeof *t->ev);
      t->cap = t->ev ? trace_cap : 0;
    }
  }
  uint32_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
  if (GC_UNLIKELY(n >= t->cap)) {
    t->dropped++;
    return;
  }
  t->ev[n] = (trace_ev_t){t0_ns, ns, bytes, (int16_t)group, (int16_t)op, captured};
  atomic_store_explicit(&t->n, n + 1, memory_order_release);
}

static void expand(char *out, size_t len, const char *in, int rank) {
  char host[256];
  gc_param_host(host, sizeof host);
  size_t o = 0;
  for (const char *p = in; *p && o + 1 < len; p++) {
    if (p[0] == '%' && (p[1] == 'h' || p[1] == 'p' || p[1] == 'r')) {
      int k = p[1] == 'h'   ? snprintf(out + o, len - o, "%s", host)
              : p[1] == 'p' ? snprintf(out + o, len - o, "%d", (int)getpid())
                            : snprintf(out + o, len - o, "%d", rank);
      o += k > 0 ? (size_t)k : 0;
      if (o >= len) o = len - 1;
      p++;
      continue;
    }
    out[o++] = *p;
  }
  out[o] = 0;
}

void gc_trace_write(int rank) {
  if (!gc_trace_on()) return;
  char path[1100];
  expand(path, sizeof path, trace_path, rank);
  /* Without %r or %p, ranks of one job would overwrite each other. */
  if (!strstr(trace_path, "%r") && !strstr(trace_path, "%p") && rank > 0) {
    size_t l = strlen(path);
    snprintf(path + l, sizeof path - l, ".%d", rank);
  }
  gc_outfile_t o;
  if (!gc_outfile_open(&o, path, "GCSHIM_TRACE")) return;
  FILE *f = o.f;
  fprintf(f, "{\"displayTimeUnit\": \"ns\", \"traceEvents\": [\n");
  fprintf(f,
          "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, "
          "\"args\": {\"name\": \"rank %d (pid %d)\"}}",
          rank, rank, (int)getpid());
  uint64_t dropped = 0;
  double r = gc_stats_ns_per_tick();
  pthread_mutex_lock(&lock);
  for (gc_stats_thread_t *t = threads; t; t = t->next) {
    uint32_t n = atomic_load_explicit(&t->n, memory_order_acquire);
    dropped += t->dropped;
    for (uint32_t i = 0; i < n; i++) {
      const trace_ev_t *e = &t->ev[i];
      const gc_stats_group_info_t *g = gc_stats_group_info(e->group);
      fprintf(f,
              ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, "
              "\"dur\": %.3f, \"pid\": %d, \"tid\": %d, \"args\": {\"group\": \"%s\", "
              "\"bytes\": %llu, \"captured\": %d}}",
              gc_stats_op_name(e->op), g ? g->name : "?", gc_stats_tick_to_ns(e->t0) * 1e-3,
              (double)e->ns * r * 1e-3, rank, t->tid, g ? g->name : "?",
              (unsigned long long)e->bytes, e->captured);
    }
  }
  pthread_mutex_unlock(&lock);
  fprintf(f, "\n]}\n");
  gc_outfile_close(&o);
  if (dropped)
    GC_WARN("GCSHIM_TRACE: %llu events dropped (GCSHIM_TRACE_EVENTS per thread)",
            (unsigned long long)dropped);
}
