/*
 * gpu_collectives.c - the coordinator's CUDA collectives against direct NCCL
 * calls on the same buffers and communicator, timed with CUDA events.
 *
 *   bench/gpu_collectives [-m max_bytes] [-G] [-d device]
 *   mpirun -np N bench/gpu_collectives [-m max_bytes] [-n] [-a] [-H]
 *
 * Without a launcher: one process, one rank (the first GPU machine had one
 * GPU); the figures are
 * what the coordinator adds per call (argument checks, the backend's
 * dispatch, NCCL's enqueue) and NCCL's own one-rank cost (a local copy).
 * Reported per op and size: GPU time per call (events around a loop of
 * calls), algbw, the gc/direct bandwidth ratio, and the host time per call
 * (enqueue only, no synchronization). Then:
 *   - the dim-1 all-gather rearrangement (8 ranks' blocks interleaved in
 *     one copy3d launch, as the coordinator issues it) against one
 *     device-to-device copy of the same bytes;
 *   - graph replay (-G, or always for the small sizes): the same calls
 *     captured into a CUDA graph through gc_graph_capture_begin/end and
 *     replayed, against direct NCCL calls captured the same way.
 *
 * Under a launcher (mpirun, torchrun: world size > 1, or -n with any size):
 * N ranks, one per GPU (the local rank's), the control plane over gc's
 * shm world. Ops: all_reduce, all_gather, reduce_scatter, broadcast (root
 * 0, in place) and sendrecv (every rank sends to rank+1 and receives from
 * rank-1 at once). Sizes as nccl-tests counts them (the all-gather's output,
 * the reduce-scatter's input), float32, out of place; time per call is the
 * slowest rank's (CUDA events around a loop of calls, max over the ranks);
 * algbw = bytes / time, busbw = algbw x 2(n-1)/n (all-reduce), (n-1)/n
 * (all-gather, reduce-scatter), 1 (broadcast, sendrecv), as nccl-tests.
 *   default: gc's calls (gc_send/gc_recv, even ranks first, for sendrecv)
 *       against direct NCCL on the group's communicator (the same pattern);
 *   -n: direct NCCL only, through dlopen("libnccl.so.2") + dlsym("ncclX")
 *       (NCCL_BENCH_LIBRARY to name another), as an unchanged NCCL program
 *       calls it, so that the preloaded shim sees every call: run it under
 *       scripts/gcshim-ab with the shim on and off;
 *   -a: also print one line per row for gcshim-ab --times output:
 *       "AB op=all_reduce bytes=1048576 us=12.34 group=nccl";
 *   -H: host memory and wall-clock times, no GPU (with -n, for the hostnccl
 *       fixture on a CPU machine);
 *   -o op: that op only (all_reduce, all_gather, reduce_scatter, broadcast,
 *       sendrecv); -b min_bytes: sizes from there (x4 up to -m).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/group.h"
#include "device/device.h"
#include "device/nccl_dev.h"
#include "gcshim/gc.h"
#include "nccl/gc_cuda.h"
#include "nccl/gc_nccl.h"

#define DIE(...)                                             \
  do {                                                       \
    fprintf(stderr, __VA_ARGS__);                            \
    fprintf(stderr, " (last error: %s)\n", gc_last_error()); \
    exit(1);                                                 \
  } while (0)
#define OK(call)                                  \
  do {                                            \
    if ((call) != GC_OK) DIE("%s failed", #call); \
  } while (0)

static void *stream, *ev0, *ev1;
static gc_group_t *g;
static ncclComm_t comm;
static int device;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

enum { OP_AR, OP_AG, OP_RS };
/* The benchmark's group of the ranks[0..n-1] on NCCL (g) and its
 * communicator (comm). */
static void nccl_group(int *ranks, int n) {
  int sizes[1] = {n};
  gc_group_options_t go = {.group_ranks = ranks,
                           .group_sizes = sizes,
                           .num_groups = 1,
                           .local_rank = device,
                           .backend = "nccl",
                           .use_device_communicator = true,
                           .group_name = "bench"};
  OK(gc_group_new(&go, &g));
  comm = gc_nccl_group_comm(g);
  if (!comm) DIE("no NCCL communicator");
}

static const char *op_names[] = {"all_reduce", "all_gather", "reduce_scatter"};

