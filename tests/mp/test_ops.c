/* test_ops.c - every tensor collective of the coordinator on host tensors,
 * every dtype, dims 0 / middle / -1, random shapes, with 1, 2, 3, 4 and 8
 * forked ranks, against a reference computed on each rank from every
 * rank's (seeded) input. Data is chosen so that results are exact in any
 * reduction order: every comparison is bit for bit. */
#include "test_ops_util.h"

#define NDT 8
static const gc_dtype_t DTS[NDT] = {GC_INT8,    GC_UINT8,    GC_INT32,   GC_INT64,
                                    GC_FLOAT16, GC_BFLOAT16, GC_FLOAT32, GC_FLOAT64};

/* A random shape of ndim dims in 1..4 (or 0 for a scalar) from rng. */
static int rand_shape(rng_t *r, int min_ndim, int64_t *shape) {
  int nd = (int)rng_range(r, min_ndim, 4);
  for (int i = 0; i < nd; i++) shape[i] = rng_range(r, 1, 4);
  return nd;
}

/* Rank r's input of case c: same shape logic everywhere, data per rank. */
static void *make_input(int c, int r, gc_dtype_t dt, gc_redop_t op, size_t numel) {
  size_t es = gc_dtype_size(dt);
  void *p = malloc(numel * es + 1);
  rng_t g = rng_make((uint64_t)c, (uint64_t)r, 17);
  fill_values(p, dt, numel, op, &g);
  return p;
}

/* ---- all-reduce -------------------------------------------------------------- */
static void t_all_reduce(gc_group_t *g, int me, int n) {
  int c = 0;
  for (int di = 0; di < NDT; di++)
    for (int op = GC_SUM; op <= GC_AVG; op++, c++) {
      gc_dtype_t dt = DTS[di];
      rng_t sr = rng_make(1000 + c, 0, 0);
      int64_t shape[GC_MAX_DIMS];
      int nd = rand_shape(&sr, 0, shape);
      size_t numel = prod_dims(shape, 0, nd), es = gc_dtype_size(dt);
      void *ins[64];
      for (int r = 0; r < n; r++) ins[r] = make_input(c, r, dt, (gc_redop_t)op, numel);
      void *want = malloc(numel * es + 1);
      ref_reduce(dt, (gc_redop_t)op, n, ins, numel, want);
      void *copy = malloc(numel * es + 1);
      memcpy(copy, ins[me], numel * es);
      gc_tensor_t in = host_tensor(ins[me], dt, nd, shape), out = {0};
      bool prealloc = c % 2;
      void *mine = prealloc ? malloc(numel * es + 1) : NULL;
      if (prealloc) out = host_tensor(mine, dt, nd, shape);
      gc_status_t s =
          c % 3 ? gc_all_reduce(g, &in, &out, (gc_redop_t)op, NULL)
                : gc_all_reduce_by_name(gc_group_name(g), &in, &out, (gc_redop_t)op, NULL);
      CHECK(s == GC_OK, "all_reduce %s op %d", gc_dtype_name(dt), op);
      if (s == GC_OK) {
        CHECK(out.dtype == dt && out.ndim == nd && !memcmp(out.shape, shape, sizeof(int64_t) * nd),
              "all_reduce output descriptor");
        CHECK(!memcmp(out.data, want, numel * es), "all_reduce %s op %d shape nd=%d values",
              gc_dtype_name(dt), op, nd);
        CHECK(!memcmp(ins[me], copy, numel * es), "all_reduce modified its input");
        if (!prealloc) gc_tensor_free(&out, NULL);
      }
      free(mine);
      free(copy);
      free(want);
      for (int r = 0; r < n; r++) free(ins[r]);
    }
}

/* ---- all-gather / all-gatherv / gather --------------------------------------- */
/* Expected output of gathering rank inputs of shape[] with rows[r] on dim. */
static void *expect_gather(gc_dtype_t dt, int nd, const int64_t *shape, int dim,
                           const int64_t *rows, int n, void *const *ins, size_t *out_bytes) {
  size_t es = gc_dtype_size(dt), outer = prod_dims(shape, 0, dim);
  size_t inner = prod_dims(shape, dim + 1, nd) * es, total = 0;
  for (int r = 0; r < n; r++) total += (size_t)rows[r];
  char *o = malloc(outer * total * inner + 1), *w = o;
  for (size_t a = 0; a < outer; a++)
    for (int r = 0; r < n; r++) {
      size_t blk = (size_t)rows[r] * inner;
      memcpy(w, (char *)ins[r] + a * blk, blk);
      w += blk;
    }
  *out_bytes = outer * total * inner;
  return o;
}

