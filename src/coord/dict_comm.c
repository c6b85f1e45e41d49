/*
 * dict_comm.c - moving tensor dicts: broadcast, and send/recv with the
 * all-gather slicing of vLLM's send_tensor_dict.
 *
 * Metadata (the encoding of dict_codec.c) travels over a CPU group as its
 * length then its bytes; tensor bytes over the backend of their device
 * (host tensors: the CPU group; CUDA: the device communicator), one
 * message per non-empty tensor in dict order. Receivers allocate every
 * tensor through the allocator; the new dict owns them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/dict.h"

#define META_REFUSED UINT64_MAX

enum { OP_BCAST_DICT = 201 };

/* Where a receiver puts a tensor described by the sender: its own device
 * of the same type. */
static gc_device_t local_device(const gc_group_t *g, gc_device_t sender) {
  gc_device_t d = {sender.type, 0};
  if (sender.type == GC_DEVICE_CUDA) d.index = g->local_rank;
  return d;
}

static gc_status_t check_dict_tensors(gc_group_t *g, const gc_tensor_dict_t *d, const char *what) {
  if (!d) return gc_error(GC_ERR_INVALID_ARG, "%s: dict is NULL", what);
  for (size_t i = 0; i < d->n; i++) {
    if (d->e[i].kind != GC_VALUE_TENSOR) continue;
    const gc_device_ops_t *dev;
    GC_CHECK(gc_coord_check_input(&d->e[i].v.t, what));
    GC_CHECK(gc_device_for(g, d->e[i].v.t.device, &dev));
  }
  return GC_OK;
}

/* Allocates every tensor of a decoded dict on this rank's devices. */
static gc_status_t alloc_tensors(gc_group_t *g, gc_tensor_dict_t *d, void *stream) {
  for (size_t i = 0; i < d->n; i++) {
    gc_dict_entry_t *e = &d->e[i];
    if (e->kind != GC_VALUE_TENSOR) continue;
    const gc_device_ops_t *dev;
    e->v.t.device = local_device(g, e->v.t.device);
    GC_CHECK(gc_device_for(g, e->v.t.device, &dev));
    GC_CHECK(gc_coord_alloc(&e->v.t, stream));
    e->owned = e->v.t.data != NULL;
  }
  return GC_OK;
}

/* The rank of g's rank r inside m, which must hold the same ranks. */
static gc_status_t metadata_rank(const gc_group_t *g, const gc_group_t *m, int r, int *out) {
  if (m->size != g->size)
    return gc_error(GC_ERR_INVALID_ARG,
                    "gc_broadcast_tensor_dict: metadata group '%s' has %d ranks, group '%s' %d",
                    m->name, m->size, g->name, g->size);
  for (int i = 0; i < g->size; i++) {
    bool found = false;
    for (int j = 0; j < m->size && !found; j++) found = m->ranks[j] == g->ranks[i];
    if (!found)
      return gc_error(GC_ERR_INVALID_ARG,
                      "gc_broadcast_tensor_dict: world rank %d of '%s' is not in metadata group "
                      "'%s'",
                      g->ranks[i], g->name, m->name);
  }
  for (int j = 0; j < m->size; j++)
    if (m->ranks[j] == g->ranks[r]) *out = j;
  return GC_OK;
}

