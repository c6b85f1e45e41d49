/*
 * ops.c - the tensor collectives of the GroupCoordinator.
 *
 * Each operation has the same anatomy:
 *   1. check the arguments on this rank alone and build the signature of
 *      what must agree across ranks (agree.c);
 *   2. the agreement round: every rank learns whether any rank failed;
 *   3. allocate outputs whose data is NULL;
 *   4. run the algorithm on the device backend's primitives; a dim other
 *      than 0 costs one strided 2-D copy per rank through scratch memory.
 * With one rank, step 2 is skipped and step 4 is at most one copy.
 *
 * Dims: a tensor of shape S seen around dim d is [outer, S[d], inner] with
 * outer = S[0]*...*S[d-1] and inner = S[d+1]*...*S[n-1]. When outer is 1
 * the blocks of every rank are already contiguous and the backend works on
 * the tensors directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/coord.h"
#include "core/reduce.h"

enum { OP_ALL_REDUCE = 1, OP_ALL_GATHER, OP_GATHER, OP_REDUCE_SCATTER, OP_BROADCAST, OP_P2P };

static uint64_t sig_tensor_head(uint64_t h, int opcode, const gc_tensor_t *t) {
  h = gc_sig_i64(h, opcode);
  h = gc_sig_i64(h, t->dtype);
  h = gc_sig_i64(h, t->device.type);
  return gc_sig_i64(h, t->ndim);
}

static uint64_t sig_shape(uint64_t h, const gc_tensor_t *t, int skip) {
  for (int i = 0; i < t->ndim; i++)
    if (i != skip) h = gc_sig_i64(h, t->shape[i]);
  return h;
}

static size_t span(const int64_t *shape, int a, int b) {
  size_t n = 1;
  for (int i = a; i < b; i++) n *= (size_t)shape[i];
  return n;
}

/* Per-rank arrays: on the stack for small groups. */
#define RANKS_ON_STACK 64
typedef struct {
  size_t stack[RANKS_ON_STACK];
  size_t *v;
} rank_array_t;

static gc_status_t rank_array(rank_array_t *a, int n, const char *what) {
  a->v = a->stack;
  if (n > RANKS_ON_STACK) {
    a->v = malloc(sizeof(size_t) * (size_t)n);
    if (!a->v) return gc_error(GC_ERR_NO_MEMORY, "%s: no memory for %d ranks", what, n);
  }
  return GC_OK;
}

static void rank_array_free(rank_array_t *a) {
  if (a->v != a->stack) free(a->v);
}

/* Outputs whose data is NULL are allocated before the agreement round, so
 * that running out of memory is one more verdict every rank hears of; on
 * any failure they are released and the caller's descriptor restored. */
typedef struct {
  gc_tensor_t *t;
  gc_tensor_t saved;
  bool allocated;
} out_guard_t;

static gc_status_t out_prepare(out_guard_t *o, gc_tensor_t *t, const gc_tensor_t *want,
                               void *stream) {
  o->t = t;
  o->allocated = false;
  if (t->data) return GC_OK;
  o->saved = *t;
  gc_coord_shape_output(t, want);
  gc_status_t s = gc_coord_alloc(t, stream);
  if (s != GC_OK) {
    *t = o->saved;
    return s;
  }
  o->allocated = true;
  return GC_OK;
}

static gc_status_t out_finish(out_guard_t *o, gc_status_t s, void *stream) {
  if (s != GC_OK && o->allocated) {
    gc_coord_release(o->t, stream);
    *o->t = o->saved;
  }
  return s;
}

gc_status_t gc_coord_check_sizes(const gc_group_t *g, const int64_t *sizes, int64_t mine,
                                 int64_t *total, const char *what) {
  int64_t t = 0;
  for (int i = 0; i < g->size; i++) {
    if (sizes[i] < 0)
      return gc_error(GC_ERR_INVALID_ARG, "%s: sizes[%d] = %lld is negative", what, i,
                      (long long)sizes[i]);
    if (__builtin_add_overflow(t, sizes[i], &t))
      return gc_error(GC_ERR_INVALID_ARG, "%s: sizes overflow", what);
  }
  if (mine >= 0 && sizes[g->rank_in_group] != mine)
    return gc_error(GC_ERR_INVALID_ARG,
                    "%s: sizes[%d] = %lld but this rank's input has %lld rows on the dim", what,
                    g->rank_in_group, (long long)sizes[g->rank_in_group], (long long)mine);
  *total = t;
  return GC_OK;
}

