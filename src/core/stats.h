/*
 * stats.h - per-thread, lock-free call statistics of groups, per op.
 *
 * A group gets a small id (gc_stats_group_add) and keeps its description
 * (name, source, ranks, key) here even after it is destroyed, so that a
 * report still shows it. Each thread records into its own table, allocated
 * at its first record on a group; gc_stats_record makes no syscall, takes no
 * lock and allocates nothing after that. Readers (reports) sum the tables of
 * every thread, live or exited.
 */
#ifndef GC_STATS_H
#define GC_STATS_H

#include "core/group.h"

#define GC_STATS_MAX_GROUPS 8192 /* communicators a process may hold over its life */
#define GC_STATS_MAX_OPS 64      /* op ids: the caller's (the shim uses its NCCL ids) */
#define GC_STATS_BUCKETS 48      /* power-of-two size buckets: <= 1 B .. <= 2^47 B */

#define GC_STATS_ALGOS 8  /* NCCL's algorithms (TREE .. PAT), then other */
#define GC_STATS_PROTOS 4 /* LL LL128 SIMPLE, then other */

typedef struct {
  /* One cache line: what every call reads and writes (calls, bytes, and
   * which call to time next) and what a timed call adds. Host time is taken
   * of timed_calls of the calls (all of them, or a sample:
   * GCSHIM_TIME_EVERY), whose bytes are timed_bytes; means and bandwidths
   * come from those. */
  uint64_t calls, bytes;
  uint64_t next_timed; /* the shim: the number (calls + 1) from which on a call is timed; set
                        * by each timed call. Not a statistic (reports leave it out) */
  uint64_t timed_calls, timed_bytes;
  uint64_t t_min_ns, t_max_ns, t_sum_ns; /* t_min_ns: UINT64_MAX when no call; in ticks
                                          * while recorded, in ns once collected */
  uint64_t captured;
  uint64_t hist[GC_STATS_BUCKETS];
  /* From the profiler plugin: GPU execution time of gpu_calls calls (ns;
   * min/max meaningful when gpu_calls > 0), and calls per algorithm and
   * protocol NCCL chose. */
  uint64_t gpu_calls, gpu_sum_ns, gpu_min_ns, gpu_max_ns;
  uint64_t algo[GC_STATS_ALGOS], proto[GC_STATS_PROTOS];
  uint64_t pad_[7]; /* a whole number of lines: in a thread's table (64-byte aligned), each
                     * entry's first line is its own */
} gc_stats_entry_t;
_Static_assert(sizeof(gc_stats_entry_t) % 64 == 0, "an entry is a whole number of cache lines");

/* What a report says about a group. */
typedef struct {
  uint64_t key; /* identical on every member (from the rendezvous key) */
  char name[GC_NAME_MAX];
  gc_group_source_t source;
  int size, rank_in_group;
  int ranks[64]; /* world ranks (first 64), -1 where unknown */
} gc_stats_group_info_t;

/* Registers a group; *id in 0..GC_STATS_MAX_GROUPS-1. GC_ERR_NO_MEMORY when
 * the table is full. */
GC_INTERNAL gc_status_t gc_stats_group_add(const gc_stats_group_info_t *info, int *id);
/* Number of groups registered so far (ids below it are valid). */
GC_INTERNAL int gc_stats_group_count(void);
GC_INTERNAL const gc_stats_group_info_t *gc_stats_group_info(int id);

/* Name of op id (the caller's table, set once), for reports. */
GC_INTERNAL void gc_stats_set_op_names(const char *const *names, int n);
GC_INTERNAL const char *gc_stats_op_name(int op);

/* ---- the clock of the hot path --------------------------------------------
 * Times are kept in ticks: the TSC on x86-64 when it is invariant (a few ns
 * to read, where clock_gettime costs 20-45), else gc_now_ns(). Reports turn
 * ticks into ns with gc_stats_ns_per_tick(), calibrated against
 * CLOCK_MONOTONIC over the life of the process. */
