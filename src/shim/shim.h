/*
 * shim.h - the interposer's seams. Every exported ncclX wrapper (shim.c,
 * expanded from nccl_api.def) has one anatomy:
 *
 *   depth guard     a call made from inside NCCL (or from a hook) through an
 *                   exported name goes straight to the real function,
 *                   uncounted
 *   fast path       GCSHIM_DISABLE=1 (read once): straight through
 *   capture check   gc_shim_enter(): stream capture status, registration of
 *                   a new communicator, GCSHIM_CHECK's comparison
 *   real call       the loaded NCCL's pncclX
 *   record          gc_shim_leave(): adoption, statistics, release
 *
 * Return values and error strings are NCCL's own (except GCSHIM_CHECK's
 * ncclInvalidUsage). The hooks call NCCL only through gc_nccl_real, never
 * through the exported names.
 */
#ifndef GC_SHIM_H
#define GC_SHIM_H

#include "core/group.h"
#include "core/params.h"
#include "core/stats.h"
#include "cpu/cpu.h"
#include "nccl/gc_nccl.h"

typedef struct gc_shim_reg gc_shim_reg_t;

/* The calling thread's state for the wrappers: one thread-local access per
 * call, which the shortest path only reads. */
typedef struct {
  int depth;          /* wrapper calls in progress on this thread: NCCL calls some of its
                       * own entry points through their exported names (ncclBcast ->
                       * ncclBroadcast, ncclCommCount -> ncclCommGetAsyncError, ...),
                       * which lands in a wrapper again; those pass straight through */
  uint32_t rng;       /* xorshift state of the sampling gaps */
  int group_depth;    /* the application's ncclGroupStart calls not yet ended */
  bool group_pending; /* creations queued in the open group wait for its end (adopt.c) */
  /* The last communicator and entry point this thread counted: their
   * statistics entry, valid while GC_SHIM_MAP_GEN reads c_gen. */
  uint32_t c_gen;
  int c_id1; /* entry point id + 1; 0: empty */
  ncclComm_t c_comm;
  struct gc_shim_comm *c_sc;
  gc_stats_entry_t *c_e;
} gc_shim_tls_t;
extern GC_INTERNAL GC_TLS_HOT _Thread_local gc_shim_tls_t gc_shim_tls;

/* GCSHIM_TIME_EVERY: host time is taken of the first GC_SHIM_TIME_FIRST
 * calls of each group and op on each thread, then of one call in about that
 * many of them (random gaps of mean N, so that no periodic pattern of calls
 * is missed; the entry's next_timed says which); 1 times every call. Timed
 * calls also ask the driver whether their stream captures, which checks
 * capture.c's tracking. */
#define GC_SHIM_TIME_EVERY_DEFAULT 64
#define GC_SHIM_TIME_FIRST 4
extern GC_INTERNAL uint32_t gc_shim_time_every;

/* State a wrapper keeps between its two hooks, on its own stack: the
 * arguments the hooks need, filled from the wrapper's parameters. */
typedef struct {
  int sw;        /* gc_shim_switches() as the wrapper read them */
  uint64_t t0;   /* gc_stats_ticks() at entry, 0 when not timed */
  bool captured; /* the call's stream was capturing */
  ncclComm_t comm;
  size_t count;
  int dtype, redop, root; /* -1 when the call has none */
  void *stream;
  struct gc_shim_comm *sc; /* collectives/p2p: the communicator (enter), or NULL */
  gc_stats_entry_t *e;     /* the fast path's statistics entry, or NULL */
  /* communicator creation */
  ncclComm_t *newcomm;
  int nranks, rank, color, key, n_exclude, shrink_flags;
  const int *exclude, *devlist;
  const ncclUniqueId *uid;
  const ncclConfig_t *config;
  ncclResult_t *async_error;
  gc_shim_reg_t *reg; /* registration made by enter, finished by leave */
} gc_shim_call_t;

/* Before the real call of entry point id (not for nested or disabled
 * calls): 0 to go on, or a ncclResult_t to return instead of calling. */
GC_INTERNAL int gc_shim_enter(gc_nccl_id_t id, gc_shim_call_t *call);
/* After it; result is the ncclResult_t returned (0 for entry points that
 * return no ncclResult_t). */
GC_INTERNAL void gc_shim_leave(gc_nccl_id_t id, gc_shim_call_t *call, int result);

/* GCSHIM_CHECK's last mismatch on this thread (empty: none since the last
 * comparison); ncclGetLastError answers it while it is set. */
