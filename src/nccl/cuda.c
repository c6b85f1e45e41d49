/* cuda.c - the CUDA driver through dlopen("libcuda.so.1"). */
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nccl/gc_cuda.h"

/* The driver's types as the ABI has them (cuda.h is not needed to build). */
typedef int gc_cu_result_t; /* CUresult; 0 is CUDA_SUCCESS */
typedef unsigned long long gc_cu_deviceptr_t;
typedef struct {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void *srcHost;
  gc_cu_deviceptr_t srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void *dstHost;
  gc_cu_deviceptr_t dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
} gc_cu_memcpy2d_t; /* CUDA_MEMCPY2D (v2) */
enum { GC_CU_MEMORYTYPE_UNIFIED = 4, GC_CU_EVENT_DISABLE_TIMING = 2 };

#ifdef GC_HAVE_CUDA_H
#include <cuda.h>
#include <stddef.h>
_Static_assert(sizeof(gc_cu_memcpy2d_t) == sizeof(CUDA_MEMCPY2D), "CUDA_MEMCPY2D layout");
_Static_assert(offsetof(gc_cu_memcpy2d_t, dstDevice) == offsetof(CUDA_MEMCPY2D, dstDevice),
               "CUDA_MEMCPY2D layout");
_Static_assert(offsetof(gc_cu_memcpy2d_t, Height) == offsetof(CUDA_MEMCPY2D, Height),
               "CUDA_MEMCPY2D layout");
_Static_assert((int)GC_CU_MEMORYTYPE_UNIFIED == (int)CU_MEMORYTYPE_UNIFIED, "CUmemorytype");
_Static_assert((int)GC_CU_EVENT_DISABLE_TIMING == (int)CU_EVENT_DISABLE_TIMING, "CUevent_flags");
#endif

/* GC_CU(field, symbol, required, return-less params): the driver entry points
 * used, by their exported (versioned) symbol names. */
