/*
 * gpu_collectives.c - the coordinator's CUDA collectives against direct NCCL
 * calls on the same buffers and communicator, timed with CUDA events.
 *
 *   bench/gpu_collectives [-m max_bytes] [-G] [-d device]
 *
 * One process, one rank (the device machine has one GPU): the figures are
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
 */
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

int main(int argc, char **argv) {
  size_t max = (size_t)1 << 30;
  int graph_all = 0, opt;
  while ((opt = getopt(argc, argv, "m:Gd:")) != -1) {
    if (opt == 'm')
      max = strtoull(optarg, NULL, 0);
    else if (opt == 'G')
      graph_all = 1;
    else if (opt == 'd')
      device = atoi(optarg);
    else {
      fprintf(stderr, "usage: %s [-m max_bytes] [-G] [-d device]\n", argv[0]);
      return 2;
    }
  }
  int ndev = 0;
  if (gc_cuda_device_count(&ndev) != GC_OK || ndev == 0) {
    printf("skipped: no GPU\n");
    return 77;
  }
  char rv[64];
  snprintf(rv, sizeof rv, "bgpu%d", (int)getpid());
  gc_init_options_t io = {.rank = 0, .world_size = 1, .local_rank = device, .rendezvous = rv};
  OK(gc_init(&io));
  int ranks[1] = {0}, sizes[1] = {1};
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
