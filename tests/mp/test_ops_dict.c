/* test_ops_dict.c - tensor dicts between forked ranks: broadcast (metadata
 * over the group or a separate metadata group) and send/recv between two
 * pipeline stages with the all-gather slicing over each stage's group,
 * with overrides forcing it on and off, a tensor whose numel does not
 * divide, empty tensors, bytes, ints, floats and none. */
#include "coord/dict.h"
#include "test_ops_util.h"

typedef struct {
  const char *key;
  gc_dtype_t dt;
  int ndim;
  int64_t shape[3];
} spec_t;

/* numel: 24, 6, 35 (odd), 0, 8, 1 (scalar), 16 */
static const spec_t SPECS[] = {
    {"hidden", GC_FLOAT32, 2, {4, 6}}, {"positions", GC_INT64, 1, {6}},
    {"odd", GC_BFLOAT16, 2, {5, 7}},   {"empty", GC_FLOAT16, 3, {2, 0, 3}},
    {"mask", GC_UINT8, 3, {2, 2, 2}},  {"scalar", GC_FLOAT64, 0, {0}},
    {"tokens", GC_INT32, 2, {2, 8}},
};
#define NSPEC (int)(sizeof SPECS / sizeof SPECS[0])

static void *spec_data(int i, int version) {
  gc_tensor_t t = host_tensor(NULL, SPECS[i].dt, SPECS[i].ndim, SPECS[i].shape);
  size_t numel = (size_t)gc_tensor_numel(&t);
  void *p = malloc(numel * gc_dtype_size(SPECS[i].dt) + 1);
  rng_t r = rng_make(9000 + (uint64_t)i, (uint64_t)version, 0);
  fill_values(p, SPECS[i].dt, numel, GC_SUM, &r);
  return p;
}

/* A dict of every spec plus small values; the tensors' data in bufs. */
static gc_tensor_dict_t *make_dict(int version, void **bufs) {
  gc_tensor_dict_t *d;
  if (gc_tensor_dict_new(&d) != GC_OK) return NULL;
  for (int i = 0; i < NSPEC; i++) {
    bufs[i] = spec_data(i, version);
    gc_tensor_t t = host_tensor(bufs[i], SPECS[i].dt, SPECS[i].ndim, SPECS[i].shape);
    gc_tensor_dict_set_tensor(d, SPECS[i].key, &t);
  }
  gc_tensor_dict_set_bytes(d, "sampling", "top_p=0.9\0x", 11);
  gc_tensor_dict_set_bytes(d, "no_bytes", NULL, 0);
  gc_tensor_dict_set_int(d, "version", version);
  gc_tensor_dict_set_float(d, "scale", 0.125 * version);
  gc_tensor_dict_set_none(d, "nothing");
  return d;
}

static void free_bufs(void **bufs) {
  for (int i = 0; i < NSPEC; i++) free(bufs[i]);
}

/* Checks a received dict against make_dict(version). */
static void check_dict(const gc_tensor_dict_t *d, int version, const char *what) {
  CHECK(gc_tensor_dict_size(d) == (size_t)NSPEC + 5, "%s: %zu entries", what,
        gc_tensor_dict_size(d));
  for (int i = 0; i < NSPEC; i++) {
    gc_tensor_t t;
    CHECK(!strcmp(gc_tensor_dict_key(d, (size_t)i), SPECS[i].key), "%s: key order", what);
    if (gc_tensor_dict_get_tensor(d, SPECS[i].key, &t) != GC_OK) {
      CHECK(0, "%s: no tensor %s", what, SPECS[i].key);
      continue;
    }
    CHECK(t.dtype == SPECS[i].dt && t.ndim == SPECS[i].ndim &&
              !memcmp(t.shape, SPECS[i].shape, sizeof(int64_t) * (size_t)t.ndim) &&
              t.device.type == GC_DEVICE_HOST,
          "%s: %s descriptor", what, SPECS[i].key);
    void *want = spec_data(i, version);
    size_t bytes = gc_tensor_nbytes(&t);
    CHECK(bytes == 0 || (t.data && !memcmp(t.data, want, bytes)), "%s: %s values", what,
          SPECS[i].key);
    free(want);
  }
  const void *b;
  size_t n;
  CHECK(gc_tensor_dict_get_bytes(d, "sampling", &b, &n) == GC_OK && n == 11 &&
            !memcmp(b, "top_p=0.9\0x", 11),
        "%s: bytes", what);
  CHECK(gc_tensor_dict_get_bytes(d, "no_bytes", &b, &n) == GC_OK && n == 0, "%s: empty bytes",
        what);
  int64_t v;
  CHECK(gc_tensor_dict_get_int(d, "version", &v) == GC_OK && v == version, "%s: int", what);
  double f;
  CHECK(gc_tensor_dict_get_float(d, "scale", &f) == GC_OK && f == 0.125 * version, "%s: float",
        what);
  CHECK(gc_tensor_dict_kind(d, (size_t)NSPEC + 4) == GC_VALUE_NONE, "%s: none", what);
}