extern GC_INTERNAL bool gc_stats_use_tsc;
static inline uint64_t gc_stats_ticks(void) {
#if defined(__x86_64__)
  if (GC_LIKELY(gc_stats_use_tsc)) return __builtin_ia32_rdtsc();
#endif
  return gc_now_ns();
}
GC_INTERNAL double gc_stats_ns_per_tick(void);
/* CLOCK_MONOTONIC ns of a tick count (for timelines). */
GC_INTERNAL double gc_stats_tick_to_ns(uint64_t t);

/* Bucket of a size: the smallest b with bytes <= 2^b (capped). */
static inline int gc_stats_bucket(uint64_t bytes) {
  if (bytes <= 1) return 0;
  int b = 64 - __builtin_clzll(bytes - 1);
  return b < GC_STATS_BUCKETS ? b : GC_STATS_BUCKETS - 1;
}

/* A thread's table (stats.c keeps the list of them). */
typedef struct gc_stats_thread {
  gc_stats_entry_t *_Atomic g[GC_STATS_MAX_GROUPS]; /* [op] each, NULL until used */
  struct gc_stats_thread *next;
  struct gc_trace_ev *ev; /* GCSHIM_TRACE: cap events, n used (published with release) */
  _Atomic uint32_t n;
  uint32_t cap;
  uint64_t dropped;
  int tid;
} gc_stats_thread_t;

/* The calling thread's table; NULL until its first record. */
extern GC_INTERNAL GC_TLS_HOT _Thread_local gc_stats_thread_t *gc_stats_self;
GC_INTERNAL gc_stats_entry_t *gc_stats_slow_entry(int group, int op);

/* Thread t's entry of group and op, or NULL before its first record there. */
static inline gc_stats_entry_t *gc_stats_entry(gc_stats_thread_t *t, int group, int op) {
  if (GC_UNLIKELY((unsigned)group >= GC_STATS_MAX_GROUPS || (unsigned)op >= GC_STATS_MAX_OPS))
    return NULL;
  gc_stats_entry_t *g = atomic_load_explicit(&t->g[group], memory_order_relaxed);
  return g ? &g[op] : NULL;
}

/* Counts one call into e, the calling thread's own entry (bytes as passed,
 * capture), untimed. */
static inline void gc_stats_entry_add(gc_stats_entry_t *e, uint64_t bytes, bool captured) {
  /* Only this thread writes; relaxed stores let readers see whole values. */
  __atomic_store_n(&e->calls, e->calls + 1, __ATOMIC_RELAXED);
  __atomic_store_n(&e->bytes, e->bytes + bytes, __ATOMIC_RELAXED);
  if (captured) __atomic_store_n(&e->captured, e->captured + 1, __ATOMIC_RELAXED);
  int b = gc_stats_bucket(bytes);
  __atomic_store_n(&e->hist[b], e->hist[b] + 1, __ATOMIC_RELAXED);
}

/* Counts one call of op on group, untimed; the entry, or NULL. */
static inline gc_stats_entry_t *gc_stats_count(int group, int op, uint64_t bytes, bool captured) {
  gc_stats_entry_t *e =
      GC_LIKELY(gc_stats_self != NULL) ? gc_stats_entry(gc_stats_self, group, op) : NULL;
  if (GC_UNLIKELY(!e)) e = gc_stats_slow_entry(group, op);
  if (GC_UNLIKELY(!e)) return NULL;
  gc_stats_entry_add(e, bytes, captured);
  return e;
}

/* Counts one call and its host time (ticks). */
static inline void gc_stats_record(int group, int op, uint64_t bytes, uint64_t ns, bool captured) {
  gc_stats_entry_t *e = gc_stats_count(group, op, bytes, captured);
  if (GC_UNLIKELY(!e)) return;
  __atomic_store_n(&e->timed_calls, e->timed_calls + 1, __ATOMIC_RELAXED);
  __atomic_store_n(&e->timed_bytes, e->timed_bytes + bytes, __ATOMIC_RELAXED);
  __atomic_store_n(&e->t_sum_ns, e->t_sum_ns + ns, __ATOMIC_RELAXED);
  if (ns < e->t_min_ns) __atomic_store_n(&e->t_min_ns, ns, __ATOMIC_RELAXED);
  if (ns > e->t_max_ns) __atomic_store_n(&e->t_max_ns, ns, __ATOMIC_RELAXED);
}

