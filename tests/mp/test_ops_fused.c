/*
 * test_ops_fused.c - the fused agreement (docs/HOST_BACKEND.md): all-gather,
 * all-gatherv, all-reduce and reduce-scatter of payloads just below, at and
 * just above the fusing limits (GCSHIM_FUSE_MAX=8192 here: 8 KiB per rank
 * for all-gathers, 8 KiB of input for the reductions; and the default, where
 * the slot of the shm round is the limit) give exact results on every rank
 * (random float data: same bits as a reference reduced in rank order);
 * mismatches on one rank at small sizes and around the slot's size fail on
 * every rank without touching any output; a rank that does not fuse while
 * the others do (GCSHIM_FUSE_MAX=0 there) fails everywhere instead of
 * hanging.
 */
#include "coord/coord.h"
#include "test_ops_util.h"

#define FUSE 8192                   /* GCSHIM_FUSE_MAX of run() */
#define FUSE_RED GC_FUSE_REDUCE_MAX /* the limit of all-reduce */
_Static_assert(FUSE_RED == FUSE, "run() expects both limits at 8 KiB");

#define EXPECT(call, want)                                                  \
  do {                                                                      \
    gc_status_t s_ = (call);                                                \
    CHECK(s_ == (want), "%s: got %s, want %s", #call, gc_status_string(s_), \
          gc_status_string(want));                                          \
  } while (0)

/* Random floats (not exact): any other reduction order changes the bits. */
static void fill_random(void *buf, gc_dtype_t dt, size_t n, rng_t *r) {
  for (size_t i = 0; i < n; i++) {
    float f = (float)((double)(rng_next(r) >> 11) / 9007199254740992.0 * 200.0 - 100.0);
    if (dt == GC_FLOAT32)
      ((float *)buf)[i] = f;
    else if (dt == GC_BFLOAT16)
      ((uint16_t *)buf)[i] = gc_float_to_bf16(f);
    else if (dt == GC_FLOAT16)
      ((uint16_t *)buf)[i] = gc_float_to_half(f);
    else
      ((int32_t *)buf)[i] = (int32_t)(rng_next(r) >> 33) - (1 << 30);
  }
}

static void *rank_input(int c, int r, int n, gc_dtype_t dt, size_t count) {
  void *p = malloc(count * gc_dtype_size(dt) + 1);
  rng_t g = rng_make((uint64_t)c, (uint64_t)r, (uint64_t)n);
  fill_random(p, dt, count, &g);
  return p;
}

/* all-reduce of count elements */
static void t_all_reduce(gc_group_t *g, int me, int n, int c, gc_dtype_t dt, gc_redop_t op,
                         size_t count) {
  size_t es = gc_dtype_size(dt);
  void *ins[64], *out = malloc(count * es + 1), *ref = malloc(count * es + 1);
  for (int r = 0; r < n; r++) ins[r] = rank_input(c, r, n, dt, count);
  ref_reduce(dt, op, n, ins, count, ref);
  int64_t shape[1] = {(int64_t)count};
  gc_tensor_t in = host_tensor(ins[me], dt, 1, shape), o = host_tensor(out, dt, 1, shape);
  gc_status_t s = gc_all_reduce(g, &in, &o, op, NULL);
  CHECK(s == GC_OK && !memcmp(out, ref, count * es), "all_reduce %s op %d of %zu bytes",
        gc_dtype_name(dt), (int)op, count * es);
  for (int r = 0; r < n; r++) free(ins[r]);
  free(out);
  free(ref);
}