static uint64_t sig_sizes(uint64_t h, const gc_group_t *g, const int64_t *sizes) {
  for (int i = 0; i < g->size; i++) h = gc_sig_i64(h, sizes[i]);
  return h;
}

/* ---- the fused path (coord.h: gc_coord_fuse_begin) -------------------------
 * Every rank writes [header | payload] into its slot of the CPU group and
 * reads the others' in place; the caller's output is written only after
 * every header agreed. Reductions run here, over the records in rank order
 * with the kernels the shm transport uses (fp16/bf16 accumulate in float32
 * and round once), so the bits are those of the separate rounds. */

/* AVG of fp16/bf16: the sum is divided in float32 before the one rounding. */
static bool widen_avg(gc_dtype_t dt, gc_redop_t op) {
  return (dt == GC_FLOAT16 || dt == GC_BFLOAT16) && op == GC_AVG;
}

/* dst = in[0] (op) ... (op) in[n-1], count elements, then the AVG division;
 * f: float32 scratch of n * count (used for fp16/bf16 AVG). */
static void reduce_gathered(gc_dtype_t dt, gc_redop_t op, void *dst, const void **in, int n,
                            size_t count, float *f) {
  if (!widen_avg(dt, op)) {
    gc_reduce_multi(dt, op, dst, in, n, count);
    gc_reduce_finish(dt, op, dst, count, n);
    return;
  }
  for (int r = 0; r < n; r++) {
    float *o = f + (size_t)r * count;
    gc_to_float(dt, o, in[r], count);
    in[r] = o;
  }
  gc_reduce_multi(GC_FLOAT32, op, f, in, n, count);
  gc_reduce_finish(GC_FLOAT32, op, f, count, n);
  gc_from_float(dt, dst, f, count);
}

static gc_status_t all_reduce_fused(gc_group_t *g, const gc_tensor_t *in, gc_tensor_t *out,
                                    gc_redop_t op, uint64_t sig, void *stream) {
  const gc_device_ops_t *d = &gc_device_host;
  size_t count = (size_t)gc_tensor_numel(in), bytes = gc_tensor_nbytes(in);
  int n = g->size, me = g->rank_in_group;
  float *f = NULL;
  if (widen_avg(in->dtype, op))
    GC_CHECK(d->scratch(g, 1, count * (size_t)n * sizeof(float), in->device, stream, (void **)&f));
  gc_fuse_t fu;
  GC_CHECK(gc_coord_fuse_begin(g, &fu));
  if (bytes) memcpy(fu.mine + gc_fuse_off(bytes), in->data, bytes);
  gc_status_t s = gc_coord_fuse_exchange(g, &fu, sig, "gc_all_reduce");
  if (s == GC_OK && count) {
    const void *ptr[GC_FUSE_MAX_RANKS];
    for (int r = 0; r < n; r++) ptr[r] = r == me ? in->data : gc_fuse_payload(&fu, r, bytes);
    reduce_gathered(in->dtype, op, out->data, ptr, n, count, f);
  }
  gc_coord_fuse_end(g);
  return s;
}

/* ---- all-reduce ------------------------------------------------------------ */

static gc_status_t all_reduce_local(gc_group_t *g, const gc_tensor_t *in, const gc_tensor_t *out,
                                    gc_redop_t op, const gc_device_ops_t **d, uint64_t *sig) {
  GC_CHECK(gc_coord_check_input(in, "gc_all_reduce input"));
  if (!gc_redop_valid(op)) return gc_error(GC_ERR_INVALID_ARG, "gc_all_reduce: redop %d", (int)op);
  GC_CHECK(gc_device_for(g, in->device, d));
  GC_CHECK(gc_coord_check_output(out, in, "gc_all_reduce"));
  uint64_t h = sig_shape(sig_tensor_head(GC_SIG_INIT, OP_ALL_REDUCE, in), in, -1);
  *sig = gc_sig_i64(h, op);
  return GC_OK;
}

