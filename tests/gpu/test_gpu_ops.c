/* test_gpu_ops.c - every coordinator operation on CUDA tensors over the
 * nccl backend, every dtype, dims 0, 1 and -1, against a reference computed
 * on the host from every rank's seeded input (exact comparison). One rank
 * per GPU, up to 4 (one on a single-GPU machine). Exits 77 without a GPU. */
#include <math.h>

#include "gpu_util.h"

static void *STREAM;

/* Every rank's input of an op, made identically on every rank. */
static void make_inputs(void **ins, int n, gc_dtype_t dt, gc_redop_t op, const size_t *count,
                        int tag) {
  size_t es = gc_dtype_size(dt);
  for (int r = 0; r < n; r++) {
    ins[r] = malloc(count[r] * es + 1);
    rng_t rg = rng_make((uint64_t)tag, (uint64_t)dt * 16 + (uint64_t)op, (uint64_t)r);
    fill_values(ins[r], dt, count[r], op, &rg);
  }
}

static void free_all(void **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
}

/* Element i of a float buffer of dtype dt as a double. */
static double as_double(const void *p, gc_dtype_t dt, size_t i) {
  switch (dt) {
    case GC_FLOAT16:
      return gc_half_to_float(((const uint16_t *)p)[i]);
    case GC_BFLOAT16:
      return gc_bf16_to_float(((const uint16_t *)p)[i]);
    case GC_FLOAT32:
      return ((const float *)p)[i];
    default:
      return ((const double *)p)[i];
  }
}

/* The all-reduce result got against the reference want. Exact, except a
 * floating-point average over a number of ranks that is not a power of two:
 * NCCL's ncclAvg premultiplies every input by 1/n (each product rounded)
 * where the reference divides the exact sum once, so there it is within a
 * few units in the last place of the dtype. */
static bool same_result(const void *got, const void *want, gc_dtype_t dt, gc_redop_t op, int n,
                        size_t count) {
  size_t es = gc_dtype_size(dt);
  bool is_float = dt == GC_FLOAT16 || dt == GC_BFLOAT16 || dt == GC_FLOAT32 || dt == GC_FLOAT64;
  if (!(op == GC_AVG && is_float && (n & (n - 1)))) return !memcmp(got, want, count * es);
  double rel = dt == GC_BFLOAT16  ? 1.6e-2
               : dt == GC_FLOAT16 ? 2e-3
               : dt == GC_FLOAT32 ? 4e-6
                                  : 1e-14;
  for (size_t i = 0; i < count; i++) {
    double a = as_double(got, dt, i), b = as_double(want, dt, i);
    if (fabs(a - b) > rel * (fabs(b) + 0.25)) return false;
  }
  return true;
}

static void test_all_reduce(gc_group_t *g, int me, int n) {
  static const gc_redop_t ops[] = {GC_SUM, GC_PROD, GC_MAX, GC_MIN, GC_AVG};
  for (int di = 0; di < N_DTYPES; di++) {
    gc_dtype_t dt = ALL_DTYPES[di];
    size_t es = gc_dtype_size(dt);
    for (int oi = 0; oi < 5; oi++) {
      gc_redop_t op = ops[oi];
      rng_t rg = rng_make(1, (uint64_t)di, (uint64_t)oi);
      int64_t shape[2] = {rng_range(&rg, 1, 37), rng_range(&rg, 1, 129)};
      size_t count = (size_t)(shape[0] * shape[1]), counts[64];
      for (int r = 0; r < n; r++) counts[r] = count;
      void *ins[64];
      make_inputs(ins, n, dt, op, counts, 1);
      void *want = malloc(count * es), *got = malloc(count * es);
      ref_reduce(dt, op, n, ins, count, want);
      void *din = dev_alloc(count * es, STREAM), *dout = dev_alloc(count * es, STREAM);
      h2d(din, ins[me], count * es, STREAM);
      gc_tensor_t in = cuda_tensor(din, dt, 2, shape, T_DEV),
                  out = cuda_tensor(dout, dt, 2, shape, T_DEV);
      /* out of place */
      CHECK(gc_all_reduce(g, &in, &out, op, STREAM) == GC_OK, "all_reduce %s op %d",
            gc_dtype_name(dt), op);
      d2h(got, dout, count * es, STREAM);
      CHECK(same_result(got, want, dt, op, n, count), "all_reduce %s op %d result",
            gc_dtype_name(dt), op);
      d2h(got, din, count * es, STREAM);
      CHECK(!memcmp(got, ins[me], count * es), "all_reduce %s op %d kept its input",
            gc_dtype_name(dt), op);
      /* in place */
      CHECK(gc_all_reduce(g, &in, &in, op, STREAM) == GC_OK, "in-place all_reduce");
      d2h(got, din, count * es, STREAM);
      CHECK(same_result(got, want, dt, op, n, count), "in-place all_reduce %s op %d result",
            gc_dtype_name(dt), op);
      /* output allocated by the library */
      h2d(din, ins[me], count * es, STREAM);
      gc_tensor_t a = {0};
      CHECK(gc_all_reduce(g, &in, &a, op, STREAM) == GC_OK && a.data && a.dtype == dt &&
                a.ndim == 2 && a.shape[1] == shape[1] && a.device.type == GC_DEVICE_CUDA,
            "all_reduce into an allocated output");
      if (a.data) {
        d2h(got, a.data, count * es, STREAM);
        CHECK(same_result(got, want, dt, op, n, count), "allocated output result");
        CHECK(gc_tensor_free(&a, STREAM) == GC_OK && !a.data, "gc_tensor_free");
      }
      /* by name */
      if (oi == 0) {
        CHECK(gc_all_reduce_by_name(gc_group_name(g), &in, &out, op, STREAM) == GC_OK,
              "all_reduce_by_name");
        d2h(got, dout, count * es, STREAM);
        CHECK(!memcmp(got, want, count * es), "all_reduce_by_name result");
      }
      dev_free(din, STREAM);
      dev_free(dout, STREAM);
      free(want);
      free(got);
      free_all(ins, n);
    }
  }
}