gc_status_t gc_broadcast_tensor_dict(gc_group_t *g, const gc_tensor_dict_t *d, int src,
                                     gc_group_t *metadata_group, gc_tensor_dict_t **out,
                                     void *stream) {
  const char *what = "gc_broadcast_tensor_dict";
  GC_CHECK(gc_group_check(g, what));
  gc_status_t local = GC_OK;
  int msrc = src;
  gc_cpu_group_t *mcpu = g->cpu;
  if (src < 0 || src >= g->size)
    local = gc_error(GC_ERR_INVALID_ARG, "%s: src %d is outside 0..%d", what, src, g->size - 1);
  if (local == GC_OK && metadata_group) {
    local = gc_group_check(metadata_group, what);
    if (local == GC_OK) local = metadata_rank(g, metadata_group, src, &msrc);
    mcpu = metadata_group->cpu;
  }
  bool root = local == GC_OK && src == g->rank_in_group;
  void *meta = NULL;
  size_t meta_len = 0;
  if (local == GC_OK && root) local = check_dict_tensors(g, d, what);
  if (local == GC_OK && root) local = gc_dict_encode(d, NULL, &meta, &meta_len);
  if (local == GC_OK && !root && !out)
    local = gc_error(GC_ERR_INVALID_ARG, "%s: out is NULL on a receiving rank", what);
  uint64_t sig = gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_BCAST_DICT), src);
  sig = gc_sig_i64(sig, metadata_group != NULL);
  gc_status_t s = gc_coord_agree(g, NULL, local, sig, what, stream);
  if (s != GC_OK) {
    free(meta);
    return s;
  }
  if (g->size == 1) {
    free(meta);
    return GC_OK;
  }

  gc_tensor_dict_t *rd = NULL;
  uint64_t n = meta_len;
  GC_CHECK_GOTO(gc_cpu_broadcast(mcpu, &n, sizeof n, msrc), s, done);
  if (!root) {
    if (n > SIZE_MAX - 1) {
      s = gc_error(GC_ERR_NO_MEMORY, "%s: metadata of %llu bytes", what, (unsigned long long)n);
      goto done;
    }
    meta = malloc(n ? (size_t)n : 1);
    if (!meta) {
      s = gc_error(GC_ERR_NO_MEMORY, "%s: no memory for metadata", what);
      goto done;
    }
  }
  GC_CHECK_GOTO(gc_cpu_broadcast(mcpu, meta, (size_t)n, msrc), s, done);
  const gc_tensor_dict_t *sd = d;
  if (!root) {
    GC_CHECK_GOTO(gc_dict_decode(meta, (size_t)n, &rd), s, done);
    GC_CHECK_GOTO(alloc_tensors(g, rd, stream), s, done);
    sd = rd;
  }
  for (size_t i = 0; i < sd->n; i++) {
    const gc_dict_entry_t *e = &sd->e[i];
    size_t bytes = e->kind == GC_VALUE_TENSOR ? gc_tensor_nbytes(&e->v.t) : 0;
    if (!bytes) continue;
    const gc_device_ops_t *dev;
    GC_CHECK_GOTO(gc_device_for(g, e->v.t.device, &dev), s, done);
    GC_CHECK_GOTO(dev->broadcast(g, e->v.t.data, bytes, src, stream), s, done);
  }
  if (!root) {
    *out = rd;
    rd = NULL;
  }
done:
  gc_tensor_dict_free(rd);
  free(meta);
  return s;
}

/* ---- send / recv -------------------------------------------------------------- */

static gc_status_t check_overrides(const gc_ag_override_t *ov, int n, const char *what) {
  if (n < 0 || (n > 0 && !ov))
    return gc_error(GC_ERR_INVALID_ARG, "%s: %d overrides at %p", what, n, (const void *)ov);
  for (int i = 0; i < n; i++)
    if (!ov[i].key) return gc_error(GC_ERR_INVALID_ARG, "%s: overrides[%d].key is NULL", what, i);
  return GC_OK;
}

/* The slicing rule of API.md, the same on both sides. */
static gc_status_t slice_rule(const gc_group_t *ag, const gc_dict_entry_t *e,
                              const gc_ag_override_t *ov, int n_ov, bool *out, const char *what) {
  int64_t numel = gc_tensor_numel(&e->v.t);
  *out = false;
  if (!ag || numel == 0) return GC_OK;
  bool divisible = numel % ag->size == 0, use = divisible;
  for (int i = 0; i < n_ov; i++)
    if (strlen(ov[i].key) == e->key_len && !memcmp(ov[i].key, e->key, e->key_len))
      use = ov[i].use_all_gather;
  if (use && !divisible)
    return gc_error(GC_ERR_INVALID_ARG,
                    "%s: '%s' is forced to all-gather but its %lld elements do not divide among "
                    "the %d ranks of '%s'",
                    what, e->key, (long long)numel, ag->size, ag->name);
  *out = use;
  return GC_OK;
}