gc_status_t gc_all_reduce(gc_group_t *g, const gc_tensor_t *in, gc_tensor_t *out, gc_redop_t op,
                          void *stream) {
  GC_CHECK(gc_group_check(g, "gc_all_reduce"));
  const gc_device_ops_t *d = NULL;
  uint64_t sig = 0;
  out_guard_t og = {0};
  gc_status_t local = all_reduce_local(g, in, out, op, &d, &sig);
  if (local == GC_OK) local = out_prepare(&og, out, in, stream);
  size_t limit = local == GC_OK ? gc_coord_fuse_reduce_limit(g, d) : 0;
  if (limit && gc_tensor_nbytes(in) <= limit)
    return out_finish(&og, all_reduce_fused(g, in, out, op, sig, stream), stream);
  gc_status_t s = gc_coord_agree(g, d, local, sig, "gc_all_reduce", stream);
  size_t n = s == GC_OK ? (size_t)gc_tensor_numel(in) : 0;
  if (n && g->size == 1) /* every redop of one value is that value: a copy at most */
    s = d->copy(out->data, in->data, gc_tensor_nbytes(in), in->device, stream);
  else if (n)
    s = d->allreduce(g, in->data, out->data, n, in->dtype, op, stream);
  return out_finish(&og, s, stream);
}

gc_status_t gc_all_reduce_by_name(const char *group_name, const gc_tensor_t *in, gc_tensor_t *out,
                                  gc_redop_t op, void *stream) {
  void *g;
  GC_CHECK(gc_registry_lookup(group_name, &g));
  return gc_all_reduce(g, in, out, op, stream);
}

/* ---- all-gather, all-gatherv, gather --------------------------------------- */

typedef struct {
  const gc_device_ops_t *d;
  int dim;
  int64_t total; /* rows of the output on dim */
  gc_tensor_t want;
} gather_plan_t;

/* root < 0: every rank receives (all-gather); else only root (gather). */
static gc_status_t gather_local(gc_group_t *g, const gc_tensor_t *in, int dim, const int64_t *sizes,
                                bool all, int root, const gc_tensor_t *out, gather_plan_t *p,
                                uint64_t *sig, const char *what) {
  if (!all && (root < 0 || root >= g->size))
    return gc_error(GC_ERR_INVALID_ARG, "%s: dst %d is outside 0..%d", what, root, g->size - 1);
  GC_CHECK(gc_coord_check_input(in, what));
  GC_CHECK(gc_dim_normalize(in->ndim, dim, &p->dim));
  GC_CHECK(gc_device_for(g, in->device, &p->d));
  int64_t rows = in->shape[p->dim];
  if (sizes) {
    GC_CHECK(gc_coord_check_sizes(g, sizes, rows, &p->total, what));
  } else if (__builtin_mul_overflow(rows, (int64_t)g->size, &p->total)) {
    return gc_error(GC_ERR_INVALID_ARG, "%s: output rows overflow", what);
  }
  p->want = *in;
  p->want.shape[p->dim] = p->total;
  if (gc_tensor_nbytes(&p->want) == (size_t)-1)
    return gc_error(GC_ERR_INVALID_ARG, "%s: output size overflows", what);
  if (all || root == g->rank_in_group) GC_CHECK(gc_coord_check_output(out, &p->want, what));
  uint64_t h = sig_tensor_head(GC_SIG_INIT, all ? OP_ALL_GATHER : OP_GATHER, in);
  h = gc_sig_i64(sig_shape(h, in, p->dim), p->dim);
  h = gc_sig_i64(h, all ? -1 : root);
  *sig = sizes ? sig_sizes(gc_sig_i64(h, 1), g, sizes) : gc_sig_i64(gc_sig_i64(h, 0), rows);
  return GC_OK;
}

/* Moves n blocks of outer rows of w bytes between the blocked layout
 * [block][outer][w] and the interleaved one [outer][block][w]
 * (to_interleaved: blocked -> interleaved, as after an all-gather on a
 * dim > 0; else the reverse, as before a reduce-scatter): one device step
 * when the backend has copy3d, else one copy2d per block. */
static gc_status_t interleave(const gc_device_ops_t *d, bool to_interleaved, void *dst,
                              const void *src, size_t w, size_t outer, int n, gc_device_t dev,
                              void *stream) {
  size_t blk = outer * w, row = (size_t)n * w;
  size_t d0 = to_interleaved ? w : blk, d1 = to_interleaved ? row : w;
  size_t s0 = to_interleaved ? blk : w, s1 = to_interleaved ? w : row;
  if (d->copy3d) return d->copy3d(dst, d0, d1, src, s0, s1, w, outer, (size_t)n, dev, stream);
  for (int i = 0; i < n; i++)
    GC_CHECK(d->copy2d((char *)dst + (size_t)i * d0, d1, (const char *)src + (size_t)i * s0, s1, w,
                       outer, dev, stream));
  return GC_OK;
}

