/* The profiler plugin called as NCCL 2.28 calls it: init, startEvent,
 * stopEvent, recordEventState, finalize, for group, API, collective, p2p
 * and kernel-channel events in NCCL's order and with NCCL's handles, from
 * several threads; pool exhaustion; the descriptors of NCCL 2.30's v5
 * adapter; an init that cannot profile its communicator. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/params.h"
#include "core/report.h"
#include "core/stats.h"
#include "nccl/gc_nccl.h"
#include "plugin/nccl_plugin.h"
#include "plugin/plugin.h"
#include "report_test.h"

extern const gcnp_profiler_v5_t ncclProfiler_v5;
extern const gcnp_profiler_v4_t ncclProfiler_v4;

static char logged[4096];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static void logger(int level, unsigned long flags, const char *file, int line, const char *fmt,
                   ...) {
  pthread_mutex_lock(&log_lock);
  va_list ap;
  va_start(ap, fmt);
  size_t l = strlen(logged);
  vsnprintf(logged + l, sizeof logged - l, fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&log_lock);
}

/* ncclProfilerEventMask: one for the process, every communicator's init
 * gets its address (src/plugin/profiler.cc, ncclProfilerPluginInit). */
static int nccl_event_mask;

static void *init5(const char *name, uint64_t id) {
  void *ctx = NULL;
  ck_assert_int_eq(ncclProfiler_v5.init(&ctx, id, &nccl_event_mask, name, 1, 2, 0, logger), 0);
  ck_assert_ptr_nonnull(ctx);
  ck_assert_int_ne(nccl_event_mask & GCNP_PROF_COLL, 0);
  ck_assert_int_ne(nccl_event_mask & GCNP_PROF_KERNEL_CH, 0);
  return ctx;
}

static int group_id(const char *name) {
  for (int i = 0; i < gc_stats_group_count(); i++)
    if (strcmp(gc_stats_group_info(i)->name, name) == 0) return i;
  return -1;
}

/* NCCL hands startEvent the address of a handle it keeps; the plugin
 * always writes it (0x1: never written). */
static void *start(void *ctx, gcnp_event_descr_v5_t *d) {
  void *h = (void *)0x1;
  ck_assert_int_eq(ncclProfiler_v5.startEvent(ctx, &h, d), 0);
  return h;
}

/* ncclProfilerApiState (thread-local in NCCL) and the API events of one
 * ungrouped call (src/plugin/profiler.cc, src/enqueue.cc collTaskAppend and
 * p2pTaskAppend, src/group.cc ncclGroupEndInternal): the mask read from
 * ncclProfilerEventMask at the GroupApi start decides which start; GroupApi
 * states are recorded with NULL arguments; the CollApi handle is stopped
 * whenever it is not NULL and never cleared (a skipped start stops the
 * previous call's handle again), the P2pApi handle is cleared at its stop;
 * the GroupApi event is stopped when ncclGroupEndInternal returns, after the
 * group's Group/Coll/P2p events when NCCL launches on the calling thread. */
static _Thread_local struct {
  int mask;
  void *group_api, *coll_api, *p2p_api;
} api_state;

static void nccl_enqueue_api(void *ctx, const int *event_mask, uint64_t type, const char *func,
                             size_t count, const char *datatype, bool captured) {
  const int group_api_mask = GCNP_PROF_GROUP_API | GCNP_PROF_P2P_API | GCNP_PROF_COLL_API |
                             GCNP_PROF_KERNEL_LAUNCH | GCNP_PROF_GROUP | GCNP_PROF_COLL |
                             GCNP_PROF_P2P | GCNP_PROF_PROXY_OP | GCNP_PROF_PROXY_STEP |
                             GCNP_PROF_KERNEL_CH | GCNP_PROF_NET_PLUGIN;
  const int task_api_mask = (type == GCNP_PROF_COLL_API ? GCNP_PROF_COLL_API | GCNP_PROF_COLL
                                                        : GCNP_PROF_P2P_API | GCNP_PROF_P2P) |
                            GCNP_PROF_PROXY_OP | GCNP_PROF_PROXY_STEP | GCNP_PROF_KERNEL_CH |
                            GCNP_PROF_NET_PLUGIN;
  gcnp_event_descr_v5_t d;
  api_state.mask = *event_mask;
  if ((api_state.mask & group_api_mask) && !api_state.group_api) {
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_GROUP_API;
    d.groupApi.graphCaptured = captured;
    d.groupApi.groupDepth = 1;
    ck_assert_int_eq(ncclProfiler_v5.startEvent(ctx, &api_state.group_api, &d), 0);
    if (api_state.group_api)
      ck_assert_int_eq(ncclProfiler_v5.recordEventState(api_state.group_api,
                                                        GCNP_STATE_GROUP_START_API_STOP, NULL),
                       0);
  }
  void **h = type == GCNP_PROF_COLL_API ? &api_state.coll_api : &api_state.p2p_api;
  if (api_state.mask & task_api_mask) {
    memset(&d, 0, sizeof d);
    d.type = type;
    d.parentObj = api_state.group_api;
    if (type == GCNP_PROF_COLL_API) {
      d.collApi.func = func;
      d.collApi.count = count;
      d.collApi.datatype = datatype;
      d.collApi.graphCaptured = captured;
    } else {
      d.p2pApi.func = func;
      d.p2pApi.count = count;
      d.p2pApi.datatype = datatype;
      d.p2pApi.graphCaptured = captured;
    }
    ck_assert_int_eq(ncclProfiler_v5.startEvent(ctx, h, &d), 0);
  }
  if (*h) ck_assert_int_eq(ncclProfiler_v5.stopEvent(*h), 0);
}
static void *nccl_task_api_handle(uint64_t type) {
  void *h = type == GCNP_PROF_COLL_API ? api_state.coll_api : api_state.p2p_api;
  if (type == GCNP_PROF_P2P_API) api_state.p2p_api = NULL; /* its task kept it */
  return h;
}
static void nccl_group_end_start(void) {
  if (api_state.group_api)
    ck_assert_int_eq(
        ncclProfiler_v5.recordEventState(api_state.group_api, GCNP_STATE_GROUP_END_API_START, NULL),
        0);
}
static void nccl_group_end_exit(void) {
  if (api_state.group_api) ck_assert_int_eq(ncclProfiler_v5.stopEvent(api_state.group_api), 0);
  api_state.group_api = NULL;
}

