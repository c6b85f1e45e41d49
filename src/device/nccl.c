/*
 * nccl.c - the "nccl" device backend: CUDA memory, moved by a real NCCL
 * communicator per group. NCCL is reached only through the table of real
 * functions (src/nccl/gc_nccl.h) and CUDA only through the driver
 * (src/nccl/gc_cuda.h): nothing here links either.
 *
 * Mapping of the primitives:
 *   allreduce        ncclAllReduce; GC_AVG is ncclAvg for floating types and,
 *                    for integers (NCCL has no integer average), ncclSum then
 *                    a division by the group size in place, truncating
 *                    toward zero like C (a PTX kernel JIT-compiled by the
 *                    driver: nccl_avg.cu). The sum wraps in the dtype first,
 *                    as NCCL's integer sums do. fp16/bf16 reduce with NCCL's
 *                    own arithmetic (not float32 accumulation as "host" does).
 *   allgatherv       ncclAllGather when every part has the same size, else
 *                    one ncclBroadcast per rank in a group (as vLLM does).
 *   reduce_scatterv  ncclReduceScatter when equal, else one ncclReduce per
 *                    rank in a group.
 *   gatherv          ncclSend/ncclRecv in a group; the root's own part is a
 *                    device copy.
 *   memory           cuMemAllocAsync/cuMemFreeAsync on the caller's stream,
 *                    cuMemcpy2DAsync for strided copies.
 *
 * Graph capture: every primitive only enqueues work on the caller's stream.
 * The paths that might allocate (scratch growth, output allocation) first
 * ask the driver whether the stream is capturing and refuse with a message
 * instead of allocating or synchronizing; scratch then comes from what
 * gc_group_prepare_buffers made before capture.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "device/device.h"
#include "device/nccl_avg_ptx.h"
#include "device/nccl_dev.h"
#include "nccl/gc_cuda.h"
#include "nccl/gc_nccl.h"

#define NCCL_SCRATCH_SLOTS 4
#define NCCL_MAX_DEVICES 64

typedef struct {
  ncclComm_t comm;
  int device;
  void *scratch[NCCL_SCRATCH_SLOTS];
  size_t scratch_n[NCCL_SCRATCH_SLOTS];
  void *scratch_stream[NCCL_SCRATCH_SLOTS]; /* stream of the last growth */
} nccl_state_t;

#define ST(g) ((nccl_state_t *)(g)->dev_state)
#define REAL gc_nccl_real.fn

/* ---- errors ---------------------------------------------------------------- */

static GC_NOINLINE gc_status_t nccl_fail(const char *call, ncclResult_t r, ncclComm_t comm) {
  const char *text = REAL.GetErrorString ? REAL.GetErrorString(r) : "unknown";
  const char *last = comm && REAL.GetLastError ? REAL.GetLastError(comm) : NULL;
  return gc_error(GC_ERR_NCCL, "%s failed: %s (%d)%s%s", call, text ? text : "unknown", (int)r,
                  last && *last ? ": " : "", last && *last ? last : "");
}

