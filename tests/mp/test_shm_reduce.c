/* test_shm_reduce.c - the shm transport's all-reduce and reduce-scatter with
 * 2, 3, 4 and 8 forked processes: every dtype and op, sizes from 0 to
 * several rounds, bit-exact against a plain reference reduced in rank order
 * on each rank (fp16/bf16 accumulate in float32). Also prints the 64 MiB
 * float32 all-reduce bandwidth at n=2 next to memcpy's. */
#include <math.h>

#include "core/reduce.h"
#include "test_shm_util.h"

static char TOKEN[64];
static bool QUICK; /* GCSHIM_TEST_QUICK: 2 processes, smaller sizes (valgrind) */

/* Values that keep products finite and avoid NaN. */
static void gen(void *buf, size_t count, gc_dtype_t dt, uint64_t a, uint64_t b) {
  size_t es = gc_dtype_size(dt);
  fill(buf, count * es, a, b);
  uint64_t x = SEED ^ (a * 1315423911u) ^ (b * 2654435761u) ^ 1;
  for (size_t i = 0; i < count; i++) {
    double v = 0.5 + (double)(rnd(&x) % 1000) / 1000.0;
    if (rnd(&x) & 1) v = -v;
    switch (dt) {
      case GC_FLOAT32:
        ((float *)buf)[i] = (float)v;
        break;
      case GC_FLOAT64:
        ((double *)buf)[i] = v;
        break;
      case GC_FLOAT16:
        ((uint16_t *)buf)[i] = gc_float_to_half((float)v);
        break;
      case GC_BFLOAT16:
        ((uint16_t *)buf)[i] = gc_float_to_bf16((float)v);
        break;
      default: /* integers: the random bytes from fill() */
        break;
    }
  }
}

#define OPF(op, acc, v)                           \
  ((op) == GC_PROD  ? (acc) * (v)                 \
   : (op) == GC_MAX ? ((acc) > (v) ? (acc) : (v)) \
   : (op) == GC_MIN ? ((acc) < (v) ? (acc) : (v)) \
                    : (acc) + (v))

#define REF_INT(T, U)                        \
  do {                                       \
    T acc = ((const T *)in[0])[i];           \
    for (int w = 1; w < n; w++) {            \
      T v = ((const T *)in[w])[i];           \
      if (op == GC_SUM || op == GC_AVG)      \
        acc = (T)((U)acc + (U)v);            \
      else if (op == GC_PROD)                \
        acc = (T)((U)acc * (U)v);            \
      else                                   \
        acc = OPF(op, acc, v);               \
    }                                        \
    if (op == GC_AVG) acc = (T)(acc / (T)n); \
    ((T *)out)[i] = acc;                     \
  } while (0)

#define REF_FLT(T)                                                            \
  do {                                                                        \
    T acc = ((const T *)in[0])[i];                                            \
    for (int w = 1; w < n; w++) acc = (T)OPF(op, acc, ((const T *)in[w])[i]); \
    if (op == GC_AVG) acc = (T)(acc / (T)n);                                  \
    ((T *)out)[i] = acc;                                                      \
  } while (0)

#define REF_HALF(TOF, FROMF)                        \
  do {                                              \
    float acc = TOF(((const uint16_t *)in[0])[i]);  \
    for (int w = 1; w < n; w++) {                   \
      float v = TOF(((const uint16_t *)in[w])[i]);  \
      acc = OPF(op, acc, v);                        \
    }                                               \
    uint16_t h = FROMF(acc);                        \
    if (op == GC_AVG) h = FROMF(TOF(h) / (float)n); \
    ((uint16_t *)out)[i] = h;                       \
  } while (0)

/* out[i] for i in [lo, hi): the inputs reduced in rank order. */
static void reference(gc_dtype_t dt, gc_redop_t op, void *out, void **in, int n, size_t lo,
                      size_t hi) {
  for (size_t i = lo; i < hi; i++) {
    switch (dt) {
      case GC_INT8:
        REF_INT(int8_t, uint8_t);
        break;
      case GC_UINT8:
        REF_INT(uint8_t, uint8_t);
        break;
      case GC_INT32:
        REF_INT(int32_t, uint32_t);
        break;
      case GC_INT64:
        REF_INT(int64_t, uint64_t);
        break;
      case GC_FLOAT32:
        REF_FLT(float);
        break;
      case GC_FLOAT64:
        REF_FLT(double);
        break;
      case GC_FLOAT16:
        REF_HALF(gc_half_to_float, gc_float_to_half);
        break;
      case GC_BFLOAT16:
        REF_HALF(gc_bf16_to_float, gc_float_to_bf16);
        break;
    }
  }
}