/* One ungrouped collective as NCCL 2.28 reports it, launched on the calling
 * thread: GroupApi, CollApi (stopped at once), then at ncclGroupEnd the
 * Group, the Coll (parentObj the stopped CollApi handle, parentGroup the
 * Group), Coll and Group stops, GroupApi stop; two kernel channels after
 * the Coll's stop (NCCL's proxy thread: start with the channel's start
 * pTimer, KernelChStop state with the stop pTimer, stop). */
static void one_coll(void *ctx, bool captured, uint64_t t0, uint64_t gpu) {
  nccl_enqueue_api(ctx, &nccl_event_mask, GCNP_PROF_COLL_API, "AllReduce", 1024, "ncclFloat32",
                   captured);
  void *api = nccl_task_api_handle(GCNP_PROF_COLL_API);
  ck_assert_ptr_nonnull(api);
  nccl_group_end_start();
  gcnp_event_descr_v5_t d;
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_GROUP;
  void *grp = start(ctx, &d);
  ck_assert_ptr_nonnull(grp);
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_COLL;
  d.parentObj = api;
  d.rank = 0;
  d.coll.parentGroup = grp;
  d.coll.v4.func = "AllReduce";
  d.coll.v4.count = 1024;
  d.coll.v4.datatype = "ncclFloat32";
  d.coll.v4.nChannels = 2;
  d.coll.v4.algo = "RING";
  d.coll.v4.proto = "LL";
  void *coll = start(ctx, &d);
  ck_assert_ptr_nonnull(coll);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(coll), 0);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(grp), 0);
  nccl_group_end_exit();
  void *ch[2];
  for (int c = 0; c < 2; c++) {
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_KERNEL_CH;
    d.parentObj = coll;
    d.kernelCh.channelId = (uint8_t)c;
    d.kernelCh.pTimer = t0 + 100 * (uint64_t)c;
    ch[c] = start(ctx, &d);
    ck_assert_ptr_nonnull(ch[c]);
  }
  gcnp_state_args_t a;
  a.kernelCh.pTimer = t0 + gpu - 200; /* channel 0 stops before channel 1 */
  ck_assert_int_eq(ncclProfiler_v5.recordEventState(ch[0], GCNP_STATE_KERNEL_CH_STOP, &a), 0);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(ch[0]), 0);
  a.kernelCh.pTimer = t0 + gpu;
  ck_assert_int_eq(ncclProfiler_v5.recordEventState(ch[1], GCNP_STATE_KERNEL_CH_STOP, &a), 0);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(ch[1]), 0);
}

/* One ncclSend the same way: GroupApi, P2pApi (its handle cleared by NCCL
 * at its stop, kept by the task), Group, P2p, one kernel channel. */
