/* cpu.c - argument checks and generic collectives over any CPU transport. */
#include <stdlib.h>
#include <string.h>

#include "core/reduce.h"
#include "cpu/cpu.h"

static gc_status_t check_group(const gc_cpu_group_t *g, const char *what) {
  if (GC_UNLIKELY(!g || !g->ops))
    return gc_error(GC_ERR_INVALID_ARG, "%s: CPU group is NULL", what);
  return GC_OK;
}

static gc_status_t check_rank(const gc_cpu_group_t *g, int r, const char *what) {
  if (GC_UNLIKELY(r < 0 || r >= g->size))
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d is outside 0..%d", what, r, g->size - 1);
  return GC_OK;
}

static gc_status_t check_buf(const void *p, size_t len, const char *what) {
  if (GC_UNLIKELY(!p && len))
    return gc_error(GC_ERR_INVALID_ARG, "%s: buffer is NULL for %zu bytes", what, len);
  return GC_OK;
}

gc_status_t gc_cpu_barrier(gc_cpu_group_t *g) {
  GC_CHECK(check_group(g, "barrier"));
  return g->ops->barrier(g);
}

gc_status_t gc_cpu_broadcast(gc_cpu_group_t *g, void *buf, size_t len, int root) {
  GC_CHECK(check_group(g, "broadcast"));
  GC_CHECK(check_rank(g, root, "broadcast root"));
  GC_CHECK(check_buf(buf, len, "broadcast"));
  if (g->size == 1) return GC_OK;
  return g->ops->broadcast(g, buf, len, root);
}

gc_status_t gc_cpu_send(gc_cpu_group_t *g, const void *buf, size_t len, int dst) {
  GC_CHECK(check_group(g, "send"));
  GC_CHECK(check_rank(g, dst, "send destination"));
  GC_CHECK(check_buf(buf, len, "send"));
  if (dst == g->rank) return gc_error(GC_ERR_INVALID_ARG, "send: rank %d sends to itself", dst);
  return g->ops->send(g, buf, len, dst);
}

gc_status_t gc_cpu_recv(gc_cpu_group_t *g, void *buf, size_t len, int src) {
  GC_CHECK(check_group(g, "recv"));
  GC_CHECK(check_rank(g, src, "recv source"));
  GC_CHECK(check_buf(buf, len, "recv"));
  if (src == g->rank)
    return gc_error(GC_ERR_INVALID_ARG, "recv: rank %d receives from itself", src);
  return g->ops->recv(g, buf, len, src);
}

static gc_status_t sum_lens(const gc_cpu_group_t *g, const size_t *lens, size_t *total) {
  if (!lens) return gc_error(GC_ERR_INVALID_ARG, "lens is NULL");
  size_t t = 0;
  for (int i = 0; i < g->size; i++)
    if (__builtin_add_overflow(t, lens[i], &t))
      return gc_error(GC_ERR_INVALID_ARG, "sizes overflow size_t");
  *total = t;
  return GC_OK;
}

gc_status_t gc_cpu_gatherv(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv,
                           int root) {
  size_t total = 0;
  GC_CHECK(check_group(g, "gatherv"));
  GC_CHECK(check_rank(g, root, "gatherv root"));
  GC_CHECK(sum_lens(g, lens, &total));
  GC_CHECK(check_buf(send, lens[g->rank], "gatherv send"));
  if (g->rank == root) GC_CHECK(check_buf(recv, total, "gatherv recv"));
  if (g->size == 1) {
    if (lens[0] && recv != send) memmove(recv, send, lens[0]);
    return GC_OK;
  }
  return g->ops->gatherv(g, send, lens, recv, root);
}

gc_status_t gc_cpu_allgatherv(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv) {
  size_t total = 0;
  GC_CHECK(check_group(g, "allgatherv"));
  GC_CHECK(sum_lens(g, lens, &total));
  GC_CHECK(check_buf(send, lens[g->rank], "allgatherv send"));
  GC_CHECK(check_buf(recv, total, "allgatherv recv"));
  if (g->size == 1) {
    if (lens[0] && recv != send) memmove(recv, send, lens[0]);
    return GC_OK;
  }
  return g->ops->allgatherv(g, send, lens, recv);
}

gc_status_t gc_cpu_allgather(gc_cpu_group_t *g, const void *send, size_t len, void *recv) {
  size_t total = 0;
  GC_CHECK(check_group(g, "allgather"));
  if (__builtin_mul_overflow(len, (size_t)g->size, &total))
    return gc_error(GC_ERR_INVALID_ARG, "allgather: %zu bytes x %d ranks overflows", len, g->size);
  GC_CHECK(check_buf(send, len, "allgather send"));
  GC_CHECK(check_buf(recv, total, "allgather recv"));
  if (g->size == 1) {
    if (len && recv != send) memmove(recv, send, len);
    return GC_OK;
  }
  return g->ops->allgather(g, send, len, recv);
}

