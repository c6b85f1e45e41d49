/*
 * moe.c - the MoE dispatch and combine of vLLM's AgRsAll2AllManager:
 * dispatch all-gathers every token tensor on dim 0 with the per-rank token
 * counts (gc_all_gatherv), combine reduce-scatters the expert output back
 * (gc_reduce_scatterv, sum). Both backends work, since both ops do.
 *
 * Every argument (all tensors, sizes, outputs) is checked here first and
 * one agreement round tells every rank every rank's verdict, so that a
 * call wrong on one rank fails on all of them before any data moves (the
 * inner ops would otherwise meet a rank that never came). Outputs this
 * call allocated are released again when a later tensor fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/coord.h"

enum { OP_DISPATCH = 301, OP_COMBINE };
#define MOE_MAX_TENSORS 64 /* hidden_states, router_logits and up to 62 extra */

/* Token counts: non-negative, summing without overflow; this rank's equal
 * to mine when mine >= 0. NULL: every rank holds mine. */
static gc_status_t check_sizes(const gc_group_t *g, const int64_t *sizes, int64_t mine,
                               int64_t *total, const char *what) {
  if (!sizes) {
    if (mine >= 0 && __builtin_mul_overflow(mine, (int64_t)g->size, total))
      return gc_error(GC_ERR_INVALID_ARG, "%s: %lld tokens x %d ranks overflow", what,
                      (long long)mine, g->size);
    return GC_OK;
  }
  return gc_coord_check_sizes(g, sizes, mine, total, what);
}

static uint64_t sig_tensor(uint64_t h, const gc_tensor_t *t) {
  h = gc_sig_i64(h, t->dtype);
  h = gc_sig_i64(h, t->device.type);
  h = gc_sig_i64(h, t->ndim);
  for (int i = 1; i < t->ndim; i++) h = gc_sig_i64(h, t->shape[i]);
  return h;
}

static uint64_t sig_sizes(uint64_t h, const gc_group_t *g, const int64_t *sizes, int64_t mine) {
  if (!sizes) return gc_sig_i64(gc_sig_i64(h, 0), mine);
  h = gc_sig_i64(h, 1);
  for (int i = 0; i < g->size; i++) h = gc_sig_i64(h, sizes[i]);
  return h;
}

/* A token tensor: valid, at least one dim, rows tokens on dim 0. */
static gc_status_t check_tokens(const gc_tensor_t *t, int64_t rows, const char *what) {
  if (!t) return gc_error(GC_ERR_INVALID_ARG, "%s is NULL", what);
  GC_CHECK(gc_coord_check_input(t, what));
  if (t->ndim < 1) return gc_error(GC_ERR_INVALID_ARG, "%s is a scalar (needs a token dim)", what);
  if (rows >= 0 && t->shape[0] != rows)
    return gc_error(GC_ERR_INVALID_ARG, "%s has %lld tokens (dim 0), hidden_states has %lld", what,
                    (long long)t->shape[0], (long long)rows);
  return GC_OK;
}

/* The output of gathering in: total rows on dim 0. */
static gc_status_t check_gathered(const gc_tensor_t *in, int64_t total, const gc_tensor_t *out,
                                  const char *what) {
  gc_tensor_t want = *in;
  want.shape[0] = total;
  if (gc_tensor_nbytes(&want) == (size_t)-1)
    return gc_error(GC_ERR_INVALID_ARG, "%s: output size overflows", what);
  return gc_coord_check_output(out, &want, what);
}

static gc_status_t dispatch_local(gc_group_t *g, const gc_tensor_t *hs, const gc_tensor_t *lg,
                                  const gc_tensor_t *extra, int n_extra, const int64_t *sizes,
                                  bool sp, gc_tensor_t *o_hs, gc_tensor_t *o_lg,
                                  gc_tensor_t *o_extra, const gc_device_ops_t **d, uint64_t *sig) {
  char what[64];
  GC_CHECK(check_tokens(hs, -1, "gc_dispatch: hidden_states"));
  int64_t rows = hs->shape[0], total = 0;
  GC_CHECK(gc_device_for(g, hs->device, d));
  GC_CHECK(check_tokens(lg, rows, "gc_dispatch: router_logits"));
  if (n_extra < 0 || n_extra > MOE_MAX_TENSORS - 2)
    return gc_error(GC_ERR_INVALID_ARG, "gc_dispatch: n_extra %d is outside 0..%d", n_extra,
                    MOE_MAX_TENSORS - 2);
  if (n_extra && (!extra || !o_extra))
    return gc_error(GC_ERR_INVALID_ARG, "gc_dispatch: extra or out_extra is NULL for %d tensors",
                    n_extra);
  for (int i = 0; i < n_extra; i++) {
    snprintf(what, sizeof what, "gc_dispatch: extra[%d]", i);
    GC_CHECK(check_tokens(&extra[i], rows, what));
  }
  GC_CHECK(check_sizes(g, sizes, rows, &total, "gc_dispatch"));
  GC_CHECK(check_gathered(hs, total, o_hs, "gc_dispatch: out_hidden"));
  GC_CHECK(check_gathered(lg, total, o_lg, "gc_dispatch: out_logits"));
  for (int i = 0; i < n_extra; i++) {
    snprintf(what, sizeof what, "gc_dispatch: out_extra[%d]", i);
    GC_CHECK(check_gathered(&extra[i], total, &o_extra[i], what));
  }
  uint64_t h = gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_DISPATCH), n_extra);
  h = gc_sig_i64(h, sp);
  h = sig_sizes(h, g, sizes, rows);
  h = sig_tensor(sig_tensor(h, hs), lg);
  for (int i = 0; i < n_extra; i++) h = sig_tensor(h, &extra[i]);
  *sig = h;
  return GC_OK;
}