/* One call of op on bytes of float32, through gc (gc=1) or NCCL directly. */
static int call(int op, int gc, void *in, void *out, size_t bytes, void *s) {
  size_t count = bytes / 4;
  int64_t shape[1] = {(int64_t)count};
  gc_tensor_t ti = {.data = in, .dtype = GC_FLOAT32, .ndim = 1, .device = {GC_DEVICE_CUDA, device}};
  ti.shape[0] = shape[0];
  gc_tensor_t to = ti;
  to.data = out;
  if (gc) {
    switch (op) {
      case OP_AR:
        return gc_all_reduce(g, &ti, &to, GC_SUM, s) != GC_OK;
      case OP_AG:
        return gc_all_gather(g, &ti, 0, &to, s) != GC_OK;
      default:
        return gc_reduce_scatter(g, &ti, 0, &to, s) != GC_OK;
    }
  }
  switch (op) {
    case OP_AR:
      return gc_nccl_real.fn.AllReduce(in, out, count, ncclFloat32, ncclSum, comm, s) !=
             ncclSuccess;
    case OP_AG:
      return gc_nccl_real.fn.AllGather(in, out, count, ncclFloat32, comm, s) != ncclSuccess;
    default:
      return gc_nccl_real.fn.ReduceScatter(in, out, count, ncclFloat32, ncclSum, comm, s) !=
             ncclSuccess;
  }
}

/* GPU microseconds per call (events) and host microseconds per call. */
static void time_calls(int op, int gc, void *in, void *out, size_t bytes, int iters, double *gpu,
                       double *host) {
  for (int i = 0; i < 3; i++)
    if (call(op, gc, in, out, bytes, stream)) DIE("%s warm-up", op_names[op]);
  OK(gc_cuda_stream_synchronize(stream));
  OK(gc_cuda_event_record(ev0, stream));
  double t0 = now_us();
  for (int i = 0; i < iters; i++)
    if (call(op, gc, in, out, bytes, stream)) DIE("%s", op_names[op]);
  double t1 = now_us();
  OK(gc_cuda_event_record(ev1, stream));
  OK(gc_cuda_event_synchronize(ev1));
  float ms = 0;
  OK(gc_cuda_event_elapsed_ms(ev0, ev1, &ms));
  *gpu = ms * 1e3 / iters;
  *host = (t1 - t0) / iters;
}

/* GPU microseconds per call when iters calls are captured into one graph
 * and the graph is replayed. */
static double time_graph(int op, int gc, void *in, void *out, size_t bytes, int iters) {
  gc_graph_capture_t ctx = {0};
  OK(gc_graph_capture_begin(g, &ctx));
  for (int i = 0; i < iters; i++)
    if (call(op, gc, in, out, bytes, ctx.stream)) DIE("%s under capture", op_names[op]);
  OK(gc_graph_capture_end(g, &ctx));
  OK(gc_graph_replay(&ctx, NULL));
  OK(gc_cuda_stream_synchronize(ctx.stream));
  int reps = 5;
  OK(gc_cuda_event_record(ev0, ctx.stream));
  for (int r = 0; r < reps; r++) OK(gc_graph_replay(&ctx, NULL));
  OK(gc_cuda_event_record(ev1, ctx.stream));
  OK(gc_cuda_event_synchronize(ev1));
  float ms = 0;
  OK(gc_cuda_event_elapsed_ms(ev0, ev1, &ms));
  OK(gc_graph_release(&ctx));
  return ms * 1e3 / (reps * iters);
}

static const char *fmt_bytes(size_t b, char *buf) {
  if (b >= (1u << 30))
    sprintf(buf, "%zuG", b >> 30);
  else if (b >= (1u << 20))
    sprintf(buf, "%zuM", b >> 20);
  else if (b >= 1024)
    sprintf(buf, "%zuK", b >> 10);
  else
    sprintf(buf, "%zu", b);
  return buf;
}

static int iters_for(size_t bytes) {
  size_t it = ((size_t)4 << 30) / (bytes ? bytes : 1);
  return it > 200 ? 200 : it < 5 ? 5 : (int)it;
}

/* ---- N ranks under a launcher --------------------------------------------- */

enum { M_AR, M_AG, M_RS, M_BC, M_SR, M_OPS };
static const char *m_names[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast",
                                "sendrecv"};

/* NCCL as an unchanged program reaches it (-n): ncclX through dlsym on a
 * handle of libnccl.so.2, which the preloaded shim answers. */
