/*
 * profiler.c - NCCL profiler plugin (v5 for NCCL 2.28, v4 for 2.27).
 *
 * Events feed the shim's statistics registry by group name (commName, else
 * the communicator hash in hex) and per-group counters of their own
 * (gc_prof_counts): collectives and p2p with algorithm, protocol and
 * channels, graph-captured API calls, and GPU time of each collective from
 * its kernel-channel events (first channel start to last channel stop, GPU
 * globaltimer ns).
 *
 * With the shim preloaded (it answers the program's ncclX calls and is not
 * disabled), the shim counts the calls: the profiler then only adds its own
 * counters (GPU time, algorithms), so nothing is counted twice.
 *
 * Events come from a preallocated pool per context (GCSHIM_PROFILER_EVENTS,
 * default 4096): a slot is taken with one compare-and-swap after a bounded
 * scan; when none is free the event is dropped and counted, and *eHandle is
 * NULL. An event holds a reference on its parent, so a parent stopped
 * before its child (CollApi before Coll, Group before Coll, Coll before its
 * kernel channels) stays valid until the last child is released.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/report.h"
#include "core/outfile.h"
#include "core/stats.h"
#include "nccl/gc_nccl.h"
#include "plugin/nccl_plugin.h"
#include "plugin/plugin.h"

typedef struct prof_ctx prof_ctx_t;
typedef struct prof_event {
  _Atomic int busy;    /* pool slot taken */
  _Atomic int refs;    /* own 1 + one per live child + pending kernel channels */
  _Atomic int ch_left; /* Coll/P2p: kernel channels still expected (nChannels) */
  _Atomic int stopped; /* Coll/P2p: stopped by NCCL, at stop_ns */
  uint64_t stop_ns;
  uint64_t type;
  prof_ctx_t *ctx;
  struct prof_event *parent;
  int op; /* gc_nccl_id_t, -1 */
  uint64_t bytes;
  uint64_t t0; /* host ticks at start */
  bool captured;
  /* collective: GPU span over its kernel channels */
  _Atomic uint64_t gpu_start, gpu_stop; /* min start, max stop; 0: none */
  uint64_t ch_start;                    /* kernel channel: its start pTimer */
  prof_ctx_t *api_ctx;                  /* API slots counting calls (no shim): their context */
} prof_event_t;

typedef struct {
  char name[GC_NAME_MAX];
  _Atomic uint64_t colls, p2ps, graph_captured, kernel_ch, gpu_ns, dropped, channels;
  _Atomic uint64_t algo[8], proto[4];
} counts_t;

struct prof_ctx {
  counts_t *counts;
  int stats_id;      /* shim registry id, -1 when the shim counts (or full) */
  _Atomic int group; /* GPU times and algorithms go there: stats_id, or the
                      * shim's group once learned; -1 until known */
  uint64_t comm_id;
  int n_events;
  uint64_t stale_ns; /* GCSHIM_PROFILER_STALE_MS */
  _Atomic unsigned cursor;
  prof_event_t *events;
  _Atomic int api_calls; /* v5 API events seen: calls are counted from them */
};

/* API events' handles: GroupApi, CollApi, P2pApi. NCCL starts and stops
 * them on the thread of the program's call (CollApi and P2pApi inside it,
 * GroupApi when its outermost group ends), so a slot per thread serves
 * every context without sharing; never freed, never in the pools. */
static _Thread_local prof_event_t api_slot[3];

#define COUNTS_MAX 256
static counts_t counts[COUNTS_MAX];
static _Atomic int n_counts;
static _Atomic uint64_t dropped_total;
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

static counts_t *counts_find(const char *name, bool add) {
  int n = atomic_load(&n_counts);
  for (int i = 0; i < n; i++)
    if (strcmp(counts[i].name, name) == 0) return &counts[i];
  if (!add) return NULL;
  counts_t *c = NULL;
  pthread_mutex_lock(&counts_lock);
  n = atomic_load(&n_counts);
  for (int i = 0; i < n && !c; i++)
    if (strcmp(counts[i].name, name) == 0) c = &counts[i];
  if (!c && n < COUNTS_MAX) {
    c = &counts[n];
    snprintf(c->name, sizeof c->name, "%s", name);
    atomic_store(&n_counts, n + 1);
  }
  pthread_mutex_unlock(&counts_lock);
  return c;
}