typedef struct {
  int32_t status;
  int32_t pad;
} ack_t;

gc_status_t gc_send_tensor_dict(gc_group_t *g, const gc_tensor_dict_t *d, int dst,
                                gc_group_t *all_gather_group, const gc_ag_override_t *overrides,
                                int n_overrides, void *stream) {
  const char *what = "gc_send_tensor_dict";
  GC_CHECK(gc_group_check(g, what));
  int peer = dst == -1 ? (g->rank_in_group + 1) % g->size : dst;
  if (peer < 0 || peer >= g->size)
    return gc_error(GC_ERR_INVALID_ARG, "%s: dst %d is outside 0..%d", what, dst, g->size - 1);
  if (peer == g->rank_in_group)
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d would send to itself", what, peer);

  gc_status_t local = check_dict_tensors(g, d, what);
  if (local == GC_OK && all_gather_group) local = gc_group_check(all_gather_group, what);
  if (local == GC_OK) local = check_overrides(overrides, n_overrides, what);
  bool *sliced = NULL;
  if (local == GC_OK) {
    sliced = calloc(d->n ? d->n : 1, sizeof *sliced);
    if (!sliced) local = gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  }
  for (size_t i = 0; local == GC_OK && i < d->n; i++)
    if (d->e[i].kind == GC_VALUE_TENSOR)
      local = slice_rule(all_gather_group, &d->e[i], overrides, n_overrides, &sliced[i], what);
  void *meta = NULL;
  size_t meta_len = 0;
  if (local == GC_OK) local = gc_dict_encode(d, sliced, &meta, &meta_len);
  gc_status_t s;
  if (local != GC_OK) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", gc_last_error());
    uint64_t refused = META_REFUSED;
    free(sliced);
    GC_CHECK(gc_cpu_send(g->cpu, &refused, sizeof refused, peer));
    return gc_error(local, "%s", msg);
  }
  uint64_t n = meta_len;
  ack_t ack;
  GC_CHECK_GOTO(gc_cpu_send(g->cpu, &n, sizeof n, peer), s, done);
  GC_CHECK_GOTO(gc_cpu_send(g->cpu, meta, meta_len, peer), s, done);
  GC_CHECK_GOTO(gc_cpu_recv(g->cpu, &ack, sizeof ack, peer), s, done);
  if (ack.status != GC_OK) {
    s = gc_error((gc_status_t)ack.status, "%s: rank %d of group '%s' refused the dict (%s)", what,
                 peer, g->name, gc_status_string((gc_status_t)ack.status));
    goto done;
  }
  for (size_t i = 0; i < d->n; i++) {
    const gc_dict_entry_t *e = &d->e[i];
    size_t bytes = e->kind == GC_VALUE_TENSOR ? gc_tensor_nbytes(&e->v.t) : 0;
    if (!bytes) continue;
    const char *p = e->v.t.data;
    if (sliced[i]) {
      bytes /= (size_t)all_gather_group->size;
      p += bytes * (size_t)all_gather_group->rank_in_group;
    }
    const gc_device_ops_t *dev;
    GC_CHECK_GOTO(gc_device_for(g, e->v.t.device, &dev), s, done);
    GC_CHECK_GOTO(dev->send(g, p, bytes, peer, stream), s, done);
  }
done:
  free(sliced);
  free(meta);
  return s;
}

/* Receives one tensor: whole, or this rank's slice then an all-gather over
 * ag into the full buffer. */
static gc_status_t recv_tensor(gc_group_t *g, gc_group_t *ag, gc_dict_entry_t *e, int peer,
                               void *stream, const char *what) {
  size_t bytes = gc_tensor_nbytes(&e->v.t);
  if (!bytes) return GC_OK;
  const gc_device_ops_t *dev;
  GC_CHECK(gc_device_for(g, e->v.t.device, &dev));
  if (!e->sliced) return dev->recv(g, e->v.t.data, bytes, peer, stream);
  size_t part = bytes / (size_t)ag->size;
  const gc_device_ops_t *agdev;
  GC_CHECK(gc_device_for(ag, e->v.t.device, &agdev));
  void *tmp;
  GC_CHECK(agdev->scratch(ag, 1, part, e->v.t.device, stream, &tmp));
  GC_CHECK(dev->recv(g, tmp, part, peer, stream));
  size_t stack[64], *parts = stack;
  if (ag->size > 64) {
    parts = malloc(sizeof *parts * (size_t)ag->size);
    if (!parts) return gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  }
  for (int i = 0; i < ag->size; i++) parts[i] = part;
  gc_status_t s = agdev->allgatherv(ag, tmp, parts, e->v.t.data, stream);
  if (parts != stack) free(parts);
  return s;
}