/* Expected all-gather along dim of inputs whose dim has rows[r] rows. */
static void ref_gather(void *want, void **ins, int n, const int64_t *shape, int dim,
                       const int64_t *rows, size_t es) {
  size_t outer = prod_dims(shape, 0, dim), inner = prod_dims(shape, dim + 1, 3) * es, o = 0;
  for (size_t i = 0; i < outer; i++)
    for (int r = 0; r < n; r++) {
      size_t w = (size_t)rows[r] * inner;
      memcpy((char *)want + o, (char *)ins[r] + i * w, w);
      o += w;
    }
}

static void test_gather(gc_group_t *g, int me, int n, bool all, bool uneven) {
  static const int dims[] = {0, 1, -1};
  for (int di = 0; di < N_DTYPES; di++) {
    gc_dtype_t dt = ALL_DTYPES[di];
    size_t es = gc_dtype_size(dt);
    for (int k = 0; k < 3; k++) {
      int dim = dims[k], d = dim < 0 ? 3 + dim : dim;
      rng_t rg = rng_make(2 + all + 2 * uneven, (uint64_t)di, (uint64_t)k);
      int64_t base[3] = {rng_range(&rg, 1, 9), rng_range(&rg, 1, 9), rng_range(&rg, 1, 33)};
      int64_t rows[64], total = 0;
      size_t counts[64];
      for (int r = 0; r < n; r++) {
        rows[r] = uneven ? rng_range(&rg, 0, 5) : base[d];
        if (uneven && r == me && n == 1) rows[r] = rng_range(&rg, 1, 5);
        total += rows[r];
        int64_t s[3] = {base[0], base[1], base[2]};
        s[d] = rows[r];
        counts[r] = prod_dims(s, 0, 3);
      }
      void *ins[64];
      make_inputs(ins, n, dt, GC_SUM, counts, 3);
      int64_t my_shape[3] = {base[0], base[1], base[2]}, out_shape[3] = {base[0], base[1], base[2]};
      my_shape[d] = rows[me];
      out_shape[d] = total;
      size_t out_n = prod_dims(out_shape, 0, 3);
      void *want = malloc(out_n * es + 1), *got = malloc(out_n * es + 1);
      ref_gather(want, ins, n, out_shape, d, rows, es);
      void *din = dev_alloc(counts[me] * es, STREAM), *dout = dev_alloc(out_n * es, STREAM);
      h2d(din, ins[me], counts[me] * es, STREAM);
      gc_tensor_t in = cuda_tensor(din, dt, 3, my_shape, T_DEV),
                  out = cuda_tensor(dout, dt, 3, out_shape, T_DEV);
      gc_status_t s;
      int root = n - 1;
      if (!all)
        s = gc_gather(g, &in, root, dim, &out, STREAM);
      else if (uneven)
        s = gc_all_gatherv(g, &in, dim, rows, &out, STREAM);
      else
        s = gc_all_gather(g, &in, dim, &out, STREAM);
      CHECK(s == GC_OK, "%s %s dim %d", all ? uneven ? "all_gatherv" : "all_gather" : "gather",
            gc_dtype_name(dt), dim);
      if (all || me == root) {
        d2h(got, dout, out_n * es, STREAM);
        CHECK(!memcmp(got, want, out_n * es), "%s %s dim %d shape [%lld %lld %lld] result",
              all ? uneven ? "all_gatherv" : "all_gather" : "gather", gc_dtype_name(dt), dim,
              (long long)base[0], (long long)base[1], (long long)base[2]);
      }
      dev_free(din, STREAM);
      dev_free(dout, STREAM);
      free(want);
      free(got);
      free_all(ins, n);
    }
  }
}