static void t_gathers(gc_group_t *g, int me, int n, int kind /* 0 ag, 1 agv, 2 gather */) {
  static const char *names[] = {"all_gather", "all_gatherv", "gather"};
  int c = 0;
  for (int di = 0; di < NDT; di++)
    for (int dsel = 0; dsel < 3; dsel++, c++) {
      gc_dtype_t dt = DTS[di];
      rng_t sr = rng_make(2000 + kind * 100 + c, 0, 0);
      int64_t shape[GC_MAX_DIMS];
      int nd = rand_shape(&sr, 1, shape);
      int dim = dsel == 0 ? 0 : dsel == 1 ? nd / 2 : -1, d = dim < 0 ? nd + dim : dim;
      int64_t rows[64], sizes[64];
      for (int r = 0; r < n; r++) rows[r] = kind == 1 ? rng_range(&sr, 0, 3) : shape[d];
      for (int r = 0; r < n; r++) sizes[r] = rows[r];
      int dst = (int)rng_range(&sr, 0, n - 1);
      void *ins[64];
      for (int r = 0; r < n; r++) {
        int64_t rs[GC_MAX_DIMS];
        memcpy(rs, shape, sizeof rs);
        rs[d] = rows[r];
        ins[r] = make_input(c + 7000 * kind, r, dt, GC_SUM, prod_dims(rs, 0, nd));
      }
      size_t wb;
      void *want = expect_gather(dt, nd, shape, d, rows, n, ins, &wb);
      int64_t ms[GC_MAX_DIMS];
      memcpy(ms, shape, sizeof ms);
      ms[d] = rows[me];
      gc_tensor_t in = host_tensor(ins[me], dt, nd, ms), out = {0};
      int64_t os[GC_MAX_DIMS];
      memcpy(os, shape, sizeof os);
      os[d] = 0;
      for (int r = 0; r < n; r++) os[d] += rows[r];
      bool prealloc = (c + me) % 2;
      void *mine = prealloc ? malloc(wb + 1) : NULL;
      if (prealloc) out = host_tensor(mine, dt, nd, os);
      gc_status_t s = kind == 0   ? gc_all_gather(g, &in, dim, &out, NULL)
                      : kind == 1 ? gc_all_gatherv(g, &in, dim, sizes, &out, NULL)
                                  : gc_gather(g, &in, dst, dim, &out, NULL);
      CHECK(s == GC_OK, "%s %s dim %d nd %d", names[kind], gc_dtype_name(dt), dim, nd);
      bool receives = kind != 2 || me == dst;
      if (s == GC_OK && receives) {
        CHECK(out.ndim == nd && !memcmp(out.shape, os, sizeof(int64_t) * nd) && out.dtype == dt,
              "%s output descriptor", names[kind]);
        CHECK(wb == 0 || !memcmp(out.data, want, wb), "%s %s dim %d nd %d values", names[kind],
              gc_dtype_name(dt), dim, nd);
        if (!prealloc) gc_tensor_free(&out, NULL);
      }
      if (s == GC_OK && !receives && !prealloc)
        CHECK(out.data == NULL, "gather allocated an output on a rank that is not dst");
      free(mine);
      free(want);
      for (int r = 0; r < n; r++) free(ins[r]);
    }
}