static struct {
  ncclResult_t (*GetUniqueId)(ncclUniqueId *);
  ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            cudaStream_t);
  ncclResult_t (*AllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*ReduceScatter)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                                ncclComm_t, cudaStream_t);
  ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                            cudaStream_t);
  ncclResult_t (*Send)(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*Recv)(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*GroupStart)(void);
  ncclResult_t (*GroupEnd)(void);
} nx;

static void load_nccl_by_name(void) {
  const char *lib = getenv("NCCL_BENCH_LIBRARY");
  void *h = dlopen(lib && *lib ? lib : "libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
  if (!h) DIE("dlopen NCCL: %s", dlerror());
#define NX(f)                                          \
  do {                                                 \
    *(void **)&nx.f = dlsym(h, "nccl" #f);             \
    if (!nx.f) DIE("dlsym nccl%s: %s", #f, dlerror()); \
  } while (0)
  NX(GetUniqueId);
  NX(CommInitRank);
  NX(CommDestroy);
  NX(AllReduce);
  NX(AllGather);
  NX(ReduceScatter);
  NX(Broadcast);
  NX(Send);
  NX(Recv);
  NX(GroupStart);
  NX(GroupEnd);
#undef NX
}

static int m_rank, m_n, m_host;
static const char *m_only; /* -o */
static size_t m_min;       /* -b */
static gc_group_t *ctl;    /* host group of every rank: barriers, maxima */

/* Elements per rank's input (in) and output (out) of op for bytes as
 * nccl-tests counts them. */
static void m_counts(int op, size_t bytes, size_t *in, size_t *out) {
  size_t c = bytes / 4, per = c / (size_t)m_n;
  *in = *out = c;
  if (op == M_AG) *in = per, *out = per * (size_t)m_n;
  if (op == M_RS) *in = per * (size_t)m_n, *out = per;
}

static double m_busbw_factor(int op) {
  if (op == M_AR) return 2.0 * (m_n - 1) / m_n;
  if (op == M_AG || op == M_RS) return (double)(m_n - 1) / m_n;
  return 1.0;
}

/* One call; gc = 1: through the coordinator, 0: direct (nx when loaded by
 * name, else the group's communicator through the project's table). */
static int m_call(int op, int gc, void *in, void *out, size_t bytes, void *s) {
  size_t ci, co;
  m_counts(op, bytes, &ci, &co);
  int nxt = (m_rank + 1) % m_n, prv = (m_rank + m_n - 1) % m_n;
  if (gc) {
    gc_tensor_t ti = {
        .data = in, .dtype = GC_FLOAT32, .ndim = 1, .device = {GC_DEVICE_CUDA, device}};
    ti.shape[0] = (int64_t)ci;
    gc_tensor_t to = ti;
    to.data = out;
    to.shape[0] = (int64_t)co;
    switch (op) {
      case M_AR:
        return gc_all_reduce(g, &ti, &to, GC_SUM, s) != GC_OK;
      case M_AG:
        return gc_all_gather(g, &ti, 0, &to, s) != GC_OK;
      case M_RS:
        return gc_reduce_scatter(g, &ti, 0, &to, s) != GC_OK;
      case M_BC:
        return gc_broadcast(g, &ti, 0, s) != GC_OK;
      default: /* even ranks send first */
        for (int ph = 0; ph < 2; ph++) {
          gc_status_t r = (m_rank % 2) == ph ? gc_send(g, &ti, nxt, s) : gc_recv(g, &to, prv, s);
          if (r != GC_OK) return 1;
        }
        return 0;
    }
  }
  if (nx.AllReduce) {
    ncclResult_t r;
    switch (op) {
      case M_AR:
        return nx.AllReduce(in, out, co, ncclFloat32, ncclSum, comm, s) != ncclSuccess;
      case M_AG:
        return nx.AllGather(in, out, ci, ncclFloat32, comm, s) != ncclSuccess;
      case M_RS:
        return nx.ReduceScatter(in, out, co, ncclFloat32, ncclSum, comm, s) != ncclSuccess;
      case M_BC:
        return nx.Broadcast(in, in, ci, ncclFloat32, 0, comm, s) != ncclSuccess;
      default:
        r = nx.GroupStart();
        if (r == ncclSuccess) r = nx.Send(in, ci, ncclFloat32, nxt, comm, s);
        if (r == ncclSuccess) r = nx.Recv(out, co, ncclFloat32, prv, comm, s);
        ncclResult_t e = nx.GroupEnd();
        return r != ncclSuccess || e != ncclSuccess;
    }
  }
  switch (op) {
    case M_AR:
      return gc_nccl_real.fn.AllReduce(in, out, co, ncclFloat32, ncclSum, comm, s) != ncclSuccess;
    case M_AG:
      return gc_nccl_real.fn.AllGather(in, out, ci, ncclFloat32, comm, s) != ncclSuccess;
    case M_RS:
      return gc_nccl_real.fn.ReduceScatter(in, out, co, ncclFloat32, ncclSum, comm, s) !=
             ncclSuccess;
    case M_BC:
      return gc_nccl_real.fn.Broadcast(in, in, ci, ncclFloat32, 0, comm, s) != ncclSuccess;
    default: /* the coordinator's pattern: even ranks send first */
      for (int ph = 0; ph < 2; ph++) {
        ncclResult_t r = (m_rank % 2) == ph
                             ? gc_nccl_real.fn.Send(in, ci, ncclFloat32, nxt, comm, s)
                             : gc_nccl_real.fn.Recv(out, co, ncclFloat32, prv, comm, s);
        if (r != ncclSuccess) return 1;
      }
      return 0;
  }
}

/* The slowest rank's value (max over ctl). */
static double m_max(double v) {
  int64_t one[1] = {1};
  gc_tensor_t t = {.data = &v, .dtype = GC_FLOAT64, .ndim = 1};
  t.shape[0] = one[0];
  OK(gc_all_reduce(ctl, &t, &t, GC_MAX, NULL));
  return v;
}

/* Microseconds per call, the slowest rank's. */
static double m_time(int op, int gc, void *in, void *out, size_t bytes, int iters) {
  for (int i = 0; i < 3; i++)
    if (m_call(op, gc, in, out, bytes, stream)) DIE("%s warm-up", m_names[op]);
  if (!m_host) OK(gc_cuda_stream_synchronize(stream));
  OK(gc_barrier(ctl));
  double us;
  if (m_host) {
    double t0 = now_us();
    for (int i = 0; i < iters; i++)
      if (m_call(op, gc, in, out, bytes, stream)) DIE("%s", m_names[op]);
    us = (now_us() - t0) / iters;
  } else {
    OK(gc_cuda_event_record(ev0, stream));
    for (int i = 0; i < iters; i++)
      if (m_call(op, gc, in, out, bytes, stream)) DIE("%s", m_names[op]);
    OK(gc_cuda_event_record(ev1, stream));
    OK(gc_cuda_event_synchronize(ev1));
    float ms = 0;
    OK(gc_cuda_event_elapsed_ms(ev0, ev1, &ms));
    us = ms * 1e3 / iters;
  }
  return m_max(us);
}

static int multi_main(size_t max, int nccl_only, int ab_lines, int host_mem) {
  m_host = host_mem;
  gc_init_options_t io = {.rank = -1, .world_size = -1, .local_rank = -1};
  gc_env_ranks_t er = {0};
  if (gc_env_ranks(&er) != GC_OK) { /* no launcher: a world of one */
    io.rank = 0;
    io.world_size = 1;
    io.local_rank = device;
    er = (gc_env_ranks_t){.rank = 0, .world_size = 1, .local_rank = device, .source = "no launcher"};
  }
  if (host_mem && !nccl_only) {
    fprintf(stderr, "-H needs -n (the coordinator's CUDA path needs a GPU)\n");
    return 2;
  }
  int ndev = 0;
  if (!host_mem && (gc_cuda_device_count(&ndev) != GC_OK || ndev == 0)) {
    printf("skipped: no GPU\n");
    return 77;
  }
  if (!host_mem && er.local_rank >= ndev) {
    printf("skipped: local rank %d, %d GPUs\n", er.local_rank, ndev);
    return 77;
  }
  if (m_only) {
    int known = 0;
    for (int op = 0; op < M_OPS; op++) known |= !strcmp(m_only, m_names[op]);
    if (!known) {
      fprintf(stderr, "-o %s: not one of all_reduce all_gather reduce_scatter broadcast sendrecv\n",
              m_only);
      return 2;
    }
  }
  OK(gc_init(&io));
  m_rank = gc_world_rank();
  m_n = gc_world_size();
  device = host_mem ? 0 : er.local_rank;
  int ranks[1024], one[1] = {m_n};
  if (m_n > 1024) DIE("%d ranks: at most 1024", m_n);
  for (int i = 0; i < m_n; i++) ranks[i] = i;
  gc_group_options_t co = {.group_ranks = ranks,
                           .group_sizes = one,
                           .num_groups = 1,
                           .local_rank = device,
                           .backend = "host",
                           .group_name = "bench_ctl"};
  OK(gc_group_new(&co, &ctl));
  if (!host_mem) {
    OK(gc_cuda_set_device(device));
    OK(gc_cuda_stream_create(&stream));
    OK(gc_cuda_event_create(true, &ev0));
    OK(gc_cuda_event_create(true, &ev1));
  }
  char buf1[32];
  if (nccl_only) {
    load_nccl_by_name();
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (m_rank == 0 && nx.GetUniqueId(&id) != ncclSuccess) DIE("ncclGetUniqueId");
    void *got = NULL;
    size_t len = 0;
    OK(gc_broadcast_object(ctl, &id, sizeof id, 0, m_rank == 0 ? NULL : &got,
                           m_rank == 0 ? NULL : &len));
    if (m_rank != 0) {
      if (len != sizeof id) DIE("unique id of %zu bytes", len);
      memcpy(&id, got, sizeof id);
      free(got);
    }
    if (nx.CommInitRank(&comm, m_n, id, m_rank) != ncclSuccess) DIE("ncclCommInitRank");
  } else {
    nccl_group(ranks, one[0]);
  }
  void *in = NULL, *out = NULL;
  if (host_mem) {
    in = calloc(1, max);
    out = calloc(1, max);
    if (!in || !out) DIE("host buffers of %zu bytes", max);
  } else {
    OK(gc_cuda_malloc_async(max, stream, &in));
    OK(gc_cuda_malloc_async(max, stream, &out));
    OK(gc_cuda_memset_d8_async(in, 0, max, stream));
    OK(gc_cuda_memset_d8_async(out, 0, max, stream));
    OK(gc_cuda_stream_synchronize(stream));
  }
  if (m_rank == 0) {
    int drv = 0;
    if (!host_mem) gc_cuda_driver_version(&drv);
    printf("# gpu_collectives: %d ranks, one per GPU (%s), %s, NCCL %s, driver %d\n", m_n,
           er.source ? er.source : "-",
           nccl_only ? "direct NCCL only (-n, ncclX by dlsym)" : "gc against direct NCCL",
           nccl_only ? "(by name)" : gc_nccl_version_string(gc_nccl_version(), buf1, sizeof buf1),
           drv);
    printf(
        "# bytes as nccl-tests counts them; time = slowest rank's per call (%s); "
        "busbw as nccl-tests\n",
        host_mem ? "wall clock, host memory" : "CUDA events");
    if (nccl_only)
      printf("%-15s %10s %11s %10s %10s\n", "op", "bytes", "nccl_us", "algbw", "busbw");
    else
      printf("%-15s %10s %11s %11s %10s %10s %10s %10s %7s %8s\n", "op", "bytes", "nccl_us",
             "gc_us", "nccl_alg", "nccl_bus", "gc_alg", "gc_bus", "ratio", "added_us");
    fflush(stdout);
  }
  for (int op = 0; op < M_OPS; op++) {
    if (op == M_SR && m_n == 1 && !nccl_only) continue; /* gc_send to oneself is refused */
    if (m_only && strcmp(m_only, m_names[op])) continue;
    for (size_t b = m_min ? m_min : 8; b <= max; b *= 4) {
      size_t ci, cnt;
      m_counts(op, b, &ci, &cnt);
      if (ci == 0 || cnt == 0) continue;
      size_t bytes = (op == M_AG ? cnt : op == M_RS ? ci : ci) * 4; /* nccl-tests size */
      int it = iters_for(bytes);
      double bd = 1e30, bg = 1e30;
      for (int rep = 0; rep < 2; rep++) {
        double d = m_time(op, 0, in, out, bytes, it);
        bd = d < bd ? d : bd;
        if (!nccl_only) {
          double c = m_time(op, 1, in, out, bytes, it);
          bg = c < bg ? c : bg;
        }
      }
      if (m_rank == 0) {
        double f = m_busbw_factor(op), ad = bytes / bd / 1e3, ag = bytes / bg / 1e3;
        if (nccl_only)
          printf("%-15s %10zu %11.2f %10.2f %10.2f\n", m_names[op], bytes, bd, ad, ad * f);
        else
          printf("%-15s %10zu %11.2f %11.2f %10.2f %10.2f %10.2f %10.2f %7.3f %8.2f\n", m_names[op],
                 bytes, bd, bg, ad, ad * f, ag, ag * f, bd / bg, bg - bd);
        if (ab_lines) {
          printf("AB op=%s bytes=%zu us=%.3f group=nccl\n", m_names[op], bytes, bd);
          if (!nccl_only) printf("AB op=%s bytes=%zu us=%.3f group=gc\n", m_names[op], bytes, bg);
        }
        fflush(stdout);
      }
    }
  }
  if (host_mem) {
    free(in);
    free(out);
  } else {
    OK(gc_cuda_free_async(in, stream));
    OK(gc_cuda_free_async(out, stream));
    OK(gc_cuda_stream_synchronize(stream));
    gc_cuda_event_destroy(ev0);
    gc_cuda_event_destroy(ev1);
    gc_cuda_stream_destroy(stream);
  }
  if (nccl_only && nx.CommDestroy(comm) != ncclSuccess) DIE("ncclCommDestroy");
  if (g) OK(gc_group_destroy(g));
  OK(gc_barrier(ctl));
  OK(gc_group_destroy(ctl));
  OK(gc_finalize());
  return 0;
}

int main(int argc, char **argv) {
  size_t max = (size_t)1 << 30;
  int graph_all = 0, opt, nccl_only = 0, ab_lines = 0, host_mem = 0;
  while ((opt = getopt(argc, argv, "m:Gd:naHo:b:")) != -1) {
    if (opt == 'm')
      max = strtoull(optarg, NULL, 0);
    else if (opt == 'G')
      graph_all = 1;
    else if (opt == 'd')
      device = atoi(optarg);
    else if (opt == 'n')
      nccl_only = 1;
    else if (opt == 'a')
      ab_lines = 1;
    else if (opt == 'H')
      host_mem = 1;
    else if (opt == 'o')
      m_only = optarg;
    else if (opt == 'b')
      m_min = strtoull(optarg, NULL, 0);
    else {
      fprintf(stderr,
              "usage: %s [-m max_bytes] [-G] [-d device] [-n] [-a] [-H] [-o op] [-b min_bytes]\n",
              argv[0]);
      return 2;
    }
  }
  gc_env_ranks_t er;
  if ((gc_env_ranks(&er) == GC_OK && er.world_size > 1) || nccl_only || host_mem || m_only || m_min)
    return multi_main(max, nccl_only, ab_lines, host_mem);
  int ndev = 0;
  if (gc_cuda_device_count(&ndev) != GC_OK || ndev == 0) {
    printf("skipped: no GPU\n");
    return 77;
  }
  char rv[64];
  snprintf(rv, sizeof rv, "bgpu%d", (int)getpid());
  gc_init_options_t io = {.rank = 0, .world_size = 1, .local_rank = device, .rendezvous = rv};
  OK(gc_init(&io));
  int ranks[1] = {0};
  nccl_group(ranks, 1);
  OK(gc_cuda_stream_create(&stream));
  OK(gc_cuda_event_create(true, &ev0));
  OK(gc_cuda_event_create(true, &ev1));
  char name[256] = "?", buf1[32];
  int drv = 0;
  gc_cuda_driver_version(&drv);
  printf("# gpu_collectives: 1 rank on device %d, NCCL %s (%s), driver %d\n", device,
         gc_nccl_version_string(gc_nccl_version(), buf1, sizeof buf1), gc_nccl_library(), drv);
  (void)name;

  void *in = NULL, *out = NULL;
  OK(gc_cuda_malloc_async(max, stream, &in));
  OK(gc_cuda_malloc_async(max, stream, &out));
  OK(gc_cuda_memset_d8_async(in, 0, max, stream));
  OK(gc_cuda_memset_d8_async(out, 0, max, stream));
  OK(gc_cuda_stream_synchronize(stream));

  printf(
      "\n## Eager calls (float32, dim 0; GPU time per call from CUDA events; host = enqueue "
      "time per call)\n");
  printf("%-15s %8s %11s %11s %10s %10s %7s %9s %9s %8s\n", "op", "bytes", "nccl_us", "gc_us",
         "nccl_GB/s", "gc_GB/s", "ratio", "nccl_hst", "gc_hst", "added");
  for (int op = 0; op < 3; op++) {
    for (size_t b = 8; b <= max; b *= 8) {
      int it = iters_for(b);
      double gd, hd, gg, hg;
      /* interleave to cancel drift: direct, gc, direct, gc; keep the best */
      double bgd = 1e30, bhd = 1e30, bgg = 1e30, bhg = 1e30;
      for (int rep = 0; rep < 2; rep++) {
        time_calls(op, 0, in, out, b, it, &gd, &hd);
        time_calls(op, 1, in, out, b, it, &gg, &hg);
        bgd = gd < bgd ? gd : bgd;
        bhd = hd < bhd ? hd : bhd;
        bgg = gg < bgg ? gg : bgg;
        bhg = hg < bhg ? hg : bhg;
      }
      printf("%-15s %8s %11.2f %11.2f %10.1f %10.1f %7.3f %9.2f %9.2f %8.2f\n", op_names[op],
             fmt_bytes(b, buf1), bgd, bgg, b / bgd / 1e3, b / bgg / 1e3, bgd / bgg, bhd, bhg,
             bhg - bhd);
      fflush(stdout);
      if (b > max / 8) break;
    }
  }

  printf(
      "\n## dim-1 all-gather rearrangement (8 ranks' blocks [8][outer][w] -> [outer][8*w], "
      "w = 4 KiB rows) vs one device-to-device copy\n");
  printf("%8s %12s %12s %12s %12s %7s\n", "bytes", "copy_us", "copy_GB/s", "rearr_us", "rearr_GB/s",
         "ratio");
  gc_device_t dev = {GC_DEVICE_CUDA, device};
  for (size_t b = (size_t)1 << 20; b <= max; b *= 4) {
    size_t w = 4096, outer = b / (8 * w);
    if (!outer) continue;
    size_t bytes = outer * 8 * w;
    int it = iters_for(bytes);
    float ms;
    for (int k = 0; k < 2; k++) OK(gc_cuda_memcpy_async(out, in, bytes, stream));
    OK(gc_cuda_event_record(ev0, stream));
    for (int i = 0; i < it; i++) OK(gc_cuda_memcpy_async(out, in, bytes, stream));
    OK(gc_cuda_event_record(ev1, stream));
    OK(gc_cuda_event_synchronize(ev1));
    OK(gc_cuda_event_elapsed_ms(ev0, ev1, &ms));
    double cu = ms * 1e3 / it;
    OK(gc_cuda_event_record(ev0, stream));
    for (int i = 0; i < it; i++) /* as ops.c's interleave() issues it: one launch */
      OK(g->dev->copy3d(out, w, 8 * w, in, outer * w, w, w, outer, 8, dev, stream));
    OK(gc_cuda_event_record(ev1, stream));
    OK(gc_cuda_event_synchronize(ev1));
    OK(gc_cuda_event_elapsed_ms(ev0, ev1, &ms));
    double re = ms * 1e3 / it;
    printf("%8s %12.2f %12.1f %12.2f %12.1f %7.3f\n", fmt_bytes(bytes, buf1), cu,
           2.0 * bytes / cu / 1e3, re, 2.0 * bytes / re / 1e3, cu / re);
    fflush(stdout);
  }

  printf("\n## Graph replay (%s): GPU time per captured call, 64 calls per graph\n",
         graph_all ? "-G: every size" : "sizes up to 1 MiB; -G for all");
  printf("%-15s %8s %11s %11s %9s\n", "op", "bytes", "nccl_us", "gc_us", "added_us");
  for (int op = 0; op < 3; op++) {
    for (size_t b = 8; b <= max; b *= 64) {
      if (!graph_all && b > ((size_t)1 << 20)) break;
      double d = time_graph(op, 0, in, out, b, 64), c = time_graph(op, 1, in, out, b, 64);
      printf("%-15s %8s %11.2f %11.2f %9.2f\n", op_names[op], fmt_bytes(b, buf1), d, c, c - d);
      fflush(stdout);
    }
  }
  OK(gc_cuda_free_async(in, stream));
  OK(gc_cuda_free_async(out, stream));
  OK(gc_cuda_stream_synchronize(stream));
  gc_cuda_event_destroy(ev0);
  gc_cuda_event_destroy(ev1);
  gc_cuda_stream_destroy(stream);
  OK(gc_group_destroy(g));
  OK(gc_finalize());
  return 0;
}