static void test_reduce_scatter(gc_group_t *g, int me, int n, bool uneven) {
  static const int dims[] = {0, 1, -1};
  for (int di = 0; di < N_DTYPES; di++) {
    gc_dtype_t dt = ALL_DTYPES[di];
    size_t es = gc_dtype_size(dt);
    for (int k = 0; k < 3; k++) {
      int dim = dims[k], d = dim < 0 ? 3 + dim : dim;
      rng_t rg = rng_make(7 + uneven, (uint64_t)di, (uint64_t)k);
      int64_t shape[3] = {rng_range(&rg, 1, 7), rng_range(&rg, 1, 7), rng_range(&rg, 1, 17)};
      int64_t sizes[64], rows = 0, off = 0;
      for (int r = 0; r < n; r++) {
        sizes[r] = uneven ? rng_range(&rg, 0, 4) : 2;
        if (n == 1 && sizes[r] == 0) sizes[r] = 1;
        rows += sizes[r];
      }
      for (int r = 0; r < me; r++) off += sizes[r];
      shape[d] = rows;
      size_t count = prod_dims(shape, 0, 3), counts[64];
      for (int r = 0; r < n; r++) counts[r] = count;
      void *ins[64];
      make_inputs(ins, n, dt, GC_SUM, counts, 9);
      void *full = malloc(count * es), *want = malloc(count * es + 1),
           *got = malloc(count * es + 1);
      ref_reduce(dt, GC_SUM, n, ins, count, full);
      size_t outer = prod_dims(shape, 0, d), inner = prod_dims(shape, d + 1, 3) * es, o = 0;
      for (size_t i = 0; i < outer; i++) {
        memcpy((char *)want + o, (char *)full + (i * (size_t)rows + (size_t)off) * inner,
               (size_t)sizes[me] * inner);
        o += (size_t)sizes[me] * inner;
      }
      int64_t out_shape[3] = {shape[0], shape[1], shape[2]};
      out_shape[d] = sizes[me];
      void *din = dev_alloc(count * es, STREAM), *dout = dev_alloc(o, STREAM);
      h2d(din, ins[me], count * es, STREAM);
      gc_tensor_t in = cuda_tensor(din, dt, 3, shape, T_DEV),
                  out = cuda_tensor(dout, dt, 3, out_shape, T_DEV);
      gc_status_t s = uneven ? gc_reduce_scatterv(g, &in, dim, sizes, &out, STREAM)
                             : gc_reduce_scatter(g, &in, dim, &out, STREAM);
      CHECK(s == GC_OK, "reduce_scatter%s %s dim %d", uneven ? "v" : "", gc_dtype_name(dt), dim);
      d2h(got, dout, o, STREAM);
      CHECK(!memcmp(got, want, o), "reduce_scatter%s %s dim %d result", uneven ? "v" : "",
            gc_dtype_name(dt), dim);
      dev_free(din, STREAM);
      dev_free(dout, STREAM);
      free(full);
      free(want);
      free(got);
      free_all(ins, n);
    }
  }
}