static gc_status_t gather_run(gc_group_t *g, const gc_tensor_t *in, const int64_t *sizes, bool all,
                              int root, gc_tensor_t *out, const gather_plan_t *p, void *stream,
                              const char *what) {
  const gc_device_ops_t *d = p->d;
  bool receives = all || root == g->rank_in_group;
  if (g->size == 1) return d->copy(out->data, in->data, gc_tensor_nbytes(in), in->device, stream);
  size_t es = gc_dtype_size(in->dtype);
  size_t outer = span(in->shape, 0, p->dim);
  size_t inner = span(in->shape, p->dim + 1, in->ndim) * es; /* bytes per row */
  size_t total_bytes = outer * (size_t)p->total * inner;
  if (total_bytes == 0) return GC_OK;
  rank_array_t bytes;
  GC_CHECK(rank_array(&bytes, g->size, what));
  for (int i = 0; i < g->size; i++)
    bytes.v[i] = outer * (size_t)(sizes ? sizes[i] : in->shape[p->dim]) * inner;
  gc_status_t s = GC_OK;
  void *dst = receives ? out->data : NULL;
  if (outer > 1 && receives)
    GC_CHECK_GOTO(d->scratch(g, 0, total_bytes, in->device, stream, &dst), s, done);
  if (all)
    GC_CHECK_GOTO(d->allgatherv(g, in->data, bytes.v, dst, stream), s, done);
  else
    GC_CHECK_GOTO(d->gatherv(g, in->data, bytes.v, dst, root, stream), s, done);
  if (outer > 1 && receives && !sizes) {
    /* dst holds [rank][outer][rows * inner]; out is [outer][rank][rows * inner]. */
    s = interleave(d, true, out->data, dst, bytes.v[0] / outer, outer, g->size, in->device, stream);
  } else if (outer > 1 && receives) {
    /* dst holds [rank][outer][rows_i * inner]; out is [outer][total * inner]. */
    size_t out_row = (size_t)p->total * inner, src_off = 0, dst_off = 0;
    for (int i = 0; i < g->size; i++) {
      size_t w = bytes.v[i] / outer;
      if (w)
        GC_CHECK_GOTO(d->copy2d((char *)out->data + dst_off, out_row, (char *)dst + src_off, w, w,
                                outer, in->device, stream),
                      s, done);
      src_off += bytes.v[i];
      dst_off += w;
    }
  }
done:
  rank_array_free(&bytes);
  return s;
}

/* Returns false (nothing done) when a rank's payload is over the limit. */
static bool all_gather_fused(gc_group_t *g, const gc_tensor_t *in, const int64_t *sizes,
                             gc_tensor_t *out, const gather_plan_t *p, uint64_t sig, size_t limit,
                             void *stream, const char *what, gc_status_t *st) {
  const gc_device_ops_t *d = &gc_device_host;
  int n = g->size, me = g->rank_in_group;
  size_t es = gc_dtype_size(in->dtype);
  size_t outer = span(in->shape, 0, p->dim);
  size_t inner = span(in->shape, p->dim + 1, in->ndim) * es; /* bytes per row */
  size_t bytes[GC_FUSE_MAX_RANKS];
  for (int i = 0; i < n; i++) {
    size_t rows = (size_t)(sizes ? sizes[i] : in->shape[p->dim]);
    if (inner && rows > limit / inner) return false;
    bytes[i] = outer * rows * inner;
    if (bytes[i] > limit) return false;
  }
  gc_fuse_t fu;
  gc_status_t s = gc_coord_fuse_begin(g, &fu);
  if (s != GC_OK) {
    *st = s;
    return true;
  }
  if (bytes[me]) memcpy(fu.mine + gc_fuse_off(bytes[me]), in->data, bytes[me]);
  s = gc_coord_fuse_exchange(g, &fu, sig, what);
  /* record i holds [hdr][outer][rows_i * inner]; out is [outer][total_rows * inner]. */
  size_t out_row = (size_t)p->total * inner, dst_off = 0;
  for (int i = 0; s == GC_OK && i < n; i++) {
    if (!bytes[i]) continue;
    const char *src = i == me ? (const char *)in->data : gc_fuse_payload(&fu, i, bytes[i]);
    size_t w = bytes[i] / outer;
    if (outer == 1)
      memcpy((char *)out->data + dst_off, src, w);
    else
      s = d->copy2d((char *)out->data + dst_off, out_row, src, w, w, outer, in->device, stream);
    dst_off += w;
  }
  gc_coord_fuse_end(g);
  *st = s;
  return true;
}