static gc_status_t check_reduce(gc_dtype_t dt, gc_redop_t op, const char *what) {
  if (!gc_dtype_valid(dt))
    return gc_error(GC_ERR_INVALID_ARG, "%s: dtype %d is invalid", what, (int)dt);
  if (!gc_redop_valid(op))
    return gc_error(GC_ERR_INVALID_ARG, "%s: redop %d is invalid", what, (int)op);
  return GC_OK;
}

/* Generic all-reduce: all-gather every rank's vector, reduce in rank order. */
static gc_status_t generic_allreduce(gc_cpu_group_t *g, const void *send, void *recv, size_t count,
                                     gc_dtype_t dt, gc_redop_t op) {
  size_t es = gc_dtype_size(dt), bytes = count * es, all;
  if (__builtin_mul_overflow(bytes, (size_t)g->size, &all))
    return gc_error(GC_ERR_INVALID_ARG, "allreduce: size overflows");
  char *tmp = malloc(all ? all : 1);
  if (!tmp) return gc_error(GC_ERR_NO_MEMORY, "allreduce: no memory for %zu bytes", all);
  gc_status_t s = g->ops->allgather(g, send, bytes, tmp);
  if (s == GC_OK) {
    memmove(recv, tmp, bytes);
    for (int r = 1; r < g->size; r++) gc_reduce_into(dt, op, recv, tmp + (size_t)r * bytes, count);
    gc_reduce_finish(dt, op, recv, count, g->size);
  }
  free(tmp);
  return s;
}

gc_status_t gc_cpu_allreduce(gc_cpu_group_t *g, const void *send, void *recv, size_t count,
                             gc_dtype_t dt, gc_redop_t op) {
  size_t bytes;
  GC_CHECK(check_group(g, "allreduce"));
  GC_CHECK(check_reduce(dt, op, "allreduce"));
  if (__builtin_mul_overflow(count, gc_dtype_size(dt), &bytes))
    return gc_error(GC_ERR_INVALID_ARG, "allreduce: %zu elements overflow", count);
  GC_CHECK(check_buf(send, bytes, "allreduce send"));
  GC_CHECK(check_buf(recv, bytes, "allreduce recv"));
  if (g->size == 1) {
    if (bytes && recv != send) memmove(recv, send, bytes);
    return GC_OK;
  }
  if (g->ops->allreduce) return g->ops->allreduce(g, send, recv, count, dt, op);
  return generic_allreduce(g, send, recv, count, dt, op);
}

gc_status_t gc_cpu_reduce_scatter(gc_cpu_group_t *g, const void *send, void *recv,
                                  const size_t *counts, gc_dtype_t dt, gc_redop_t op) {
  GC_CHECK(check_group(g, "reduce_scatter"));
  GC_CHECK(check_reduce(dt, op, "reduce_scatter"));
  size_t total = 0;
  GC_CHECK(sum_lens(g, counts, &total));
  size_t es = gc_dtype_size(dt), tbytes;
  if (__builtin_mul_overflow(total, es, &tbytes))
    return gc_error(GC_ERR_INVALID_ARG, "reduce_scatter: size overflows");
  GC_CHECK(check_buf(send, tbytes, "reduce_scatter send"));
  GC_CHECK(check_buf(recv, counts[g->rank] * es, "reduce_scatter recv"));
  if (g->size == 1) {
    if (tbytes && recv != send) memmove(recv, send, tbytes);
    return GC_OK;
  }
  if (g->ops->reduce_scatter) return g->ops->reduce_scatter(g, send, recv, counts, dt, op);
  /* Generic: all-reduce everything, keep this rank's part. */
  char *tmp = malloc(tbytes ? tbytes : 1);
  if (!tmp) return gc_error(GC_ERR_NO_MEMORY, "reduce_scatter: no memory for %zu bytes", tbytes);
  gc_status_t s = gc_cpu_allreduce(g, send, tmp, total, dt, op);
  if (s == GC_OK) {
    size_t off = 0;
    for (int r = 0; r < g->rank; r++) off += counts[r];
    if (counts[g->rank]) memcpy(recv, tmp + off * es, counts[g->rank] * es);
  }
  free(tmp);
  return s;
}

gc_status_t gc_cpu_subgroup(gc_cpu_group_t *parent, const int *ranks, int n, const char *tag,
                            gc_cpu_group_t **out) {
  GC_CHECK(check_group(parent, "subgroup"));
  if (!ranks || n <= 0 || !out || !tag)
    return gc_error(GC_ERR_INVALID_ARG, "subgroup: ranks, n (%d), tag or out invalid", n);
  int me = -1;
  for (int i = 0; i < n; i++) {
    GC_CHECK(check_rank(parent, ranks[i], "subgroup member"));
    for (int j = 0; j < i; j++)
      if (ranks[j] == ranks[i])
        return gc_error(GC_ERR_INVALID_ARG, "subgroup: rank %d is listed twice", ranks[i]);
    if (ranks[i] == parent->rank) me = i;
  }
  if (me < 0)
    return gc_error(GC_ERR_INVALID_ARG, "subgroup: rank %d is not a member", parent->rank);
  return parent->ops->subgroup(parent, ranks, n, tag, out);
}

void gc_cpu_destroy(gc_cpu_group_t *g) {
  if (g && g->ops) g->ops->destroy(g);
}