#define GC_CU_SYMBOLS                                                                            \
  GC_CU(Init, "cuInit", 1, (unsigned flags))                                                     \
  GC_CU(DriverGetVersion, "cuDriverGetVersion", 1, (int *v))                                     \
  GC_CU(GetErrorString, "cuGetErrorString", 1, (gc_cu_result_t e, const char **s))               \
  GC_CU(GetErrorName, "cuGetErrorName", 1, (gc_cu_result_t e, const char **s))                   \
  GC_CU(DeviceGetCount, "cuDeviceGetCount", 1, (int *n))                                         \
  GC_CU(DeviceGet, "cuDeviceGet", 1, (int *dev, int ordinal))                                    \
  GC_CU(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", 1, (void **ctx, int dev))            \
  GC_CU(CtxSetCurrent, "cuCtxSetCurrent", 1, (void *ctx))                                        \
  GC_CU(CtxGetDevice, "cuCtxGetDevice", 1, (int *dev))                                           \
  GC_CU(StreamIsCapturing, "cuStreamIsCapturing", 1, (void *s, int *status))                     \
  GC_CU(StreamGetCaptureInfo3, "cuStreamGetCaptureInfo_v3", 0,                                   \
        (void *s, int *status, unsigned long long *id, void **graph, const void **deps,          \
         const void **edges, size_t *ndeps))                                                     \
  GC_CU(StreamGetCaptureInfo2, "cuStreamGetCaptureInfo_v2", 0,                                   \
        (void *s, int *status, unsigned long long *id, void **graph, const void **deps,          \
         size_t *ndeps))                                                                         \
  GC_CU(StreamGetCaptureInfo1, "cuStreamGetCaptureInfo", 0,                                      \
        (void *s, int *status, unsigned long long *id))                                          \
  GC_CU(StreamSynchronize, "cuStreamSynchronize", 1, (void *s))                                  \
  GC_CU(EventCreate, "cuEventCreate", 1, (void **ev, unsigned flags))                            \
  GC_CU(EventDestroy, "cuEventDestroy_v2", 1, (void *ev))                                        \
  GC_CU(EventRecord, "cuEventRecord", 1, (void *ev, void *s))                                    \
  GC_CU(EventSynchronize, "cuEventSynchronize", 1, (void *ev))                                   \
  GC_CU(EventElapsedTime, "cuEventElapsedTime_v2", 0, (float *ms, void *a, void *b))             \
  GC_CU(EventElapsedTime1, "cuEventElapsedTime", 1, (float *ms, void *a, void *b))               \
  GC_CU(MemcpyAsync, "cuMemcpyAsync", 1,                                                         \
        (gc_cu_deviceptr_t dst, gc_cu_deviceptr_t src, size_t n, void *s))                       \
  GC_CU(Memcpy2DAsync, "cuMemcpy2DAsync_v2", 1, (const gc_cu_memcpy2d_t *p, void *s))            \
  GC_CU(MemsetD8Async, "cuMemsetD8Async", 1,                                                     \
        (gc_cu_deviceptr_t dst, unsigned char v, size_t n, void *s))                             \
  GC_CU(MemAllocAsync, "cuMemAllocAsync", 0, (gc_cu_deviceptr_t * p, size_t n, void *s))         \
  GC_CU(MemFreeAsync, "cuMemFreeAsync", 0, (gc_cu_deviceptr_t p, void *s))                       \
  GC_CU(StreamCreate, "cuStreamCreate", 0, (void **s, unsigned flags))                           \
  GC_CU(StreamDestroy, "cuStreamDestroy_v2", 0, (void *s))                                       \
  GC_CU(StreamBeginCapture, "cuStreamBeginCapture_v2", 0, (void *s, int mode))                   \
  GC_CU(StreamEndCapture, "cuStreamEndCapture", 0, (void *s, void **graph))                      \
  GC_CU(GraphInstantiate, "cuGraphInstantiateWithFlags", 0,                                      \
        (void **exec, void *graph, unsigned long long flags))                                    \
  GC_CU(GraphLaunch, "cuGraphLaunch", 0, (void *exec, void *s))                                  \
  GC_CU(GraphExecDestroy, "cuGraphExecDestroy", 0, (void *exec))                                 \
  GC_CU(GraphDestroy, "cuGraphDestroy", 0, (void *graph))                                        \
  GC_CU(ModuleLoadData, "cuModuleLoadData", 0, (void **mod, const void *image))                  \
  GC_CU(ModuleGetFunction, "cuModuleGetFunction", 0, (void **fn, void *mod, const char *name))   \
  GC_CU(LaunchKernel, "cuLaunchKernel", 0,                                                       \
        (void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, \
         unsigned shmem, void *s, void **params, void **extra))                                  \
  GC_CU(DeviceGetAttribute, "cuDeviceGetAttribute", 0, (int *v, int attr, int dev))              \
  GC_CU(CtxPushCurrent, "cuCtxPushCurrent_v2", 0, (void *ctx))                                   \
  GC_CU(CtxPopCurrent, "cuCtxPopCurrent_v2", 0, (void **ctx))                                    \
  GC_CU(MemHostAlloc, "cuMemHostAlloc", 0, (void **p, size_t n, unsigned flags))                 \
  GC_CU(MemFreeHost, "cuMemFreeHost", 0, (void *p))                                              \
  GC_CU(StreamQuery, "cuStreamQuery", 0, (void *s))

static struct {
#define GC_CU(field, symbol, required, params) gc_cu_result_t(*field) params;
  GC_CU_SYMBOLS
#undef GC_CU
} cu;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static _Atomic int load_state; /* 1 ok, -1 failed */
static char load_message[512];

#define GC_MAX_DEVICES 64
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static void *primary_ctx[GC_MAX_DEVICES];

/* "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)" */
static const char *cu_describe(gc_cu_result_t r, char *buf, size_t len) {
  const char *name = NULL, *text = NULL;
  if (cu.GetErrorName) cu.GetErrorName(r, &name);
  if (cu.GetErrorString) cu.GetErrorString(r, &text);
  snprintf(buf, len, "%s (%s)", name ? name : "CUDA error", text ? text : "no description");
  return buf;
}

static void cu_resolve(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(load_message, sizeof load_message, "libcuda.so.1 not found: %s", dlerror());
    goto fail;
  }
#define GC_CU(field, symbol, required, params)                                                   \
  {                                                                                              \
    void *p = dlsym(h, symbol);                                                                  \
    memcpy(&cu.field, &p, sizeof p);                                                             \
    if (!p && (required)) {                                                                      \
      snprintf(load_message, sizeof load_message, "%s missing in libcuda.so.1 (driver too old)", \
               symbol);                                                                          \
      goto fail;                                                                                 \
    }                                                                                            \
  }
  GC_CU_SYMBOLS
#undef GC_CU
  if (!cu.EventElapsedTime) cu.EventElapsedTime = cu.EventElapsedTime1;
  gc_cu_result_t r = cu.Init(0);
  if (r != 0) {
    char d[200];
    snprintf(load_message, sizeof load_message, "cuInit failed: %s", cu_describe(r, d, sizeof d));
    goto fail;
  }
  atomic_store_explicit(&load_state, 1, memory_order_release);
  return;
fail:
  atomic_store_explicit(&load_state, -1, memory_order_release);
}