/* The group of the NCCL call in flight on this thread (the shim sets it
 * around a counted call's real call), -1 otherwise: plugins called from
 * inside it (NCCL's tuner, profiler API events) learn their communicator's
 * group from it. */
extern GC_INTERNAL _Thread_local int gc_stats_current;
/* Set (to 1) once a plugin was initialised: until then the shim does not
 * touch gc_stats_current (a thread-local access costs a call in a shared
 * library). */
#define gc_stats_current_wanted (gc_hot.stats_current_wanted)

/* Profiler data of one call, into the calling thread's table (any thread
 * may record; each into its own): GPU execution time (ns); algorithm and
 * protocol indexes (GC_STATS_ALGOS / GC_STATS_PROTOS, last: other). */
GC_INTERNAL void gc_stats_record_gpu(int group, int op, uint64_t ns);
GC_INTERNAL void gc_stats_record_algo(int group, int op, int algo, int proto);
GC_INTERNAL const char *gc_stats_algo_name(int algo);   /* "RING", ...; "other" */
GC_INTERNAL const char *gc_stats_proto_name(int proto); /* "LL", ...; "other" */

/* ---- tuner decisions -------------------------------------------------------
 * Counted per group and decision (op, size bucket, outcome, what was chosen)
 * in one lock-free table for the process (GC_STATS_MAX_DECISIONS distinct
 * decisions; more are dropped and counted). */
#define GC_STATS_MAX_DECISIONS 4096
enum { GC_DECISION_APPLIED = 0, GC_DECISION_UNUSABLE = 1, GC_DECISION_NO_MATCH = 2 };
typedef struct {
  int op;       /* the caller's op id (0..GC_STATS_MAX_OPS-1) */
  int bucket;   /* size bucket (gc_stats_bucket) */
  int kind;     /* GC_DECISION_* */
  int algo;     /* algorithm index chosen or asked, -1: none */
  int proto;    /* protocol index, -1: none */
  int channels; /* channels set, 0: none */
} gc_stats_decision_t;
GC_INTERNAL void gc_stats_record_decision(int group, const gc_stats_decision_t *d);
/* Group's decisions (up to max) into out[] and counts[]; returns how many. */
GC_INTERNAL int gc_stats_decisions(int group, gc_stats_decision_t *out, uint64_t *counts, int max);
GC_INTERNAL const char *gc_stats_decision_name(int kind); /* "applied" ... */

/* ---- the timeline (GCSHIM_TRACE) -------------------------------------------
 * Per thread, a bounded buffer of call events (GCSHIM_TRACE_EVENTS, default
 * 100000 per thread; later events are counted as dropped). */
extern GC_INTERNAL _Atomic int gc_trace_cached;
GC_INTERNAL bool gc_trace_init(void);
static inline bool gc_trace_on(void) {
  int t = atomic_load_explicit(&gc_trace_cached, memory_order_relaxed);
  return GC_LIKELY(t >= 0) ? t != 0 : gc_trace_init();
}
GC_INTERNAL void gc_trace_record(int group, int op, uint64_t t0_ticks, uint64_t ticks,
                                 uint64_t bytes, bool captured);
/* Writes every thread's events as Chrome-trace JSON (Perfetto opens it) to
 * GCSHIM_TRACE with %h %p %r expanded (rank: pid in the trace). */
GC_INTERNAL void gc_trace_write(int rank);

/* Sum over every thread of (group, op) into *out, times in ns. */
GC_INTERNAL void gc_stats_collect(int group, int op, gc_stats_entry_t *out);
/* Adds b into a (min/max merged). */
GC_INTERNAL void gc_stats_merge(gc_stats_entry_t *a, const gc_stats_entry_t *b);
/* Forgets every record and group (tests). */
GC_INTERNAL void gc_stats_reset(void);

#endif /* GC_STATS_H */