#define NCCL_CALL(comm, name, ...)                                                            \
  do {                                                                                        \
    ncclResult_t nccl_r_ = REAL.name(__VA_ARGS__);                                            \
    if (GC_UNLIKELY(nccl_r_ != ncclSuccess)) return nccl_fail("nccl" #name, nccl_r_, (comm)); \
  } while (0)

/* ---- types ------------------------------------------------------------------ */

static ncclDataType_t nccl_type(gc_dtype_t dt) {
  switch (dt) {
    case GC_INT8:
      return ncclInt8;
    case GC_UINT8:
      return ncclUint8;
    case GC_INT32:
      return ncclInt32;
    case GC_INT64:
      return ncclInt64;
    case GC_FLOAT16:
      return ncclFloat16;
    case GC_BFLOAT16:
      return ncclBfloat16;
    case GC_FLOAT32:
      return ncclFloat32;
    case GC_FLOAT64:
      return ncclFloat64;
  }
  return ncclUint8;
}

static bool is_integer(gc_dtype_t dt) {
  return dt == GC_INT8 || dt == GC_UINT8 || dt == GC_INT32 || dt == GC_INT64;
}

static ncclRedOp_t nccl_op(gc_redop_t op, gc_dtype_t dt) {
  switch (op) {
    case GC_SUM:
      return ncclSum;
    case GC_PROD:
      return ncclProd;
    case GC_MAX:
      return ncclMax;
    case GC_MIN:
      return ncclMin;
    case GC_AVG:
      return is_integer(dt) ? ncclSum : ncclAvg;
  }
  return ncclSum;
}

/* ---- devices and the averaging kernels --------------------------------------- */

static pthread_mutex_t kernel_lock = PTHREAD_MUTEX_INITIALIZER;
static void *div_fn[NCCL_MAX_DEVICES][4]; /* s8, u8, s32, s64 */
static void *copy3d_fn[NCCL_MAX_DEVICES];
static __thread int current_device = -1;

/* Makes device's primary context current on this thread (once per change). */
static gc_status_t use_device(int device) {
  if (GC_LIKELY(current_device == device)) return GC_OK;
  GC_CHECK(gc_cuda_set_device(device));
  current_device = device;
  return GC_OK;
}

static int div_index(gc_dtype_t dt) {
  switch (dt) {
    case GC_INT8:
      return 0;
    case GC_UINT8:
      return 1;
    case GC_INT32:
      return 2;
    default:
      return 3;
  }
}

/* Loads the averaging kernels into device's context (once). Called at group
 * creation, never under capture. */
static gc_status_t load_kernels(int device) {
  static const char *names[4] = {"gc_div_s8", "gc_div_u8", "gc_div_s32", "gc_div_s64"};
  gc_status_t s = GC_OK;
  pthread_mutex_lock(&kernel_lock);
  if (!div_fn[device][0]) {
    void *mod = NULL, *fn[4];
    s = gc_cuda_module_load_data(gc_nccl_avg_ptx, &mod);
    void *c3d = NULL;
    for (int i = 0; s == GC_OK && i < 4; i++) s = gc_cuda_module_function(mod, names[i], &fn[i]);
    if (s == GC_OK) s = gc_cuda_module_function(mod, "gc_copy3d_v16", &c3d);
    if (s == GC_OK) {
      copy3d_fn[device] = c3d;
      memcpy(div_fn[device], fn, sizeof fn);
    }
  }
  pthread_mutex_unlock(&kernel_lock);
  return s;
}

gc_status_t gc_nccl_divide(void *p, size_t n, gc_dtype_t dt, long long d, int device,
                           void *stream) {
  if (n == 0 || d == 1) return GC_OK;
  if (!is_integer(dt))
    return gc_error(GC_ERR_INTERNAL, "gc_nccl_divide: %s is not an integer type",
                    gc_dtype_name(dt));
  if (device < 0 || device >= NCCL_MAX_DEVICES)
    return gc_error(GC_ERR_INVALID_ARG, "gc_nccl_divide: device %d out of range", device);
  void *fn = div_fn[device][div_index(dt)];
  if (GC_UNLIKELY(!fn)) {
    GC_CHECK(use_device(device));
    GC_CHECK(load_kernels(device));
    fn = div_fn[device][div_index(dt)];
  }
  unsigned long long count = n;
  size_t blocks = (n + 255) / 256;
  unsigned grid = blocks > 4096 ? 4096 : (unsigned)blocks;
  void *params[] = {&p, &count, &d};
  return gc_cuda_launch(fn, grid, 256, stream, params);
}

bool gc_nccl_capturing(void *stream) {
  bool c = false;
  return gc_cuda_is_capturing(stream, &c) == GC_OK && c;
}

void *gc_nccl_group_comm(const gc_group_t *g) {
  return g && g->dev == &gc_device_nccl && g->dev_state ? (void *)ST(g)->comm : NULL;
}

/* ---- lifecycle ---------------------------------------------------------------- */

typedef struct {
  int32_t status;
  int32_t pad;
  ncclUniqueId id;
} id_msg_t;

/* Every rank learns whether any rank failed: GC_OK or an error naming it
 * (this rank's own message when it failed itself). */
static gc_status_t vote(gc_group_t *g, gc_status_t local, const char *what) {
  char msg[256] = "";
  if (local != GC_OK) snprintf(msg, sizeof msg, "%s", gc_last_error());
  int32_t mine = (int32_t)local, stack[64], *all = stack;
  if (g->size > 64 && !(all = malloc(sizeof *all * (size_t)g->size)))
    return gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  gc_status_t s = gc_cpu_allgather(g->cpu, &mine, sizeof mine, all);
  if (s == GC_OK && local != GC_OK) s = gc_error(local, "%s", msg);
  for (int r = 0; s == GC_OK && r < g->size; r++)
    if (all[r] != GC_OK)
      s = gc_error((gc_status_t)all[r], "%s: rank %d of group '%s' failed (%s)", what, r, g->name,
                   gc_status_string((gc_status_t)all[r]));
  if (all != stack) free(all);
  return s;
}

/* A machine without NCCL, a driver or a GPU cannot run the backend:
 * GC_ERR_UNSUPPORTED with the reason, as for a backend not built. */
static gc_status_t unsupported_here(gc_status_t s) {
  if (s == GC_OK) return s;
  return gc_error(GC_ERR_UNSUPPORTED, "device backend \"nccl\" cannot run here: %s",
                  gc_last_error());
}

static gc_status_t prepare_local(gc_group_t *g) {
  int n = 0;
  GC_CHECK(unsupported_here(gc_nccl_ready()));
  GC_CHECK(unsupported_here(gc_nccl_require(GC_NCCL_ID_GetUniqueId)));
  GC_CHECK(unsupported_here(gc_nccl_require(GC_NCCL_ID_CommInitRankConfig)));
  GC_CHECK(unsupported_here(gc_cuda_device_count(&n)));
  if (n == 0)
    return gc_error(GC_ERR_UNSUPPORTED, "device backend \"nccl\" cannot run here: no GPU");
  if (g->local_rank < 0 || g->local_rank >= NCCL_MAX_DEVICES)
    return gc_error(GC_ERR_INVALID_ARG,
                    "group '%s': local_rank %d is not a CUDA device index (backend \"nccl\")",
                    g->name, g->local_rank);
  if (g->local_rank >= n)
    return gc_error(GC_ERR_INVALID_ARG, "group '%s': local_rank %d but this process sees %d GPUs",
                    g->name, g->local_rank, n);
  GC_CHECK(use_device(g->local_rank));
  return load_kernels(g->local_rank);
}

static gc_status_t nccl_create(gc_group_t *g, void **state) {
  GC_CHECK(vote(g, prepare_local(g), "nccl communicator"));
  id_msg_t msg;
  memset(&msg, 0, sizeof msg);
  if (g->rank_in_group == 0) {
    ncclResult_t r = REAL.GetUniqueId(&msg.id);
    if (r != ncclSuccess) msg.status = (int32_t)nccl_fail("ncclGetUniqueId", r, NULL);
  }
  GC_CHECK(gc_cpu_broadcast(g->cpu, &msg, sizeof msg, 0));
  if (msg.status != GC_OK)
    return gc_error((gc_status_t)msg.status,
                    "group '%s': rank 0 could not make the NCCL unique id (%s)", g->name,
                    gc_status_string((gc_status_t)msg.status));
  nccl_state_t *st = calloc(1, sizeof *st);
  gc_status_t local = st ? GC_OK : gc_error(GC_ERR_NO_MEMORY, "nccl backend: no memory");
  if (local == GC_OK) {
    st->device = g->local_rank;
#ifdef NCCL_CONFIG_INITIALIZER
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
#else
    ncclConfig_t cfg = {.size = sizeof(ncclConfig_t),
                        .magic = 0xcafebeef,
                        .version = GC_NCCL_VERSION_CODE(2, 28, 9),
                        .blocking = NCCL_CONFIG_UNDEF_INT,
                        .cgaClusterSize = NCCL_CONFIG_UNDEF_INT,
                        .minCTAs = NCCL_CONFIG_UNDEF_INT,
                        .maxCTAs = NCCL_CONFIG_UNDEF_INT,
                        .splitShare = NCCL_CONFIG_UNDEF_INT,
                        .trafficClass = NCCL_CONFIG_UNDEF_INT,
                        .collnetEnable = NCCL_CONFIG_UNDEF_INT,
                        .CTAPolicy = NCCL_CONFIG_UNDEF_INT,
                        .shrinkShare = NCCL_CONFIG_UNDEF_INT,
                        .nvlsCTAs = NCCL_CONFIG_UNDEF_INT,
                        .nChannelsPerNetPeer = NCCL_CONFIG_UNDEF_INT,
                        .nvlinkCentricSched = NCCL_CONFIG_UNDEF_INT};
#endif
    cfg.commName = g->name;
    ncclResult_t r = REAL.CommInitRankConfig(&st->comm, g->size, msg.id, g->rank_in_group, &cfg);
    if (r != ncclSuccess) {
      st->comm = NULL;
      local = nccl_fail("ncclCommInitRankConfig", r, NULL);
    }
  }
  gc_status_t s = vote(g, local, "ncclCommInitRankConfig");
  if (s != GC_OK) {
    /* Peers may be gone: abort rather than finalize, which would wait. */
    if (st && st->comm && REAL.CommAbort) REAL.CommAbort(st->comm);
    free(st);
    return s;
  }
  GC_INFO("group %s: NCCL communicator on device %d, rank %d of %d", g->name, st->device,
          g->rank_in_group, g->size);
  *state = st;
  return GC_OK;
}

static void nccl_destroy(gc_group_t *g, void *state) {
  nccl_state_t *st = state;
  if (!st) return;
  (void)use_device(st->device);
  for (int i = 0; i < NCCL_SCRATCH_SLOTS; i++) {
    if (!st->scratch[i]) continue;
    (void)gc_cuda_stream_synchronize(st->scratch_stream[i]);
    (void)gc_cuda_free_async(st->scratch[i], NULL);
  }
  (void)gc_cuda_stream_synchronize(NULL);
  if (REAL.CommFinalize) {
    ncclResult_t r = REAL.CommFinalize(st->comm);
    if (r != ncclSuccess) GC_WARN("group %s: ncclCommFinalize failed (%d)", g->name, (int)r);
  }
  ncclResult_t r = REAL.CommDestroy(st->comm);
  if (r != ncclSuccess) GC_WARN("group %s: ncclCommDestroy failed (%d)", g->name, (int)r);
  free(st);
}

/* ---- communication -------------------------------------------------------------- */

static gc_status_t nccl_allreduce(gc_group_t *g, const void *send, void *recv, size_t count,
                                  gc_dtype_t dt, gc_redop_t op, void *stream) {
  ncclComm_t comm = ST(g)->comm;
  NCCL_CALL(comm, AllReduce, send, recv, count, nccl_type(dt), nccl_op(op, dt), comm, stream);
  if (op == GC_AVG && is_integer(dt))
    return gc_nccl_divide(recv, count, dt, g->size, ST(g)->device, stream);
  return GC_OK;
}

static bool all_equal(const size_t *v, int n) {
  for (int i = 1; i < n; i++)
    if (v[i] != v[0]) return false;
  return true;
}

static gc_status_t nccl_allgatherv(gc_group_t *g, const void *send, const size_t *bytes, void *recv,
                                   void *stream) {
  ncclComm_t comm = ST(g)->comm;
  if (all_equal(bytes, g->size)) {
    if (bytes[0]) NCCL_CALL(comm, AllGather, send, recv, bytes[0], ncclUint8, comm, stream);
    return GC_OK;
  }
  NCCL_CALL(comm, GroupStart);
  size_t off = 0;
  ncclResult_t r = ncclSuccess;
  for (int i = 0; i < g->size && r == ncclSuccess; i++) {
    char *dst = (char *)recv + off;
    if (bytes[i])
      r = REAL.Broadcast(i == g->rank_in_group ? send : dst, dst, bytes[i], ncclUint8, i, comm,
                         stream);
    off += bytes[i];
  }
  ncclResult_t e = REAL.GroupEnd();
  if (r != ncclSuccess) return nccl_fail("ncclBroadcast", r, comm);
  if (e != ncclSuccess) return nccl_fail("ncclGroupEnd", e, comm);
  return GC_OK;
}

static gc_status_t nccl_reduce_scatterv(gc_group_t *g, const void *send, void *recv,
                                        const size_t *counts, gc_dtype_t dt, gc_redop_t op,
                                        void *stream) {
  nccl_state_t *st = ST(g);
  ncclComm_t comm = st->comm;
  ncclDataType_t t = nccl_type(dt);
  ncclRedOp_t o = nccl_op(op, dt);
  size_t mine = counts[g->rank_in_group];
  if (all_equal(counts, g->size)) {
    if (counts[0]) NCCL_CALL(comm, ReduceScatter, send, recv, counts[0], t, o, comm, stream);
  } else {
    size_t es = gc_dtype_size(dt), off = 0;
    NCCL_CALL(comm, GroupStart);
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < g->size && r == ncclSuccess; i++) {
      const char *src = (const char *)send + off * es;
      /* recvbuff matters at the root only; elsewhere NCCL ignores it. */
      if (counts[i])
        r = REAL.Reduce(src, i == g->rank_in_group ? recv : (void *)src, counts[i], t, o, i, comm,
                        stream);
      off += counts[i];
    }
    ncclResult_t e = REAL.GroupEnd();
    if (r != ncclSuccess) return nccl_fail("ncclReduce", r, comm);
    if (e != ncclSuccess) return nccl_fail("ncclGroupEnd", e, comm);
  }
  if (op == GC_AVG && is_integer(dt))
    return gc_nccl_divide(recv, mine, dt, g->size, st->device, stream);
  return GC_OK;
}