gc_status_t gc_recv_tensor_dict(gc_group_t *g, int src, gc_group_t *all_gather_group,
                                const gc_ag_override_t *overrides, int n_overrides,
                                gc_tensor_dict_t **out, void *stream) {
  const char *what = "gc_recv_tensor_dict";
  GC_CHECK(gc_group_check(g, what));
  int peer = src == -1 ? (g->rank_in_group + g->size - 1) % g->size : src;
  if (peer < 0 || peer >= g->size)
    return gc_error(GC_ERR_INVALID_ARG, "%s: src %d is outside 0..%d", what, src, g->size - 1);
  if (peer == g->rank_in_group)
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d would receive from itself", what, peer);

  uint64_t n;
  GC_CHECK(gc_cpu_recv(g->cpu, &n, sizeof n, peer));
  if (n == META_REFUSED)
    return gc_error(GC_ERR_INVALID_ARG, "%s: rank %d of group '%s' refused to send its dict", what,
                    peer, g->name);
  if (n > SIZE_MAX - 1)
    return gc_error(GC_ERR_NO_MEMORY, "%s: metadata of %llu bytes", what, (unsigned long long)n);
  void *meta = malloc(n ? (size_t)n : 1);
  if (!meta) return gc_error(GC_ERR_NO_MEMORY, "%s: no memory for metadata", what);
  gc_status_t s = gc_cpu_recv(g->cpu, meta, (size_t)n, peer);
  if (s != GC_OK) {
    free(meta);
    return s;
  }
  /* From here on the sender waits for our answer: every check below ends
   * in the ack, so a refusal fails both sides. */
  gc_tensor_dict_t *rd = NULL;
  gc_status_t local = out ? GC_OK : gc_error(GC_ERR_INVALID_ARG, "%s: out is NULL", what);
  if (local == GC_OK && all_gather_group) local = gc_group_check(all_gather_group, what);
  if (local == GC_OK) local = check_overrides(overrides, n_overrides, what);
  if (local == GC_OK) local = gc_dict_decode(meta, (size_t)n, &rd);
  for (size_t i = 0; local == GC_OK && i < rd->n; i++) {
    gc_dict_entry_t *e = &rd->e[i];
    bool want;
    if (e->kind != GC_VALUE_TENSOR) continue;
    local = slice_rule(all_gather_group, e, overrides, n_overrides, &want, what);
    if (local == GC_OK && want != e->sliced)
      local = gc_error(GC_ERR_INVALID_ARG,
                       "%s: '%s' is %ssliced by the sender but the receiver's all-gather group "
                       "and overrides say otherwise",
                       what, e->key, e->sliced ? "" : "not ");
  }
  if (local == GC_OK) local = alloc_tensors(g, rd, stream);
  free(meta);
  char msg[256] = "";
  if (local != GC_OK) snprintf(msg, sizeof msg, "%s", gc_last_error());
  ack_t ack = {.status = local};
  GC_CHECK_GOTO(gc_cpu_send(g->cpu, &ack, sizeof ack, peer), s, done);
  if (local != GC_OK) {
    s = gc_error(local, "%s", msg);
    goto done;
  }
  for (size_t i = 0; i < rd->n; i++)
    if (rd->e[i].kind == GC_VALUE_TENSOR)
      GC_CHECK_GOTO(recv_tensor(g, all_gather_group, &rd->e[i], peer, stream, what), s, done);
  for (size_t i = 0; i < rd->n; i++) rd->e[i].sliced = false;
  *out = rd;
  rd = NULL;
done:
  gc_tensor_dict_free(rd);
  return s;
}
