/* test_gpu_capture.c - a sequence of coordinator operations captured into
 * a CUDA graph through gc_graph_capture_begin/end (global capture mode: the
 * driver rejects any synchronization or allocation made meanwhile) and
 * replayed 100 times on fresh inputs, checked exactly after every replay;
 * the caller's own capture; a plan too small for a captured operation's
 * scratch; outputs that would be allocated under capture. Exits 77
 * without a GPU. */
#include "gpu_util.h"

enum { R = 64, COLS = 96, REPLAYS = 100 };

typedef struct {
  void *x, *y, *z, *w; /* float32: x -> all_reduce -> y -> all_gather(1) -> z -> rs(-1) -> w */
  void *a, *b;         /* int32: a -> all_reduce AVG -> b, then b /= 3 */
  void *h, *hm;        /* bf16: h -> all_reduce MAX -> hm */
} bufs_t;

static gc_tensor_t T(void *p, gc_dtype_t dt, int64_t r, int64_t c, int me) {
  (void)me;
  int64_t s[2] = {r, c};
  return cuda_tensor(p, dt, 2, s, T_DEV);
}

/* The captured sequence (also run once before capture to warm NCCL up). */
static int sequence(gc_group_t *g, const bufs_t *b, int me, int n, void *stream) {
  gc_tensor_t x = T(b->x, GC_FLOAT32, R, COLS, me), y = T(b->y, GC_FLOAT32, R, COLS, me);
  gc_tensor_t z = T(b->z, GC_FLOAT32, R, COLS * n, me), w = T(b->w, GC_FLOAT32, R, COLS, me);
  gc_tensor_t a = T(b->a, GC_INT32, R, COLS, me), bb = T(b->b, GC_INT32, R, COLS, me);
  gc_tensor_t h = T(b->h, GC_BFLOAT16, R, COLS, me), hm = T(b->hm, GC_BFLOAT16, R, COLS, me);
  int bad = 0;
  bad += gc_all_reduce(g, &x, &y, GC_SUM, stream) != GC_OK;
  bad += gc_all_gather(g, &y, 1, &z, stream) != GC_OK;
  bad += gc_reduce_scatter(g, &z, -1, &w, stream) != GC_OK;
  bad += gc_all_reduce(g, &a, &bb, GC_AVG, stream) != GC_OK;
  bad += gc_nccl_divide(b->b, (size_t)R * COLS, GC_INT32, 3, T_DEV, stream) != GC_OK;
  bad += gc_all_reduce(g, &h, &hm, GC_MAX, stream) != GC_OK;
  bad += gc_broadcast(g, &hm, 0, stream) != GC_OK;
  if (bad) fprintf(stderr, "[rank %d] sequence: %d failed; last: %s\n", me, bad, gc_last_error());
  return bad;
}

static void fill(int iter, int n, float **xs, int32_t **as, uint16_t **hs) {
  size_t cnt = (size_t)R * COLS;
  for (int r = 0; r < n; r++) {
    rng_t rg = rng_make(100 + (uint64_t)iter, (uint64_t)r, 0);
    fill_values(xs[r], GC_FLOAT32, cnt, GC_SUM, &rg);
    for (size_t i = 0; i < cnt; i++) as[r][i] = (int32_t)rng_range(&rg, -100000, 100000);
    fill_values(hs[r], GC_BFLOAT16, cnt, GC_MAX, &rg);
  }
}