/* all-gather(v) of [outer, rows_r, inner] float32 on dim 1 (outer 1: dim 0) */
static void t_all_gather(gc_group_t *g, int me, int n, int c, size_t outer, const int64_t *rows,
                         size_t inner, bool v) {
  int64_t total = 0;
  void *ins[64];
  for (int r = 0; r < n; r++) {
    total += rows[r];
    ins[r] = rank_input(c, r, n, GC_FLOAT32, outer * (size_t)rows[r] * inner);
  }
  size_t ob = outer * (size_t)total * inner * 4;
  char *out = malloc(ob + 1), *ref = malloc(ob + 1);
  size_t col = 0;
  for (int r = 0; r < n; r++) {
    size_t w = (size_t)rows[r] * inner * 4;
    for (size_t o = 0; o < outer; o++)
      memcpy(ref + o * (size_t)total * inner * 4 + col, (char *)ins[r] + o * w, w);
    col += w;
  }
  int64_t is[3] = {(int64_t)outer, rows[me], (int64_t)inner},
          os[3] = {(int64_t)outer, total, (int64_t)inner};
  gc_tensor_t in = host_tensor(ins[me], GC_FLOAT32, 3, is), o = host_tensor(out, GC_FLOAT32, 3, os);
  gc_status_t s =
      v ? gc_all_gatherv(g, &in, 1, rows, &o, NULL) : gc_all_gather(g, &in, 1, &o, NULL);
  CHECK(s == GC_OK && !memcmp(out, ref, ob), "all_gather%s outer %zu rows[me] %lld inner %zu",
        v ? "v" : "", outer, (long long)rows[me], inner);
  for (int r = 0; r < n; r++) free(ins[r]);
  free(out);
  free(ref);
}

/* reduce-scatter(v) of [outer, rows, inner] on dim 1, sizes[r] rows to rank r */
static void t_reduce_scatter(gc_group_t *g, int me, int n, int c, gc_dtype_t dt, size_t outer,
                             const int64_t *sizes, size_t inner, bool v) {
  size_t es = gc_dtype_size(dt);
  int64_t rows = 0, before = 0;
  for (int r = 0; r < n; r++) {
    if (r < me) before += sizes[r];
    rows += sizes[r];
  }
  size_t count = outer * (size_t)rows * inner, mine = outer * (size_t)sizes[me] * inner;
  void *ins[64], *part[64];
  for (int r = 0; r < n; r++) {
    ins[r] = rank_input(c, r, n, dt, count);
    part[r] = malloc(mine * es + 1);
    for (size_t o = 0; o < outer; o++)
      memcpy((char *)part[r] + o * (size_t)sizes[me] * inner * es,
             (char *)ins[r] + (o * (size_t)rows + (size_t)before) * inner * es,
             (size_t)sizes[me] * inner * es);
  }
  char *out = malloc(mine * es + 1), *ref = malloc(mine * es + 1);
  ref_reduce(dt, GC_SUM, n, part, mine, ref);
  int64_t is[3] = {(int64_t)outer, rows, (int64_t)inner},
          os[3] = {(int64_t)outer, sizes[me], (int64_t)inner};
  gc_tensor_t in = host_tensor(ins[me], dt, 3, is), o = host_tensor(out, dt, 3, os);
  gc_status_t s =
      v ? gc_reduce_scatterv(g, &in, 1, sizes, &o, NULL) : gc_reduce_scatter(g, &in, 1, &o, NULL);
  CHECK(s == GC_OK && !memcmp(out, ref, mine * es), "reduce_scatter%s %s outer %zu bytes %zu",
        v ? "v" : "", gc_dtype_name(dt), outer, count * es);
  for (int r = 0; r < n; r++) {
    free(ins[r]);
    free(part[r]);
  }
  free(out);
  free(ref);
}

static void healthy(gc_group_t *g, int n, const char *after) {
  int32_t x = 3, y = 0;
  gc_tensor_t in = host_tensor(&x, GC_INT32, 0, NULL), out = host_tensor(&y, GC_INT32, 0, NULL);
  gc_status_t s = gc_all_reduce(g, &in, &out, GC_SUM, NULL);
  CHECK(s == GC_OK && y == 3 * n, "group unusable after %s (y=%d)", after, y);
}

static bool untouched(const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (b[i] != -7.f) return false;
  return true;
}

