/* test_gpu_pp.c - tensor dicts of CUDA tensors between two pipeline stages
 * over the nccl backend: n ranks as TP = n/2 x PP = 2 (TP=1 x PP=2 on two
 * GPUs, TP=2 x PP=2 on four), stage A = ranks 0..tp-1, stage B the others,
 * pipeline groups (i, i+tp). gc_send_tensor_dict / gc_recv_tensor_dict
 * without all-gather slicing, with it over each stage's TP group, with
 * overrides forcing it off and on, in both directions; then
 * gc_broadcast_tensor_dict from the last rank with a host metadata group.
 * Every tensor is seeded random data (one of random shape) and is checked
 * exactly on every receiving rank, on its own GPU. Needs an even number of
 * ranks >= 2 (exit 77 otherwise, and without a GPU). One process per GPU:
 * forked (up to argv[1], default 8) or under mpirun/torchrun. */
#include "gpu_util.h"

static void *STREAM;

typedef struct {
  const char *key;
  gc_dtype_t dt;
  int ndim;
  int64_t shape[3];
  bool host;
} spec_t;

/* numel 6144, 6, 35, 0, 8, 1, 16, 528, random, 12 (host) */
static spec_t SPECS[] = {
    {"hidden", GC_FLOAT32, 2, {64, 96}, false}, {"positions", GC_INT64, 1, {6}, false},
    {"odd", GC_BFLOAT16, 2, {5, 7}, false},     {"empty", GC_FLOAT16, 3, {2, 0, 3}, false},
    {"mask", GC_UINT8, 3, {2, 2, 2}, false},    {"scalar", GC_FLOAT64, 0, {0}, false},
    {"tokens", GC_INT32, 2, {2, 8}, false},     {"half", GC_FLOAT16, 2, {16, 33}, false},
    {"random", GC_INT8, 3, {1, 1, 1}, false}, /* shape drawn from the seed */
    {"host_meta", GC_FLOAT32, 2, {3, 4}, true},
};
#define NSPEC (int)(sizeof SPECS / sizeof SPECS[0])

static size_t spec_bytes(int i) {
  gc_tensor_t t = host_tensor(NULL, SPECS[i].dt, SPECS[i].ndim, SPECS[i].shape);
  return (size_t)gc_tensor_numel(&t) * gc_dtype_size(SPECS[i].dt);
}

static void *spec_data(int i, int version) {
  gc_tensor_t t = host_tensor(NULL, SPECS[i].dt, SPECS[i].ndim, SPECS[i].shape);
  size_t numel = (size_t)gc_tensor_numel(&t);
  void *p = malloc(numel * gc_dtype_size(SPECS[i].dt) + 1);
  rng_t r = rng_make(7000 + (uint64_t)i, (uint64_t)version, 0);
  fill_values(p, SPECS[i].dt, numel, GC_SUM, &r);
  return p;
}

/* A dict of every spec (CUDA tensors on this rank's GPU, one host tensor)
 * and small values; bufs[i] the tensors' data (device or host). */
static gc_tensor_dict_t *make_dict(int version, void **bufs) {
  gc_tensor_dict_t *d;
  if (gc_tensor_dict_new(&d) != GC_OK) return NULL;
  for (int i = 0; i < NSPEC; i++) {
    void *h = spec_data(i, version);
    size_t bytes = spec_bytes(i);
    gc_tensor_t t;
    if (SPECS[i].host) {
      bufs[i] = h;
      t = host_tensor(h, SPECS[i].dt, SPECS[i].ndim, SPECS[i].shape);
    } else {
      bufs[i] = dev_alloc(bytes, STREAM);
      if (bytes) h2d(bufs[i], h, bytes, STREAM);
      free(h);
      t = cuda_tensor(bufs[i], SPECS[i].dt, SPECS[i].ndim, SPECS[i].shape, T_DEV);
    }
    CHECK(gc_tensor_dict_set_tensor(d, SPECS[i].key, &t) == GC_OK, "dict set %s", SPECS[i].key);
  }
  gc_tensor_dict_set_bytes(d, "sampling", "top_p=0.9\0x", 11);
  gc_tensor_dict_set_int(d, "version", version);
  gc_tensor_dict_set_float(d, "scale", 0.125 * version);
  gc_tensor_dict_set_none(d, "nothing");
  return d;
}