static void test_broadcast_p2p(gc_group_t *g, int me, int n) {
  for (int di = 0; di < N_DTYPES; di++) {
    gc_dtype_t dt = ALL_DTYPES[di];
    size_t es = gc_dtype_size(dt), count = 1000 + (size_t)di * 77, counts[64];
    int64_t shape[1] = {(int64_t)count};
    for (int r = 0; r < n; r++) counts[r] = count;
    void *ins[64], *got = malloc(count * es);
    make_inputs(ins, n, dt, GC_SUM, counts, 11);
    void *buf = dev_alloc(count * es, STREAM);
    for (int src = 0; src<n; src += n> 1 ? n - 1 : 1) {
      h2d(buf, ins[me], count * es, STREAM);
      gc_tensor_t t = cuda_tensor(buf, dt, 1, shape, T_DEV);
      CHECK(gc_broadcast(g, &t, src, STREAM) == GC_OK, "broadcast %s from %d", gc_dtype_name(dt),
            src);
      d2h(got, buf, count * es, STREAM);
      CHECK(!memcmp(got, ins[src], count * es), "broadcast %s from %d result", gc_dtype_name(dt),
            src);
    }
    gc_tensor_t t = cuda_tensor(buf, dt, 1, shape, T_DEV);
    if (n == 1) {
      CHECK(gc_send(g, &t, -1, STREAM) == GC_ERR_INVALID_ARG, "send to oneself refused");
    } else if (n > 1) {
      /* even ranks send first, odd ones receive first: a ring without deadlock
       * (odd n: the last rank sends to 0 first, 0 receives it second) */
      int nxt = (me + 1) % n, prv = (me + n - 1) % n;
      h2d(buf, ins[me], count * es, STREAM);
      void *rb = dev_alloc(count * es, STREAM);
      gc_tensor_t rt = cuda_tensor(rb, dt, 1, shape, T_DEV);
      for (int phase = 0; phase < 2; phase++) {
        if ((me % 2) == phase)
          CHECK(gc_send(g, &t, nxt, STREAM) == GC_OK, "send");
        else
          CHECK(gc_recv(g, &rt, prv, STREAM) == GC_OK, "recv");
      }
      d2h(got, rb, count * es, STREAM);
      CHECK(!memcmp(got, ins[prv], count * es), "recv %s from %d result", gc_dtype_name(dt), prv);
      dev_free(rb, STREAM);
    }
    dev_free(buf, STREAM);
    free(got);
    free_all(ins, n);
  }
}

/* The backend's primitives the coordinator uses for dims != 0 and integer
 * averages, checked directly (with one rank the coordinator needs neither). */