static void one_p2p(void *ctx) {
  nccl_enqueue_api(ctx, &nccl_event_mask, GCNP_PROF_P2P_API, "Send", 10, "ncclFloat64", false);
  void *api = nccl_task_api_handle(GCNP_PROF_P2P_API);
  nccl_group_end_start();
  gcnp_event_descr_v5_t d;
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_GROUP;
  void *grp = start(ctx, &d);
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_P2P;
  d.parentObj = api;
  d.p2p.parentGroup = grp;
  d.p2p.v4.func = "Send";
  d.p2p.v4.count = 10;
  d.p2p.v4.datatype = "ncclFloat64";
  d.p2p.v4.peer = 1;
  d.p2p.v4.nChannels = 1;
  void *p = start(ctx, &d);
  ck_assert_ptr_nonnull(p);
  ncclProfiler_v5.stopEvent(p);
  ncclProfiler_v5.stopEvent(grp);
  nccl_group_end_exit();
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_KERNEL_CH;
  d.parentObj = p;
  d.kernelCh.pTimer = 50;
  void *ch = start(ctx, &d);
  ck_assert_ptr_nonnull(ch);
  gcnp_state_args_t a = {.kernelCh = {.pTimer = 60}};
  ncclProfiler_v5.recordEventState(ch, GCNP_STATE_KERNEL_CH_STOP, &a);
  ncclProfiler_v5.stopEvent(ch);
}

START_TEST(test_one_coll) {
  logged[0] = 0;
  void *ctx = init5("tp", 0x77);
  ck_assert_ptr_nonnull(strstr(logged, "gcshim profiler: tp"));
  one_coll(ctx, true, 1000000, 5000);
  one_coll(ctx, false, 2000000, 7000);
  one_p2p(ctx);
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("tp", &c));
  ck_assert_uint_eq(c.colls, 2);
  ck_assert_uint_eq(c.p2ps, 1);
  ck_assert_uint_eq(c.kernel_ch, 5);
  ck_assert_uint_eq(c.gpu_ns, 12010); /* first start to last stop, per collective */
  ck_assert_uint_eq(c.graph_captured, 1);
  ck_assert_uint_eq(c.algo[1], 2);  /* RING */
  ck_assert_uint_eq(c.proto[0], 2); /* LL */
  ck_assert_uint_eq(c.channels, 5);
  ck_assert_uint_eq(c.dropped, 0);
  /* the shim's registry: group "tp", calls and bytes of AllReduce and Send */
  int g = group_id("tp");
  ck_assert_int_ge(g, 0);
  ck_assert_int_eq(gc_stats_group_info(g)->source, GC_SOURCE_COMMNAME);
  gc_stats_entry_t e;
  gc_stats_collect(g, GC_NCCL_ID_AllReduce, &e);
  ck_assert_uint_eq(e.calls, 2);
  ck_assert_uint_eq(e.bytes, 2 * 4096);
  ck_assert_uint_eq(e.captured, 1);
  gc_stats_collect(g, GC_NCCL_ID_Send, &e);
  ck_assert_uint_eq(e.calls, 1);
  ck_assert_uint_eq(e.bytes, 80);
  /* the tuner learns the name of the commId */
  char name[GC_NAME_MAX];
  ck_assert(gc_plugin_name_get(0x77, name, sizeof name));
  ck_assert_str_eq(name, "tp");
  ck_assert_int_eq(ncclProfiler_v5.finalize(ctx), 0);
}
END_TEST

START_TEST(test_unnamed_and_v4) {
  void *ctx = NULL;
  int mask = 0;
  ck_assert_int_eq(ncclProfiler_v4.init(&ctx, &mask, NULL, 0xabcdef, 1, 1, 0, logger), 0);
  ck_assert_ptr_nonnull(ctx);
  gcnp_event_descr_v4_t d;
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_GROUP;
  void *grp = NULL;
  ck_assert_int_eq(ncclProfiler_v4.startEvent(ctx, &grp, &d), 0);
  ck_assert_ptr_nonnull(grp);
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_COLL;
  d.parentObj = grp;
  d.coll.func = "Broadcast";
  d.coll.count = 3;
  d.coll.datatype = "ncclBfloat16";
  d.coll.algo = "PAT";
  d.coll.proto = "SIMPLE";
  d.coll.nChannels = 1;
  void *coll = NULL;
  ck_assert_int_eq(ncclProfiler_v4.startEvent(ctx, &coll, &d), 0);
  ck_assert_int_eq(ncclProfiler_v4.stopEvent(coll), 0);
  ck_assert_int_eq(ncclProfiler_v4.stopEvent(grp), 0);
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("0000000000abcdef", &c));
  ck_assert_uint_eq(c.colls, 1);
  ck_assert_uint_eq(c.algo[6], 1);
  ck_assert_uint_eq(c.proto[2], 1);
  int g = group_id("0000000000abcdef");
  ck_assert_int_ge(g, 0);
  gc_stats_entry_t e;
  gc_stats_collect(g, GC_NCCL_ID_Broadcast, &e);
  ck_assert_uint_eq(e.calls, 1);
  ck_assert_uint_eq(e.bytes, 6);
  ck_assert_int_eq(ncclProfiler_v4.finalize(ctx), 0);
}
END_TEST