bool gc_prof_counts(const char *name, gc_prof_counts_t *out) {
  counts_t *c = counts_find(name, false);
  if (!c) return false;
  memset(out, 0, sizeof *out);
  out->colls = atomic_load(&c->colls);
  out->p2ps = atomic_load(&c->p2ps);
  out->graph_captured = atomic_load(&c->graph_captured);
  out->kernel_ch = atomic_load(&c->kernel_ch);
  out->gpu_ns = atomic_load(&c->gpu_ns);
  out->dropped = atomic_load(&c->dropped);
  out->channels = atomic_load(&c->channels);
  for (int i = 0; i < 8; i++) out->algo[i] = atomic_load(&c->algo[i]);
  for (int i = 0; i < 4; i++) out->proto[i] = atomic_load(&c->proto[i]);
  return true;
}

uint64_t gc_prof_dropped(void) { return atomic_load(&dropped_total); }

int gc_prof_dump(FILE *f) {
  int n = atomic_load(&n_counts);
  for (int i = 0; i < n; i++) {
    gc_prof_counts_t c;
    gc_prof_counts(counts[i].name, &c);
    fprintf(f,
            "profiler %s colls %llu p2p %llu graph_captured %llu kernel_ch %llu gpu_ns %llu "
            "dropped %llu\n",
            counts[i].name, (unsigned long long)c.colls, (unsigned long long)c.p2ps,
            (unsigned long long)c.graph_captured, (unsigned long long)c.kernel_ch,
            (unsigned long long)c.gpu_ns, (unsigned long long)c.dropped);
  }
  return n;
}

void gc_prof_reset(void) {
  pthread_mutex_lock(&counts_lock);
  memset(counts, 0, sizeof counts);
  atomic_store(&n_counts, 0);
  atomic_store(&dropped_total, 0);
  pthread_mutex_unlock(&counts_lock);
}

/* ---- names of things ------------------------------------------------------ */

static int index_of(const char *const *tab, int n, const char *s) {
  if (!s) return n;
  for (int i = 0; i < n; i++)
    if (strcasecmp(tab[i], s) == 0) return i;
  return n; /* other */
}
static const char *const algos[7] = {"TREE",      "RING", "COLLNET_DIRECT", "COLLNET_CHAIN", "NVLS",
                                     "NVLS_TREE", "PAT"};
static const char *const protos[3] = {"LL", "LL128", "SIMPLE"};

static int op_id(const char *func) {
  static const struct {
    const char *name;
    int id;
  } ops[] = {{"AllReduce", GC_NCCL_ID_AllReduce},
             {"AllGather", GC_NCCL_ID_AllGather},
             {"ReduceScatter", GC_NCCL_ID_ReduceScatter},
             {"Broadcast", GC_NCCL_ID_Broadcast},
             {"Reduce", GC_NCCL_ID_Reduce},
             {"Send", GC_NCCL_ID_Send},
             {"Recv", GC_NCCL_ID_Recv},
             {"AlltoAll", GC_NCCL_ID_AlltoAll},
             {"Gather", GC_NCCL_ID_Gather},
             {"Scatter", GC_NCCL_ID_Scatter}};
  if (!func) return -1;
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(ops[i].name, func) == 0) return ops[i].id;
  return -1;
}