static const char *dt_name(gc_dtype_t dt) {
  static const char *nm[] = {"int8", "uint8", "int32", "int64", "fp16", "bf16", "fp32", "fp64"};
  return nm[dt];
}

typedef struct {
  size_t big; /* elements of the float32 timing case; 0: none */
} rarg_t;

static int t_reduce(int rank, int n, void *arg) {
  rarg_t *ra = arg;
  char key[128];
  snprintf(key, sizeof key, "%s-red-%d", TOKEN, n);
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_shm_create(key, rank, n, 30, &g);
  CHECK(s == GC_OK, "create: %s", gc_status_string(s));
  if (!g) return 1;
  static const size_t counts[] = {0, 1, 17, 1000, 40000, 300001};
  size_t maxc = 300001;
  void *in[8], *out = malloc(maxc * 8), *want = malloc(maxc * 8), *mine = malloc(maxc * 8);
  for (int w = 0; w < n; w++) in[w] = malloc(maxc * 8);
  int cases = 0;
  for (int dt = GC_INT8; dt <= GC_FLOAT64; dt++)
    for (int op = GC_SUM; op <= GC_AVG; op++)
      for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        size_t count = counts[ci];
        /* the biggest size for a few combinations only, to keep it short */
        if (ci == 5 && (QUICK || !(op == GC_SUM || (op == GC_AVG && dt == GC_BFLOAT16)))) continue;
        size_t es = gc_dtype_size((gc_dtype_t)dt);
        uint64_t c = (uint64_t)(dt * 100 + op * 10) + ci;
        for (int w = 0; w < n; w++) gen(in[w], count, (gc_dtype_t)dt, c, (uint64_t)w);
        reference((gc_dtype_t)dt, (gc_redop_t)op, want, in, n, 0, count);
        bool inplace = (ci + (size_t)op) % 2;
        memset(out, 0x5a, count * es);
        if (inplace) memcpy(out, in[rank], count * es);
        s = gc_cpu_allreduce(g, inplace ? out : in[rank], out, count, (gc_dtype_t)dt,
                             (gc_redop_t)op);
        CHECK(s == GC_OK && !memcmp(out, want, count * es), "allreduce %s op %d count %zu%s: %s",
              dt_name((gc_dtype_t)dt), op, count, inplace ? " in place" : "", gc_status_string(s));
        /* reduce-scatter with unequal counts (zeros included) */
        size_t rc[8], total = 0, off = 0;
        uint64_t x = SEED ^ c;
        for (int r = 0; r < n; r++) {
          rc[r] = (r + (int)ci) % 4 == 1 ? 0 : rnd(&x) % (count / (size_t)n + 1);
          total += rc[r];
        }
        for (int r = 0; r < rank; r++) off += rc[r];
        reference((gc_dtype_t)dt, (gc_redop_t)op, want, in, n, 0, total);
        memset(mine, 0x5a, rc[rank] * es + 1);
        s = gc_cpu_reduce_scatter(g, in[rank], mine, rc, (gc_dtype_t)dt, (gc_redop_t)op);
        CHECK(s == GC_OK && !memcmp(mine, (char *)want + off * es, rc[rank] * es),
              "reduce_scatter %s op %d total %zu (mine %zu): %s", dt_name((gc_dtype_t)dt), op,
              total, rc[rank], gc_status_string(s));
        cases++;
      }
  if (ra && ra->big) {
    size_t cnt = ra->big, bytes = cnt * 4;
    float *a = malloc(bytes), *b = malloc(bytes);
    for (size_t i = 0; i < cnt; i++) a[i] = (float)((i + (size_t)rank) % 1000) * 0.25f;
    CHECK(gc_cpu_allreduce(g, a, b, cnt, GC_FLOAT32, GC_SUM) == GC_OK, "warm-up");
    double best = 1e9;
    for (int it = 0; it < 5; it++) {
      CHECK(gc_cpu_barrier(g) == GC_OK, "barrier");
      uint64_t t0 = now_ns();
      s = gc_cpu_allreduce(g, a, b, cnt, GC_FLOAT32, GC_SUM);
      double dt = (double)(now_ns() - t0) / 1e9;
      if (dt < best) best = dt;
    }
    bool ok = s == GC_OK;
    for (size_t i = 0; i < cnt && ok; i++) {
      float w = 0;
      for (int r = 0; r < n; r++) w += (float)((i + (size_t)r) % 1000) * 0.25f;
      ok = b[i] == w;
    }
    CHECK(ok, "64 MiB float32 all-reduce values");
    if (rank == 0) {
      uint64_t t0 = now_ns();
      double mbest = 1e9;
      for (int it = 0; it < 5; it++) {
        t0 = now_ns();
        memcpy(b, a, bytes);
        double dt = (double)(now_ns() - t0) / 1e9;
        if (dt < mbest) mbest = dt;
      }
      printf(
          "n=%d: float32 all-reduce of %zu MiB: %.3f ms, algbw %.2f GB/s; memcpy %.2f GB/s "
          "(ratio %.2f)\n",
          n, bytes >> 20, best * 1e3, (double)bytes / best / 1e9, (double)bytes / mbest / 1e9,
          mbest / best);
    }
    free(a);
    free(b);
  }
  CHECK(gc_cpu_barrier(g) == GC_OK, "final barrier");
  gc_cpu_destroy(g);
  for (int w = 0; w < n; w++) free(in[w]);
  free(out);
  free(want);
  free(mine);
  return cases ? 0 : 1;
}