START_TEST(test_null_context) {
  gcnp_event_descr_v5_t d;
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_COLL;
  void *h = (void *)0x1;
  ck_assert_int_eq(ncclProfiler_v5.startEvent(NULL, &h, &d), 0);
  ck_assert_ptr_null(h);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(NULL), 0);
  ck_assert_int_eq(ncclProfiler_v5.recordEventState(NULL, GCNP_STATE_KERNEL_CH_STOP, NULL), 0);
  ck_assert_int_eq(ncclProfiler_v5.finalize(NULL), 0);
  /* an event type the plugin did not ask for: handle NULL */
  void *ctx = init5("other", 5);
  d.type = GCNP_PROF_PROXY_OP;
  h = (void *)0x1;
  ck_assert_int_eq(ncclProfiler_v5.startEvent(ctx, &h, &d), 0);
  ck_assert_ptr_null(h);
  ncclProfiler_v5.finalize(ctx);
}
END_TEST

START_TEST(test_pool_exhausted) {
  setenv("GCSHIM_PROFILER_EVENTS", "3", 1);
  gc_params_reset(); /* settings are read once */
  void *ctx = init5("small", 9);
  unsetenv("GCSHIM_PROFILER_EVENTS");
  gc_params_reset(); /* settings are read once */
  gcnp_event_descr_v5_t d;
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_GROUP;
  void *grp = start(ctx, &d);
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_COLL;
  d.coll.parentGroup = grp;
  d.coll.v4.func = "AllReduce";
  void *coll = start(ctx, &d);
  ck_assert_ptr_nonnull(grp);
  ck_assert_ptr_nonnull(coll);
  /* the group is stopped, but its child still references it: slot kept */
  ncclProfiler_v5.stopEvent(grp);
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_KERNEL_CH;
  d.parentObj = coll;
  d.kernelCh.pTimer = 10;
  void *ch = start(ctx, &d);
  ck_assert_ptr_nonnull(ch);
  ncclProfiler_v5.stopEvent(coll);
  d.type = GCNP_PROF_GROUP;
  void *h = start(ctx, &d);
  ck_assert_ptr_null(h); /* dropped: the pool of 3 is full */
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("small", &c));
  ck_assert_uint_eq(c.dropped, 1);
  ck_assert_uint_ge(gc_prof_dropped(), 1);
  ncclProfiler_v5.stopEvent(h); /* NULL: fine */
  gcnp_state_args_t a = {.kernelCh = {.pTimer = 110}};
  ncclProfiler_v5.recordEventState(ch, GCNP_STATE_KERNEL_CH_STOP, &a);
  ncclProfiler_v5.stopEvent(ch); /* releases coll, then group */
  ck_assert(gc_prof_counts("small", &c));
  ck_assert_uint_eq(c.gpu_ns, 100);
  void *hs[3];
  for (int i = 0; i < 3; i++) ck_assert_ptr_nonnull(hs[i] = start(ctx, &d));
  for (int i = 0; i < 3; i++) ncclProfiler_v5.stopEvent(hs[i]);
  ncclProfiler_v5.finalize(ctx);
}
END_TEST

/* A collective whose kernel channels never come is taken back once stale. */
START_TEST(test_stale) {
  setenv("GCSHIM_PROFILER_EVENTS", "2", 1);
  setenv("GCSHIM_PROFILER_STALE_MS", "1", 1);
  gc_params_reset(); /* settings are read once */
  void *ctx = init5("stale", 12);
  unsetenv("GCSHIM_PROFILER_EVENTS");
  unsetenv("GCSHIM_PROFILER_STALE_MS");
  gc_params_reset(); /* settings are read once */
  gcnp_event_descr_v5_t d;
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_COLL;
  d.coll.v4.func = "AllReduce";
  d.coll.v4.nChannels = 4;
  void *a = start(ctx, &d), *b = start(ctx, &d);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ncclProfiler_v5.stopEvent(a);
  /* a waits for its channels; b is live: full */
  ck_assert_ptr_null(start(ctx, &d));
  usleep(5000);
  void *c = start(ctx, &d); /* a taken back */
  ck_assert_ptr_eq(c, a);
  ncclProfiler_v5.stopEvent(b);
  ncclProfiler_v5.stopEvent(c);
  ncclProfiler_v5.finalize(ctx);
}
END_TEST

/* Kernel channels on another thread (NCCL's proxy thread), after the user
 * thread stopped the collective: handles passed through a bounded queue. */
#define QN 64
static void *q[QN];
static _Atomic unsigned q_head, q_tail;
static void *proxy_ctx;
static void *proxy(void *arg) {
  for (int i = 0; i < 3000; i++) {
    while (atomic_load(&q_tail) == atomic_load(&q_head)) sched_yield();
    void *coll = q[atomic_load(&q_tail) % QN];
    gcnp_event_descr_v5_t d;
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_KERNEL_CH;
    d.parentObj = coll;
    d.kernelCh.pTimer = 1000;
    void *ch = start(proxy_ctx, &d);
    atomic_fetch_add(&q_tail, 1);
    gcnp_state_args_t a = {.kernelCh = {.pTimer = 1500}};
    ncclProfiler_v5.recordEventState(ch, GCNP_STATE_KERNEL_CH_STOP, &a);
    ncclProfiler_v5.stopEvent(ch);
  }
  return NULL;
}