static void test_primitives(gc_group_t *g, int me) {
  gc_device_t dev = {GC_DEVICE_CUDA, T_DEV};
  rng_t rg = rng_make(13, 0, 0);
  /* strided 2-D copies */
  for (int k = 0; k < 12; k++) {
    /* k >= 6: 16-byte aligned rows and pitches (the kernel's path) */
    size_t q = k >= 6 ? 16 : 1, w = q * (size_t)rng_range(&rg, 1, 300),
           h = (size_t)rng_range(&rg, 1, 200);
    size_t sp = w + q * (size_t)rng_range(&rg, 0, 64) * (k & 1),
           dp = w + q * (size_t)rng_range(&rg, 0, 64);
    unsigned char *src = malloc(sp * h), *want = calloc(dp * h, 1), *got = malloc(dp * h);
    for (size_t i = 0; i < sp * h; i++) src[i] = (unsigned char)rng_next(&rg);
    for (size_t i = 0; i < h; i++) memcpy(want + i * dp, src + i * sp, w);
    void *ds = dev_alloc(sp * h, STREAM), *dd = dev_alloc(dp * h, STREAM);
    h2d(ds, src, sp * h, STREAM);
    CHECK(g->dev->memset(dd, 0, dp * h, dev, STREAM) == GC_OK, "memset");
    CHECK(g->dev->copy2d(dd, dp, ds, sp, w, h, dev, STREAM) == GC_OK, "copy2d");
    d2h(got, dd, dp * h, STREAM);
    CHECK(!memcmp(got, want, dp * h), "copy2d w %zu h %zu pitches %zu %zu", w, h, sp, dp);
    dev_free(ds, STREAM);
    dev_free(dd, STREAM);
    free(src);
    free(want);
    free(got);
  }
  /* blocked <-> interleaved (copy3d): n blocks of outer rows of w bytes */
  for (int k = 0; k < 16; k++) {
    bool fwd = k & 1; /* [n][outer][w] -> [outer][n][w], else the reverse */
    size_t q = k >= 8 ? 16 : 1, w = q * (size_t)rng_range(&rg, 1, k % 4 == 3 ? 600 : 40),
           outer = (size_t)rng_range(&rg, 1, 300), n = (size_t)rng_range(&rg, 1, 9);
    size_t bytes = n * outer * w, blk = outer * w, row = n * w;
    size_t d0 = fwd ? w : blk, d1 = fwd ? row : w, s0 = fwd ? blk : w, s1 = fwd ? w : row;
    unsigned char *src = malloc(bytes), *want = malloc(bytes), *got = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) src[i] = (unsigned char)rng_next(&rg);
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < outer; j++) memcpy(want + i * d0 + j * d1, src + i * s0 + j * s1, w);
    void *ds = dev_alloc(bytes, STREAM), *dd = dev_alloc(bytes, STREAM);
    h2d(ds, src, bytes, STREAM);
    CHECK(g->dev->copy3d, "the nccl backend has copy3d");
    if (g->dev->copy3d)
      CHECK(g->dev->copy3d(dd, d0, d1, ds, s0, s1, w, outer, n, dev, STREAM) == GC_OK, "copy3d");
    d2h(got, dd, bytes, STREAM);
    CHECK(!memcmp(got, want, bytes), "copy3d %s w %zu outer %zu n %zu",
          fwd ? "to interleaved" : "to blocked", w, outer, n);
    dev_free(ds, STREAM);
    dev_free(dd, STREAM);
    free(src);
    free(want);
    free(got);
  }
  /* integer averages: the division kernel against C division */
  static const gc_dtype_t ints[] = {GC_INT8, GC_UINT8, GC_INT32, GC_INT64};
  for (int i = 0; i < 4; i++) {
    for (long long d = 2; d <= 7; d += 5) {
      size_t n = 100000, es = gc_dtype_size(ints[i]);
      void *h = malloc(n * es), *want = malloc(n * es), *got = malloc(n * es);
      for (size_t j = 0; j < n; j++) {
        int64_t v = (int64_t)rng_next(&rg);
        switch (ints[i]) {
          case GC_INT8:
            ((int8_t *)h)[j] = (int8_t)v;
            ((int8_t *)want)[j] = (int8_t)(((int8_t *)h)[j] / d);
            break;
          case GC_UINT8:
            ((uint8_t *)h)[j] = (uint8_t)v;
            ((uint8_t *)want)[j] = (uint8_t)(((uint8_t *)h)[j] / d);
            break;
          case GC_INT32:
            ((int32_t *)h)[j] = (int32_t)v;
            ((int32_t *)want)[j] = (int32_t)(((int32_t *)h)[j] / d);
            break;
          default:
            ((int64_t *)h)[j] = v;
            ((int64_t *)want)[j] = v / d;
            break;
        }
      }
      void *dp = dev_alloc(n * es, STREAM);
      h2d(dp, h, n * es, STREAM);
      CHECK(gc_nccl_divide(dp, n, ints[i], d, T_DEV, STREAM) == GC_OK, "divide %s",
            gc_dtype_name(ints[i]));
      d2h(got, dp, n * es, STREAM);
      CHECK(!memcmp(got, want, n * es), "integer average %s by %lld truncates like C",
            gc_dtype_name(ints[i]), d);
      dev_free(dp, STREAM);
      free(h);
      free(want);
      free(got);
    }
  }
  CHECK(gc_nccl_divide(NULL, 1, GC_FLOAT32, 2, T_DEV, STREAM) == GC_ERR_INTERNAL,
        "divide refuses floats");
}

static void test_bad_input(gc_group_t *g, int me) {
  int64_t shape[1] = {16}, other[1] = {15};
  void *d = dev_alloc(64, STREAM);
  float host[16] = {0};
  gc_tensor_t in = cuda_tensor(d, GC_FLOAT32, 1, shape, T_DEV);
  gc_tensor_t h = host_tensor(host, GC_FLOAT32, 1, shape);
  CHECK(gc_all_reduce(g, &in, &h, GC_SUM, STREAM) == GC_ERR_INVALID_ARG,
        "a host output for a CUDA input is refused");
  gc_tensor_t wrong = cuda_tensor(d, GC_FLOAT32, 1, other, T_DEV);
  CHECK(gc_all_reduce(g, &in, &wrong, GC_SUM, STREAM) == GC_ERR_INVALID_ARG,
        "an output of the wrong shape is refused");
  CHECK(gc_all_gather(g, &in, 3, &wrong, STREAM) == GC_ERR_INVALID_ARG, "dim out of range");
  dev_free(d, STREAM);
}

