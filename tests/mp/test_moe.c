/* test_moe.c - gc_dispatch / gc_combine (src/coord/moe.c) on host tensors
 * with 1, 2, 3 and 4 forked ranks: random unequal token counts (0
 * included), several dtypes, 0..2 extra tensors, outputs allocated or
 * given, against a reference computed on every rank from every rank's
 * seeded input (exact, bit for bit); then wrong calls that must fail on
 * every rank, leaving the outputs as they were, and a good call after. */
#include "test_ops_util.h"

#define NDT 7
static const gc_dtype_t DTS[NDT] = {GC_FLOAT32, GC_BFLOAT16, GC_INT32, GC_FLOAT16,
                                    GC_INT64,   GC_FLOAT64,  GC_INT8};
#define NCASES 24
static gc_group_t *G;

typedef struct {
  gc_dtype_t dt;
  int ndim;
  int64_t shape[GC_MAX_DIMS]; /* shape[0] is set per rank */
} spec_t;

static size_t row_bytes(const spec_t *s) {
  return prod_dims(s->shape, 1, s->ndim) * gc_dtype_size(s->dt);
}

static void *make_data(int c, int t, int r, const spec_t *s, size_t rows, gc_redop_t op) {
  size_t numel = rows * prod_dims(s->shape, 1, s->ndim);
  void *p = malloc(numel * gc_dtype_size(s->dt) + 1);
  rng_t g = rng_make((uint64_t)c * 16 + (uint64_t)t, (uint64_t)r, 5);
  fill_values(p, s->dt, numel, op, &g);
  return p;
}

static gc_tensor_t tensor_of(void *data, const spec_t *s, int64_t rows) {
  gc_tensor_t t = host_tensor(data, s->dt, s->ndim, s->shape);
  t.shape[0] = rows;
  return t;
}

static spec_t rand_spec(rng_t *r, gc_dtype_t dt) {
  spec_t s = {.dt = dt, .ndim = (int)rng_range(r, 1, 3)};
  for (int i = 1; i < s.ndim; i++) s.shape[i] = rng_range(r, 1, 5);
  return s;
}

static void t_good(int me, int n, int c) {
  rng_t sr = rng_make(100 + (uint64_t)c, (uint64_t)n, 0);
  bool equal = c % 6 == 5; /* sizes NULL: every rank holds the same count */
  int64_t sizes[64], total = 0, off[64];
  int64_t s0 = rng_range(&sr, 0, 4);
  for (int r = 0; r < n; r++) {
    sizes[r] = equal ? s0 : rng_range(&sr, 0, 5);
    off[r] = total;
    total += sizes[r];
  }
  int n_extra = (int)rng_range(&sr, 0, 2);
  spec_t sp[4];
  sp[0] = rand_spec(&sr, DTS[c % NDT]);
  sp[1] = rand_spec(&sr, DTS[(c + 3) % NDT]);
  for (int i = 0; i < n_extra; i++) sp[2 + i] = rand_spec(&sr, DTS[rng_range(&sr, 0, NDT - 1)]);
  int nt = 2 + n_extra;

  /* dispatch */
  void *ins[4][64];
  gc_tensor_t in[4], out[4];
  void *mine[4] = {0};
  bool prealloc = (c + me) % 2;
  for (int t = 0; t < nt; t++) {
    for (int r = 0; r < n; r++) ins[t][r] = make_data(c, t, r, &sp[t], (size_t)sizes[r], GC_SUM);
    in[t] = tensor_of(ins[t][me], &sp[t], sizes[me]);
    memset(&out[t], 0, sizeof out[t]);
    if (prealloc) {
      mine[t] = malloc((size_t)total * row_bytes(&sp[t]) + 1);
      out[t] = tensor_of(mine[t], &sp[t], total);
    }
  }
  gc_status_t s = gc_dispatch(NULL, NULL, NULL, NULL, 0, NULL, false, NULL, NULL, NULL, NULL);
  CHECK(s == GC_ERR_INVALID_ARG, "dispatch with a NULL group");
  s = gc_dispatch(G, &in[0], &in[1], n_extra ? &in[2] : NULL, n_extra, equal ? NULL : sizes, c % 2,
                  &out[0], &out[1], n_extra ? &out[2] : NULL, NULL);
  CHECK(s == GC_OK, "dispatch case %d (%d extra)", c, n_extra);
  for (int t = 0; s == GC_OK && t < nt; t++) {
    size_t rb = row_bytes(&sp[t]);
    bool ok = out[t].dtype == sp[t].dt && out[t].ndim == sp[t].ndim && out[t].shape[0] == total;
    for (int i = 1; i < sp[t].ndim; i++) ok = ok && out[t].shape[i] == sp[t].shape[i];
    for (int r = 0; ok && r < n; r++)
      ok = !sizes[r] ||
           !memcmp((char *)out[t].data + (size_t)off[r] * rb, ins[t][r], (size_t)sizes[r] * rb);
    CHECK(ok, "dispatch case %d tensor %d (%s, %d dims, %lld tokens) values", c, t,
          gc_dtype_name(sp[t].dt), sp[t].ndim, (long long)total);
    if (!prealloc) gc_tensor_free(&out[t], NULL);
  }
  for (int t = 0; t < nt; t++) {
    free(mine[t]);
    for (int r = 0; r < n; r++) free(ins[t][r]);
  }

  /* combine: every rank holds all tokens; each gets the sum of its own. */
  spec_t hs = sp[0];
  void *cin[64];
  for (int r = 0; r < n; r++) cin[r] = make_data(c, 9, r, &hs, (size_t)total, GC_SUM);
  size_t rb = row_bytes(&hs), count = (size_t)sizes[me] * rb / gc_dtype_size(hs.dt);
  void *seg[64];
  for (int r = 0; r < n; r++) seg[r] = (char *)cin[r] + (size_t)off[me] * rb;
  void *want = malloc((size_t)sizes[me] * rb + 1);
  ref_reduce(hs.dt, GC_SUM, n, seg, count, want);
  gc_tensor_t ci = tensor_of(cin[me], &hs, total), co = {0};
  void *cm = NULL;
  if (prealloc) {
    cm = malloc((size_t)sizes[me] * rb + 1);
    co = tensor_of(cm, &hs, sizes[me]);
  }
  s = gc_combine(G, &ci, equal ? NULL : sizes, c % 2, &co, NULL);
  CHECK(s == GC_OK, "combine case %d", c);
  if (s == GC_OK) {
    CHECK(co.shape[0] == sizes[me] && co.dtype == hs.dt &&
              (!count || !memcmp(co.data, want, (size_t)sizes[me] * rb)),
          "combine case %d (%s) values", c, gc_dtype_name(hs.dt));
    if (!prealloc) gc_tensor_free(&co, NULL);
  }
  free(cm);
  free(want);
  for (int r = 0; r < n; r++) free(cin[r]);
}

