/*
 * host.c - the "host" device backend: host memory, moved over the group's
 * CPU group. Reductions are the CPU transport's (gc_cpu_allreduce /
 * gc_cpu_reduce_scatter, fast in shm); this file adds float32 accumulation
 * for fp16/bf16 sums, products and averages, and the memory primitives.
 *
 * Scratch buffers are per thread (grown, never shrunk, freed at thread
 * exit), so the backend keeps no per-group state and serves groups made
 * with or without use_device_communicator alike.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/reduce.h"
#include "cpu/cpu.h"
#include "device/device.h"

#define HOST_SCRATCH_SLOTS 4

typedef struct {
  void *p[HOST_SCRATCH_SLOTS];
  size_t n[HOST_SCRATCH_SLOTS];
} host_scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread host_scratch_t *scratch_tls;

static void scratch_release(void *arg) {
  host_scratch_t *s = arg;
  for (int i = 0; i < HOST_SCRATCH_SLOTS; i++) free(s->p[i]);
  free(s);
}

static void scratch_key_make(void) { (void)pthread_key_create(&scratch_key, scratch_release); }

static gc_status_t host_scratch(gc_group_t *g, int slot, size_t bytes, gc_device_t dev,
                                void *stream, void **out) {
  (void)g;
  (void)dev;
  (void)stream;
  if (slot < 0 || slot >= HOST_SCRATCH_SLOTS)
    return gc_error(GC_ERR_INTERNAL, "host scratch slot %d is outside 0..%d", slot,
                    HOST_SCRATCH_SLOTS - 1);
  host_scratch_t *s = scratch_tls;
  if (GC_UNLIKELY(!s)) {
    pthread_once(&scratch_once, scratch_key_make);
    s = calloc(1, sizeof *s);
    if (!s) return gc_error(GC_ERR_NO_MEMORY, "host scratch: no memory");
    scratch_tls = s;
    (void)pthread_setspecific(scratch_key, s);
  }
  if (s->n[slot] < bytes) {
    size_t want = bytes < 4096 ? 4096 : bytes + bytes / 4;
    void *p = malloc(want);
    if (!p) return gc_error(GC_ERR_NO_MEMORY, "host scratch: no memory for %zu bytes", want);
    free(s->p[slot]);
    s->p[slot] = p;
    s->n[slot] = want;
  }
  *out = s->p[slot];
  return GC_OK;
}

static gc_status_t host_create(gc_group_t *g, void **state) {
  (void)g;
  *state = NULL;
  return GC_OK;
}

static void host_destroy(gc_group_t *g, void *state) {
  (void)g;
  (void)state;
}

static bool is_half(gc_dtype_t dt) { return dt == GC_FLOAT16 || dt == GC_BFLOAT16; }

/* MAX and MIN are exact in any precision; the others accumulate in float32.
 * A transport whose reductions are gc_reduce_multi over every rank at once
 * (shm) does that for sums and products itself; AVG divides in float32
 * before the one rounding, so it is always widened here. */
static bool widen(const gc_group_t *g, gc_dtype_t dt, gc_redop_t op) {
  if (!is_half(dt) || g->size == 1) return false;
  return op == GC_AVG || ((op == GC_SUM || op == GC_PROD) && !g->cpu->ops->reduce_multi);
}

static gc_status_t host_allreduce(gc_group_t *g, const void *send, void *recv, size_t count,
                                  gc_dtype_t dt, gc_redop_t op, void *stream) {
  if (GC_LIKELY(!widen(g, dt, op))) return gc_cpu_allreduce(g->cpu, send, recv, count, dt, op);
  float *f;
  gc_device_t host = {GC_DEVICE_HOST, 0};
  GC_CHECK(host_scratch(g, 2, count * sizeof(float), host, stream, (void **)&f));
  gc_to_float(dt, f, send, count);
  GC_CHECK(gc_cpu_allreduce(g->cpu, f, f, count, GC_FLOAT32, op));
  gc_from_float(dt, recv, f, count);
  return GC_OK;
}

/* A rank whose part is empty may hold a NULL buffer; the transports copy
 * zero bytes from or to it, which memcpy does not allow for NULL. */
static char empty_part;