START_TEST(test_proxy_thread) {
  setenv("GCSHIM_PROFILER_EVENTS", "128", 1);
  gc_params_reset(); /* settings are read once */
  proxy_ctx = init5("proxy", 13);
  unsetenv("GCSHIM_PROFILER_EVENTS");
  gc_params_reset(); /* settings are read once */
  pthread_t th;
  pthread_create(&th, NULL, proxy, NULL);
  for (int i = 0; i < 3000; i++) {
    while (atomic_load(&q_head) - atomic_load(&q_tail) >= QN) sched_yield();
    gcnp_event_descr_v5_t d;
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_COLL;
    d.coll.v4.func = "AllReduce";
    d.coll.v4.count = 1;
    d.coll.v4.datatype = "ncclInt8";
    d.coll.v4.nChannels = 1;
    void *coll = start(proxy_ctx, &d);
    ck_assert_ptr_nonnull(coll);
    ncclProfiler_v5.stopEvent(coll);
    q[atomic_load(&q_head) % QN] = coll;
    atomic_fetch_add(&q_head, 1);
  }
  pthread_join(th, NULL);
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("proxy", &c));
  ck_assert_uint_eq(c.colls, 3000);
  ck_assert_uint_eq(c.kernel_ch, 3000);
  ck_assert_uint_eq(c.gpu_ns, 3000 * 500);
  ck_assert_uint_eq(c.dropped, 0);
  ncclProfiler_v5.finalize(proxy_ctx);
}
END_TEST

/* Without the shim, calls are counted from their API events (v5): once
 * each, with their bytes and capture, even with no Coll event after them. */
START_TEST(test_api_events_count_calls) {
  void *ctx = init5("solo", 0x5010);
  gcnp_event_descr_v5_t d;
  for (int i = 0; i < 7; i++) {
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_COLL_API;
    d.collApi.func = i < 5 ? "AllReduce" : "AllGather";
    d.collApi.count = 100 + (size_t)i;
    d.collApi.datatype = i < 5 ? "ncclBfloat16" : "ncclInt64";
    d.collApi.graphCaptured = i == 2;
    void *api = start(ctx, &d);
    ck_assert_ptr_nonnull(api);
    ck_assert_int_eq(ncclProfiler_v5.stopEvent(api), 0);
  }
  gc_stats_entry_t e;
  int g = group_id("solo");
  ck_assert_int_ge(g, 0);
  gc_stats_collect(g, GC_NCCL_ID_AllReduce, &e);
  ck_assert_uint_eq(e.calls, 5);
  ck_assert_uint_eq(e.bytes, 2 * (100 + 101 + 102 + 103 + 104));
  ck_assert_uint_eq(e.captured, 1);
  gc_stats_collect(g, GC_NCCL_ID_AllGather, &e);
  ck_assert_uint_eq(e.calls, 2);
  ck_assert_uint_eq(e.bytes, 8 * (105 + 106));
  /* ncclDatatypeToString has no case for ncclUint8: "Unknown", 1 byte */
  memset(&d, 0, sizeof d);
  d.type = GCNP_PROF_COLL_API;
  d.collApi.func = "Broadcast";
  d.collApi.count = 7;
  d.collApi.datatype = "Unknown";
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(start(ctx, &d)), 0);
  gc_stats_collect(g, GC_NCCL_ID_Broadcast, &e);
  ck_assert_uint_eq(e.calls, 1);
  ck_assert_uint_eq(e.bytes, 7);
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("solo", &c));
  ck_assert_uint_eq(c.colls, 0); /* no Coll events: none in the profiler's own counters */
  ck_assert_uint_eq(c.graph_captured, 1);
  ncclProfiler_v5.finalize(ctx);
}
END_TEST

static void *shared_ctx;
static void *worker(void *arg) {
  long t = (long)arg;
  for (int i = 0; i < 2000; i++) {
    one_coll(shared_ctx, (i % 4) == 0, 1000000 * (uint64_t)(t + 1) + (uint64_t)i * 10000, 1000);
    one_p2p(shared_ctx);
  }
  return NULL;
}

START_TEST(test_threads) {
  shared_ctx = init5("mt", 11);
  pthread_t th[4];
  for (long t = 0; t < 4; t++) pthread_create(&th[t], NULL, worker, (void *)t);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("mt", &c));
  ck_assert_uint_eq(c.colls, 8000);
  ck_assert_uint_eq(c.p2ps, 8000);
  ck_assert_uint_eq(c.kernel_ch, 24000);
  ck_assert_uint_eq(c.gpu_ns, 8000 * 1000 + 8000 * 10);
  ck_assert_uint_eq(c.graph_captured, 2000);
  ck_assert_uint_eq(c.dropped, 0);
  gc_stats_entry_t e;
  gc_stats_collect(group_id("mt"), GC_NCCL_ID_AllReduce, &e);
  ck_assert_uint_eq(e.calls, 8000);
  ck_assert_uint_eq(e.captured, 2000);
  ncclProfiler_v5.finalize(shared_ctx);
}
END_TEST