/* Uploads this rank's fresh inputs, replays, checks every output. */
static bool replay_once(const gc_graph_capture_t *ctx, const bufs_t *b, int me, int n, int iter,
                        void *exec_stream, void *exec) {
  size_t cnt = (size_t)R * COLS;
  float *xs[64], *y = malloc(cnt * 4), *w = malloc(cnt * 4), *z = malloc(cnt * 4 * (size_t)n);
  int32_t *as[64], *bv = malloc(cnt * 4);
  uint16_t *hs[64], *hm = malloc(cnt * 2);
  for (int r = 0; r < n; r++) {
    xs[r] = malloc(cnt * 4);
    as[r] = malloc(cnt * 4);
    hs[r] = malloc(cnt * 2);
  }
  fill(iter, n, xs, as, hs);
  void *stream = exec_stream;
  h2d(b->x, xs[me], cnt * 4, stream);
  h2d(b->a, as[me], cnt * 4, stream);
  h2d(b->h, hs[me], cnt * 2, stream);
  gc_status_t s = exec ? gc_cuda_graph_launch(exec, stream) : gc_graph_replay(ctx, NULL);
  bool ok = s == GC_OK;
  d2h(y, b->y, cnt * 4, stream);
  d2h(z, b->z, cnt * 4 * (size_t)n, stream);
  d2h(w, b->w, cnt * 4, stream);
  d2h(bv, b->b, cnt * 4, stream);
  d2h(hm, b->hm, cnt * 2, stream);
  for (size_t i = 0; ok && i < cnt; i++) {
    float sum = 0, mx = -1e30f;
    int64_t isum = 0;
    for (int r = 0; r < n; r++) {
      sum += xs[r][i];
      isum += as[r][i];
      float hv = gc_bf16_to_float(hs[r][i]);
      mx = hv > mx ? hv : mx;
    }
    size_t row = i / COLS, col = i % COLS;
    ok = y[i] == sum && w[i] == sum * (float)n && bv[i] == (int32_t)(isum / n) / 3 &&
         gc_bf16_to_float(hm[i]) == mx;
    for (int r = 0; ok && r < n; r++)
      ok = z[row * COLS * (size_t)n + (size_t)r * COLS + col] == sum;
    if (!ok)
      fprintf(stderr, "[rank %d] replay %d: element %zu: y %g want %g, w %g, b %d want %d\n", me,
              iter, i, (double)y[i], (double)sum, (double)w[i], bv[i], (int)((isum / n) / 3));
  }
  for (int r = 0; r < n; r++) {
    free(xs[r]);
    free(as[r]);
    free(hs[r]);
  }
  free(y);
  free(w);
  free(z);
  free(bv);
  free(hm);
  return ok;
}