/* ---- reduce-scatter / reduce-scatterv ---------------------------------------- */
static void t_reduce_scatter(gc_group_t *g, int me, int n, bool v) {
  int c = 0;
  for (int di = 0; di < NDT; di++)
    for (int dsel = 0; dsel < 3; dsel++, c++) {
      gc_dtype_t dt = DTS[di];
      rng_t sr = rng_make(3000 + v * 100 + c, 0, 0);
      int64_t shape[GC_MAX_DIMS];
      int nd = rand_shape(&sr, 1, shape);
      int dim = dsel == 0 ? 0 : dsel == 1 ? nd / 2 : -1, d = dim < 0 ? nd + dim : dim;
      int64_t sizes[64], total = 0;
      for (int r = 0; r < n; r++) total += sizes[r] = v ? rng_range(&sr, 0, 3) : shape[d];
      shape[d] = total;
      size_t es = gc_dtype_size(dt), numel = prod_dims(shape, 0, nd);
      void *ins[64];
      for (int r = 0; r < n; r++) ins[r] = make_input(c + 50 * v, r, dt, GC_SUM, numel);
      void *sum = malloc(numel * es + 1);
      ref_reduce(dt, GC_SUM, n, ins, numel, sum);
      /* this rank's rows of the sum on dim d */
      size_t outer = prod_dims(shape, 0, d), inner = prod_dims(shape, d + 1, nd) * es;
      int64_t off = 0;
      for (int r = 0; r < me; r++) off += sizes[r];
      size_t blk = (size_t)sizes[me] * inner;
      char *want = malloc(outer * blk + 1);
      for (size_t a = 0; a < outer; a++)
        memcpy(want + a * blk, (char *)sum + a * (size_t)total * inner + (size_t)off * inner, blk);
      int64_t os[GC_MAX_DIMS];
      memcpy(os, shape, sizeof os);
      os[d] = sizes[me];
      gc_tensor_t in = host_tensor(ins[me], dt, nd, shape), out = {0};
      bool prealloc = (c + me) % 2;
      void *mine = prealloc ? malloc(outer * blk + 1) : NULL;
      if (prealloc) out = host_tensor(mine, dt, nd, os);
      gc_status_t s = v ? gc_reduce_scatterv(g, &in, dim, sizes, &out, NULL)
                        : gc_reduce_scatter(g, &in, dim, &out, NULL);
      CHECK(s == GC_OK, "reduce_scatter%s %s dim %d", v ? "v" : "", gc_dtype_name(dt), dim);
      if (s == GC_OK) {
        CHECK(out.ndim == nd && !memcmp(out.shape, os, sizeof(int64_t) * nd),
              "reduce_scatter output descriptor");
        CHECK(outer * blk == 0 || !memcmp(out.data, want, outer * blk),
              "reduce_scatter%s %s dim %d nd %d values", v ? "v" : "", gc_dtype_name(dt), dim, nd);
        if (!prealloc) gc_tensor_free(&out, NULL);
      }
      free(mine);
      free(want);
      free(sum);
      for (int r = 0; r < n; r++) free(ins[r]);
    }
}

/* ---- broadcast, send/recv ------------------------------------------------------ */
static void t_broadcast(gc_group_t *g, int me, int n) {
  for (int di = 0; di < NDT; di++) {
    gc_dtype_t dt = DTS[di];
    rng_t sr = rng_make(4000 + di, 0, 0);
    int64_t shape[GC_MAX_DIMS];
    int nd = rand_shape(&sr, 0, shape);
    int src = (int)rng_range(&sr, 0, n - 1);
    size_t bytes = prod_dims(shape, 0, nd) * gc_dtype_size(dt);
    void *want = make_input(4000 + di, src, dt, GC_SUM, prod_dims(shape, 0, nd));
    bool alloc = me != src && di % 2;
    void *buf = alloc ? NULL : malloc(bytes + 1);
    if (me == src) memcpy(buf, want, bytes);
    gc_tensor_t t = host_tensor(buf, dt, nd, shape);
    gc_status_t s = gc_broadcast(g, &t, src, NULL);
    CHECK(s == GC_OK, "broadcast %s from %d", gc_dtype_name(dt), src);
    if (s == GC_OK) CHECK(!memcmp(t.data, want, bytes), "broadcast %s values", gc_dtype_name(dt));
    if (alloc)
      gc_tensor_free(&t, NULL);
    else
      free(buf);
    free(want);
  }
}

static void t_send_recv(gc_group_t *g, int me, int n) {
  if (n == 1) {
    float x = 1;
    gc_tensor_t t = host_tensor(&x, GC_FLOAT32, 0, NULL);
    CHECK(gc_send(g, &t, -1, NULL) == GC_ERR_INVALID_ARG, "send to oneself");
    CHECK(gc_recv(g, &t, -1, NULL) == GC_ERR_INVALID_ARG, "recv from oneself");
    return;
  }
  /* Rank s sends to its next rank (dst -1), which receives from its
   * previous one (src -1), for every s in turn and every dtype. */
  for (int s = 0; s < n; s++)
    for (int di = 0; di < NDT; di++) {
      gc_dtype_t dt = DTS[di];
      rng_t sr = rng_make(5000 + s * 10 + di, 0, 0);
      int64_t shape[GC_MAX_DIMS];
      int nd = rand_shape(&sr, 0, shape);
      size_t numel = prod_dims(shape, 0, nd), bytes = numel * gc_dtype_size(dt);
      if (me == s) {
        void *p = make_input(5000 + di, s, dt, GC_SUM, numel);
        gc_tensor_t t = host_tensor(p, dt, nd, shape);
        CHECK(gc_send(g, &t, -1, NULL) == GC_OK, "send %s from %d", gc_dtype_name(dt), s);
        free(p);
      } else if (me == (s + 1) % n) {
        void *want = make_input(5000 + di, s, dt, GC_SUM, numel);
        gc_tensor_t t = host_tensor(di % 2 ? malloc(bytes + 1) : NULL, dt, nd, shape);
        gc_status_t st = gc_recv(g, &t, -1, NULL);
        CHECK(st == GC_OK, "recv %s from %d", gc_dtype_name(dt), s);
        if (st == GC_OK) CHECK(!memcmp(t.data, want, bytes), "recv %s values", gc_dtype_name(dt));
        if (di % 2)
          free(t.data);
        else
          gc_tensor_free(&t, NULL);
        free(want);
      }
    }
}