/* Mismatches on one rank at small sizes: every rank fails, no output changes. */
static void t_mismatch(gc_group_t *g, int me, int n) {
  int last = n - 1;
  enum { B = 4096 };
  static float a[B], b[B * 8];
  for (size_t i = 0; i < B; i++) a[i] = (float)i;
  for (size_t i = 0; i < B * 8; i++) b[i] = -7.f;
  /* 1. all-gather: the last rank has one more row (records of other lengths) */
  {
    int64_t is[2] = {4 + (me == last), 3}, os[2] = {4 * n + (me == last), 3};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, is), out = host_tensor(b, GC_FLOAT32, 2, os);
    EXPECT(gc_all_gather(g, &in, 0, &out, NULL), GC_ERR_INVALID_ARG);
    CHECK(untouched(b, B * 8), "failed all_gather wrote its output");
    healthy(g, n, "all_gather rows differ");
  }
  /* 2. all-reduce: rank 0 passes bfloat16, the others float32, same count */
  {
    int64_t s[1] = {64};
    gc_tensor_t in = host_tensor(a, me == 0 ? GC_BFLOAT16 : GC_FLOAT32, 1, s),
                out = host_tensor(b, me == 0 ? GC_BFLOAT16 : GC_FLOAT32, 1, s);
    EXPECT(gc_all_reduce(g, &in, &out, GC_SUM, NULL), GC_ERR_INVALID_ARG);
    CHECK(untouched(b, B * 8), "failed all_reduce wrote its output");
    healthy(g, n, "all_reduce dtype differs");
  }
  /* 3. all-reduce: one rank's output has the wrong shape (fails locally) */
  {
    int64_t s[1] = {16}, bad[1] = {16 + (me == last)};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 1, s), out = host_tensor(b, GC_FLOAT32, 1, bad);
    EXPECT(gc_all_reduce(g, &in, &out, GC_SUM, NULL), GC_ERR_INVALID_ARG);
    CHECK(untouched(b, B * 8), "failed all_reduce wrote its output");
    healthy(g, n, "all_reduce wrong output");
  }
  /* 4. reduce-scatter: rank 0's input is over the limit (it does not fuse),
   * the others' under it */
  {
    int64_t rows = me == 0 ? 2 * FUSE / 4 / n * n : (int64_t)n * 4;
    int64_t is[1] = {rows}, os[1] = {rows / n};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 1, is), out = host_tensor(b, GC_FLOAT32, 1, os);
    EXPECT(gc_reduce_scatter(g, &in, 0, &out, NULL), GC_ERR_INVALID_ARG);
    CHECK(untouched(b, B * 8), "failed reduce_scatter wrote its output");
    healthy(g, n, "reduce_scatter over/under the limit");
  }
  /* 5. all-gatherv: sizes differ on the last rank */
  {
    int64_t sizes[64];
    for (int i = 0; i < n; i++) sizes[i] = 2;
    if (me == last) sizes[0] = 3;
    int64_t is[1] = {sizes[me]}, os[1] = {2 * n + (me == last)};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 1, is), out = host_tensor(b, GC_FLOAT32, 1, os);
    EXPECT(gc_all_gatherv(g, &in, 0, sizes, &out, NULL), GC_ERR_INVALID_ARG);
    CHECK(untouched(b, B * 8), "failed all_gatherv wrote its output");
    healthy(g, n, "all_gatherv sizes differ");
  }
  /* 6. NULL data with elements on rank 0: its own message, the others' verdict */
  {
    int64_t s[1] = {8};
    gc_tensor_t in = host_tensor(me == 0 ? NULL : a, GC_FLOAT32, 1, s),
                out = host_tensor(b, GC_FLOAT32, 1, s);
    gc_status_t st = gc_all_reduce(g, &in, &out, GC_SUM, NULL);
    CHECK(st == GC_ERR_INVALID_ARG, "NULL data on rank 0: got %s", gc_status_string(st));
    if (me != 0)
      CHECK(strstr(gc_last_error(), "rank 0") != NULL, "message names rank 0: %s", gc_last_error());
    CHECK(untouched(b, B * 8), "failed all_reduce wrote its output");
    healthy(g, n, "NULL data");
  }
}