static int body(int me, int n) {
  gc_group_t *g = nccl_group(n, "cap");
  if (!g) return 1;
  size_t cnt = (size_t)R * COLS;
  bufs_t b;
  void *setup = NULL;
  CHECK(gc_cuda_stream_create(&setup) == GC_OK, "stream create");
  b.x = dev_alloc(cnt * 4, setup);
  b.y = dev_alloc(cnt * 4, setup);
  b.z = dev_alloc(cnt * 4 * (size_t)n, setup);
  b.w = dev_alloc(cnt * 4, setup);
  b.a = dev_alloc(cnt * 4, setup);
  b.b = dev_alloc(cnt * 4, setup);
  b.h = dev_alloc(cnt * 2, setup);
  b.hm = dev_alloc(cnt * 2, setup);
  CHECK(gc_cuda_stream_synchronize(setup) == GC_OK, "allocations done");
  gc_buffer_plan_t plan = {.max_all_reduce_bytes = cnt * 4 * (size_t)n};
  CHECK(gc_group_prepare_buffers(g, &plan) == GC_OK, "prepare_buffers");
  CHECK(sequence(g, &b, me, n, setup) == 0, "warm-up sequence outside capture");
  CHECK(gc_cuda_stream_synchronize(setup) == GC_OK, "warm-up done");

  /* 1. begin creates the stream and the capture; end makes the graph. */
  gc_graph_capture_t ctx = {0};
  CHECK(gc_graph_capture_begin(g, &ctx) == GC_OK && ctx.stream, "capture begin");
  bool cap = false;
  CHECK(gc_cuda_is_capturing(ctx.stream, &cap) == GC_OK && cap, "stream is capturing");
  CHECK(g->dev->capturing && g->dev->capturing(ctx.stream), "backend sees the capture");
  CHECK(sequence(g, &b, me, n, ctx.stream) == 0, "sequence under capture");
  CHECK(gc_graph_capture_end(g, &ctx) == GC_OK && ctx.graph_exec, "capture end: %s",
        gc_last_error());
  int good = 0;
  for (int it = 0; ctx.graph_exec && it < REPLAYS; it++)
    good += replay_once(&ctx, &b, me, n, it, ctx.stream, NULL);
  CHECK(good == REPLAYS, "%d of %d replays exact", good, REPLAYS);
  printf("[rank %d] %d replays exact\n", me, good);
  CHECK(gc_graph_release(&ctx) == GC_OK && !ctx.stream && !ctx.graph_exec, "graph release");

  /* 2. the caller captures on its own stream: begin/end leave it alone. */
  void *own = NULL, *graph = NULL, *exec = NULL;
  CHECK(gc_cuda_stream_create(&own) == GC_OK, "own stream");
  CHECK(gc_cuda_stream_begin_capture(own, 0) == GC_OK, "caller begins capture");
  gc_graph_capture_t c2 = {.stream = own};
  CHECK(gc_graph_capture_begin(g, &c2) == GC_OK && c2.stream == own, "begin on a capturing stream");
  CHECK(sequence(g, &b, me, n, own) == 0, "sequence in the caller's capture");
  CHECK(gc_graph_capture_end(g, &c2) == GC_OK && !c2.graph_exec, "end leaves the capture running");
  CHECK(gc_cuda_stream_end_capture(own, &graph) == GC_OK, "caller ends capture");
  CHECK(graph && gc_cuda_graph_instantiate(graph, &exec) == GC_OK, "instantiate");
  good = 0;
  for (int it = 0; exec && it < 10; it++)
    good += replay_once(NULL, &b, me, n, 1000 + it, own, exec);
  CHECK(good == 10, "%d of 10 replays of the caller's graph exact", good);
  if (exec) gc_cuda_graph_exec_destroy(exec);
  if (graph) gc_cuda_graph_destroy(graph);

  /* 3. under capture: scratch beyond the plan, and outputs to allocate, are
   * refused with a message instead of allocating or synchronizing. */
  gc_graph_capture_t c3 = {0};
  CHECK(gc_graph_capture_begin(g, &c3) == GC_OK, "capture begin (3)");
  void *p = NULL;
  gc_device_t dev = {GC_DEVICE_CUDA, T_DEV};
  gc_status_t s = g->dev->scratch(g, 0, (size_t)1 << 34, dev, c3.stream, &p);
  CHECK(s == GC_ERR_STATE && strstr(gc_last_error(), "gc_group_prepare_buffers"),
        "scratch beyond the plan under capture: GC_ERR_STATE naming prepare_buffers (%s)",
        gc_status_string(s));
  gc_tensor_t x = T(b.x, GC_FLOAT32, R, COLS, me), none = {0};
  CHECK(gc_all_reduce(g, &x, &none, GC_SUM, c3.stream) != GC_OK && !none.data,
        "an output to allocate under capture is refused");
  CHECK(gc_graph_capture_end(g, &c3) == GC_OK, "capture end (3): the capture stayed valid");
  CHECK(gc_graph_release(&c3) == GC_OK, "release (3)");

  CHECK(gc_graph_capture_begin(NULL, &c3) == GC_ERR_INVALID_ARG, "begin: NULL group");
  CHECK(gc_graph_replay(&c3, NULL) == GC_ERR_INVALID_ARG, "replay without a graph");

  void *all[] = {b.x, b.y, b.z, b.w, b.a, b.b, b.h, b.hm};
  for (int i = 0; i < 8; i++) dev_free(all[i], setup);
  (void)gc_cuda_stream_synchronize(setup);
  (void)gc_cuda_stream_destroy(setup);
  (void)gc_cuda_stream_destroy(own);
  CHECK(gc_group_destroy(g) == GC_OK, "group destroy");
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  /* forked: argv[1] ranks at most (default 4); launched: the job's size */
  return gpu_main("tcap", argc > 1 ? atoi(argv[1]) : 4, body);
}