/* GPU times from kernel-channel timestamps, algorithms and protocols in the
 * JSON report, exactly; a collective without kernel channels has no GPU
 * time. */
START_TEST(test_report) {
  void *ctx = init5("rep", 0x4242);
  one_coll(ctx, false, 1000, 5000);
  one_coll(ctx, false, 9000, 3000);
  one_coll(ctx, true, 20000, 4000);
  const char *g = report_group("rep");
  ck_assert_msg(g != NULL, "%s", report_buf);
  const char *want =
      "{\"op\": \"AllReduce\", \"calls\": 3, \"captured_calls\": 1, \"bytes\": 12288, ";
  ck_assert_msg(strstr(g, want) != NULL, "%s", g);
  want =
      "\"sizes\": {\"4096\": 3}, \"gpu_time_s\": {\"calls\": 3, \"min\": 3e-06, \"mean\": "
      "4e-06, \"max\": 5e-06}, \"algos\": {\"RING\": 3}, \"protos\": {\"LL\": 3}}";
  ck_assert_msg(strstr(g, want) != NULL, "%s", g);
  ck_assert_int_eq(ncclProfiler_v5.finalize(ctx), 0);
}
END_TEST

/* As under LD_PRELOAD=libgcshim.so: the shim counts the program's calls in
 * its own group and marks the call in flight (gc_stats_current); the
 * profiler learns that group from the API event and adds only GPU times and
 * algorithms to it. Each call counted once. */
START_TEST(test_report_under_shim) {
  gc_prof_test_shim_counts(1);
  gc_stats_group_info_t info;
  memset(&info, 0, sizeof info);
  info.key = 0x5151;
  snprintf(info.name, sizeof info.name, "shimmed:0");
  info.source = GC_SOURCE_DEFAULT;
  info.size = 2;
  for (int i = 0; i < 64; i++) info.ranks[i] = i < 2 ? i : -1;
  int sid = -1;
  ck_assert_int_eq(gc_stats_group_add(&info, &sid), GC_OK);
  logged[0] = 0;
  void *ctx = init5("shimmed", 0x5151);
  ck_assert_msg(strstr(logged, "GPU time only") != NULL, "%s", logged);
  for (int k = 0; k < 2; k++) {
    gc_stats_current = sid; /* the shim's enter */
    one_coll(ctx, false, 100000 * (uint64_t)(k + 1), 2000 + 1000 * (uint64_t)k);
    gc_stats_current = -1; /* its leave, which counts the call */
    gc_stats_record(sid, GC_NCCL_ID_AllReduce, 4096, 100, false);
  }
  ck_assert_int_eq(group_id("shimmed"), -1); /* no group of the profiler's own */
  ck_assert_int_eq(gc_plugin_group_get(0x5151), sid);
  gc_stats_entry_t e;
  gc_stats_collect(sid, GC_NCCL_ID_AllReduce, &e);
  ck_assert_uint_eq(e.calls, 2);
  ck_assert_uint_eq(e.gpu_calls, 2);
  ck_assert_uint_eq(e.gpu_sum_ns, 5000);
  ck_assert_uint_eq(e.gpu_min_ns, 2000);
  ck_assert_uint_eq(e.gpu_max_ns, 3000);
  const char *g = report_group("shimmed:0");
  ck_assert_msg(g != NULL, "%s", report_buf);
  ck_assert_msg(strstr(g, "\"calls\": 2, \"captured_calls\": 0, \"bytes\": 8192") != NULL, "%s", g);
  ck_assert_msg(strstr(g,
                       "\"gpu_time_s\": {\"calls\": 2, \"min\": 2e-06, \"mean\": 2.5e-06, "
                       "\"max\": 3e-06}, \"algos\": {\"RING\": 2}") != NULL,
                "%s", g);
  ck_assert_int_eq(ncclProfiler_v5.finalize(ctx), 0);
  gc_prof_test_shim_counts(-1);
}
END_TEST

/* NCCL 2.30 finds no ncclProfiler_v6 here and wraps ncclProfiler_v5
 * (src/plugin/profiler/profiler_v5.cc): each descriptor is a stack copy, not
 * zeroed, with type, parentObj, rank and the event's own union member
 * copied; GroupApi states get a pointer to an uninitialised state-args union
 * (2.28: NULL). The plugin reads nothing else. */