gc_status_t gc_cuda_load(void) {
  if (GC_LIKELY(atomic_load_explicit(&load_state, memory_order_acquire) == 1)) return GC_OK;
  pthread_once(&load_once, cu_resolve);
  if (atomic_load_explicit(&load_state, memory_order_acquire) == 1) return GC_OK;
  return gc_error(GC_ERR_CUDA, "%s", load_message);
}

static GC_NOINLINE gc_status_t cu_fail(const char *what, gc_cu_result_t r) {
  char d[200];
  return gc_error(GC_ERR_CUDA, "%s failed: %s", what, cu_describe(r, d, sizeof d));
}

/* Runs a driver call after loading; GC_ERR_CUDA naming the call on failure. */
#define GC_CU_CALL(field, ...)                                             \
  do {                                                                     \
    GC_CHECK(gc_cuda_load());                                              \
    gc_cu_result_t gc_cu_r_ = cu.field(__VA_ARGS__);                       \
    if (GC_UNLIKELY(gc_cu_r_ != 0)) return cu_fail("cu" #field, gc_cu_r_); \
  } while (0)

#define GC_CU_NEED(field, symbol)                                                          \
  do {                                                                                     \
    GC_CHECK(gc_cuda_load());                                                              \
    if (GC_UNLIKELY(!cu.field))                                                            \
      return gc_error(GC_ERR_CUDA, "%s missing in libcuda.so.1 (driver too old)", symbol); \
  } while (0)

static inline gc_cu_deviceptr_t dptr(const void *p) { return (gc_cu_deviceptr_t)(uintptr_t)p; }

gc_status_t gc_cuda_driver_version(int *out) {
  int v = 0;
  GC_CU_CALL(DriverGetVersion, &v);
  *out = v;
  return GC_OK;
}

gc_status_t gc_cuda_capture_info(void *stream, gc_cuda_capture_t *status, unsigned long long *id) {
  int st = 0;
  unsigned long long cid = 0;
  GC_CHECK(gc_cuda_load());
  gc_cu_result_t r;
  if (cu.StreamGetCaptureInfo3)
    r = cu.StreamGetCaptureInfo3(stream, &st, &cid, NULL, NULL, NULL, NULL);
  else if (cu.StreamGetCaptureInfo2)
    r = cu.StreamGetCaptureInfo2(stream, &st, &cid, NULL, NULL, NULL);
  else if (cu.StreamGetCaptureInfo1)
    r = cu.StreamGetCaptureInfo1(stream, &st, &cid);
  else
    r = cu.StreamIsCapturing(stream, &st);
  if (GC_UNLIKELY(r != 0)) return cu_fail("cuStreamGetCaptureInfo", r);
  *status = (gc_cuda_capture_t)st;
  if (id) *id = st == GC_CUDA_CAPTURE_NONE ? 0 : cid;
  return GC_OK;
}

gc_status_t gc_cuda_is_capturing(void *stream, bool *out) {
  int st = 0;
  GC_CU_CALL(StreamIsCapturing, stream, &st);
  *out = st != GC_CUDA_CAPTURE_NONE;
  return GC_OK;
}

gc_status_t gc_cuda_event_create(bool timing, void **out) {
  void *ev = NULL;
  GC_CU_CALL(EventCreate, &ev, timing ? 0u : (unsigned)GC_CU_EVENT_DISABLE_TIMING);
  *out = ev;
  return GC_OK;
}

gc_status_t gc_cuda_event_destroy(void *ev) {
  GC_CU_CALL(EventDestroy, ev);
  return GC_OK;
}

gc_status_t gc_cuda_event_record(void *ev, void *stream) {
  GC_CU_CALL(EventRecord, ev, stream);
  return GC_OK;
}

gc_status_t gc_cuda_event_synchronize(void *ev) {
  GC_CU_CALL(EventSynchronize, ev);
  return GC_OK;
}

gc_status_t gc_cuda_event_elapsed_ms(void *start, void *end, float *out) {
  float ms = 0;
  GC_CU_CALL(EventElapsedTime, &ms, start, end);
  *out = ms;
  return GC_OK;
}

gc_status_t gc_cuda_memcpy_async(void *dst, const void *src, size_t bytes, void *stream) {
  if (bytes == 0) return GC_OK;
  GC_CU_CALL(MemcpyAsync, dptr(dst), dptr(src), bytes, stream);
  return GC_OK;
}

gc_status_t gc_cuda_memcpy2d_async(void *dst, size_t dpitch, const void *src, size_t spitch,
                                   size_t width, size_t height, void *stream) {
  if (width == 0 || height == 0) return GC_OK;
  if (width > dpitch || width > spitch)
    return gc_error(GC_ERR_INVALID_ARG, "2d copy: width %zu exceeds a pitch (dst %zu, src %zu)",
                    width, dpitch, spitch);
  gc_cu_memcpy2d_t p;
  memset(&p, 0, sizeof p);
  p.srcMemoryType = GC_CU_MEMORYTYPE_UNIFIED;
  p.srcDevice = dptr(src);
  p.srcPitch = spitch;
  p.dstMemoryType = GC_CU_MEMORYTYPE_UNIFIED;
  p.dstDevice = dptr(dst);
  p.dstPitch = dpitch;
  p.WidthInBytes = width;
  p.Height = height;
  GC_CU_CALL(Memcpy2DAsync, &p, stream);
  return GC_OK;
}

gc_status_t gc_cuda_memset_d8_async(void *dst, unsigned char value, size_t bytes, void *stream) {
  if (bytes == 0) return GC_OK;
  GC_CU_CALL(MemsetD8Async, dptr(dst), value, bytes, stream);
  return GC_OK;
}

gc_status_t gc_cuda_malloc_async(size_t bytes, void *stream, void **out) {
  gc_cu_deviceptr_t p = 0;
  GC_CHECK(gc_cuda_load());
  if (!cu.MemAllocAsync)
    return gc_error(GC_ERR_CUDA,
                    "cuMemAllocAsync missing in libcuda.so.1 (driver older than 11.2)");
  GC_CU_CALL(MemAllocAsync, &p, bytes, stream);
  *out = (void *)(uintptr_t)p;
  return GC_OK;
}

gc_status_t gc_cuda_free_async(void *ptr, void *stream) {
  GC_CHECK(gc_cuda_load());
  if (!cu.MemFreeAsync)
    return gc_error(GC_ERR_CUDA, "cuMemFreeAsync missing in libcuda.so.1 (driver older than 11.2)");
  GC_CU_CALL(MemFreeAsync, dptr(ptr), stream);
  return GC_OK;
}

gc_status_t gc_cuda_stream_synchronize(void *stream) {
  GC_CU_CALL(StreamSynchronize, stream);
  return GC_OK;
}

gc_status_t gc_cuda_device_count(int *out) {
  int n = 0;
  GC_CU_CALL(DeviceGetCount, &n);
  *out = n;
  return GC_OK;
}

gc_status_t gc_cuda_current_device(int *out) {
  int d = 0;
  GC_CU_CALL(CtxGetDevice, &d);
  *out = d;
  return GC_OK;
}

/* The primary context of device ordinal (retained once, kept). */
static gc_status_t primary(int ordinal, void **out) {
  GC_CHECK(gc_cuda_load());
  if (ordinal < 0 || ordinal >= GC_MAX_DEVICES)
    return gc_error(GC_ERR_INVALID_ARG, "device %d out of range [0, %d)", ordinal, GC_MAX_DEVICES);
  pthread_mutex_lock(&ctx_lock);
  void *ctx = primary_ctx[ordinal];
  gc_cu_result_t r = 0;
  const char *what = "cuDeviceGet";
  if (!ctx) {
    int dev = 0;
    r = cu.DeviceGet(&dev, ordinal);
    if (r == 0) {
      what = "cuDevicePrimaryCtxRetain";
      r = cu.DevicePrimaryCtxRetain(&ctx, dev);
    }
    if (r == 0) primary_ctx[ordinal] = ctx;
  }
  pthread_mutex_unlock(&ctx_lock);
  if (r != 0) return cu_fail(what, r);
  *out = ctx;
  return GC_OK;
}

gc_status_t gc_cuda_set_device(int ordinal) {
  void *ctx = NULL;
  GC_CHECK(primary(ordinal, &ctx));
  GC_CU_CALL(CtxSetCurrent, ctx);
  return GC_OK;
}

gc_status_t gc_cuda_push_device(int ordinal) {
  void *ctx = NULL;
  GC_CHECK(primary(ordinal, &ctx));
  GC_CU_NEED(CtxPushCurrent, "cuCtxPushCurrent_v2");
  GC_CU_CALL(CtxPushCurrent, ctx);
  return GC_OK;
}

gc_status_t gc_cuda_pop_device(void) {
  void *ctx = NULL;
  GC_CU_NEED(CtxPopCurrent, "cuCtxPopCurrent_v2");
  GC_CU_CALL(CtxPopCurrent, &ctx);
  return GC_OK;
}

gc_status_t gc_cuda_host_alloc(size_t bytes, void **out) {
  void *p = NULL;
  GC_CU_NEED(MemHostAlloc, "cuMemHostAlloc");
  /* CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP: pinned, and (with
   * unified addressing) the same pointer on every device */
  GC_CU_CALL(MemHostAlloc, &p, bytes ? bytes : 1, 0x01u | 0x02u);
  *out = p;
  return GC_OK;
}

void gc_cuda_host_free(void *p) {
  if (p && gc_cuda_load() == GC_OK && cu.MemFreeHost) (void)cu.MemFreeHost(p);
}

gc_status_t gc_cuda_stream_query(void *stream, bool *done) {
  GC_CU_NEED(StreamQuery, "cuStreamQuery");
  GC_CHECK(gc_cuda_load());
  gc_cu_result_t r = cu.StreamQuery(stream);
  if (r == 600 /* CUDA_ERROR_NOT_READY */) {
    *done = false;
    return GC_OK;
  }
  if (r != 0) return cu_fail("cuStreamQuery", r);
  *done = true;
  return GC_OK;
}

/* ---- streams, graphs, modules (optional entry points: GC_ERR_CUDA naming
 * the symbol when the driver lacks one) ---- */

gc_status_t gc_cuda_stream_create(void **out) {
  void *s = NULL;
  GC_CU_NEED(StreamCreate, "cuStreamCreate");
  GC_CU_CALL(StreamCreate, &s, 1u /* CU_STREAM_NON_BLOCKING */);
  *out = s;
  return GC_OK;
}

gc_status_t gc_cuda_stream_destroy(void *stream) {
  GC_CU_NEED(StreamDestroy, "cuStreamDestroy_v2");
  GC_CU_CALL(StreamDestroy, stream);
  return GC_OK;
}

gc_status_t gc_cuda_stream_begin_capture(void *stream, int mode) {
  GC_CU_NEED(StreamBeginCapture, "cuStreamBeginCapture_v2");
  GC_CU_CALL(StreamBeginCapture, stream, mode);
  return GC_OK;
}

gc_status_t gc_cuda_stream_end_capture(void *stream, void **graph) {
  void *gr = NULL;
  GC_CU_NEED(StreamEndCapture, "cuStreamEndCapture");
  GC_CU_CALL(StreamEndCapture, stream, &gr);
  *graph = gr;
  return GC_OK;
}

gc_status_t gc_cuda_graph_instantiate(void *graph, void **exec) {
  void *e = NULL;
  GC_CU_NEED(GraphInstantiate, "cuGraphInstantiateWithFlags");
  GC_CU_CALL(GraphInstantiate, &e, graph, 0ull);
  *exec = e;
  return GC_OK;
}

gc_status_t gc_cuda_graph_launch(void *exec, void *stream) {
  GC_CU_NEED(GraphLaunch, "cuGraphLaunch");
  GC_CU_CALL(GraphLaunch, exec, stream);
  return GC_OK;
}

gc_status_t gc_cuda_graph_exec_destroy(void *exec) {
  GC_CU_NEED(GraphExecDestroy, "cuGraphExecDestroy");
  GC_CU_CALL(GraphExecDestroy, exec);
  return GC_OK;
}

gc_status_t gc_cuda_graph_destroy(void *graph) {
  GC_CU_NEED(GraphDestroy, "cuGraphDestroy");
  GC_CU_CALL(GraphDestroy, graph);
  return GC_OK;
}

gc_status_t gc_cuda_module_load_data(const char *image, void **out) {
  void *m = NULL;
  GC_CU_NEED(ModuleLoadData, "cuModuleLoadData");
  GC_CU_CALL(ModuleLoadData, &m, image);
  *out = m;
  return GC_OK;
}

gc_status_t gc_cuda_module_function(void *module, const char *name, void **out) {
  void *f = NULL;
  GC_CU_NEED(ModuleGetFunction, "cuModuleGetFunction");
  GC_CU_CALL(ModuleGetFunction, &f, module, name);
  *out = f;
  return GC_OK;
}

gc_status_t gc_cuda_launch(void *fn, unsigned grid, unsigned block, void *stream, void **params) {
  GC_CU_NEED(LaunchKernel, "cuLaunchKernel");
  GC_CU_CALL(LaunchKernel, fn, grid, 1, 1, block, 1, 1, 0, stream, params, NULL);
  return GC_OK;
}

gc_status_t gc_cuda_device_attribute(int attr, int ordinal, int *out) {
  int v = 0, dev = 0;
  GC_CU_NEED(DeviceGetAttribute, "cuDeviceGetAttribute");
  GC_CU_CALL(DeviceGet, &dev, ordinal);
  GC_CU_CALL(DeviceGetAttribute, &v, attr, dev);
  *out = v;
  return GC_OK;
}