gc_status_t gc_dispatch(gc_group_t *g, const gc_tensor_t *hidden_states,
                        const gc_tensor_t *router_logits, const gc_tensor_t *extra, int n_extra,
                        const int64_t *sizes, bool is_sequence_parallel, gc_tensor_t *out_hidden,
                        gc_tensor_t *out_logits, gc_tensor_t *out_extra, void *stream) {
  const char *what = "gc_dispatch";
  GC_CHECK(gc_group_check(g, what));
  const gc_device_ops_t *d = NULL;
  uint64_t sig = 0;
  gc_status_t local =
      dispatch_local(g, hidden_states, router_logits, extra, n_extra, sizes, is_sequence_parallel,
                     out_hidden, out_logits, out_extra, &d, &sig);
  GC_CHECK(gc_coord_agree(g, d, local, sig, what, stream));

  /* One all-gatherv per tensor; each output this call allocates is
   * remembered, so that a failure part way (the same on every rank: each
   * gather has its own agreement) leaves the caller's descriptors as they
   * were. */
  gc_tensor_t saved[MOE_MAX_TENSORS];
  gc_status_t s = GC_OK;
  int done = 0;
  for (int i = 0; i < 2 + n_extra && s == GC_OK; i++) {
    const gc_tensor_t *in = i == 0 ? hidden_states : i == 1 ? router_logits : &extra[i - 2];
    gc_tensor_t *out = i == 0 ? out_hidden : i == 1 ? out_logits : &out_extra[i - 2];
    saved[i] = *out;
    s = gc_all_gatherv(g, in, 0, sizes, out, stream);
    if (s == GC_OK) done = i + 1;
  }
  for (int i = 0; s != GC_OK && i < done; i++) {
    gc_tensor_t *out = i == 0 ? out_hidden : i == 1 ? out_logits : &out_extra[i - 2];
    if (!saved[i].data) {
      gc_coord_release(out, stream);
      *out = saved[i];
    }
  }
  return s;
}

gc_status_t gc_combine(gc_group_t *g, const gc_tensor_t *hidden_states, const int64_t *sizes,
                       bool is_sequence_parallel, gc_tensor_t *out, void *stream) {
  const char *what = "gc_combine";
  GC_CHECK(gc_group_check(g, what));
  const gc_device_ops_t *d = NULL;
  uint64_t sig = 0;
  gc_status_t local = check_tokens(hidden_states, -1, "gc_combine: hidden_states");
  if (local == GC_OK) local = gc_device_for(g, hidden_states->device, &d);
  int64_t rows = local == GC_OK ? hidden_states->shape[0] : 0, total = 0;
  if (local == GC_OK && sizes) {
    local = check_sizes(g, sizes, -1, &total, what);
    if (local == GC_OK && total != rows)
      local = gc_error(GC_ERR_INVALID_ARG,
                       "gc_combine: sizes sum to %lld but hidden_states has %lld tokens (dim 0)",
                       (long long)total, (long long)rows);
  } else if (local == GC_OK && rows % g->size) {
    local = gc_error(GC_ERR_INVALID_ARG, "gc_combine: %lld tokens do not divide among %d ranks",
                     (long long)rows, g->size);
  }
  if (local == GC_OK) {
    gc_tensor_t want = *hidden_states;
    want.shape[0] = sizes ? sizes[g->rank_in_group] : rows / g->size;
    local = gc_coord_check_output(out, &want, "gc_combine: out");
  }
  if (local == GC_OK) {
    uint64_t h = gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_COMBINE), is_sequence_parallel);
    sig = sig_tensor(sig_sizes(h, g, sizes, rows), hidden_states);
  }
  GC_CHECK(gc_coord_agree(g, d, local, sig, what, stream));
  return gc_reduce_scatterv(g, hidden_states, 0, sizes, out, stream);
}