/* ---- objects ------------------------------------------------------------------- */
static void t_objects(gc_group_t *g, int me, int n) {
  for (int src = 0; src < n; src++) {
    char msg[64];
    int len = snprintf(msg, sizeof msg, "object from %d of %d", src, n);
    void *o = NULL;
    size_t ol = 0;
    gc_status_t s = gc_broadcast_object(g, msg, (size_t)len, src, me == src ? NULL : &o,
                                        me == src ? NULL : &ol);
    CHECK(s == GC_OK, "broadcast_object from %d", src);
    if (s == GC_OK && me != src)
      CHECK(ol == (size_t)len && !memcmp(o, msg, ol), "broadcast_object bytes");
    free(o);
  }
  /* an empty object, and a list with an empty member */
  void *o = NULL;
  size_t ol = 7;
  gc_status_t s = gc_broadcast_object(g, NULL, 0, 0, me ? &o : NULL, me ? &ol : NULL);
  CHECK(s == GC_OK && (me == 0 || ol == 0), "broadcast_object of 0 bytes");
  free(o);
  const char *items[3] = {"alpha", "", "gamma-gamma"};
  size_t lens[3] = {5, 0, 11};
  void **outs = NULL;
  size_t *olens = NULL;
  int src = n - 1;
  s = gc_broadcast_object_list(g, (const void *const *)items, lens, 3, src, &outs, &olens);
  CHECK(s == GC_OK, "broadcast_object_list");
  if (s == GC_OK && me != src) {
    for (int i = 0; i < 3; i++)
      CHECK(olens[i] == lens[i] && !memcmp(outs[i], items[i], lens[i]), "object list item %d", i);
    for (int i = 0; i < 3; i++) free(outs[i]);
    free(outs);
    free(olens);
  }
  if (n == 1) {
    CHECK(gc_send_object(g, "x", 1, 0) == GC_ERR_INVALID_ARG, "send_object to oneself");
    return;
  }
  CHECK(gc_send_object(g, "x", 1, me) == GC_ERR_INVALID_ARG, "send_object to oneself");
  for (int s0 = 0; s0 < n; s0++) {
    int dst = (s0 + 1) % n;
    char msg[64];
    int len = snprintf(msg, sizeof msg, "p2p %d->%d", s0, dst);
    if (me == s0) CHECK(gc_send_object(g, msg, (size_t)len, dst) == GC_OK, "send_object");
    if (me == dst) {
      void *p = NULL;
      size_t pl = 0;
      CHECK(gc_recv_object(g, s0, &p, &pl) == GC_OK, "recv_object");
      CHECK(pl == (size_t)len && p && !memcmp(p, msg, pl), "recv_object bytes");
      free(p);
    }
  }
}

static int run(int me, int n) {
  int ranks[64], sizes[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_t *g = group_make(ranks, sizes, 1, "ops", n % 2 == 0);
  if (!g) return 1;
  t_all_reduce(g, me, n);
  t_gathers(g, me, n, 0);
  t_gathers(g, me, n, 1);
  t_gathers(g, me, n, 2);
  t_reduce_scatter(g, me, n, false);
  t_reduce_scatter(g, me, n, true);
  t_broadcast(g, me, n);
  t_send_recv(g, me, n);
  t_objects(g, me, n);
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  counters_init("tops");
  int ns[] = {1, 2, 3, 4, 8}, count = 5;
  if (argc > 1) {
    count = 0;
    for (int i = 1; i < argc && count < 5; i++) ns[count++] = atoi(argv[i]);
  }
  for (int i = 0; i < count; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int bad = run_ranks(ns[i], run);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK(bad == 0, "n=%d: %d ranks exited with failures", ns[i], bad);
    printf("ops n=%d: %.2f s\n", ns[i],
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    fflush(stdout);
  }
  return finish();
}
