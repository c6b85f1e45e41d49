/*
 * agree.c - checks shared by every operation, and the agreement round that
 * makes a wrong call fail on every rank instead of hanging the others.
 *
 * Each collective first checks its arguments on this rank alone and folds
 * what must be equal across ranks (op, dtype, device type, shapes, dim,
 * sizes, root, ...) into a 64-bit signature. Then one all-gather of 16 bytes
 * per rank over the CPU group tells every rank every rank's verdict and
 * signature, and all return the same error before any data moves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/coord.h"
#include "core/params.h"

gc_status_t gc_coord_check_input(const gc_tensor_t *t, const char *what) {
  GC_CHECK(gc_tensor_check(t, what));
  if (!t->data && gc_tensor_numel(t) > 0)
    return gc_error(GC_ERR_INVALID_ARG, "%s: data is NULL for %lld elements", what,
                    (long long)gc_tensor_numel(t));
  return GC_OK;
}

static void shape_str(const gc_tensor_t *t, char *buf, size_t n) {
  size_t o = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->ndim && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (o < n) snprintf(buf + o, n - o, "]");
}

gc_status_t gc_coord_check_output(const gc_tensor_t *out, const gc_tensor_t *want,
                                  const char *what) {
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "%s: output tensor is NULL", what);
  if (!out->data) return GC_OK;
  if (out->dtype != want->dtype)
    return gc_error(GC_ERR_INVALID_ARG, "%s: output dtype is %s, expected %s", what,
                    gc_dtype_name(out->dtype), gc_dtype_name(want->dtype));
  bool same = out->ndim == want->ndim;
  for (int i = 0; same && i < want->ndim; i++) same = out->shape[i] == want->shape[i];
  if (!same) {
    char a[160], b[160];
    if (out->ndim < 0 || out->ndim > GC_MAX_DIMS)
      snprintf(a, sizeof a, "of %d dims", out->ndim);
    else
      shape_str(out, a, sizeof a);
    shape_str(want, b, sizeof b);
    return gc_error(GC_ERR_INVALID_ARG, "%s: output shape is %s, expected %s", what, a, b);
  }
  if (out->device.type != want->device.type || out->device.index != want->device.index)
    return gc_error(GC_ERR_INVALID_ARG, "%s: output is on device %d:%d, expected %d:%d", what,
                    (int)out->device.type, out->device.index, (int)want->device.type,
                    want->device.index);
  return GC_OK;
}

void gc_coord_shape_output(gc_tensor_t *out, const gc_tensor_t *want) {
  out->dtype = want->dtype;
  out->ndim = want->ndim;
  memcpy(out->shape, want->shape, sizeof out->shape);
  out->device = want->device;
  out->data = NULL;
}

bool gc_coord_agree_enabled(void) { return gc_param_check_api(); }

#define VOTES_ON_STACK 64

gc_status_t gc_coord_verdict(gc_group_t *g, gc_status_t local, const char *msg,
                             const void *const *votes, int mode, const char *what) {
#define VOTE(r) ((const gc_vote_t *)votes[r])
  gc_status_t s = GC_OK;
  if (local != GC_OK) s = gc_error(local, "%s", msg);
  for (int r = 0; s == GC_OK && r < g->size; r++)
    if (VOTE(r)->status != GC_OK)
      s = gc_error((gc_status_t)VOTE(r)->status, "%s: rank %d of group '%s' rejected the call (%s)",
                   what, r, g->name, gc_status_string((gc_status_t)VOTE(r)->status));
  for (int r = 1; s == GC_OK && r < g->size; r++)
    if (VOTE(r)->sig != VOTE(0)->sig)
      s = gc_error(GC_ERR_INVALID_ARG,
                   "%s: rank %d of group '%s' passed arguments (dtype, shape, dim, sizes, root "
                   "or op) that differ from rank 0's",
                   what, r, g->name);
  for (int r = 0; s == GC_OK && r < g->size; r++)
    if (VOTE(r)->mode != mode)
      s = gc_error(GC_ERR_INVALID_ARG,
                   "%s: rank %d of group '%s' %s the agreement into the data round and this rank "
                   "did not (is GCSHIM_FUSE_MAX the same on every rank?)",
                   what, r, g->name, VOTE(r)->mode ? "fused" : "did not fuse");
#undef VOTE
  return s;
}

gc_status_t gc_coord_agree(gc_group_t *g, const gc_device_ops_t *dev, gc_status_t local,
                           uint64_t sig, const char *what, void *stream) {
  if (g->size == 1 || !gc_coord_agree_enabled()) return local;
  if (dev && dev->capturing && dev->capturing(stream)) return local;
  char msg[256] = "";
  if (local != GC_OK) snprintf(msg, sizeof msg, "%s", gc_last_error());
  gc_vote_t stack[VOTES_ON_STACK], *all = stack;
  const void *pstack[VOTES_ON_STACK], **ptr = pstack;
  if (g->size > VOTES_ON_STACK) {
    all = malloc(sizeof *all * (size_t)g->size);
    ptr = malloc(sizeof *ptr * (size_t)g->size);
    if (!all || !ptr) {
      if (all != stack) free(all);
      if (ptr != pstack) free(ptr);
      return gc_error(GC_ERR_NO_MEMORY, "%s: no memory for the agreement round", what);
    }
  }
  gc_vote_t mine = {.status = (int32_t)local, .mode = 0, .sig = sig};
  gc_status_t s = gc_cpu_allgather(g->cpu, &mine, sizeof mine, all);
  for (int r = 0; r < g->size; r++) ptr[r] = &all[r];
  if (s == GC_OK) s = gc_coord_verdict(g, local, msg, ptr, 0, what);
  if (all != stack) free(all);
  if (ptr != pstack) free(ptr);
  return s;
}

/* ---- the fused round ------------------------------------------------------- */

size_t gc_coord_fuse_max(void) { return (size_t)gc_param_GCSHIM_FUSE_MAX(); }

size_t gc_coord_fuse_limit(const gc_group_t *g, const gc_device_ops_t *d) {
  if (d != &gc_device_host || g->size < 2 || g->size > GC_FUSE_MAX_RANKS ||
      g->cpu->round_cap <= GC_FUSE_BULK || !gc_coord_agree_enabled())
    return 0;
  size_t cap = (g->cpu->round_cap - GC_FUSE_BULK) / 16 * 16, m = gc_coord_fuse_max();
  return m < cap ? m : cap;
}

size_t gc_coord_fuse_reduce_limit(const gc_group_t *g, const gc_device_ops_t *d) {
  size_t m = gc_coord_fuse_limit(g, d);
  return m < GC_FUSE_REDUCE_MAX ? m : GC_FUSE_REDUCE_MAX;
}

gc_status_t gc_coord_fuse_begin(gc_group_t *g, gc_fuse_t *f) {
  void *p;
  GC_CHECK(g->cpu->ops->round_begin(g->cpu, &p));
  f->mine = p;
  return GC_OK;
}

gc_status_t gc_coord_fuse_exchange(gc_group_t *g, gc_fuse_t *f, uint64_t sig, const char *what) {
  memcpy(f->mine, &(gc_vote_t){.status = GC_OK, .mode = 1, .sig = sig}, sizeof(gc_vote_t));
  GC_CHECK(g->cpu->ops->round_exchange(g->cpu, f->all));
  return gc_coord_verdict(g, GC_OK, "", f->all, 1, what);
}

void gc_coord_fuse_end(gc_group_t *g) { g->cpu->ops->round_end(g->cpu); }