/* Members with different tuning knobs: the creator's values bind all. */
static int t_knobs(int rank, int n, void *arg) {
  (void)arg;
  setenv("GCSHIM_SHM_CHUNK_KB", rank % 2 ? "64" : "2048", 1);
  setenv("GCSHIM_SHM_SMALL_ALLREDUCE", rank % 2 ? "0" : "100000", 1);
  char key[128];
  snprintf(key, sizeof key, "%s-knobs-%d", TOKEN, n);
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_shm_create(key, rank, n, 30, &g);
  CHECK(s == GC_OK, "create with differing knobs: %s", gc_status_string(s));
  if (!g) return 1;
  size_t cnts[] = {5000, 20000, 700001};
  for (int k = 0; k < 3; k++) {
    size_t cnt = cnts[k];
    float *in[8], *out = malloc(cnt * 4), *want = malloc(cnt * 4);
    for (int w = 0; w < n; w++) {
      in[w] = malloc(cnt * 4);
      gen(in[w], cnt, GC_FLOAT32, 77 + (uint64_t)k, (uint64_t)w);
    }
    reference(GC_FLOAT32, GC_SUM, want, (void **)in, n, 0, cnt);
    s = gc_cpu_allreduce(g, in[rank], out, cnt, GC_FLOAT32, GC_SUM);
    CHECK(s == GC_OK && !memcmp(out, want, cnt * 4), "allreduce %zu with differing knobs", cnt);
    for (int w = 0; w < n; w++) free(in[w]);
    free(out);
    free(want);
  }
  gc_cpu_destroy(g);
  return 0;
}

int main(void) {
  alarm(getenv("GCSHIM_TEST_QUICK") ? 290 : 150);
  counters_init();
  snprintf(TOKEN, sizeof TOKEN, "tshmr%d", (int)getpid());
  int ns[] = {2, 3, 4, 8};
  QUICK = getenv("GCSHIM_TEST_QUICK") != NULL;
  for (int i = 0; i < (QUICK ? 1 : 4); i++) {
    rarg_t ra = {.big = ns[i] == 2 && !QUICK ? (64u << 20) / 4 : 0};
    uint64_t t0 = now_ns();
    int bad = run_ranks(ns[i], t_reduce, &ra, 90, NULL, NULL);
    CHECK(bad == 0, "reduce n=%d: %d ranks failed", ns[i], bad);
    printf("reduce n=%d: %.2f s\n", ns[i], (double)(now_ns() - t0) / 1e9);
    fflush(stdout);
  }
  CHECK(run_ranks(3, t_knobs, NULL, 60, NULL, NULL) == 0, "differing knobs n=3");
  return finish(TOKEN);
}