static gc_status_t nccl_broadcast(gc_group_t *g, void *buf, size_t bytes, int root, void *stream) {
  ncclComm_t comm = ST(g)->comm;
  NCCL_CALL(comm, Broadcast, buf, buf, bytes, ncclUint8, root, comm, stream);
  return GC_OK;
}

static gc_status_t nccl_send(gc_group_t *g, const void *buf, size_t bytes, int peer, void *stream) {
  ncclComm_t comm = ST(g)->comm;
  NCCL_CALL(comm, Send, buf, bytes, ncclUint8, peer, comm, stream);
  return GC_OK;
}

static gc_status_t nccl_recv(gc_group_t *g, void *buf, size_t bytes, int peer, void *stream) {
  ncclComm_t comm = ST(g)->comm;
  NCCL_CALL(comm, Recv, buf, bytes, ncclUint8, peer, comm, stream);
  return GC_OK;
}

static gc_status_t nccl_gatherv(gc_group_t *g, const void *send, const size_t *bytes, void *recv,
                                int root, void *stream) {
  ncclComm_t comm = ST(g)->comm;
  int me = g->rank_in_group;
  if (me != root) {
    if (bytes[me]) NCCL_CALL(comm, Send, send, bytes[me], ncclUint8, root, comm, stream);
    return GC_OK;
  }
  size_t off = 0;
  NCCL_CALL(comm, GroupStart);
  ncclResult_t r = ncclSuccess;
  gc_status_t s = GC_OK;
  for (int i = 0; i < g->size && r == ncclSuccess && s == GC_OK; i++) {
    char *dst = (char *)recv + off;
    if (bytes[i] && i == me)
      s = gc_cuda_memcpy_async(dst, send, bytes[i], stream);
    else if (bytes[i])
      r = REAL.Recv(dst, bytes[i], ncclUint8, i, comm, stream);
    off += bytes[i];
  }
  ncclResult_t e = REAL.GroupEnd();
  if (s != GC_OK) return s;
  if (r != ncclSuccess) return nccl_fail("ncclRecv", r, comm);
  if (e != ncclSuccess) return nccl_fail("ncclGroupEnd", e, comm);
  return GC_OK;
}

