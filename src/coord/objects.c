/*
 * objects.c - byte strings between the ranks of a group, over its CPU
 * group: broadcast (one or a list) and point to point. Every transfer is
 * its length first, then the bytes; a length of GC_OBJ_REFUSED tells the
 * receivers that the sender's own arguments were wrong, so they fail with
 * it instead of waiting. Collective calls start with the agreement round.
 * Received buffers are malloc'd; the caller frees them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/coord.h"

#define GC_OBJ_REFUSED UINT64_MAX

enum { OP_BCAST_OBJECT = 101, OP_BCAST_OBJECT_LIST };

static gc_status_t check_root(const gc_group_t *g, int src, const char *what) {
  if (src < 0 || src >= g->size)
    return gc_error(GC_ERR_INVALID_ARG, "%s: src %d is outside 0..%d", what, src, g->size - 1);
  return GC_OK;
}

/* Through the group's message-queue broadcaster (vLLM: src must be 0): the
 * writer enqueues and goes on, each reader dequeues; no agreement round,
 * so that the writer never waits for the readers. A reader's wrong
 * arguments fail there alone and leave the message queued for its next
 * call. */
static gc_status_t bcast_object_mq(gc_group_t *g, const void *buf, size_t len, int src, void **out,
                                   size_t *out_len, const char *what) {
  if (src != 0)
    return gc_error(GC_ERR_INVALID_ARG,
                    "%s: group '%s' broadcasts objects through its message queue: src must be 0, "
                    "not %d",
                    what, g->name, src);
  double t = g->cpu->timeout_s;
  if (g->rank_in_group == 0) {
    if (!buf && len)
      return gc_error(GC_ERR_INVALID_ARG, "%s: buf is NULL for %zu bytes", what, len);
    return gc_mq_enqueue(g->mq, buf, len, t);
  }
  if (!out || !out_len)
    return gc_error(GC_ERR_INVALID_ARG, "%s: out or out_len is NULL on a receiving rank", what);
  return gc_mq_dequeue(g->mq, out, out_len, t);
}

gc_status_t gc_broadcast_object(gc_group_t *g, const void *buf, size_t len, int src, void **out,
                                size_t *out_len) {
  const char *what = "gc_broadcast_object";
  GC_CHECK(gc_group_check(g, what));
  if (g->mq) return bcast_object_mq(g, buf, len, src, out, out_len, what);
  gc_status_t local = check_root(g, src, what);
  bool root = local == GC_OK && src == g->rank_in_group;
  if (local == GC_OK && root && !buf && len)
    local = gc_error(GC_ERR_INVALID_ARG, "%s: buf is NULL for %zu bytes", what, len);
  if (local == GC_OK && !root && (!out || !out_len))
    local = gc_error(GC_ERR_INVALID_ARG, "%s: out or out_len is NULL on a receiving rank", what);
  uint64_t sig = gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_BCAST_OBJECT), src);
  GC_CHECK(gc_coord_agree(g, NULL, local, sig, what, NULL));
  uint64_t n = len;
  GC_CHECK(gc_cpu_broadcast(g->cpu, &n, sizeof n, src));
  if (root) return gc_cpu_broadcast(g->cpu, (void *)buf, len, src);
  if (n > SIZE_MAX - 1)
    return gc_error(GC_ERR_NO_MEMORY, "%s: %llu bytes", what, (unsigned long long)n);
  void *p = malloc(n ? (size_t)n : 1);
  if (!p)
    return gc_error(GC_ERR_NO_MEMORY, "%s: no memory for %llu bytes", what, (unsigned long long)n);
  gc_status_t s = gc_cpu_broadcast(g->cpu, p, (size_t)n, src);
  if (s != GC_OK) {
    free(p);
    return s;
  }
  *out = p;
  *out_len = (size_t)n;
  return GC_OK;
}