static gc_status_t gather_common(gc_group_t *g, const gc_tensor_t *in, int dim,
                                 const int64_t *sizes, bool all, int root, gc_tensor_t *out,
                                 void *stream, const char *what) {
  GC_CHECK(gc_group_check(g, what));
  gather_plan_t p = {0};
  uint64_t sig = 0;
  out_guard_t og = {0};
  gc_status_t local = gather_local(g, in, dim, sizes, all, root, out, &p, &sig, what);
  if (local == GC_OK && (all || root == g->rank_in_group))
    local = out_prepare(&og, out, &p.want, stream);
  size_t limit = local == GC_OK && all ? gc_coord_fuse_limit(g, p.d) : 0;
  if (limit) {
    gc_status_t s = GC_OK;
    if (all_gather_fused(g, in, sizes, out, &p, sig, limit, stream, what, &s))
      return out_finish(&og, s, stream);
  }
  gc_status_t s = gc_coord_agree(g, p.d, local, sig, what, stream);
  if (s == GC_OK) s = gather_run(g, in, sizes, all, root, out, &p, stream, what);
  return out_finish(&og, s, stream);
}

gc_status_t gc_all_gather(gc_group_t *g, const gc_tensor_t *in, int dim, gc_tensor_t *out,
                          void *stream) {
  return gather_common(g, in, dim, NULL, true, -1, out, stream, "gc_all_gather");
}

gc_status_t gc_all_gatherv(gc_group_t *g, const gc_tensor_t *in, int dim, const int64_t *sizes,
                           gc_tensor_t *out, void *stream) {
  return gather_common(g, in, dim, sizes, true, -1, out, stream, "gc_all_gatherv");
}

gc_status_t gc_gather(gc_group_t *g, const gc_tensor_t *in, int dst, int dim, gc_tensor_t *out,
                      void *stream) {
  return gather_common(g, in, dim, NULL, false, dst, out, stream, "gc_gather");
}

/* ---- reduce-scatter -------------------------------------------------------- */

typedef struct {
  const gc_device_ops_t *d;
  int dim;
  gc_tensor_t want;
} rs_plan_t;

static gc_status_t rs_local(gc_group_t *g, const gc_tensor_t *in, int dim, const int64_t *sizes,
                            const gc_tensor_t *out, rs_plan_t *p, uint64_t *sig, const char *what) {
  GC_CHECK(gc_coord_check_input(in, what));
  GC_CHECK(gc_dim_normalize(in->ndim, dim, &p->dim));
  GC_CHECK(gc_device_for(g, in->device, &p->d));
  int64_t rows = in->shape[p->dim], mine;
  if (sizes) {
    int64_t total;
    GC_CHECK(gc_coord_check_sizes(g, sizes, -1, &total, what));
    if (total != rows)
      return gc_error(GC_ERR_INVALID_ARG,
                      "%s: sizes sum to %lld but the input has %lld rows on dim %d", what,
                      (long long)total, (long long)rows, p->dim);
    mine = sizes[g->rank_in_group];
  } else {
    if (rows % g->size)
      return gc_error(GC_ERR_INVALID_ARG, "%s: %lld rows on dim %d do not divide among %d ranks",
                      what, (long long)rows, p->dim, g->size);
    mine = rows / g->size;
  }
  p->want = *in;
  p->want.shape[p->dim] = mine;
  GC_CHECK(gc_coord_check_output(out, &p->want, what));
  uint64_t h = sig_tensor_head(GC_SIG_INIT, OP_REDUCE_SCATTER, in);
  h = gc_sig_i64(sig_shape(h, in, -1), p->dim);
  *sig = sizes ? sig_sizes(gc_sig_i64(h, 1), g, sizes) : gc_sig_i64(h, 0);
  return GC_OK;
}

