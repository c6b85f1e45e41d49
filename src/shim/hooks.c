/*
 * hooks.c - what the interposer does around each real call: registration
 * and adoption of new communicators, the capture check, GCSHIM_CHECK's
 * comparison, statistics, release, and the report at exit.
 *
 * Hot path (a collective on an adopted communicator, shim.h's
 * gc_shim_coll_enter/leave inline in the wrapper): one lock-free map probe
 * and the thread's own counters; no capture query while no capture is live
 * (capture.c); the clock read before and after, and the capture query, only
 * on a timed call (a sample, GCSHIM_TIME_EVERY). No syscall, malloc or lock.
 * gc_shim_enter/leave below are the full path: everything else, and every
 * call while GCSHIM_CHECK or GCSHIM_TRACE is on or a capture is live.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/report.h"
#include "core/stats.h"
#include "cpu/cpu.h"
#include "nccl/gc_cuda.h"
#include "shim/shim.h"

/* The first capture query loads the driver; without one, GC_SW_NO_CUDA is
 * set and the question is never asked again. */
static GC_NOINLINE bool cuda_absent(void) {
  if (gc_cuda_load() == GC_OK) return false;
  GC_INFO("no CUDA driver: streams are taken as never capturing");
  atomic_fetch_or(&GC_SHIM_SWITCHES, GC_SW_NO_CUDA);
  return true;
}

static _Atomic int cuda_loaded;

static inline bool is_capturing(int sw, void *stream) {
  if (sw & GC_SW_NO_CUDA) return false;
  if ((sw & (GC_SW_NO_CAPTURE_QUERY | GC_SW_CHECK)) == GC_SW_NO_CAPTURE_QUERY) return false;
  if (!stream) return false; /* the legacy default stream cannot be captured */
  if (GC_UNLIKELY(!atomic_load_explicit(&cuda_loaded, memory_order_relaxed))) {
    if (cuda_absent()) return false;
    atomic_store_explicit(&cuda_loaded, 1, memory_order_relaxed);
  }
  bool cap = false;
  /* A stream that is not a CUDA stream (the host fixture) fails the query. */
  return gc_cuda_is_capturing(stream, &cap) == GC_OK && cap;
}

/* The next gap between timed calls: uniform in 0 .. 2N-2 (mean N-1 untimed
 * calls, so one call in N is timed; the next timed call at most 2N-1 calls
 * on). */
static uint32_t next_gap(gc_shim_tls_t *t) {
  uint32_t n = gc_shim_time_every;
  if (n <= 1) return 0;
  uint32_t x = t->rng;
  if (!x) x = (uint32_t)(uintptr_t)t * 2654435761u | 1u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  t->rng = x;
  return x % (2 * n - 1);
}

void gc_shim_time_start(gc_shim_call_t *c, gc_shim_tls_t *t) {
  /* This call's number on its entry (counted after the real call), and the
   * one to time next: the following one while this is one of the entry's
   * first GC_SHIM_TIME_FIRST calls, else one after a random gap. */
  uint64_t n = c->e->calls + 1;
  uint64_t next = n < GC_SHIM_TIME_FIRST ? n + 1 : n + 1 + next_gap(t);
  __atomic_store_n(&c->e->next_timed, next, __ATOMIC_RELAXED);
  /* A timed call asks about its stream: exact for it, and a check that no
   * capture began where capture.c could not see it. */
  c->captured = is_capturing(c->sw, c->stream);
  if (GC_UNLIKELY(c->captured))
    gc_shim_capture_blind("a stream captures whose capture the shim did not see begin");
  c->t0 = gc_stats_ticks();
}

/* ---- GCSHIM_CHECK ------------------------------------------------------------ */

typedef struct {
  int32_t op, dtype, redop, root;
  uint64_t count, seq;
} sig_t;

static void sig_text(const sig_t *s, char *buf, size_t len) {
  const char *name = (unsigned)s->op < GC_NCCL_API_COUNT ? gc_nccl_api[s->op].name : "?";
  snprintf(buf, len, "#%llu %s(count %llu, datatype %d, op %d, root %d)",
           (unsigned long long)s->seq, name, (unsigned long long)s->count, s->dtype, s->redop,
           s->root);
}

_Thread_local char gc_shim_check_msg[2048];

/* Compares this call with every rank's; ncclInvalidUsage on a mismatch,
 * the same on every rank (each sees every signature). */
static GC_NOINLINE int check_call(gc_nccl_id_t id, gc_shim_call_t *c, gc_shim_comm_t *sc) {
  if (!sc->g.cpu) return 0;
  if (gc_shim_in_group() && !strcmp(sc->g.cpu->ops->name, "comm")) {
    /* The comparison would be a NCCL call joining the application's group. */
    static _Atomic int said;
    if (!atomic_exchange(&said, 1))
      GC_INFO(
          "GCSHIM_CHECK: calls inside ncclGroupStart/End on groups that span hosts (%s) "
          "are not compared",
          sc->g.name);
    return 0;
  }
  gc_shim_check_msg[0] = 0;
  int n = sc->g.size;
  sig_t me = {(int32_t)id, c->dtype, c->redop, c->root, c->count, sc->check_seq++};
  sig_t *all = malloc((size_t)n * sizeof *all);
  if (!all) return 0;
  int res = 0;
  gc_status_t s = gc_cpu_allgather(sc->g.cpu, &me, sizeof me, all);
  if (s != GC_OK) {
    GC_WARN("GCSHIM_CHECK on %s: the comparison failed: %s", sc->g.name, gc_last_error());
    res = s == GC_ERR_PEER_LOST ? ncclRemoteError : ncclInvalidUsage;
    goto out;
  }
  for (int r = 1; r < n; r++)
    if (memcmp(&all[r], &all[0], sizeof me)) {
      char msg[2048];
      size_t o =
          (size_t)snprintf(msg, sizeof msg, "GCSHIM_CHECK: ranks of %s disagree:", sc->g.name);
      for (int q = 0; q < n && o < sizeof msg - 200; q++) {
        char t[160];
        sig_text(&all[q], t, sizeof t);
        o += (size_t)snprintf(msg + o, sizeof msg - o, " rank %d %s;", q, t);
      }
      GC_WARN("%s", msg);
      gc_error(GC_ERR_INVALID_ARG, "%s", msg);
      snprintf(gc_shim_check_msg, sizeof gc_shim_check_msg, "%s", msg);
      res = ncclInvalidUsage;
      break;
    }
out:
  free(all);
  return res;
}