gc_status_t gc_broadcast_object_list(gc_group_t *g, const void *const *bufs, const size_t *lens,
                                     int n, int src, void ***out, size_t **out_lens) {
  const char *what = "gc_broadcast_object_list";
  GC_CHECK(gc_group_check(g, what));
  gc_status_t local = check_root(g, src, what);
  if (local == GC_OK && n < 0) local = gc_error(GC_ERR_INVALID_ARG, "%s: n is %d", what, n);
  bool root = local == GC_OK && src == g->rank_in_group;
  size_t total = 0;
  if (local == GC_OK && root && n > 0 && (!bufs || !lens))
    local = gc_error(GC_ERR_INVALID_ARG, "%s: bufs or lens is NULL", what);
  for (int i = 0; local == GC_OK && root && i < n; i++) {
    if (!bufs[i] && lens[i])
      local = gc_error(GC_ERR_INVALID_ARG, "%s: bufs[%d] is NULL for %zu bytes", what, i, lens[i]);
    else if (__builtin_add_overflow(total, lens[i], &total))
      local = gc_error(GC_ERR_INVALID_ARG, "%s: lengths overflow", what);
  }
  if (local == GC_OK && !root && (!out || !out_lens))
    local = gc_error(GC_ERR_INVALID_ARG, "%s: out or out_lens is NULL on a receiving rank", what);
  uint64_t sig = gc_sig_i64(gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_BCAST_OBJECT_LIST), src), n);
  GC_CHECK(gc_coord_agree(g, NULL, local, sig, what, NULL));

  /* Lengths (one u64 each), then every object packed in one broadcast. */
  uint64_t *l = malloc(sizeof *l * (size_t)(n ? n : 1));
  char *pack = NULL;
  void **objs = NULL;
  size_t *olens = NULL;
  gc_status_t s = GC_OK;
  if (!l) return gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  if (root)
    for (int i = 0; i < n; i++) l[i] = lens[i];
  GC_CHECK_GOTO(gc_cpu_broadcast(g->cpu, l, sizeof *l * (size_t)n, src), s, done);
  total = 0;
  for (int i = 0; i < n; i++)
    if (l[i] > SIZE_MAX || __builtin_add_overflow(total, (size_t)l[i], &total)) {
      s = gc_error(GC_ERR_INVALID_ARG, "%s: lengths overflow", what);
      goto done;
    }
  pack = malloc(total ? total : 1);
  if (!pack) {
    s = gc_error(GC_ERR_NO_MEMORY, "%s: no memory for %zu bytes", what, total);
    goto done;
  }
  size_t off = 0;
  for (int i = 0; root && i < n; i++) {
    if (lens[i]) memcpy(pack + off, bufs[i], lens[i]);
    off += lens[i];
  }
  GC_CHECK_GOTO(gc_cpu_broadcast(g->cpu, pack, total, src), s, done);
  if (root) goto done;
  objs = calloc((size_t)(n ? n : 1), sizeof *objs);
  olens = malloc(sizeof *olens * (size_t)(n ? n : 1));
  if (!objs || !olens) {
    s = gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
    goto done;
  }
  off = 0;
  for (int i = 0; i < n; i++) {
    objs[i] = malloc(l[i] ? (size_t)l[i] : 1);
    if (!objs[i]) {
      s = gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
      goto done;
    }
    if (l[i]) memcpy(objs[i], pack + off, (size_t)l[i]);
    olens[i] = (size_t)l[i];
    off += (size_t)l[i];
  }
  *out = objs;
  *out_lens = olens;
  objs = NULL;
  olens = NULL;
done:
  if (objs)
    for (int i = 0; i < n; i++) free(objs[i]);
  free(objs);
  free(olens);
  free(pack);
  free(l);
  return s;
}

static gc_status_t check_peer(const gc_group_t *g, int peer, const char *what) {
  if (peer < 0 || peer >= g->size)
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d is outside 0..%d", what, peer, g->size - 1);
  if (peer == g->rank_in_group)
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d would talk to itself", what, peer);
  return GC_OK;
}

gc_status_t gc_send_object(gc_group_t *g, const void *buf, size_t len, int dst) {
  GC_CHECK(gc_group_check(g, "gc_send_object"));
  GC_CHECK(check_peer(g, dst, "gc_send_object"));
  if (!buf && len) {
    gc_status_t s = gc_error(GC_ERR_INVALID_ARG, "gc_send_object: buf is NULL for %zu bytes", len);
    uint64_t refused = GC_OBJ_REFUSED;
    GC_CHECK(gc_cpu_send(g->cpu, &refused, sizeof refused, dst));
    return s;
  }
  uint64_t n = len;
  GC_CHECK(gc_cpu_send(g->cpu, &n, sizeof n, dst));
  return len ? gc_cpu_send(g->cpu, buf, len, dst) : GC_OK;
}

gc_status_t gc_recv_object(gc_group_t *g, int src, void **out, size_t *out_len) {
  GC_CHECK(gc_group_check(g, "gc_recv_object"));
  GC_CHECK(check_peer(g, src, "gc_recv_object"));
  uint64_t n;
  GC_CHECK(gc_cpu_recv(g->cpu, &n, sizeof n, src));
  if (n == GC_OBJ_REFUSED)
    return gc_error(GC_ERR_INVALID_ARG, "gc_recv_object: rank %d of group '%s' refused to send",
                    src, g->name);
  if (n > SIZE_MAX - 1)
    return gc_error(GC_ERR_NO_MEMORY, "gc_recv_object: %llu bytes", (unsigned long long)n);
  void *p = malloc(n ? (size_t)n : 1);
  if (!p)
    return gc_error(GC_ERR_NO_MEMORY, "gc_recv_object: no memory for %llu bytes",
                    (unsigned long long)n);
  gc_status_t s = n ? gc_cpu_recv(g->cpu, p, (size_t)n, src) : GC_OK;
  /* Bad out pointers are found after the bytes were taken, so the
   * sender is never left waiting. */
  if (s == GC_OK && (!out || !out_len))
    s = gc_error(GC_ERR_INVALID_ARG, "gc_recv_object: out or out_len is NULL");
  if (s != GC_OK) {
    free(p);
    return s;
  }
  *out = p;
  *out_len = (size_t)n;
  return GC_OK;
}