static gc_status_t rs_run(gc_group_t *g, const gc_tensor_t *in, const int64_t *sizes,
                          gc_tensor_t *out, const rs_plan_t *p, void *stream, const char *what) {
  const gc_device_ops_t *d = p->d;
  if (g->size == 1) return d->copy(out->data, in->data, gc_tensor_nbytes(in), in->device, stream);
  size_t es = gc_dtype_size(in->dtype);
  size_t outer = span(in->shape, 0, p->dim);
  size_t inner = span(in->shape, p->dim + 1, in->ndim); /* elements per row */
  int64_t rows = in->shape[p->dim];
  size_t total = outer * (size_t)rows * inner;
  if (total == 0) return GC_OK;
  rank_array_t counts;
  GC_CHECK(rank_array(&counts, g->size, what));
  for (int i = 0; i < g->size; i++)
    counts.v[i] = outer * (size_t)(sizes ? sizes[i] : rows / g->size) * inner;
  gc_status_t s = GC_OK;
  const void *src = in->data;
  if (outer > 1 && !sizes) {
    /* in is [outer][rank][rows / n * inner]; the backend wants [rank][outer][...]. */
    void *tmp;
    GC_CHECK_GOTO(d->scratch(g, 0, total * es, in->device, stream, &tmp), s, done);
    GC_CHECK_GOTO(interleave(d, false, tmp, in->data, counts.v[0] / outer * es, outer, g->size,
                             in->device, stream),
                  s, done);
    src = tmp;
  } else if (outer > 1) {
    /* in is [outer][rows * inner]; the backend wants [rank][outer][rows_i * inner]. */
    void *tmp;
    GC_CHECK_GOTO(d->scratch(g, 0, total * es, in->device, stream, &tmp), s, done);
    size_t in_row = (size_t)rows * inner * es, src_off = 0, dst_off = 0;
    for (int i = 0; i < g->size; i++) {
      size_t w = counts.v[i] / outer * es;
      if (w)
        GC_CHECK_GOTO(d->copy2d((char *)tmp + dst_off, w, (const char *)in->data + src_off, in_row,
                                w, outer, in->device, stream),
                      s, done);
      src_off += w;
      dst_off += counts.v[i] * es;
    }
    src = tmp;
  }
  s = d->reduce_scatterv(g, src, out->data, counts.v, in->dtype, GC_SUM, stream);
done:
  rank_array_free(&counts);
  return s;
}

/* Every rank writes its whole input (ordered by destination) into its
 * record, less its own part, and reduces its own part from every record. */
static gc_status_t rs_fused(gc_group_t *g, const gc_tensor_t *in, const int64_t *sizes,
                            gc_tensor_t *out, const rs_plan_t *p, uint64_t sig, void *stream,
                            const char *what) {
  const gc_device_ops_t *d = &gc_device_host;
  int n = g->size, me = g->rank_in_group;
  size_t es = gc_dtype_size(in->dtype);
  size_t outer = span(in->shape, 0, p->dim);
  size_t inner = span(in->shape, p->dim + 1, in->ndim); /* elements per row */
  int64_t rows = in->shape[p->dim];
  size_t total = gc_tensor_nbytes(in) / es;
  size_t counts[GC_FUSE_MAX_RANKS], my_off = 0;
  for (int i = 0; i < n; i++) {
    counts[i] = outer * (size_t)(sizes ? sizes[i] : rows / n) * inner;
    if (i < me) my_off += counts[i];
  }
  gc_fuse_t fu;
  GC_CHECK(gc_coord_fuse_begin(g, &fu));
  char *mine = fu.mine + gc_fuse_off(total * es);
  gc_status_t s = GC_OK;
  if (outer > 1) {
    /* in is [outer][rows * inner]; the record holds [rank][outer][rows_i * inner]. */
    size_t in_row = (size_t)rows * inner * es, src_off = 0, dst_off = 0;
    for (int i = 0; s == GC_OK && i < n; i++) {
      size_t w = counts[i] / outer * es;
      if (w)
        s = d->copy2d(mine + dst_off, w, (const char *)in->data + src_off, in_row, w, outer,
                      in->device, stream);
      src_off += w;
      dst_off += counts[i] * es;
    }
  } else if (total) {
    /* my own part is read from the input: only I would read it */
    if (my_off) memcpy(mine, in->data, my_off * es);
    size_t after = my_off + counts[me];
    if (after < total)
      memcpy(mine + after * es, (const char *)in->data + after * es, (total - after) * es);
  }
  if (s == GC_OK) s = gc_coord_fuse_exchange(g, &fu, sig, what);
  if (s == GC_OK && counts[me]) {
    const void *ptr[GC_FUSE_MAX_RANKS];
    for (int r = 0; r < n; r++)
      ptr[r] = r == me && outer == 1 ? (const char *)in->data + my_off * es
                                     : gc_fuse_payload(&fu, r, total * es) + my_off * es;
    gc_reduce_multi(in->dtype, GC_SUM, out->data, ptr, n, counts[me]);
  }
  gc_coord_fuse_end(g);
  return s;
}

