/*
 * commcpu.c - the CPU group of an adopted communicator whose ranks span
 * hosts (DESIGN.md "CPU groups": the fallback on the communicator itself).
 *
 * Shared memory reaches only the ranks of one host, and the preloaded shim
 * cannot count on MPI. So the few control operations the shim needs
 * (GCSHIM_CHECK's comparison, gcshim_barrier) run as the real NCCL's own
 * collectives on the communicator: the bytes sit in pinned host memory
 * that the GPU addresses directly, the calls go on a private stream, and
 * the caller polls that stream, bounded by GCSHIM_TIMEOUT and watching
 * ncclCommGetAsyncError for a failed peer. Every rank makes these calls at
 * the same point of its sequence of calls on the communicator, so NCCL's
 * rule (same collectives in the same order on every rank) holds.
 *
 * Limits, by construction: never while a stream is capturing and never
 * inside the application's ncclGroupStart/End (the call would join its
 * group) - the shim checks gc_shim_in_group() and capture first; a timeout
 * leaves the communicator with a collective some peer never joined (abort
 * it); a profiler plugin sees these calls. Without a CUDA driver (the
 * hostnccl fixture: NCCL on host memory) the memory is plain and every call
 * has completed when it returns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu.h"
#include "nccl/gc_cuda.h"
#include "shim/shim.h"

typedef struct {
  ncclComm_t comm;
  int device; /* the communicator's CUDA device; -1 without a driver */
  void *stream;
  char *buf;
  size_t cap;
  pthread_mutex_t lock; /* one control operation at a time */
} cc_t;

#define CC(g) ((cc_t *)(g)->impl)

static gc_status_t nccl_err(const char *what, ncclResult_t r) {
  const char *s = gc_nccl_real.fn.GetErrorString ? gc_nccl_real.fn.GetErrorString(r) : "?";
  return gc_error(r == ncclRemoteError || r == ncclSystemError ? GC_ERR_PEER_LOST : GC_ERR_NCCL,
                  "CPU group on the communicator: %s: %s", what, s);
}

/* Room for bytes in the pinned buffer (grown, never shrunk). */
static gc_status_t room(cc_t *c, size_t bytes) {
  if (bytes <= c->cap) return GC_OK;
  size_t want = bytes < 4096 ? 4096 : bytes;
  void *p = NULL;
  if (c->device >= 0)
    GC_CHECK(gc_cuda_host_alloc(want, &p));
  else if (!(p = malloc(want)))
    return gc_error(GC_ERR_NO_MEMORY, "CPU group on the communicator: %zu bytes", want);
  if (c->device >= 0)
    gc_cuda_host_free(c->buf);
  else
    free(c->buf);
  c->buf = p;
  c->cap = want;
  return GC_OK;
}

/* Waits for the work queued on c's stream, bounded by the group's timeout. */
static gc_status_t wait_done(gc_cpu_group_t *g, const char *what) {
  cc_t *c = CC(g);
  if (c->device < 0) return GC_OK;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned spin = 0;; spin++) {
    bool done = false;
    GC_CHECK(gc_cuda_stream_query(c->stream, &done));
    if (done) return GC_OK;
    ncclResult_t st = ncclSuccess;
    if (gc_nccl_real.fn.CommGetAsyncError(c->comm, &st) == ncclSuccess && st != ncclSuccess &&
        st != ncclInProgress)
      return gc_error(GC_ERR_PEER_LOST,
                      "CPU group on the communicator: %s: the communicator failed (%s)", what,
                      gc_nccl_real.fn.GetErrorString(st));
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9;
    if (el > g->timeout_s)
      return gc_error(GC_ERR_TIMEOUT,
                      "CPU group on the communicator: %s: not every rank joined within %.0f s "
                      "(GCSHIM_TIMEOUT); the communicator holds the unfinished call: abort it",
                      what, g->timeout_s);
    if (spin < 1000) {
      sched_yield();
    } else {
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
    }
  }
}

/* Copies in_len bytes of in to the buffer, runs fn (which queues NCCL work
 * on c->stream) with the communicator's device current, waits, and copies
 * out_len bytes from the buffer at out_off to out. */
typedef ncclResult_t (*cc_fn_t)(cc_t *c, const void *arg);
typedef struct {
  size_t bytes;
  const void *in;
  size_t in_len;
  void *out;
  size_t out_off, out_len;
} cc_io_t;

static gc_status_t run(gc_cpu_group_t *g, const cc_io_t *io, cc_fn_t fn, const void *arg,
                       const char *what) {
  cc_t *c = CC(g);
  pthread_mutex_lock(&c->lock);
  gc_status_t s = GC_OK;
  bool pushed = false;
  if (c->device >= 0) {
    s = gc_cuda_push_device(c->device);
    pushed = s == GC_OK;
    if (s == GC_OK && !c->stream) s = gc_cuda_stream_create(&c->stream);
  }
  if (s == GC_OK) s = room(c, io->bytes);
  if (s == GC_OK) {
    memcpy(c->buf, io->in, io->in_len);
    ncclResult_t r = fn(c, arg);
    s = r == ncclSuccess ? wait_done(g, what) : nccl_err(what, r);
  }
  if (s == GC_OK) memcpy(io->out, c->buf + io->out_off, io->out_len);
  if (pushed) (void)gc_cuda_pop_device();
  pthread_mutex_unlock(&c->lock);
  return s;
}

typedef struct {
  size_t len;
  int root;
} cc_arg_t;

static ncclResult_t do_allgather(cc_t *c, const void *arg) {
  size_t len = ((const cc_arg_t *)arg)->len;
  return gc_nccl_real.fn.AllGather(c->buf, c->buf + len, len, ncclUint8, c->comm, c->stream);
}

