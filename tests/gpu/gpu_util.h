/* gpu_util.h - what the tests/gpu programs share beyond the fork harness of
 * tests/mp (test_ops_util.h): GPU detection (exit 77, "skipped: no GPU"),
 * device buffers through the driver, and CUDA tensors. */
#ifndef GPU_UTIL_H
#define GPU_UTIL_H

#include "../mp/test_ops_util.h"
#include "core/group.h"
#include "device/device.h"
#include "device/nccl_dev.h"
#include "nccl/gc_cuda.h"
#include "nccl/gc_nccl.h"

/* GPUs this process would see, counted in a child so that the parent never
 * initialises CUDA before forking ranks. 0 when there is no driver or GPU;
 * a GPU without a loadable NCCL is a failure, not a skip (-1). */
static inline int gpu_count(void) {
  pid_t p = fork();
  if (p == 0) {
    int n = 0;
    if (gc_cuda_device_count(&n) != GC_OK) _exit(0);
    if (n > 0 && gc_nccl_ready() != GC_OK) {
      fprintf(stderr, "GPU present but NCCL not loadable: %s\n", gc_last_error());
      _exit(255);
    }
    _exit(n > 100 ? 100 : n);
  }
  int st = 0;
  if (p < 0 || waitpid(p, &st, 0) < 0 || !WIFEXITED(st)) return 0;
  return WEXITSTATUS(st) == 255 ? -1 : WEXITSTATUS(st);
}

/* Exits 77 when there is no GPU; returns the number of ranks to run. */
static inline int gpu_ranks_or_skip(int max) {
  int n = gpu_count();
  if (n == 0) {
    printf("skipped: no GPU\n");
    exit(77);
  }
  if (n < 0) {
    printf("0 passed, 1 failed\n");
    exit(1);
  }
  return n < max ? n : max;
}

static inline void *dev_alloc(size_t bytes, void *stream) {
  void *p = NULL;
  if (gc_cuda_malloc_async(bytes ? bytes : 1, stream, &p) != GC_OK) {
    fprintf(stderr, "[rank %d] device alloc of %zu bytes: %s\n", T_RANK, bytes, gc_last_error());
    exit(2);
  }
  return p;
}

static inline void dev_free(void *p, void *stream) {
  if (p) (void)gc_cuda_free_async(p, stream);
}

static inline void h2d(void *dst, const void *src, size_t bytes, void *stream) {
  if (gc_cuda_memcpy_async(dst, src, bytes, stream) != GC_OK ||
      gc_cuda_stream_synchronize(stream) != GC_OK) {
    fprintf(stderr, "[rank %d] h2d: %s\n", T_RANK, gc_last_error());
    exit(2);
  }
}

static inline void d2h(void *dst, const void *src, size_t bytes, void *stream) {
  if (gc_cuda_stream_synchronize(stream) != GC_OK ||
      gc_cuda_memcpy_async(dst, src, bytes, stream) != GC_OK ||
      gc_cuda_stream_synchronize(stream) != GC_OK) {
    fprintf(stderr, "[rank %d] d2h: %s\n", T_RANK, gc_last_error());
    exit(2);
  }
}

static inline gc_tensor_t cuda_tensor(void *data, gc_dtype_t dt, int ndim, const int64_t *shape,
                                      int device) {
  gc_tensor_t t = host_tensor(data, dt, ndim, shape);
  t.device = (gc_device_t){GC_DEVICE_CUDA, device};
  return t;
}

/* The group of every rank with an NCCL device communicator. */
static inline gc_group_t *nccl_group(int n, const char *name) {
  int ranks[64], sizes[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_options_t o = {.group_ranks = ranks,
                          .group_sizes = sizes,
                          .num_groups = 1,
                          .local_rank = T_RANK,
                          .backend = "nccl",
                          .use_device_communicator = true,
                          .group_name = name};
  gc_group_t *g = NULL;
  gc_status_t s = gc_group_new(&o, &g);
  CHECK(s == GC_OK, "gc_group_new %s (nccl)", name);
  return s == GC_OK ? g : NULL;
}

static const gc_dtype_t ALL_DTYPES[] = {GC_INT8,    GC_UINT8,    GC_INT32,   GC_INT64,
                                        GC_FLOAT16, GC_BFLOAT16, GC_FLOAT32, GC_FLOAT64};
#define N_DTYPES 8

#endif