static gc_status_t rs_common(gc_group_t *g, const gc_tensor_t *in, int dim, const int64_t *sizes,
                             gc_tensor_t *out, void *stream, const char *what) {
  GC_CHECK(gc_group_check(g, what));
  rs_plan_t p = {0};
  uint64_t sig = 0;
  out_guard_t og = {0};
  gc_status_t local = rs_local(g, in, dim, sizes, out, &p, &sig, what);
  if (local == GC_OK) local = out_prepare(&og, out, &p.want, stream);
  size_t limit = local == GC_OK ? gc_coord_fuse_limit(g, p.d) : 0;
  if (limit && gc_tensor_nbytes(in) <= limit)
    return out_finish(&og, rs_fused(g, in, sizes, out, &p, sig, stream, what), stream);
  gc_status_t s = gc_coord_agree(g, p.d, local, sig, what, stream);
  if (s == GC_OK) s = rs_run(g, in, sizes, out, &p, stream, what);
  return out_finish(&og, s, stream);
}

gc_status_t gc_reduce_scatter(gc_group_t *g, const gc_tensor_t *in, int dim, gc_tensor_t *out,
                              void *stream) {
  return rs_common(g, in, dim, NULL, out, stream, "gc_reduce_scatter");
}

gc_status_t gc_reduce_scatterv(gc_group_t *g, const gc_tensor_t *in, int dim, const int64_t *sizes,
                               gc_tensor_t *out, void *stream) {
  return rs_common(g, in, dim, sizes, out, stream, "gc_reduce_scatterv");
}

/* ---- broadcast ------------------------------------------------------------- */

static gc_status_t bcast_local(gc_group_t *g, const gc_tensor_t *t, int src,
                               const gc_device_ops_t **d, uint64_t *sig) {
  if (src < 0 || src >= g->size)
    return gc_error(GC_ERR_INVALID_ARG, "gc_broadcast: src %d is outside 0..%d", src, g->size - 1);
  if (src == g->rank_in_group)
    GC_CHECK(gc_coord_check_input(t, "gc_broadcast"));
  else
    GC_CHECK(gc_tensor_check(t, "gc_broadcast"));
  GC_CHECK(gc_device_for(g, t->device, d));
  uint64_t h = sig_shape(sig_tensor_head(GC_SIG_INIT, OP_BROADCAST, t), t, -1);
  *sig = gc_sig_i64(h, src);
  return GC_OK;
}

gc_status_t gc_broadcast(gc_group_t *g, gc_tensor_t *t, int src, void *stream) {
  GC_CHECK(gc_group_check(g, "gc_broadcast"));
  const gc_device_ops_t *d = NULL;
  uint64_t sig = 0;
  out_guard_t og = {0};
  gc_status_t local = bcast_local(g, t, src, &d, &sig);
  if (local == GC_OK && src != g->rank_in_group) local = out_prepare(&og, t, t, stream);
  gc_status_t s = gc_coord_agree(g, d, local, sig, "gc_broadcast", stream);
  size_t bytes = s == GC_OK && g->size > 1 ? gc_tensor_nbytes(t) : 0;
  if (bytes) s = d->broadcast(g, t->data, bytes, src, stream);
  return out_finish(&og, s, stream);
}

/* ---- send / recv -------------------------------------------------------------
 * A handshake over the CPU group before the data: the sender sends its
 * verdict and signature, the receiver answers with its own verdict, and
 * both go on only when everything matched. Each side always sends and
 * reads exactly one message of it, so a refused call leaves nothing
 * behind in the pair's queue. */

typedef struct {
  int32_t status;
  int32_t pad;
  uint64_t sig;
} hello_t;

static uint64_t sig_p2p(const gc_tensor_t *t) {
  return sig_shape(sig_tensor_head(GC_SIG_INIT, OP_P2P, t), t, -1);
}