static int run(int me, int n) {
  setenv("GCSHIM_FUSE_MAX", "8192", 1);
  int ranks[64], one[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_t *g = group_make(ranks, one, 1, "fused", false);
  if (!g) return 1;
  int c = 0;
  /* all-reduce: per-rank payloads below, at and above the limit */
  static const size_t f32_counts[] = {
      1, 7, 64, FUSE_RED / 4 - 1, FUSE_RED / 4, FUSE_RED / 4 + 1, FUSE_RED / 2, FUSE / 4};
  for (size_t i = 0; i < sizeof f32_counts / sizeof *f32_counts; i++) {
    t_all_reduce(g, me, n, c++, GC_FLOAT32, GC_SUM, f32_counts[i]);
    t_all_reduce(g, me, n, c++, GC_BFLOAT16, GC_SUM, f32_counts[i] * 2);
    t_all_reduce(g, me, n, c++, GC_FLOAT16, GC_AVG, f32_counts[i]);
    t_all_reduce(g, me, n, c++, GC_INT32, GC_AVG, f32_counts[i]);
    t_all_reduce(g, me, n, c++, GC_FLOAT32, GC_MAX, f32_counts[i]);
  }
  t_all_reduce(g, me, n, c++, GC_BFLOAT16, GC_PROD, 33);
  /* not fused: fp16/bf16 sums and products reduced by shm on 16-bit data
   * (one float32 accumulation, one rounding), AVG widened first */
  t_all_reduce(g, me, n, c++, GC_BFLOAT16, GC_SUM, 300001);
  t_all_reduce(g, me, n, c++, GC_FLOAT16, GC_SUM, 70001);
  t_all_reduce(g, me, n, c++, GC_BFLOAT16, GC_PROD, 5003);
  t_all_reduce(g, me, n, c++, GC_BFLOAT16, GC_AVG, 20001);
  /* all-gather: per-rank bytes outer * rows * inner * 4 around FUSE */
  int64_t rows[64], vrows[64];
  static const int64_t per[] = {1, 3, FUSE / 16 - 1, FUSE / 16, FUSE / 16 + 1, FUSE / 8};
  for (size_t i = 0; i < sizeof per / sizeof *per; i++) {
    for (int r = 0; r < n; r++) {
      rows[r] = per[i];
      vrows[r] = per[i] - (r % 2) * (per[i] / 2); /* unequal */
    }
    t_all_gather(g, me, n, c++, 1, rows, 4, false);
    t_all_gather(g, me, n, c++, 2, rows, 2, false);
    t_all_gather(g, me, n, c++, 1, vrows, 4, true);
    t_all_gather(g, me, n, c++, 4, vrows, 1, true);
  }
  /* reduce-scatter: whole input (n * rows * 16 bytes) just below, at and above FUSE */
  const int64_t k = FUSE / 16 / n, rs_rows[] = {1, 5, k - 1, k, k + 1};
  for (size_t i = 0; i < sizeof rs_rows / sizeof *rs_rows; i++) {
    int64_t sizes[64], vs[64];
    for (int r = 0; r < n; r++) {
      sizes[r] = rs_rows[i];
      vs[r] = r == 0 ? 0 : rs_rows[i] + r; /* unequal, rank 0 gets nothing */
    }
    t_reduce_scatter(g, me, n, c++, GC_FLOAT32, 1, sizes, 4, false);
    t_reduce_scatter(g, me, n, c++, GC_FLOAT32, 2, sizes, 2, false);
    t_reduce_scatter(g, me, n, c++, GC_BFLOAT16, 1, sizes, 8, false);
    t_reduce_scatter(g, me, n, c++, GC_FLOAT32, 2, vs, 1, true);
    t_reduce_scatter(g, me, n, c++, GC_FLOAT16, 1, vs, 3, true);
  }
  {
    int64_t sizes[64];
    for (int r = 0; r < n; r++) sizes[r] = 3000 + 7 * r; /* over 8 KiB: not fused here */
    t_reduce_scatter(g, me, n, c++, GC_BFLOAT16, 1, sizes, 8, true);
    t_reduce_scatter(g, me, n, c++, GC_FLOAT16, 3, sizes, 2, true);
  }
  t_mismatch(g, me, n);
  gc_group_destroy(g);
  return 0;
}

/* The default limit: what fits the slot of the shm round. Payloads just
 * below, at and above it; then rank 0 one row over it while the others'
 * records fill their slots (rank 0 runs the plain round). */
static int run_cap(int me, int n) {
  int ranks[64], one[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_t *g = group_make(ranks, one, 1, "fcap", false);
  if (!g) return 1;
  size_t lim = gc_coord_fuse_limit(g, &gc_device_host);
  CHECK(lim >= 32768 && lim % 16 == 0 && lim + GC_FUSE_BULK <= g->cpu->round_cap,
        "fuse limit %zu for a round of %zu bytes", lim, g->cpu->round_cap);
  int c = 5000;
  int64_t rows[64];
  const int64_t q = (int64_t)lim / 16, per[] = {q - 1, q, q + 1};
  for (size_t i = 0; i < 3; i++) {
    for (int r = 0; r < n; r++) rows[r] = per[i];
    t_all_gather(g, me, n, c++, 1, rows, 4, false);
    rows[0] = per[i] - 3;
    t_all_gather(g, me, n, c++, 1, rows, 4, true);
  }
  const int64_t k = (int64_t)lim / 16 / n, rs_rows[] = {k - 1, k, k + 1};
  for (size_t i = 0; i < 3; i++) {
    int64_t sizes[64];
    for (int r = 0; r < n; r++) sizes[r] = rs_rows[i];
    t_reduce_scatter(g, me, n, c++, GC_FLOAT32, 1, sizes, 4, false);
    t_reduce_scatter(g, me, n, c++, GC_BFLOAT16, 1, sizes, 8, false);
  }
  {
    size_t B = (size_t)(q + 1) * 4;
    float *a = malloc(B * 4), *b = malloc(B * 4 * (size_t)n);
    for (size_t i = 0; i < B; i++) a[i] = (float)i;
    for (size_t i = 0; i < B * (size_t)n; i++) b[i] = -7.f;
    int64_t is[2] = {q + (me == 0), 4}, os[2] = {q * n + (me == 0), 4};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, is), out = host_tensor(b, GC_FLOAT32, 2, os);
    EXPECT(gc_all_gather(g, &in, 0, &out, NULL), GC_ERR_INVALID_ARG);
    CHECK(untouched(b, B * (size_t)n), "failed all_gather at the slot's size wrote its output");
    healthy(g, n, "all_gather over/at the slot's size");
    free(a);
    free(b);
  }
  gc_group_destroy(g);
  return 0;
}

/* The last rank does not fuse (GCSHIM_FUSE_MAX=0 there): small calls fail
 * on every rank (the verdict names the difference), large ones still work. */
static int run_unfused_rank(int me, int n) {
  if (me == n - 1) setenv("GCSHIM_FUSE_MAX", "0", 1);
  int ranks[64], one[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_t *g = group_make(ranks, one, 1, "mixed", false);
  if (!g) return 1;
  float x[16] = {1}, y[16] = {0};
  int64_t s[1] = {16};
  gc_tensor_t in = host_tensor(x, GC_FLOAT32, 1, s), out = host_tensor(y, GC_FLOAT32, 1, s);
  gc_status_t st = gc_all_reduce(g, &in, &out, GC_SUM, NULL);
  CHECK(st == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "GCSHIM_FUSE_MAX"),
        "fused and unfused ranks: got %s", gc_status_string(st));
  CHECK(y[0] == 0.f, "failed call wrote its output");
  t_all_reduce(g, me, n, 1000, GC_FLOAT32, GC_SUM, FUSE / 2);
  gc_group_destroy(g);
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  counters_init("tfus");
  int ns[] = {2, 3, 4}, count = 3;
  if (argc > 1) {
    count = 0;
    for (int i = 1; i < argc && count < 3; i++) ns[count++] = atoi(argv[i]);
  }
  for (int i = 0; i < count; i++) {
    int bad = run_ranks(ns[i], run);
    CHECK(bad == 0, "n=%d: %d ranks exited with failures", ns[i], bad);
    bad = run_ranks(ns[i], run_cap);
    CHECK(bad == 0, "n=%d (slot-sized records): %d ranks exited with failures", ns[i], bad);
    bad = run_ranks(ns[i], run_unfused_rank);
    CHECK(bad == 0, "n=%d (one rank unfused): %d ranks exited with failures", ns[i], bad);
    printf("fused n=%d done\n", ns[i]);
    fflush(stdout);
  }
  return finish();
}