static gc_status_t host_reduce_scatterv(gc_group_t *g, const void *send, void *recv,
                                        const size_t *counts, gc_dtype_t dt, gc_redop_t op,
                                        void *stream) {
  if (!recv) recv = &empty_part;
  if (GC_LIKELY(!widen(g, dt, op)))
    return gc_cpu_reduce_scatter(g->cpu, send, recv, counts, dt, op);
  size_t total = 0;
  for (int i = 0; i < g->size; i++) total += counts[i];
  float *f, *r;
  gc_device_t host = {GC_DEVICE_HOST, 0};
  GC_CHECK(host_scratch(g, 2, total * sizeof(float), host, stream, (void **)&f));
  GC_CHECK(host_scratch(g, 3, counts[g->rank_in_group] * sizeof(float), host, stream, (void **)&r));
  gc_to_float(dt, f, send, total);
  GC_CHECK(gc_cpu_reduce_scatter(g->cpu, f, r, counts, GC_FLOAT32, op));
  gc_from_float(dt, recv, r, counts[g->rank_in_group]);
  return GC_OK;
}

static gc_status_t host_allgatherv(gc_group_t *g, const void *send, const size_t *bytes, void *recv,
                                   void *stream) {
  (void)stream;
  if (!send) send = &empty_part;
  bool equal = true;
  for (int i = 1; i < g->size && equal; i++) equal = bytes[i] == bytes[0];
  if (equal) return gc_cpu_allgather(g->cpu, send, bytes[0], recv);
  return gc_cpu_allgatherv(g->cpu, send, bytes, recv);
}

static gc_status_t host_broadcast(gc_group_t *g, void *buf, size_t bytes, int root, void *stream) {
  (void)stream;
  return gc_cpu_broadcast(g->cpu, buf, bytes, root);
}

static gc_status_t host_send(gc_group_t *g, const void *buf, size_t bytes, int peer, void *stream) {
  (void)stream;
  return gc_cpu_send(g->cpu, buf, bytes, peer);
}

static gc_status_t host_recv(gc_group_t *g, void *buf, size_t bytes, int peer, void *stream) {
  (void)stream;
  return gc_cpu_recv(g->cpu, buf, bytes, peer);
}

static gc_status_t host_gatherv(gc_group_t *g, const void *send, const size_t *bytes, void *recv,
                                int root, void *stream) {
  (void)stream;
  if (!send) send = &empty_part;
  return gc_cpu_gatherv(g->cpu, send, bytes, recv, root);
}

static void *host_alloc(size_t bytes, gc_device_t dev, void *stream) {
  (void)dev;
  (void)stream;
  return malloc(bytes ? bytes : 1);
}

static void host_free(void *p, gc_device_t dev, void *stream) {
  (void)dev;
  (void)stream;
  free(p);
}

static gc_status_t host_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch,
                               size_t width, size_t height, gc_device_t dev, void *stream) {
  (void)dev;
  (void)stream;
  if (width == dpitch && width == spitch) {
    if (width && height) memcpy(dst, src, width * height);
    return GC_OK;
  }
  char *d = dst;
  const char *s = src;
  for (size_t i = 0; i < height; i++, d += dpitch, s += spitch) memcpy(d, s, width);
  return GC_OK;
}

static gc_status_t host_copy(void *dst, const void *src, size_t bytes, gc_device_t dev,
                             void *stream) {
  (void)dev;
  (void)stream;
  if (bytes && dst != src) memmove(dst, src, bytes);
  return GC_OK;
}

static gc_status_t host_memset(void *dst, int value, size_t bytes, gc_device_t dev, void *stream) {
  (void)dev;
  (void)stream;
  if (bytes) memset(dst, value, bytes);
  return GC_OK;
}

static gc_status_t host_sync(gc_device_t dev, void *stream) {
  (void)dev;
  (void)stream;
  return GC_OK;
}

const gc_device_ops_t gc_device_host = {
    .name = "host",
    .device_type = GC_DEVICE_HOST,
    .create = host_create,
    .destroy = host_destroy,
    .allreduce = host_allreduce,
    .allgatherv = host_allgatherv,
    .reduce_scatterv = host_reduce_scatterv,
    .broadcast = host_broadcast,
    .send = host_send,
    .recv = host_recv,
    .gatherv = host_gatherv,
    .alloc = host_alloc,
    .free = host_free,
    .scratch = host_scratch,
    .copy2d = host_copy2d,
    .copy = host_copy,
    .memset = host_memset,
    .sync = host_sync,
    .capturing = NULL,
};