static void adapter_descr(gcnp_event_descr_v5_t *d, uint64_t type, void *parent) {
  memset(d, 0xa5, sizeof *d);
  d->type = type;
  d->parentObj = parent;
  d->rank = 1;
}
START_TEST(test_v5_through_2_30_adapter) {
  void *ctx = init5("v230", 0x2307);
  gcnp_state_args_t junk;
  memset(&junk, 0xa5, sizeof junk);
  gcnp_event_descr_v5_t d;
  adapter_descr(&d, GCNP_PROF_GROUP_API, NULL);
  d.groupApi.graphCaptured = false;
  d.groupApi.groupDepth = 1;
  void *gapi = start(ctx, &d);
  ck_assert_int_eq(ncclProfiler_v5.recordEventState(gapi, GCNP_STATE_GROUP_START_API_STOP, &junk),
                   0);
  adapter_descr(&d, GCNP_PROF_COLL_API, gapi);
  d.collApi.func = "ReduceScatter";
  d.collApi.count = 64;
  d.collApi.datatype = "ncclBfloat16";
  d.collApi.root = 0;
  d.collApi.stream = NULL;
  d.collApi.graphCaptured = true;
  void *api = start(ctx, &d);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(api), 0);
  ck_assert_int_eq(ncclProfiler_v5.recordEventState(gapi, GCNP_STATE_GROUP_END_API_START, &junk),
                   0);
  adapter_descr(&d, GCNP_PROF_GROUP, NULL);
  void *grp = start(ctx, &d);
  adapter_descr(&d, GCNP_PROF_COLL, api);
  d.coll.v4.seqNumber = 0;
  d.coll.v4.func = "ReduceScatter";
  d.coll.v4.sendBuff = NULL;
  d.coll.v4.recvBuff = NULL;
  d.coll.v4.count = 64;
  d.coll.v4.root = 0;
  d.coll.v4.datatype = "ncclBfloat16";
  d.coll.v4.nChannels = 1;
  d.coll.v4.nWarps = 16;
  d.coll.v4.algo = "PAT";
  d.coll.v4.proto = "SIMPLE";
  d.coll.parentGroup = grp;
  void *coll = start(ctx, &d);
  ck_assert_ptr_nonnull(coll);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(coll), 0);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(grp), 0);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(gapi), 0);
  adapter_descr(&d, GCNP_PROF_KERNEL_CH, coll);
  d.kernelCh.channelId = 0;
  d.kernelCh.pTimer = 7000;
  void *ch = start(ctx, &d);
  ck_assert_ptr_nonnull(ch);
  gcnp_state_args_t a = junk;
  a.kernelCh.pTimer = 7500;
  ck_assert_int_eq(ncclProfiler_v5.recordEventState(ch, GCNP_STATE_KERNEL_CH_STOP, &a), 0);
  ck_assert_int_eq(ncclProfiler_v5.stopEvent(ch), 0);
  gc_prof_counts_t c;
  ck_assert(gc_prof_counts("v230", &c));
  ck_assert_uint_eq(c.colls, 1);
  ck_assert_uint_eq(c.channels, 1);
  ck_assert_uint_eq(c.kernel_ch, 1);
  ck_assert_uint_eq(c.gpu_ns, 500);
  ck_assert_uint_eq(c.graph_captured, 1);
  ck_assert_uint_eq(c.algo[6], 1);
  ck_assert_uint_eq(c.proto[2], 1);
  gc_stats_entry_t e;
  gc_stats_collect(group_id("v230"), GC_NCCL_ID_ReduceScatter, &e);
  ck_assert_uint_eq(e.calls, 1);
  ck_assert_uint_eq(e.bytes, 128);
  ck_assert_uint_eq(e.captured, 1);
  ck_assert_int_eq(ncclProfiler_v5.finalize(ctx), 0);
}
END_TEST

/* AlltoAll, Gather and Scatter have no CollApi event: p2pTaskAppend sets
 * info->coll to Send or Recv before it starts a P2pApi event per peer part
 * (src/enqueue.cc), under the one GroupApi of the call. Without the shim an
 * AlltoAll over 4 ranks is counted as 4 Send and 4 Recv of count elements. */
START_TEST(test_alltoall_api_events) {
  void *ctx = init5("a2a", 0x2a2a);
  memset(&api_state, 0, sizeof api_state);
  for (int r = 0; r < 4; r++) {
    nccl_enqueue_api(ctx, &nccl_event_mask, GCNP_PROF_P2P_API, "Send", 32, "ncclFloat32", false);
    nccl_task_api_handle(GCNP_PROF_P2P_API);
    nccl_enqueue_api(ctx, &nccl_event_mask, GCNP_PROF_P2P_API, "Recv", 32, "ncclFloat32", false);
    nccl_task_api_handle(GCNP_PROF_P2P_API);
  }
  nccl_group_end_start();
  nccl_group_end_exit();
  int g = group_id("a2a");
  ck_assert_int_ge(g, 0);
  gc_stats_entry_t e;
  gc_stats_collect(g, GC_NCCL_ID_AlltoAll, &e);
  ck_assert_uint_eq(e.calls, 0);
  gc_stats_collect(g, GC_NCCL_ID_Send, &e);
  ck_assert_uint_eq(e.calls, 4);
  ck_assert_uint_eq(e.bytes, 4 * 128);
  gc_stats_collect(g, GC_NCCL_ID_Recv, &e);
  ck_assert_uint_eq(e.calls, 4);
  ck_assert_int_eq(ncclProfiler_v5.finalize(ctx), 0);
}
END_TEST