static bool handshake_on(const gc_device_ops_t *d, void *stream) {
  if (!gc_coord_agree_enabled()) return false;
  return !(d && d->capturing && d->capturing(stream));
}

static gc_status_t p2p_peer(const gc_group_t *g, int peer, int dflt, const char *what, int *out) {
  int p = peer == -1 ? dflt : peer;
  if (p < 0 || p >= g->size)
    return gc_error(GC_ERR_INVALID_ARG, "%s: peer %d is outside 0..%d", what, peer, g->size - 1);
  if (p == g->rank_in_group)
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d would talk to itself", what, p);
  *out = p;
  return GC_OK;
}

gc_status_t gc_send(gc_group_t *g, const gc_tensor_t *t, int dst, void *stream) {
  GC_CHECK(gc_group_check(g, "gc_send"));
  int peer = -1;
  GC_CHECK(p2p_peer(g, dst, (g->rank_in_group + 1) % g->size, "gc_send", &peer));
  const gc_device_ops_t *d = NULL;
  gc_status_t local = gc_coord_check_input(t, "gc_send");
  if (local == GC_OK) local = gc_device_for(g, t->device, &d);
  if (handshake_on(d, stream)) {
    char msg[256] = "";
    if (local != GC_OK) snprintf(msg, sizeof msg, "%s", gc_last_error());
    hello_t mine = {.status = local, .sig = local == GC_OK ? sig_p2p(t) : 0}, ack;
    GC_CHECK(gc_cpu_send(g->cpu, &mine, sizeof mine, peer));
    GC_CHECK(gc_cpu_recv(g->cpu, &ack, sizeof ack, peer));
    if (local != GC_OK) return gc_error(local, "%s", msg);
    if (ack.status != GC_OK)
      return gc_error((gc_status_t)ack.status,
                      "gc_send: rank %d of group '%s' refused the tensor (%s)", peer, g->name,
                      gc_status_string((gc_status_t)ack.status));
  } else if (local != GC_OK) {
    return local;
  }
  size_t bytes = gc_tensor_nbytes(t);
  return bytes ? d->send(g, t->data, bytes, peer, stream) : GC_OK;
}

gc_status_t gc_recv(gc_group_t *g, gc_tensor_t *t, int src, void *stream) {
  GC_CHECK(gc_group_check(g, "gc_recv"));
  int peer = -1;
  GC_CHECK(p2p_peer(g, src, (g->rank_in_group + g->size - 1) % g->size, "gc_recv", &peer));
  const gc_device_ops_t *d = NULL;
  out_guard_t og = {0};
  gc_status_t local = gc_tensor_check(t, "gc_recv");
  if (local == GC_OK) local = gc_device_for(g, t->device, &d);
  if (local == GC_OK) local = out_prepare(&og, t, t, stream);
  gc_status_t s = local;
  if (handshake_on(d, stream)) {
    char msg[256] = "";
    if (local != GC_OK) snprintf(msg, sizeof msg, "%s", gc_last_error());
    hello_t theirs, ack;
    /* s keeps this side's verdict: the sender learns it from the ack. */
    gc_status_t got = gc_cpu_recv(g->cpu, &theirs, sizeof theirs, peer);
    if (got != GC_OK) {
      s = got;
      goto done;
    }
    if (s == GC_OK && theirs.status != GC_OK)
      s = gc_error((gc_status_t)theirs.status, "gc_recv: rank %d of group '%s' failed to send (%s)",
                   peer, g->name, gc_status_string((gc_status_t)theirs.status));
    else if (s == GC_OK && theirs.sig != sig_p2p(t))
      s = gc_error(GC_ERR_INVALID_ARG,
                   "gc_recv: rank %d of group '%s' sends a tensor whose dtype, shape or device "
                   "type differs from this one's",
                   peer, g->name);
    ack = (hello_t){.status = s};
    gc_status_t sent = gc_cpu_send(g->cpu, &ack, sizeof ack, peer);
    if (local != GC_OK)
      s = gc_error(local, "%s", msg);
    else if (s == GC_OK)
      s = sent;
  }
  if (s == GC_OK) {
    size_t bytes = gc_tensor_nbytes(t);
    if (bytes) s = d->recv(g, t->data, bytes, peer, stream);
  }
done:
  return out_finish(&og, s, stream);
}