static void t_broadcast(gc_group_t *g, gc_group_t *meta, int me, int n) {
  for (int src = 0; src < n; src++) {
    for (int use_meta = 0; use_meta < 2; use_meta++) {
      int version = 10 * src + use_meta + 1;
      void *bufs[NSPEC] = {0};
      gc_tensor_dict_t *d = me == src ? make_dict(version, bufs) : NULL, *out = NULL;
      gc_status_t s = gc_broadcast_tensor_dict(g, d, src, use_meta ? meta : NULL,
                                               me == src ? NULL : &out, NULL);
      CHECK(s == GC_OK, "broadcast_tensor_dict from %d (metadata group %d)", src, use_meta);
      if (s == GC_OK && me != src) check_dict(out, version, "broadcast_tensor_dict");
      gc_tensor_dict_free(out);
      gc_tensor_dict_free(d);
      if (me == src) free_bufs(bufs);
    }
  }
}

/* Stage A = ranks 0..tp-1 sends to stage B = tp..2tp-1 over pairs (i, i+tp). */
static void t_send_recv(gc_group_t *pp, gc_group_t *tp, int me, int tpn) {
  bool sender = me < tpn;
  /* cases: 0 no all-gather group, 1 default rule, 2 overrides off/on,
   * 3 odd forced on (fails on both sides), 4 sender forces off but the
   * receiver does not (fails on both sides), 5 again a good one. */
  gc_ag_override_t ov2[] = {{"hidden", false}, {"tokens", true}, {"positions", false}};
  gc_ag_override_t ov3[] = {{"odd", true}};
  for (int c = 0; c < 6; c++) {
    gc_group_t *ag = c == 0 ? NULL : tp;
    const gc_ag_override_t *ov = c == 2 ? ov2 : c == 3 ? ov3 : c == 4 && sender ? ov2 : NULL;
    int nov = c == 2 ? 3 : c == 3 ? 1 : c == 4 && sender ? 3 : 0;
    bool expect_ok = !((c == 3 && 35 % tpn) || c == 4);
    int version = 100 + c;
    gc_status_t s;
    if (sender) {
      void *bufs[NSPEC] = {0};
      gc_tensor_dict_t *d = make_dict(version, bufs);
      s = gc_send_tensor_dict(pp, d, -1, ag, ov, nov, NULL);
      gc_tensor_dict_free(d);
      free_bufs(bufs);
    } else {
      gc_tensor_dict_t *out = NULL;
      s = gc_recv_tensor_dict(pp, -1, ag, ov, nov, &out, NULL);
      if (s == GC_OK) check_dict(out, version, "recv_tensor_dict");
      if (s != GC_OK) CHECK(out == NULL, "recv_tensor_dict set out on failure");
      gc_tensor_dict_free(out);
    }
    if (expect_ok)
      CHECK(s == GC_OK, "%s_tensor_dict case %d", sender ? "send" : "recv", c);
    else
      CHECK(s == GC_ERR_INVALID_ARG, "%s_tensor_dict case %d should fail (got %s)",
            sender ? "send" : "recv", c, gc_status_string(s));
  }
}

static int run(int me, int n) {
  int ranks[64], one[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_t *g = group_make(ranks, one, 1, "world", false);
  gc_group_t *meta = group_make(ranks, one, 1, "meta", false);
  if (!g || !meta) return 1;
  t_broadcast(g, meta, me, n);
  if (n % 2 == 0) {
    int tpn = n / 2, tp_sizes[2] = {tpn, tpn}, pp_ranks[64], pp_sizes[32];
    for (int i = 0; i < tpn; i++) {
      pp_ranks[2 * i] = i;
      pp_ranks[2 * i + 1] = i + tpn;
      pp_sizes[i] = 2;
    }
    gc_group_t *tp = group_make(ranks, tp_sizes, 2, "tp", false);
    gc_group_t *pp = group_make(pp_ranks, pp_sizes, tpn, "pp", false);
    if (!tp || !pp) return 1;
    t_send_recv(pp, tp, me, tpn);
  }
  if (n == 1) {
    gc_tensor_dict_t *d;
    gc_tensor_dict_new(&d);
    CHECK(gc_send_tensor_dict(g, d, -1, NULL, NULL, 0, NULL) == GC_ERR_INVALID_ARG,
          "send_tensor_dict to oneself");
    gc_tensor_dict_free(d);
  }
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  counters_init("tdict");
  int ns[] = {1, 2, 3, 4, 8}, count = 5;
  if (argc > 1) {
    count = 0;
    for (int i = 1; i < argc && count < 5; i++) ns[count++] = atoi(argv[i]);
  }
  for (int i = 0; i < count; i++) {
    int bad = run_ranks(ns[i], run);
    CHECK(bad == 0, "n=%d: %d ranks exited with failures", ns[i], bad);
    printf("tensor dicts n=%d done\n", ns[i]);
    fflush(stdout);
  }
  return finish();
}