extern GC_INTERNAL _Thread_local char gc_shim_check_msg[2048];

/* The switches, read once from the environment into one word, so that a
 * wrapper makes one relaxed load for all of them (GC_SW_NO_CUDA is added
 * when the driver turns out to be absent). 0: not read yet. */
enum {
  GC_SW_READ = 1,
  GC_SW_DISABLE = 2,  /* GCSHIM_DISABLE=1: pure pass-through */
  GC_SW_CHECK = 4,    /* GCSHIM_CHECK=1 */
  GC_SW_TRACE = 8,    /* GCSHIM_TRACE set */
  GC_SW_NO_CUDA = 16, /* no CUDA driver: never ask about capture */
  /* GCSHIM_CAPTURED=0: do not ask the driver whether each call's stream is
   * capturing (13-22 ns per call on the H100 machine); captured_calls stays
   * 0. GCSHIM_CHECK=1 asks anyway (it must not wait under capture). */
  GC_SW_NO_CAPTURE_QUERY = 32,
  /* capture.c: a stream capture seen to begin has not been seen to end
   * (while set, every counted call asks the driver), and the tracking
   * cannot be trusted (for good: always ask) */
  GC_SW_CAPTURE_LIVE = 64,
  GC_SW_CAPTURE_BLIND = 128,
  /* Switches that send a collective down the full path (gc_shim_enter):
   * every call timed and asked about capture. */
  GC_SW_SLOW = GC_SW_CHECK | GC_SW_TRACE | GC_SW_CAPTURE_LIVE | GC_SW_CAPTURE_BLIND
};
#define GC_SHIM_SWITCHES (gc_hot.shim_switches)
GC_INTERNAL int gc_shim_switches_init(void);
static inline int gc_shim_switches(void) {
  int s = atomic_load_explicit(&GC_SHIM_SWITCHES, memory_order_relaxed);
  return GC_LIKELY(s != 0) ? s : gc_shim_switches_init();
}
static inline bool gc_shim_disabled(void) { return (gc_shim_switches() & GC_SW_DISABLE) != 0; }

/* The fast path of a collective or point-to-point call on an adopted
 * communicator whose statistics entry this thread has (shim.c's wrappers):
 * no capture query unless a capture is live, host time of a sample. */
GC_INTERNAL void gc_shim_time_start(gc_shim_call_t *c, gc_shim_tls_t *t);
static inline int gc_shim_coll_enter(gc_nccl_id_t id, gc_shim_call_t *c, gc_shim_tls_t *t,
                                     gc_stats_thread_t *self);
static inline void gc_shim_coll_leave(gc_nccl_id_t id, gc_shim_call_t *c, int result);

/* Element size of an ncclDataType_t (0 for an unknown one): log2 of the
 * sizes {1, 1, 4, 4, 8, 8, 2, 4, 8, 2, 1, 1} two bits each in a constant,
 * so that the hot path loads no table. */
static inline size_t gc_shim_dt_size(int dtype) {
  enum {
    LOG2 = 0 | 0 << 2 | 2 << 4 | 2 << 6 | 3 << 8 | 3 << 10 | 1 << 12 | 2 << 14 | 3 << 16 | 1 << 18 |
           0 << 20 | 0 << 22
  };
  _Static_assert(ncclNumTypes == 12, "a size for every ncclDataType_t in LOG2");
  return GC_LIKELY((unsigned)dtype < ncclNumTypes) ? (size_t)1 << ((LOG2 >> (2 * dtype)) & 3) : 0;
}

/* capture.c: the wrapper for a look-up of one of the driver's capture entry
 * points (name, on handle, answered by real_dlsym from libcuda), or NULL. */
GC_INTERNAL void *gc_shim_capture_lookup(void *handle, const char *name,
                                         void *(*real_dlsym)(void *, const char *));
/* Gives capture tracking up (GC_SW_CAPTURE_BLIND), saying why once. */
GC_INTERNAL void gc_shim_capture_blind(const char *why);

/* Inside the application's ncclGroupStart/End on this thread. */
static inline bool gc_shim_in_group(void) { return gc_shim_tls.group_depth > 0; }

/* The CPU group of a communicator whose ranks span hosts: control
 * operations as the real NCCL's collectives on comm itself (commcpu.c).
 * Made locally (no communication); transport name "comm". */
GC_INTERNAL gc_status_t gc_shim_commcpu_create(ncclComm_t comm, int rank, int size,
                                               double timeout_s, gc_cpu_group_t **out);

/* ---- adopted communicators (adopt.c) -------------------------------------- */