/* ---- memory ------------------------------------------------------------------------ */

static void *nccl_alloc(size_t bytes, gc_device_t dev, void *stream) {
  if (use_device(dev.index) != GC_OK) return NULL;
  if (GC_UNLIKELY(gc_nccl_capturing(stream))) {
    /* A graph allocation node would make the output the graph's, freed by
     * nobody between replays: outputs are the caller's to give under capture. */
    GC_WARN(
        "an output with data NULL cannot be allocated while stream %p is capturing a CUDA "
        "graph; allocate outputs before capture",
        stream);
    return NULL;
  }
  void *p = NULL;
  if (gc_cuda_malloc_async(bytes ? bytes : 1, stream, &p) != GC_OK) {
    GC_WARN("%s", gc_last_error());
    return NULL;
  }
  return p;
}

static void nccl_free(void *p, gc_device_t dev, void *stream) {
  if (!p) return;
  if (use_device(dev.index) != GC_OK || gc_cuda_free_async(p, stream) != GC_OK)
    GC_WARN("freeing device memory %p: %s", p, gc_last_error());
}

static gc_status_t nccl_scratch(gc_group_t *g, int slot, size_t bytes, gc_device_t dev,
                                void *stream, void **out) {
  nccl_state_t *st = ST(g);
  if (GC_UNLIKELY(slot < 0 || slot >= NCCL_SCRATCH_SLOTS))
    return gc_error(GC_ERR_INTERNAL, "nccl scratch slot %d is outside 0..%d", slot,
                    NCCL_SCRATCH_SLOTS - 1);
  if (GC_LIKELY(st->scratch_n[slot] >= bytes)) {
    *out = st->scratch[slot];
    return GC_OK;
  }
  if (gc_nccl_capturing(stream))
    return gc_error(GC_ERR_STATE,
                    "group '%s': an operation captured into a CUDA graph needs %zu bytes of "
                    "scratch (slot %d) but only %zu were prepared; call gc_group_prepare_buffers "
                    "before capture with a plan at least that large",
                    g->name, bytes, slot, st->scratch_n[slot]);
  GC_CHECK(use_device(st->device));
  size_t want = (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1); /* 2 MiB granules */
  if (st->scratch[slot]) {
    /* The old buffer may still be read on the stream it grew on. */
    if (st->scratch_stream[slot] != stream)
      GC_CHECK(gc_cuda_stream_synchronize(st->scratch_stream[slot]));
    GC_CHECK(gc_cuda_free_async(st->scratch[slot], stream));
    st->scratch[slot] = NULL;
    st->scratch_n[slot] = 0;
  }
  GC_CHECK(gc_cuda_malloc_async(want, stream, &st->scratch[slot]));
  st->scratch_n[slot] = want;
  st->scratch_stream[slot] = stream;
  *out = st->scratch[slot];
  return GC_OK;
}