/* One ungrouped collective's API events, nothing launched. */
static void nccl_coll_api(void *ctx, const int *event_mask, const char *func, size_t count,
                          const char *datatype) {
  nccl_enqueue_api(ctx, event_mask, GCNP_PROF_COLL_API, func, count, datatype, false);
  nccl_group_end_start();
  nccl_group_end_exit();
}

/* NCCL gives every communicator's init the address of the one
 * ncclProfilerEventMask of the process; when an init cannot profile its
 * communicator (here: more names than the counters' table holds), NCCL goes
 * on calling startEvent with that communicator's NULL context. The mask
 * must stay as the other communicators' inits set it: zeroed, their events
 * stop, and NCCL stops their last CollApi handle again at every call. */
START_TEST(test_init_failure_keeps_mask) {
  void *keep = NULL;
  ck_assert_int_eq(ncclProfiler_v5.init(&keep, 0x6000, &nccl_event_mask, "keep", 1, 2, 0, logger),
                   0);
  ck_assert_ptr_nonnull(keep);
  const int set = nccl_event_mask;
  memset(&api_state, 0, sizeof api_state);
  nccl_coll_api(keep, &nccl_event_mask, "AllReduce", 10, "ncclFloat32");
  /* more communicators than names: the one past the table gets no context */
  gc_prof_test_shim_counts(1); /* no statistics groups for them */
  setenv("GCSHIM_PROFILER_EVENTS", "1", 1);
  gc_params_reset(); /* settings are read once */
  static void *more[300];
  int n = 0;
  char name[32];
  void *last = (void *)1;
  while (last && n < 300) {
    snprintf(name, sizeof name, "more-%d", n);
    last = NULL;
    ck_assert_int_eq(
        ncclProfiler_v5.init(&last, 0x7000 + (uint64_t)n, &nccl_event_mask, name, 1, 2, 0, logger),
        0);
    if (last) more[n++] = last;
  }
  unsetenv("GCSHIM_PROFILER_EVENTS");
  gc_params_reset(); /* settings are read once */
  gc_prof_test_shim_counts(-1);
  ck_assert_ptr_null(last);
  ck_assert_int_eq(nccl_event_mask, set);
  /* the communicator without a context: NCCL still calls, nothing happens */
  nccl_coll_api(NULL, &nccl_event_mask, "AllGather", 10, "ncclFloat32");
  ck_assert_ptr_null(api_state.coll_api);
  /* the next call on "keep" is counted as itself, and once */
  nccl_coll_api(keep, &nccl_event_mask, "AllGather", 20, "ncclInt64");
  int g = group_id("keep");
  ck_assert_int_ge(g, 0);
  gc_stats_entry_t e;
  gc_stats_collect(g, GC_NCCL_ID_AllReduce, &e);
  ck_assert_uint_eq(e.calls, 1);
  ck_assert_uint_eq(e.bytes, 40);
  gc_stats_collect(g, GC_NCCL_ID_AllGather, &e);
  ck_assert_uint_eq(e.calls, 1);
  ck_assert_uint_eq(e.bytes, 160);
  for (int i = 0; i < n; i++) ck_assert_int_eq(ncclProfiler_v5.finalize(more[i]), 0);
  ck_assert_int_eq(ncclProfiler_v5.finalize(keep), 0);
  gc_prof_reset(); /* the names' table, for the tests after */
}
END_TEST

int main(void) {
  alarm(60);
  /* Reports per rank: flushes write at once, nobody to wait for. */
  snprintf(report_dir, sizeof report_dir, "/tmp/gcshim-prof-%d", (int)getpid());
  if (mkdir(report_dir, 0700)) return 1;
  char path[256];
  snprintf(path, sizeof path, "%s/r%%r.json", report_dir);
  setenv("GCSHIM_REPORT", path, 1);
  Suite *s = suite_create("plugin_profiler");
  TCase *tc = tcase_create("profiler");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_one_coll);
  tcase_add_test(tc, test_api_events_count_calls);
  tcase_add_test(tc, test_unnamed_and_v4);
  tcase_add_test(tc, test_null_context);
  tcase_add_test(tc, test_pool_exhausted);
  tcase_add_test(tc, test_stale);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_proxy_thread);
  tcase_add_test(tc, test_report);
  tcase_add_test(tc, test_report_under_shim);
  tcase_add_test(tc, test_v5_through_2_30_adapter);
  tcase_add_test(tc, test_alltoall_api_events);
  tcase_add_test(tc, test_init_failure_keeps_mask);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  snprintf(path, sizeof path, "%s/r0.json", report_dir);
  unlink(path);
  rmdir(report_dir);
  return failed ? 1 : 0;
}