static ncclResult_t do_broadcast(cc_t *c, const void *arg) {
  const cc_arg_t *a = arg;
  return gc_nccl_real.fn.Broadcast(c->buf, c->buf, a->len, ncclUint8, a->root, c->comm, c->stream);
}

/* The buffer holds [this rank's part][every rank's part]. */
static gc_status_t cc_allgather(gc_cpu_group_t *g, const void *send, size_t len, void *recv) {
  if (len == 0) return GC_OK;
  size_t n = (size_t)g->size;
  if (len > (SIZE_MAX - 1) / (n + 1))
    return gc_error(GC_ERR_INVALID_ARG, "allgather: %zu bytes from %zu ranks overflow", len, n);
  cc_arg_t a = {len, 0};
  cc_io_t io = {len * (n + 1), send, len, recv, len, len * n};
  return run(g, &io, do_allgather, &a, "allgather");
}

static gc_status_t cc_barrier(gc_cpu_group_t *g) {
  char one = 1, *all = malloc((size_t)g->size);
  if (!all) return gc_error(GC_ERR_NO_MEMORY, "barrier: %d bytes", g->size);
  gc_status_t s = cc_allgather(g, &one, 1, all);
  free(all);
  return s;
}

static gc_status_t cc_broadcast(gc_cpu_group_t *g, void *buf, size_t len, int root) {
  if (len == 0) return GC_OK;
  cc_arg_t a = {len, root};
  cc_io_t io = {len, buf, len, buf, 0, len};
  return run(g, &io, do_broadcast, &a, "broadcast");
}

/* Unequal lengths: every rank sends the longest, then the parts are packed. */
static gc_status_t cc_allgatherv(gc_cpu_group_t *g, const void *send, const size_t *lens,
                                 void *recv) {
  size_t max = 0, n = (size_t)g->size;
  for (size_t i = 0; i < n; i++) max = lens[i] > max ? lens[i] : max;
  if (max == 0) return GC_OK;
  char *pad = calloc(1, max), *all = malloc(max * n);
  gc_status_t s = pad && all ? GC_OK : gc_error(GC_ERR_NO_MEMORY, "allgatherv: %zu bytes", max * n);
  if (s == GC_OK) {
    memcpy(pad, send, lens[g->rank]);
    s = cc_allgather(g, pad, max, all);
  }
  for (size_t i = 0, o = 0; s == GC_OK && i < n; o += lens[i], i++)
    memcpy((char *)recv + o, all + i * max, lens[i]);
  free(pad);
  free(all);
  return s;
}

static gc_status_t cc_gatherv(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv,
                              int root) {
  size_t total = 0;
  for (int i = 0; i < g->size; i++) total += lens[i];
  void *tmp = g->rank == root ? recv : malloc(total ? total : 1);
  if (!tmp) return gc_error(GC_ERR_NO_MEMORY, "gatherv: %zu bytes", total);
  gc_status_t s = cc_allgatherv(g, send, lens, tmp);
  if (tmp != recv) free(tmp);
  return s;
}

static gc_status_t cc_p2p(gc_cpu_group_t *g, const char *what) {
  (void)g;
  return gc_error(GC_ERR_UNSUPPORTED,
                  "CPU group on the communicator: %s is not offered (only collectives)", what);
}
static gc_status_t cc_send(gc_cpu_group_t *g, const void *buf, size_t len, int dst) {
  (void)buf, (void)len, (void)dst;
  return cc_p2p(g, "send");
}
static gc_status_t cc_recv(gc_cpu_group_t *g, void *buf, size_t len, int src) {
  (void)buf, (void)len, (void)src;
  return cc_p2p(g, "recv");
}
static gc_status_t cc_subgroup(gc_cpu_group_t *parent, const int *ranks, int n, const char *tag,
                               gc_cpu_group_t **out) {
  (void)ranks, (void)n, (void)tag, (void)out;
  return cc_p2p(parent, "subgroup");
}

static void cc_destroy(gc_cpu_group_t *g) {
  if (!g) return;
  cc_t *c = CC(g);
  if (c) {
    if (c->device >= 0) {
      if (c->stream && gc_cuda_push_device(c->device) == GC_OK) {
        (void)gc_cuda_stream_destroy(c->stream);
        (void)gc_cuda_pop_device();
      }
      gc_cuda_host_free(c->buf);
    } else {
      free(c->buf);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
  }
  free(g);
}

static const gc_cpu_ops_t cc_ops = {
    .name = "comm",
    .barrier = cc_barrier,
    .broadcast = cc_broadcast,
    .send = cc_send,
    .recv = cc_recv,
    .gatherv = cc_gatherv,
    .allgatherv = cc_allgatherv,
    .allgather = cc_allgather,
    .subgroup = cc_subgroup,
    .destroy = cc_destroy,
};

gc_status_t gc_shim_commcpu_create(ncclComm_t comm, int rank, int size, double timeout_s,
                                   gc_cpu_group_t **out) {
  gc_cpu_group_t *g = calloc(1, sizeof *g);
  cc_t *c = calloc(1, sizeof *c);
  if (!g || !c) {
    free(g);
    free(c);
    return gc_error(GC_ERR_NO_MEMORY, "CPU group on the communicator");
  }
  c->comm = comm;
  c->device = -1;
  int dev = -1;
  if (gc_cuda_load() == GC_OK && gc_nccl_real.fn.CommCuDevice(comm, &dev) == ncclSuccess)
    c->device = dev;
  pthread_mutex_init(&c->lock, NULL);
  *g = (gc_cpu_group_t){
      .ops = &cc_ops, .rank = rank, .size = size, .timeout_s = timeout_s, .impl = c};
  *out = g;
  return GC_OK;
}