static void free_bufs(void **bufs) {
  for (int i = 0; i < NSPEC; i++) {
    if (SPECS[i].host)
      free(bufs[i]);
    else
      dev_free(bufs[i], STREAM);
  }
}

/* Checks a received dict against make_dict(version), values on this GPU. */
static void check_dict(const gc_tensor_dict_t *d, int version, const char *what) {
  CHECK(gc_tensor_dict_size(d) == (size_t)NSPEC + 4, "%s v%d: %zu entries", what, version,
        gc_tensor_dict_size(d));
  for (int i = 0; i < NSPEC; i++) {
    gc_tensor_t t;
    if (gc_tensor_dict_get_tensor(d, SPECS[i].key, &t) != GC_OK) {
      CHECK(0, "%s v%d: no tensor %s", what, version, SPECS[i].key);
      continue;
    }
    bool dev_ok = SPECS[i].host ? t.device.type == GC_DEVICE_HOST
                                : t.device.type == GC_DEVICE_CUDA && t.device.index == T_DEV;
    CHECK(t.dtype == SPECS[i].dt && t.ndim == SPECS[i].ndim &&
              !memcmp(t.shape, SPECS[i].shape, sizeof(int64_t) * (size_t)t.ndim) && dev_ok,
          "%s v%d: %s descriptor (device %d:%d)", what, version, SPECS[i].key, t.device.type,
          t.device.index);
    size_t bytes = gc_tensor_nbytes(&t);
    if (bytes != spec_bytes(i) || (bytes && !t.data)) {
      CHECK(0, "%s v%d: %s has %zu bytes", what, version, SPECS[i].key, bytes);
      continue;
    }
    void *want = spec_data(i, version), *got = malloc(bytes + 1);
    if (bytes && SPECS[i].host)
      memcpy(got, t.data, bytes);
    else if (bytes)
      d2h(got, t.data, bytes, STREAM);
    CHECK(!memcmp(got, want, bytes), "%s v%d: %s values", what, version, SPECS[i].key);
    free(want);
    free(got);
  }
  const void *b;
  size_t n;
  CHECK(gc_tensor_dict_get_bytes(d, "sampling", &b, &n) == GC_OK && n == 11 &&
            !memcmp(b, "top_p=0.9\0x", 11),
        "%s: bytes", what);
  int64_t v;
  CHECK(gc_tensor_dict_get_int(d, "version", &v) == GC_OK && v == version, "%s: int", what);
  double f;
  CHECK(gc_tensor_dict_get_float(d, "scale", &f) == GC_OK && f == 0.125 * version, "%s: float",
        what);
  CHECK(gc_tensor_dict_kind(d, (size_t)NSPEC + 3) == GC_VALUE_NONE, "%s: none", what);
}

/* Stage A (ranks < tp) and stage B exchange dicts over their pipeline
 * group: cases 0 no all-gather group, 1 the default slicing over the
 * stage's TP group, 2 overrides forcing it off and on; forward (A -> B)
 * and backward (B -> A). */
