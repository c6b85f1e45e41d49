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
#include "cpu/cpu.h"
#include "nccl/gc_nccl.h"

typedef struct gc_shim_reg gc_shim_reg_t;

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
  GC_SW_DISABLE = 2, /* GCSHIM_DISABLE=1: pure pass-through */
  GC_SW_CHECK = 4,   /* GCSHIM_CHECK=1 */
  GC_SW_TRACE = 8,   /* GCSHIM_TRACE set */
  GC_SW_NO_CUDA = 16, /* no CUDA driver: never ask about capture */
  /* GCSHIM_CAPTURED=0: do not ask the driver whether each call's stream is
   * capturing (13-22 ns per call on the H100 machine); captured_calls stays
   * 0. GCSHIM_CHECK=1 asks anyway (it must not wait under capture). */
  GC_SW_NO_CAPTURE_QUERY = 32
};
extern GC_INTERNAL _Atomic int gc_shim_switches_cached;
GC_INTERNAL int gc_shim_switches_init(void);
static inline int gc_shim_switches(void) {
  int s = atomic_load_explicit(&gc_shim_switches_cached, memory_order_relaxed);
  return GC_LIKELY(s != 0) ? s : gc_shim_switches_init();
}
static inline bool gc_shim_disabled(void) { return (gc_shim_switches() & GC_SW_DISABLE) != 0; }

/* ncclGroupStart calls not yet ended on this thread (hooks.c). */
extern GC_INTERNAL _Thread_local int gc_shim_group_depth;
static inline bool gc_shim_in_group(void) { return gc_shim_group_depth > 0; }

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
  char key[512];               /* rendezvous key, identical on every member */
  struct gc_group g;           /* registered in the registry once adopted */
  int stats_id;                /* gc_stats group id, -1 before adoption */
  bool is_job;                 /* the process's first communicator */
  _Atomic bool report_flushed; /* job: its release wrote the report */
  int split_seq, shrink_seq;   /* splits and shrinks of this parent so far */
  uint64_t check_seq;          /* GCSHIM_CHECK: collectives compared so far */
  gc_shim_reg_t *reg;          /* pending: registration kept until adoption */
  const char *parent_name;     /* split/shrink: the parent's unique name, or NULL */
  char name_hint[GC_NAME_MAX]; /* config.commName, kept for a pending comm */
  int color;                   /* split colour, -2 for a shrink, -3 otherwise */
  bool one_process;            /* ncclCommInitAll: every rank is a thread of this process */
} gc_shim_comm_t;

/* The adopted (or pending) communicator, or NULL. Lock-free. */
GC_INTERNAL gc_shim_comm_t *gc_shim_lookup(ncclComm_t comm);
/* Registration before a creation call (call holds the arguments). */
GC_INTERNAL void gc_shim_register(gc_nccl_id_t id, gc_shim_call_t *call);
/* After a creation call returned result. */
GC_INTERNAL void gc_shim_created(gc_nccl_id_t id, gc_shim_call_t *call, int result);
/* A pending communicator whose async error reads success. */
GC_INTERNAL void gc_shim_adopt_pending(gc_shim_comm_t *sc);
/* Finalize/Destroy/Abort: releases the group (abort: never waits). */
GC_INTERNAL void gc_shim_release(ncclComm_t comm, gc_nccl_id_t id);
/* Adopted communicator by unique name, or NULL. */
GC_INTERNAL gc_shim_comm_t *gc_shim_by_name(const char *name);

/* ---- dlsym/dlopen interposition (dl.c) ----------------------------------- */
/* Our wrapper of NCCL entry point name ("ncclAllReduce"), or NULL. */
GC_INTERNAL void *gc_shim_wrapper(const char *name);

#endif /* GC_SHIM_H */