/* The 16-byte-word kernel takes strided copies when every pointer, pitch
 * and width is a multiple of 16 and the words number at most 2^31: one
 * launch, one thread per word (several times cuMemcpy2DAsync's bandwidth
 * for the narrow rows of a dim-1 all-gather). Returns false when it does
 * not apply. */
static bool copy3d_kernel(void *dst, size_t d0, size_t d1, const void *src, size_t s0, size_t s1,
                          size_t width, size_t n1, size_t n0, gc_device_t dev, void *stream,
                          gc_status_t *st) {
  void *fn = (unsigned)dev.index < NCCL_MAX_DEVICES ? copy3d_fn[dev.index] : NULL;
  if (!fn || !width || !n1 || !n0) return false;
  if (((width | d0 | d1 | s0 | s1 | (uintptr_t)dst | (uintptr_t)src) & 15) != 0) return false;
  size_t w16 = width / 16, limit = (size_t)1 << 31;
  if (w16 > limit || n1 > limit / w16 || n0 > limit / (w16 * n1)) return false;
  unsigned long long a = d0 / 16, b = d1 / 16, c = s0 / 16, e = s1 / 16;
  unsigned w = (unsigned)w16, rows = (unsigned)n1, total = (unsigned)(w16 * n1 * n0);
  size_t blocks = ((size_t)total + 255) / 256;
  unsigned grid = blocks > 8192 ? 8192 : (unsigned)blocks;
  void *params[] = {&dst, &a, &b, (void *)&src, &c, &e, &w, &rows, &total};
  *st = gc_cuda_launch(fn, grid, 256, stream, params);
  return true;
}