static void t_send_recv(gc_group_t *pp, gc_group_t *tp, int me, int tpn) {
  bool stage_a = me < tpn;
  /* "tokens" (16 elements) forced on only where the TP size divides it */
  gc_ag_override_t ov[] = {{"hidden", false}, {"positions", false}, {"tokens", true}};
  int nov = 16 % tpn ? 2 : 3;
  for (int dir = 0; dir < 2; dir++) {
    for (int c = 0; c < 3; c++) {
      gc_group_t *ag = c == 0 ? NULL : tp;
      const gc_ag_override_t *o = c == 2 ? ov : NULL;
      int no = c == 2 ? nov : 0, version = 100 + 10 * dir + c;
      bool sender = dir == 0 ? stage_a : !stage_a;
      gc_status_t s;
      if (sender) {
        void *bufs[NSPEC] = {0};
        gc_tensor_dict_t *d = make_dict(version, bufs);
        s = gc_send_tensor_dict(pp, d, -1, ag, o, no, STREAM);
        gc_tensor_dict_free(d);
        free_bufs(bufs); /* stream-ordered frees after the sends */
        CHECK(gc_cuda_stream_synchronize(STREAM) == GC_OK, "stream after send");
      } else {
        gc_tensor_dict_t *out = NULL;
        s = gc_recv_tensor_dict(pp, -1, ag, o, no, &out, STREAM);
        if (s == GC_OK && out) check_dict(out, version, ag ? "recv (sliced)" : "recv");
        gc_tensor_dict_free(out);
      }
      CHECK(s == GC_OK, "%s_tensor_dict %s case %d (tp %d)", sender ? "send" : "recv",
            dir ? "B->A" : "A->B", c, tpn);
    }
  }
}

static void t_broadcast(gc_group_t *world, gc_group_t *meta, int me, int n) {
  int src = n - 1, version = 300;
  void *bufs[NSPEC] = {0};
  gc_tensor_dict_t *d = me == src ? make_dict(version, bufs) : NULL, *out = NULL;
  gc_status_t s = gc_broadcast_tensor_dict(world, d, src, meta, me == src ? NULL : &out, STREAM);
  CHECK(s == GC_OK, "broadcast_tensor_dict from %d with a metadata group", src);
  if (s == GC_OK && me != src && out) check_dict(out, version, "broadcast_tensor_dict");
  gc_tensor_dict_free(out);
  gc_tensor_dict_free(d);
  if (me == src) free_bufs(bufs);
}

static int body(int me, int n) {
  CHECK(gc_cuda_stream_create(&STREAM) == GC_OK, "stream create");
  rng_t rg = rng_make(77, 0, 0);
  SPECS[8].shape[0] = rng_range(&rg, 1, 9);
  SPECS[8].shape[1] = rng_range(&rg, 1, 9);
  SPECS[8].shape[2] = rng_range(&rg, 1, 33);
  int tpn = n / 2, ranks[64], tp_sizes[2] = {tpn, tpn}, pp_ranks[64], pp_sizes[32], one[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  for (int i = 0; i < tpn; i++) {
    pp_ranks[2 * i] = i;
    pp_ranks[2 * i + 1] = i + tpn;
    pp_sizes[i] = 2;
  }
  gc_group_t *tp = nccl_groups(ranks, tp_sizes, 2, "tp");
  gc_group_t *pp = nccl_groups(pp_ranks, pp_sizes, tpn, "pp");
  gc_group_t *world = nccl_groups(ranks, one, 1, "world");
  gc_group_t *meta = group_make(ranks, one, 1, "meta", false);
  if (!tp || !pp || !world || !meta) return 1;
  if (me == 0)
    printf("TP=%d x PP=2: tp groups of %d, pp groups of %d; random tensor [%lld %lld %lld]\n", tpn,
           gc_group_world_size(tp), gc_group_world_size(pp), (long long)SPECS[8].shape[0],
           (long long)SPECS[8].shape[1], (long long)SPECS[8].shape[2]);
  t_send_recv(pp, tp, me, tpn);
  t_broadcast(world, meta, me, n);
  CHECK(gc_cuda_stream_synchronize(STREAM) == GC_OK, "stream idle at the end");
  CHECK(gc_group_destroy(meta) == GC_OK && gc_group_destroy(world) == GC_OK &&
            gc_group_destroy(pp) == GC_OK && gc_group_destroy(tp) == GC_OK,
        "group destroy");
  (void)gc_cuda_stream_destroy(STREAM);
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  gc_env_ranks_t e;
  int n;
  if (gpu_launched(&e)) {
    n = e.world_size;
  } else {
    n = gpu_ranks_or_skip(argc > 1 ? atoi(argv[1]) : 8);
    n -= n % 2;
  }
  if (n < 2 || n % 2) {
    printf("skipped: TP x PP=2 needs an even number of ranks >= 2 (have %d)\n", n);
    return 77;
  }
  return gpu_main("tpp", n, body);
}