static void test_dicts(gc_group_t *g, int me, int n) {
  gc_tensor_dict_t *d = NULL;
  CHECK(gc_tensor_dict_new(&d) == GC_OK, "dict new");
  if (!d) return;
  void *bufs[N_DTYPES], *ins[N_DTYPES];
  for (int di = 0; di < N_DTYPES; di++) {
    gc_dtype_t dt = ALL_DTYPES[di];
    int64_t shape[2] = {3 + di, 5};
    size_t es = gc_dtype_size(dt), cnt = (size_t)(shape[0] * shape[1]);
    ins[di] = malloc(cnt * es);
    rng_t rg = rng_make(17, (uint64_t)di, 0);
    fill_values(ins[di], dt, cnt, GC_SUM, &rg);
    bufs[di] = dev_alloc(cnt * es, STREAM);
    h2d(bufs[di], ins[di], cnt * es, STREAM);
    gc_tensor_t t = cuda_tensor(bufs[di], dt, 2, shape, T_DEV);
    char key[32];
    snprintf(key, sizeof key, "t%d", di);
    CHECK(gc_tensor_dict_set_tensor(d, key, &t) == GC_OK, "dict set %s", key);
  }
  float hv[4] = {1, 2, 3, 4};
  int64_t hs[1] = {4};
  gc_tensor_t ht = host_tensor(hv, GC_FLOAT32, 1, hs);
  CHECK(gc_tensor_dict_set_tensor(d, "host", &ht) == GC_OK, "dict set host tensor");
  CHECK(gc_tensor_dict_set_int(d, "step", 42) == GC_OK, "dict set int");
  CHECK(gc_tensor_dict_set_bytes(d, "tag", "abc", 3) == GC_OK, "dict set bytes");
  gc_tensor_t back;
  CHECK(gc_tensor_dict_get_tensor(d, "t0", &back) == GC_OK && back.device.type == GC_DEVICE_CUDA,
        "dict keeps the CUDA device");
  if (n == 1) {
    CHECK(gc_broadcast_tensor_dict(g, d, 0, NULL, NULL, STREAM) == GC_OK,
          "broadcast_tensor_dict of CUDA tensors at src");
    CHECK(gc_send_tensor_dict(g, d, 0, NULL, NULL, 0, STREAM) == GC_ERR_INVALID_ARG,
          "send_tensor_dict to oneself refused");
  } else {
    gc_tensor_dict_t *got = NULL;
    gc_status_t s =
        gc_broadcast_tensor_dict(g, me == 0 ? d : NULL, 0, NULL, me == 0 ? NULL : &got, STREAM);
    CHECK(s == GC_OK, "broadcast_tensor_dict");
    if (me != 0 && got) {
      for (int di = 0; di < N_DTYPES; di++) {
        char key[32];
        snprintf(key, sizeof key, "t%d", di);
        gc_tensor_t t;
        size_t bytes = (size_t)(3 + di) * 5 * gc_dtype_size(ALL_DTYPES[di]);
        void *h = malloc(bytes);
        CHECK(gc_tensor_dict_get_tensor(got, key, &t) == GC_OK && t.device.type == GC_DEVICE_CUDA &&
                  t.device.index == T_DEV,
              "received %s on this rank's GPU", key);
        if (t.data) {
          d2h(h, t.data, bytes, STREAM);
          /* rank 0 filled the same seeded values */
          CHECK(!memcmp(h, ins[di], bytes), "received %s bytes", key);
        }
        free(h);
      }
      int64_t v = 0;
      CHECK(gc_tensor_dict_get_int(got, "step", &v) == GC_OK && v == 42, "received int");
      gc_tensor_dict_free(got);
    }
  }
  for (int di = 0; di < N_DTYPES; di++) {
    dev_free(bufs[di], STREAM);
    free(ins[di]);
  }
  gc_tensor_dict_free(d);
}

static int body(int me, int n) {
  gc_group_t *g = nccl_group(n, "gpu");
  if (!g) return 1;
  CHECK(gc_cuda_stream_create(&STREAM) == GC_OK, "stream create");
  test_all_reduce(g, me, n);
  test_gather(g, me, n, true, false);
  test_gather(g, me, n, true, true);
  test_gather(g, me, n, false, false);
  test_reduce_scatter(g, me, n, false);
  test_reduce_scatter(g, me, n, true);
  test_broadcast_p2p(g, me, n);
  test_primitives(g, me);
  test_bad_input(g, me);
  test_dicts(g, me, n);
  CHECK(gc_cuda_stream_synchronize(STREAM) == GC_OK, "stream idle at the end");
  CHECK(gc_group_destroy(g) == GC_OK, "group destroy");
  (void)gc_cuda_stream_destroy(STREAM);
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  /* forked: argv[1] ranks at most (default 4); launched: the job's size */
  return gpu_main("tgpu", argc > 1 ? atoi(argv[1]) : 4, body);
}