typedef enum {
  GC_SHIM_PENDING = 0,  /* non-blocking init still running, or not adopted yet */
  GC_SHIM_ADOPTED = 1,  /* a group, with its CPU group when it has one */
  GC_SHIM_ADOPTING = 2, /* one thread is adopting it */
  GC_SHIM_FAILED = 3    /* could not be adopted; calls are forwarded, not counted */
} gc_shim_state_t;

typedef struct gc_shim_comm {
  ncclComm_t comm;
  _Atomic int state;           /* gc_shim_state_t */
  int stats_id;                /* gc_stats group id, -1 before adoption (beside comm and
                                * state: the line a counted call reads) */
  char key[512];               /* rendezvous key, identical on every member */
  struct gc_group g;           /* registered in the registry once adopted */
  bool is_job;                 /* the process's first communicator */
  _Atomic bool report_flushed; /* job: its release wrote the report */
  int split_seq, shrink_seq;   /* splits and shrinks of this parent so far */
  uint64_t check_seq;          /* GCSHIM_CHECK: collectives compared so far */
  gc_shim_reg_t *reg;          /* pending: registration kept until adoption */
  const char *parent_name;     /* split/shrink: the parent's unique name, or NULL */
  char name_hint[GC_NAME_MAX]; /* config.commName, kept for a pending comm */
  int color;                   /* split colour, -2 for a shrink, -3 otherwise */
  pid_t *member_pids;          /* adoption: the members' registered pids (group order), or NULL */
  bool one_process;            /* several of its ranks made by one thread (ncclCommInitAll, or
                                * inits in one group): no CPU group, which would wait on itself */
} gc_shim_comm_t;

/* The communicator map (adopt.c writes it under a lock): open addressing,
 * keys never removed, values emptied at release. */
#define GC_SHIM_MAP_SIZE 16384 /* power of two; keys are never removed */
typedef struct {
  _Atomic(uintptr_t) key;
  _Atomic(gc_shim_comm_t *) val;
} gc_shim_map_slot_t;
extern GC_INTERNAL gc_shim_map_slot_t gc_shim_map[GC_SHIM_MAP_SIZE];
static inline size_t gc_shim_map_hash(uintptr_t k) {
  return (size_t)((k >> 4) * 0x9e3779b97f4a7c15ull >> (64 - __builtin_ctz(GC_SHIM_MAP_SIZE)));
}

/* Moves on whenever a map entry or a communicator's statistics group
 * changes (threads' one-entry caches then look again). */
#define GC_SHIM_MAP_GEN (gc_hot.shim_map_gen)
static inline void gc_shim_map_changed(void) {
  atomic_fetch_add_explicit(&GC_SHIM_MAP_GEN, 1, memory_order_acq_rel);
}

/* The adopted (or pending) communicator, or NULL. Lock-free. */
static inline gc_shim_comm_t *gc_shim_lookup(ncclComm_t comm) {
  uintptr_t k = (uintptr_t)comm;
  if (!k) return NULL;
  for (size_t i = gc_shim_map_hash(k), n = 0; n < GC_SHIM_MAP_SIZE;
       i = (i + 1) & (GC_SHIM_MAP_SIZE - 1), n++) {
    uintptr_t e = atomic_load_explicit(&gc_shim_map[i].key, memory_order_acquire);
    if (GC_LIKELY(e == k)) return atomic_load_explicit(&gc_shim_map[i].val, memory_order_acquire);
    if (!e) return NULL;
  }
  return NULL;
}
/* Registration before a creation call (call holds the arguments). */
GC_INTERNAL void gc_shim_register(gc_nccl_id_t id, gc_shim_call_t *call);
/* After a creation call returned result. */
GC_INTERNAL void gc_shim_created(gc_nccl_id_t id, gc_shim_call_t *call, int result);
/* The application's outermost ncclGroupEnd (or SimulateEnd) returned
 * result: the creations queued inside it are carried out now. */
GC_INTERNAL void gc_shim_group_ended(int result);
/* After the real ncclGroupEnd/SimulateEnd (shim.c's group wrappers). */
static inline void gc_shim_group_left(gc_shim_tls_t *t, int result) {
  if (t->group_depth > 0 && --t->group_depth == 0 && GC_UNLIKELY(t->group_pending)) {
    t->group_pending = false;
    gc_shim_group_ended(result);
  }
}
/* ncclCommGetAsyncError(comm) read state: comm's non-blocking splits are
 * written now unless it still reads ncclInProgress. */