/* ---- the hooks ----------------------------------------------------------------- */

int gc_shim_enter(gc_nccl_id_t id, gc_shim_call_t *c) {
  gc_nccl_cat_t cat = gc_nccl_api[id].cat;
  if (GC_LIKELY(cat == GC_NCCL_CAT_coll || cat == GC_NCCL_CAT_p2p)) {
    c->captured = is_capturing(c->sw, c->stream);
    gc_shim_comm_t *sc = c->sc = gc_shim_lookup(c->comm);
    if (GC_UNLIKELY(c->sw & GC_SW_CHECK) && cat == GC_NCCL_CAT_coll && !c->captured) {
      if (sc && atomic_load_explicit(&sc->state, memory_order_acquire) == GC_SHIM_ADOPTED) {
        int r = check_call(id, c, sc);
        if (r) return r;
      }
    }
    /* The plugins NCCL calls from inside this call learn the group here. */
    if (GC_UNLIKELY(atomic_load_explicit(&gc_stats_current_wanted, memory_order_relaxed)) && sc)
      gc_stats_current = sc->stats_id;
    c->t0 = gc_stats_ticks();
    return 0;
  }
  if (cat == GC_NCCL_CAT_init) gc_shim_register(id, c);
  return 0;
}

static GC_NOINLINE void leave_slow(gc_nccl_id_t id, gc_shim_call_t *c, int result) {
  switch (id) {
    case GC_NCCL_ID_CommInitRank:
    case GC_NCCL_ID_CommInitRankConfig:
    case GC_NCCL_ID_CommInitRankScalable:
    case GC_NCCL_ID_CommInitAll:
    case GC_NCCL_ID_CommSplit:
    case GC_NCCL_ID_CommShrink:
      gc_shim_created(id, c, result);
      return;
    case GC_NCCL_ID_CommGetAsyncError: {
      if (result != ncclSuccess || !c->async_error) return;
      gc_shim_parent_polled(c->comm, *c->async_error);
      if (*c->async_error != ncclSuccess) return;
      gc_shim_comm_t *sc = gc_shim_lookup(c->comm);
      if (sc && atomic_load(&sc->state) == GC_SHIM_PENDING) gc_shim_adopt_pending(sc);
      return;
    }
    case GC_NCCL_ID_CommFinalize:
    case GC_NCCL_ID_CommDestroy:
    case GC_NCCL_ID_CommAbort:
      gc_shim_release(c->comm, id);
      return;
    default:
      return;
  }
}

/* A call on a non-blocking communicator nobody has polled to success yet:
 * adopt it now if its initialisation is done (this call is then counted). */
static GC_NOINLINE void pending_call(gc_shim_comm_t *sc) {
  ncclResult_t st = ncclInProgress;
  if (atomic_load(&sc->state) == GC_SHIM_PENDING &&
      gc_nccl_real.fn.CommGetAsyncError(sc->comm, &st) == ncclSuccess && st == ncclSuccess)
    gc_shim_adopt_pending(sc);
}

void gc_shim_leave(gc_nccl_id_t id, gc_shim_call_t *c, int result) {
  if (GC_LIKELY(c->t0 != 0)) {
    uint64_t ns = gc_stats_ticks() - c->t0; /* ticks */
    if (GC_UNLIKELY(atomic_load_explicit(&gc_stats_current_wanted, memory_order_relaxed)))
      gc_stats_current = -1;
    gc_shim_comm_t *sc = c->sc;
    if (GC_UNLIKELY(sc && sc->stats_id < 0)) pending_call(sc);
    if (GC_LIKELY(sc && sc->stats_id >= 0)) {
      size_t es = gc_shim_dt_size(c->dtype);
      gc_stats_record(sc->stats_id, (int)id, (uint64_t)c->count * es, ns, c->captured);
      if (GC_UNLIKELY(c->sw & GC_SW_TRACE))
        gc_trace_record(sc->stats_id, (int)id, c->t0, ns, (uint64_t)c->count * es, c->captured);
    }
    return;
  }
  leave_slow(id, c, result);
}

/* ---- set-up and the report at exit ------------------------------------------------ */

static const char *op_names[GC_NCCL_API_COUNT];

static void at_exit(void) {
  if (gc_shim_disabled()) return;
  gc_report_flush(true, true);
}

__attribute__((constructor)) static void shim_init(void) {
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) op_names[i] = gc_nccl_api[i].name + 4;
  gc_stats_set_op_names(op_names, GC_NCCL_API_COUNT);
  if (!gc_shim_disabled()) atexit(at_exit);
}