static uint64_t dtype_size(const char *dt) {
  if (!dt) return 1;
  static const struct {
    const char *name;
    unsigned size;
  } t[] = {{"ncclInt8", 1},    {"ncclUint8", 1},    {"ncclFloat8e4m3", 1}, {"ncclFloat8e5m2", 1},
           {"ncclFloat16", 2}, {"ncclBfloat16", 2}, {"ncclInt32", 4},      {"ncclUint32", 4},
           {"ncclFloat32", 4}, {"ncclInt64", 8},    {"ncclUint64", 8},     {"ncclFloat64", 8}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (strcmp(t[i].name, dt) == 0) return t[i].size;
  return 1;
}

/* True when the shim answers this process's ncclX calls: this library is
 * named in LD_PRELOAD (so its wrappers come first in the global scope) and
 * GCSHIM_DISABLE is not set. Loaded only by NCCL as a plugin (RTLD_LOCAL),
 * nobody calls its wrappers. */
static _Atomic int shim_counts_cached = -1;
void gc_prof_test_shim_counts(int on) { atomic_store(&shim_counts_cached, on); }

static bool shim_counts(void) {
  _Atomic int *const cached = &shim_counts_cached;
  int c = atomic_load_explicit(cached, memory_order_relaxed);
  if (c >= 0) return c;
  c = 0;
  const char *pre = getenv("LD_PRELOAD");
  Dl_info self;
  char me[PATH_MAX], it[PATH_MAX], entry[PATH_MAX];
  if (!gc_param_GCSHIM_DISABLE() && pre && dladdr((void *)shim_counts, &self) && self.dli_fname &&
      realpath(self.dli_fname, me)) {
    const char *base = strrchr(me, '/') ? strrchr(me, '/') + 1 : me;
    for (const char *p = pre; *p && !c;) {
      size_t n = strcspn(p, ": \t");
      if (n && n < sizeof entry) {
        memcpy(entry, p, n);
        entry[n] = 0;
        if (strchr(entry, '/'))
          c = realpath(entry, it) && strcmp(it, me) == 0;
        else
          c = strcmp(entry, base) == 0;
      }
      p += n;
      p += strspn(p, ": \t");
    }
  }
  atomic_store(cached, c);
  return c;
}

/* GCSHIM_PLUGIN_REPORT=path (%p: pid): the plugins' counters at exit. */
static void write_plugin_report(void) {
  const char *path = gc_param_GCSHIM_PLUGIN_REPORT();
  if (!path) return;
  char buf[PATH_MAX];
  const char *pp = strstr(path, "%p");
  if (pp)
    snprintf(buf, sizeof buf, "%.*s%d%s", (int)(pp - path), path, (int)getpid(), pp + 2);
  else
    snprintf(buf, sizeof buf, "%s", path);
  gc_outfile_t o;
  if (!gc_outfile_open(&o, buf, "GCSHIM_PLUGIN_REPORT")) return;
  gc_prof_dump(o.f);
  gc_tuner_dump(o.f);
  gc_outfile_close(&o);
}
static pthread_once_t report_once = PTHREAD_ONCE_INIT;
static void register_report(void) {
  if (gc_param_GCSHIM_PLUGIN_REPORT()) atexit(write_plugin_report);
}
void gc_plugin_report_at_exit(void) { pthread_once(&report_once, register_report); }

/* ---- contexts ------------------------------------------------------------- */

static gcnp_result_t init_common(void **vctx, int *mask, const char *comm_name, uint64_t comm_id,
                                 int nnodes, int nranks, int rank, gcnp_logger_t log) {
  if (!vctx) return GCNP_SUCCESS;
  *vctx = NULL;
  gc_plugin_report_at_exit();
  gc_plugin_op_names();
  char name[GC_NAME_MAX];
  if (comm_name && *comm_name) {
    snprintf(name, sizeof name, "%s", comm_name);
    gc_plugin_name_set(comm_id, comm_name);
  } else {
    snprintf(name, sizeof name, "%016llx", (unsigned long long)comm_id);
  }
  prof_ctx_t *ctx = calloc(1, sizeof *ctx);
  int n = (int)gc_param_GCSHIM_PROFILER_EVENTS();
  if (ctx) ctx->events = calloc((size_t)n, sizeof *ctx->events);
  if (!ctx || !ctx->events || !(ctx->counts = counts_find(name, true))) {
    if (log)
      log(GCNP_LOG_WARN, GCNP_LOG_PROFILE, __FILE__, __LINE__,
          "gcshim profiler: no memory for %d events of %s, or more than %d names; its events "
          "ignored",
          n, name, COUNTS_MAX);
    if (ctx) free(ctx->events);
    free(ctx);
    /* Success with a NULL context: NCCL keeps calling startEvent with it,
     * which answers NULL handles. The mask is left alone: it is one
     * process-wide ncclProfilerEventMask every communicator's init gets,
     * and NCCL stops a stale CollApi handle when it loses the CollApi bits. */
    return GCNP_SUCCESS;
  }
  ctx->n_events = n;
  ctx->stale_ns = (uint64_t)gc_param_GCSHIM_PROFILER_STALE_MS() * 1000000;
  ctx->stats_id = -1;
  ctx->comm_id = comm_id;
  atomic_store(&ctx->group, -1);
  if (!shim_counts()) {
    gc_stats_group_info_t info;
    memset(&info, 0, sizeof info);
    info.key = comm_id;
    snprintf(info.name, sizeof info.name, "%s", name);
    info.source = comm_name && *comm_name ? GC_SOURCE_COMMNAME : GC_SOURCE_DEFAULT;
    info.size = nranks;
    info.rank_in_group = rank;
    for (int i = 0; i < 64; i++) info.ranks[i] = -1;
    if (gc_stats_group_add(&info, &ctx->stats_id) != GC_OK) ctx->stats_id = -1;
    atomic_store(&ctx->group, ctx->stats_id);
    gc_plugin_group_set(comm_id, ctx->stats_id);
    char key[64];
    snprintf(key, sizeof key, "prof-%016llx", (unsigned long long)comm_id);
    gc_report_job_open(key, rank, nranks, 0); /* the first communicator is the job */
  }
  if (mask)
    *mask = GCNP_PROF_GROUP | GCNP_PROF_COLL | GCNP_PROF_P2P | GCNP_PROF_KERNEL_CH |
            GCNP_PROF_GROUP_API | GCNP_PROF_COLL_API | GCNP_PROF_P2P_API;
  if (log)
    log(GCNP_LOG_INFO, GCNP_LOG_INIT | GCNP_LOG_PROFILE, __FILE__, __LINE__,
        "gcshim profiler: %s rank %d/%d, %d events, %s", name, rank, nranks, n,
        ctx->stats_id >= 0 ? "counting calls" : "GPU time only (the shim counts calls)");
  *vctx = ctx;
  return GCNP_SUCCESS;
}

static gcnp_result_t init_v5(void **vctx, uint64_t comm_id, int *mask, const char *comm_name,
                             int nnodes, int nranks, int rank, gcnp_logger_t log) {
  return init_common(vctx, mask, comm_name, comm_id, nnodes, nranks, rank, log);
}
static gcnp_result_t init_v4(void **vctx, int *mask, const char *comm_name, uint64_t comm_hash,
                             int nnodes, int nranks, int rank, gcnp_logger_t log) {
  return init_common(vctx, mask, comm_name, comm_hash, nnodes, nranks, rank, log);
}

/* The report group of ctx's communicator; learned from the shim's call in
 * flight on this thread when not known yet. */
static int ctx_group(prof_ctx_t *ctx) {
  int g = atomic_load_explicit(&ctx->group, memory_order_relaxed);
  if (GC_LIKELY(g >= 0)) return g;
  int cur = gc_stats_current;
  if (cur < 0) return -1;
  if (atomic_compare_exchange_strong(&ctx->group, &g, cur)) gc_plugin_group_set(ctx->comm_id, cur);
  return atomic_load(&ctx->group);
}

static _Atomic uint64_t stale_total;
static void ev_release(prof_event_t *e);

static prof_event_t *ev_alloc(prof_ctx_t *ctx) {
  unsigned n = (unsigned)ctx->n_events;
  unsigned start = atomic_fetch_add_explicit(&ctx->cursor, 1, memory_order_relaxed);
  for (unsigned k = 0; k < n; k++) {
    prof_event_t *e = &ctx->events[(start + k) % n];
    int zero = 0;
    if (atomic_load_explicit(&e->busy, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong_explicit(&e->busy, &zero, 1, memory_order_acquire,
                                                memory_order_relaxed)) {
      atomic_store_explicit(&e->refs, 1, memory_order_relaxed);
      atomic_store_explicit(&e->ch_left, 0, memory_order_relaxed);
      atomic_store_explicit(&e->stopped, 0, memory_order_relaxed);
      return e;
    }
  }
  /* None free: take back a collective stopped long ago whose kernel
   * channels never all came (the slot stays in the pool, so a very late
   * channel writes into a live slot, never into freed memory). */
  uint64_t now = gc_now_ns();
  for (unsigned k = 0; k < n; k++) {
    prof_event_t *e = &ctx->events[(start + k) % n];
    int one = 1;
    if (atomic_load_explicit(&e->stopped, memory_order_acquire) == 1 &&
        now - e->stop_ns > ctx->stale_ns &&
        atomic_compare_exchange_strong_explicit(&e->stopped, &one, 0, memory_order_acq_rel,
                                                memory_order_relaxed)) {
      atomic_fetch_add_explicit(&stale_total, 1, memory_order_relaxed);
      prof_event_t *parent = e->parent;
      atomic_store_explicit(&e->refs, 1, memory_order_relaxed);
      atomic_store_explicit(&e->ch_left, 0, memory_order_relaxed);
      e->parent = NULL;
      ev_release(parent);
      return e;
    }
  }
  atomic_fetch_add_explicit(&ctx->counts->dropped, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&dropped_total, 1, memory_order_relaxed);
  return NULL;
}

/* Drops one reference; the last one accounts the event and frees it. */
static void ev_release(prof_event_t *e) {
  while (e) {
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1) return;
    prof_event_t *parent = e->parent;
    if (e->type == GCNP_PROF_COLL || e->type == GCNP_PROF_P2P) {
      uint64_t a = atomic_load(&e->gpu_start), b = atomic_load(&e->gpu_stop);
      if (a && b > a) {
        atomic_fetch_add_explicit(&e->ctx->counts->gpu_ns, b - a, memory_order_relaxed);
        int g = atomic_load_explicit(&e->ctx->group, memory_order_relaxed);
        if (g >= 0 && e->op >= 0) gc_stats_record_gpu(g, e->op, b - a);
      }
    }
    atomic_store_explicit(&e->stopped, 0, memory_order_relaxed);
    atomic_store_explicit(&e->busy, 0, memory_order_release); /* the slot is free */
    e = parent;
  }
}

static gcnp_result_t start_common(prof_ctx_t *ctx, void **handle, uint64_t type, void *parent_obj,
                                  const gcnp_event_descr_v5_t *d5,
                                  const gcnp_event_descr_v4_t *d4) {
  if (handle) *handle = NULL;
  if (!ctx || !handle) return GCNP_SUCCESS;
  counts_t *c = ctx->counts;
  /* API events (v5): graph capture is counted; CollApi and P2pApi are
   * stopped before the Coll/P2p events naming them as parent start, so
   * their handles are fixed slots (api_slot, this thread's), never freed. */
  if (d5 &&
      (type == GCNP_PROF_GROUP_API || type == GCNP_PROF_COLL_API || type == GCNP_PROF_P2P_API)) {
    int k = type == GCNP_PROF_GROUP_API ? 0 : type == GCNP_PROF_COLL_API ? 1 : 2;
    bool cap = k == 0   ? d5->groupApi.graphCaptured
               : k == 1 ? d5->collApi.graphCaptured
                        : d5->p2pApi.graphCaptured;
    if (k && cap) atomic_fetch_add_explicit(&c->graph_captured, 1, memory_order_relaxed);
    ctx_group(ctx); /* API events run inside the program's call */
    prof_event_t *a = &api_slot[k];
    a->api_ctx = NULL;
    if (k && ctx->stats_id >= 0) {
      /* Without the shim, the calls are counted from their API events (v5),
       * graph-captured ones once, at capture (the Coll events come at each
       * launch, from NCCL's host-callback thread). AlltoAll, Gather and
       * Scatter come as P2pApi Send/Recv parts; one-rank collectives (a
       * local copy) and 2.28's symmetric CE collectives have none. The
       * slot is this thread's call's until its stop. */
      const char *func = k == 1 ? d5->collApi.func : d5->p2pApi.func;
      const char *dt = k == 1 ? d5->collApi.datatype : d5->p2pApi.datatype;
      size_t count = k == 1 ? d5->collApi.count : d5->p2pApi.count;
      a->api_ctx = ctx;
      a->type = type;
      a->op = op_id(func);
      a->bytes = (uint64_t)count * dtype_size(dt);
      a->captured = cap;
      a->t0 = gc_stats_ticks();
      atomic_store_explicit(&ctx->api_calls, 1, memory_order_relaxed);
    }
    *handle = a;
    return GCNP_SUCCESS;
  }
  if (type != GCNP_PROF_GROUP && type != GCNP_PROF_COLL && type != GCNP_PROF_P2P &&
      type != GCNP_PROF_KERNEL_CH)
    return GCNP_SUCCESS;
  /* Parents holding a reference: Group for Coll/P2p (v5: parentGroup, as
   * parentObj is the API event), Coll/P2p for a kernel channel. */
  if (d5 && type == GCNP_PROF_COLL) parent_obj = d5->coll.parentGroup;
  if (d5 && type == GCNP_PROF_P2P) parent_obj = d5->p2p.parentGroup;
  prof_event_t *p = parent_obj;
  uint64_t want = type == GCNP_PROF_KERNEL_CH ? (GCNP_PROF_COLL | GCNP_PROF_P2P) : GCNP_PROF_GROUP;
  if (!(p && p >= ctx->events && p < ctx->events + ctx->n_events &&
        atomic_load_explicit(&p->busy, memory_order_acquire) && (p->type & want)))
    p = NULL;
  /* A kernel channel takes over one of the references its collective keeps
   * for its expected channels (NCCL may stop the collective first). */
  bool pending = false;
  if (p && type == GCNP_PROF_KERNEL_CH) {
    int left = atomic_load_explicit(&p->ch_left, memory_order_relaxed);
    while (left > 0 &&
           !atomic_compare_exchange_weak_explicit(&p->ch_left, &left, left - 1,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
    }
    pending = left > 0;
  }
  prof_event_t *e = ev_alloc(ctx);
  if (!e) {
    if (pending) ev_release(p); /* that channel will never stop */
    return GCNP_SUCCESS;
  }
  e->type = type;
  e->ctx = ctx;
  e->parent = NULL;
  e->op = -1;
  e->bytes = 0;
  e->captured = false; /* counted from Coll/P2p only in v4, which does not say */
  atomic_store_explicit(&e->gpu_start, 0, memory_order_relaxed);
  atomic_store_explicit(&e->gpu_stop, 0, memory_order_relaxed);
  e->t0 = gc_stats_ticks();
  /* A live parent of the expected type from this context's pool is
   * referenced (a Group is stopped only after its collectives started). */
  if (p) {
    if (!pending) atomic_fetch_add_explicit(&p->refs, 1, memory_order_acq_rel);
    e->parent = p;
  }
  if (type == GCNP_PROF_COLL) {
    const struct gcnp_coll_v4 *k = d5 ? &d5->coll.v4 : &d4->coll;
    e->op = op_id(k->func);
    e->bytes = k->count * dtype_size(k->datatype);
    atomic_fetch_add_explicit(&c->colls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->algo[index_of(algos, 7, k->algo)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->proto[index_of(protos, 3, k->proto)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->channels, k->nChannels, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->refs, k->nChannels, memory_order_relaxed);
    atomic_store_explicit(&e->ch_left, k->nChannels, memory_order_relaxed);
    int g = ctx_group(ctx);
    if (g >= 0 && e->op >= 0)
      gc_stats_record_algo(g, e->op, index_of(algos, 7, k->algo), index_of(protos, 3, k->proto));
  } else if (type == GCNP_PROF_P2P) {
    const struct gcnp_p2p_v4 *k = d5 ? &d5->p2p.v4 : &d4->p2p;
    e->op = op_id(k->func);
    e->bytes = k->count * dtype_size(k->datatype);
    atomic_fetch_add_explicit(&c->p2ps, 1, memory_order_relaxed);
    ctx_group(ctx);
    atomic_fetch_add_explicit(&c->channels, k->nChannels, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->refs, k->nChannels, memory_order_relaxed);
    atomic_store_explicit(&e->ch_left, k->nChannels, memory_order_relaxed);
  } else if (type == GCNP_PROF_KERNEL_CH) {
    e->ch_start = d5 ? d5->kernelCh.pTimer : d4->kernelCh.pTimer;
    atomic_fetch_add_explicit(&c->kernel_ch, 1, memory_order_relaxed);
  }
  *handle = e;
  return GCNP_SUCCESS;
}

static gcnp_result_t start_v5(void *ctx, void **handle, gcnp_event_descr_v5_t *d) {
  if (!d) {
    if (handle) *handle = NULL;
    return GCNP_SUCCESS;
  }
  return start_common(ctx, handle, d->type, d->parentObj, d, NULL);
}
static gcnp_result_t start_v4(void *ctx, void **handle, gcnp_event_descr_v4_t *d) {
  if (!d) {
    if (handle) *handle = NULL;
    return GCNP_SUCCESS;
  }
  return start_common(ctx, handle, d->type, d->parentObj, NULL, d);
}

static gcnp_result_t stop_event(void *handle) {
  prof_event_t *e = handle;
  if (!e) return GCNP_SUCCESS; /* dropped */
  if (!e->ctx) {               /* an API event: the call it counts, without the shim */
    prof_ctx_t *ctx = e->api_ctx;
    if (ctx && ctx->stats_id >= 0 && e->op >= 0)
      gc_stats_record(ctx->stats_id, e->op, e->bytes, gc_stats_ticks() - e->t0, e->captured);
    return GCNP_SUCCESS;
  }
  prof_ctx_t *ctx = e->ctx;
  if ((e->type == GCNP_PROF_COLL || e->type == GCNP_PROF_P2P) && ctx->stats_id >= 0 && e->op >= 0 &&
      !atomic_load_explicit(&ctx->api_calls, memory_order_relaxed))
    gc_stats_record(ctx->stats_id, e->op, e->bytes, gc_stats_ticks() - e->t0, e->captured);
  if (e->type == GCNP_PROF_COLL || e->type == GCNP_PROF_P2P) {
    e->stop_ns = gc_now_ns();
    atomic_store_explicit(&e->stopped, 1, memory_order_release);
  }
  ev_release(e);
  return GCNP_SUCCESS;
}

static void minmax(_Atomic uint64_t *v, uint64_t x, bool is_min) {
  uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);
  while ((cur == 0 || (is_min ? x < cur : x > cur)) &&
         !atomic_compare_exchange_weak_explicit(v, &cur, x, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

static gcnp_result_t record_state(void *handle, int state, gcnp_state_args_t *args) {
  prof_event_t *e = handle;
  if (!e || e->type != GCNP_PROF_KERNEL_CH || state != GCNP_STATE_KERNEL_CH_STOP || !args)
    return GCNP_SUCCESS;
  uint64_t stop = args->kernelCh.pTimer;
  prof_event_t *coll = e->parent;
  if (coll && e->ch_start && stop > e->ch_start) {
    minmax(&coll->gpu_start, e->ch_start, true);
    minmax(&coll->gpu_stop, stop, false);
  }
  return GCNP_SUCCESS;
}

static gcnp_result_t finalize(void *vctx) {
  prof_ctx_t *ctx = vctx;
  if (!ctx) return GCNP_SUCCESS;
  free(ctx->events); /* NCCL stops every event before finalize */
  free(ctx);
  return GCNP_SUCCESS;
}

__attribute__((visibility("default"))) const gcnp_profiler_v5_t ncclProfiler_v5 = {
    "gcshim", init_v5, start_v5, stop_event, record_state, finalize};
__attribute__((visibility("default"))) const gcnp_profiler_v4_t ncclProfiler_v4 = {
    "gcshim", init_v4, start_v4, stop_event, record_state, finalize};