/* Wrong calls: every rank fails, outputs stay as they were. */
static void t_bad(int me, int n) {
  gc_group_t *g = G;
  int64_t sizes[64];
  for (int r = 0; r < n; r++) sizes[r] = r + 1;
  spec_t sp = {.dt = GC_FLOAT32, .ndim = 2, .shape = {0, 3}};
  float hbuf[64 * 3] = {0}, lbuf[64 * 2] = {0};
  spec_t lp = {.dt = GC_FLOAT32, .ndim = 2, .shape = {0, 2}};
  gc_tensor_t h = tensor_of(hbuf, &sp, sizes[me]), l = tensor_of(lbuf, &lp, sizes[me]);
  for (int k = 0; k < 9; k++) {
    if (n == 1 && (k == 2 || k == 3 || k == 4 || k == 5 || k == 7 || k == 8)) continue;
    int64_t sz[64];
    memcpy(sz, sizes, sizeof sz);
    gc_tensor_t oh = {0}, ol = {0}, ox = {0};
    gc_tensor_t *lg = &l, x = h;
    int n_extra = 0;
    if (k == 0 && me == 0) sz[0] = 7;      /* this rank's own count is wrong */
    if (k == 1) sz[n - 1] = -1;            /* negative everywhere */
    if (k == 2 && me == n - 1) sz[0] += 1; /* ranks disagree (own count right) */
    if (k == 3 && me == 0) n_extra = 1;    /* n_extra differs */
    if (k == 4) {                          /* a wrong out_extra on the last rank */
      n_extra = 1;
      if (me == n - 1) ox = tensor_of(hbuf, &sp, 1);
    }
    if (k == 5 && me == 1) lg = NULL; /* router_logits missing on one rank */
    gc_status_t s;
    if (k < 6) {
      s = gc_dispatch(g, &h, lg, &x, n_extra, sz, false, &oh, &ol, &ox, NULL);
      CHECK(s != GC_OK && oh.data == NULL && oh.ndim == 0 && ol.data == NULL,
            "bad dispatch %d fails everywhere, outputs untouched: %s", k, gc_status_string(s));
    } else {
      int64_t total = 0;
      for (int r = 0; r < n; r++) total += sz[r];
      float cbuf[64 * 64 * 3 + 1] = {0};
      gc_tensor_t ci = tensor_of(cbuf, &sp, total), co = {0};
      if (k == 6 && me == 0) ci.shape[0] += 1; /* sizes do not sum to the tokens */
      if (k == 7 && me == n - 1) co = tensor_of(hbuf, &sp, sz[me] + 1); /* wrong out */
      bool sp_flag = k == 8 && me == 0; /* is_sequence_parallel differs */
      s = gc_combine(g, &ci, sz, sp_flag, &co, NULL);
      CHECK(s != GC_OK && (k == 7 && me == n - 1 ? co.data == hbuf : co.data == NULL),
            "bad combine %d fails everywhere: %s", k, gc_status_string(s));
    }
    CHECK(s == GC_ERR_INVALID_ARG, "bad call %d: GC_ERR_INVALID_ARG, got %s", k,
          gc_status_string(s));
  }
  /* Still in step: a good call after all that. */
  gc_tensor_t oh = {0}, ol = {0};
  gc_status_t s = gc_dispatch(g, &h, &l, NULL, 0, sizes, true, &oh, &ol, NULL, NULL);
  CHECK(s == GC_OK, "good dispatch after the bad ones");
  if (s == GC_OK) {
    gc_tensor_free(&oh, NULL);
    gc_tensor_free(&ol, NULL);
  }
}

static int rank_main(int me, int n) {
  int ranks[64], gs[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  G = group_make(ranks, gs, 1, "moe", n % 2); /* with and without device ops */
  if (!G) return 1;
  for (int c = 0; c < NCASES; c++) t_good(me, n, c);
  t_bad(me, n);
  return 0;
}

int main(void) {
  alarm(120);
  counters_init("gcmoe");
  static const int NS[] = {1, 2, 3, 4};
  for (int i = 0; i < 4; i++)
    CHECK(run_ranks(NS[i], rank_main) == 0, "%d ranks: a rank failed", NS[i]);
  return finish();
}