GC_INTERNAL void gc_shim_parent_polled(ncclComm_t comm, ncclResult_t state);
/* A pending communicator whose async error reads success. */
GC_INTERNAL void gc_shim_adopt_pending(gc_shim_comm_t *sc);
/* Finalize/Destroy/Abort: releases the group (abort: never waits). */
GC_INTERNAL void gc_shim_release(ncclComm_t comm, gc_nccl_id_t id);
/* Adopted communicator by unique name, or NULL. */
GC_INTERNAL gc_shim_comm_t *gc_shim_by_name(const char *name);

/* ---- dlsym/dlopen interposition (dl.c) ----------------------------------- */
/* addr lies in a loaded library whose file name starts with prefix
 * ("libnccl.so"), or whose path is path (NULL: none). */
GC_INTERNAL bool gc_shim_defined_in(const void *addr, const char *prefix, const char *path);
/* Our wrapper of NCCL entry point name ("ncclAllReduce"), or NULL. */
GC_INTERNAL void *gc_shim_wrapper(const char *name);

/* ---- the fast path's bodies --------------------------------------------------- */

/* This call (on entry e, the calling thread's) is one to time: one of the
 * first calls of its group and op on this thread, or the one the last timed
 * call chose (gc_shim_time_start). */
static inline bool gc_shim_time_due(const gc_stats_entry_t *e) {
  return e->calls + 1 >= e->next_timed;
}

/* The wrapper's shortest path may count this call: NCCL ready and nothing
 * switched on that needs the full path, not nested, the thread's cached
 * entry is this communicator's and op's and still valid, and the call is
 * not one to time (read from the entry's first line, which the count
 * writes anyway: the shortest path writes nothing thread-local). */
static inline bool gc_shim_fast_ok(int sw, const gc_shim_tls_t *t, ncclComm_t comm,
                                   gc_nccl_id_t id) {
  /* The word conditions folded into one test: one branch instead of one
   * each, fewer code lines on the path. */
  unsigned bad = ((unsigned)sw & (GC_SW_READ | GC_SW_DISABLE | GC_SW_SLOW)) ^ GC_SW_READ;
  bad |= (unsigned)atomic_load_explicit(&GC_NCCL_STATE, memory_order_acquire) ^ 1u;
  bad |= (unsigned)atomic_load_explicit(&gc_stats_current_wanted, memory_order_relaxed);
  bad |= (unsigned)t->depth | ((unsigned)t->c_id1 ^ ((unsigned)id + 1u));
  bad |= t->c_gen ^ atomic_load_explicit(&GC_SHIM_MAP_GEN, memory_order_acquire);
  return GC_LIKELY(bad == 0) && t->c_comm == comm && !gc_shim_time_due(t->c_e);
}

static inline int gc_shim_coll_enter(gc_nccl_id_t id, gc_shim_call_t *c, gc_shim_tls_t *t,
                                     gc_stats_thread_t *self) {
  if (GC_UNLIKELY((c->sw & GC_SW_SLOW) != 0 ||
                  atomic_load_explicit(&gc_stats_current_wanted, memory_order_relaxed)))
    return gc_shim_enter(id, c);
  gc_stats_entry_t *e;
  uint32_t gen = atomic_load_explicit(&GC_SHIM_MAP_GEN, memory_order_acquire);
  if (GC_LIKELY(t->c_comm == c->comm && t->c_id1 == (int)id + 1 && t->c_gen == gen)) {
    c->sc = t->c_sc;
    e = t->c_e;
  } else {
    gc_shim_comm_t *sc = c->sc = gc_shim_lookup(c->comm);
    int sid;
    if (GC_UNLIKELY(!sc || (sid = sc->stats_id) < 0 || !self ||
                    !(e = gc_stats_entry(self, sid, (int)id))))
      return gc_shim_enter(id, c); /* pending or unadopted, or this thread's first call */
    t->c_comm = c->comm, t->c_id1 = (int)id + 1, t->c_gen = gen, t->c_sc = sc, t->c_e = e;
  }
  c->e = e;
  if (GC_UNLIKELY(gc_shim_time_due(e))) gc_shim_time_start(c, t);
  return 0;
}

static inline void gc_shim_coll_leave(gc_nccl_id_t id, gc_shim_call_t *c, int result) {
  if (GC_LIKELY(c->e != NULL && c->t0 == 0)) {
    gc_stats_entry_add(c->e, (uint64_t)c->count * gc_shim_dt_size(c->dtype), false);
    return;
  }
  gc_shim_leave(id, c, result);
}

#endif /* GC_SHIM_H */