static gc_status_t nccl_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch,
                               size_t width, size_t height, gc_device_t dev, void *stream) {
  if (width == dpitch && width == spitch)
    return gc_cuda_memcpy_async(dst, src, width * height, stream);
  gc_status_t s;
  if (copy3d_kernel(dst, 0, dpitch, src, 0, spitch, width, height, 1, dev, stream, &s)) return s;
  return gc_cuda_memcpy2d_async(dst, dpitch, src, spitch, width, height, stream);
}

static gc_status_t nccl_copy3d(void *dst, size_t d0, size_t d1, const void *src, size_t s0,
                               size_t s1, size_t width, size_t n1, size_t n0, gc_device_t dev,
                               void *stream) {
  gc_status_t s;
  if (copy3d_kernel(dst, d0, d1, src, s0, s1, width, n1, n0, dev, stream, &s)) return s;
  for (size_t i = 0; i < n0; i++)
    GC_CHECK(nccl_copy2d((char *)dst + i * d0, d1, (const char *)src + i * s0, s1, width, n1, dev,
                         stream));
  return GC_OK;
}

static gc_status_t nccl_copy(void *dst, const void *src, size_t bytes, gc_device_t dev,
                             void *stream) {
  if (dst == src) return GC_OK;
  return gc_cuda_memcpy_async(dst, src, bytes, stream);
}

static gc_status_t nccl_memset(void *dst, int value, size_t bytes, gc_device_t dev, void *stream) {
  return gc_cuda_memset_d8_async(dst, (unsigned char)value, bytes, stream);
}

static gc_status_t nccl_sync(gc_device_t dev, void *stream) {
  return gc_cuda_stream_synchronize(stream);
}

const gc_device_ops_t gc_device_nccl = {
    .name = "nccl",
    .device_type = GC_DEVICE_CUDA,
    .create = nccl_create,
    .destroy = nccl_destroy,
    .allreduce = nccl_allreduce,
    .allgatherv = nccl_allgatherv,
    .reduce_scatterv = nccl_reduce_scatterv,
    .broadcast = nccl_broadcast,
    .send = nccl_send,
    .recv = nccl_recv,
    .gatherv = nccl_gatherv,
    .alloc = nccl_alloc,
    .free = nccl_free,
    .scratch = nccl_scratch,
    .copy2d = nccl_copy2d,
    .copy3d = nccl_copy3d,
    .copy = nccl_copy,
    .memset = nccl_memset,
    .sync = nccl_sync,
    .capturing = gc_nccl_capturing,
};
