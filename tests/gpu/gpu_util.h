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

/* The CUDA device of this rank: its local rank (the rank itself when
 * forked). */
static int T_DEV = -1;

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
                          .local_rank = T_DEV,
                          .backend = "nccl",
                          .use_device_communicator = true,
                          .group_name = name};
  gc_group_t *g = NULL;
  gc_status_t s = gc_group_new(&o, &g);
  CHECK(s == GC_OK, "gc_group_new %s (nccl)", name);
  return s == GC_OK ? g : NULL;
}

/* A group of the layout (every rank passes the same) with an NCCL device
 * communicator; returns this rank's. */
static inline gc_group_t *nccl_groups(const int *ranks, const int *sizes, int ngroups,
                                      const char *name) {
  gc_group_options_t o = {.group_ranks = ranks,
                          .group_sizes = sizes,
                          .num_groups = ngroups,
                          .local_rank = T_DEV,
                          .backend = "nccl",
                          .use_device_communicator = true,
                          .group_name = name};
  gc_group_t *g = NULL;
  gc_status_t s = gc_group_new(&o, &g);
  CHECK(s == GC_OK, "gc_group_new %s (nccl)", name);
  return s == GC_OK ? g : NULL;
}

/* True when a launcher started this process as one rank of a job (mpirun,
 * torchrun, GCSHIM_RANK/GCSHIM_WORLD_SIZE): the launcher's variables, as
 * gc_init reads them. */
static inline bool gpu_launched(gc_env_ranks_t *e) { return gc_env_ranks(e) == GC_OK; }

/* One rank of a launched job: joins the world from the environment (the
 * launcher's rendezvous), agrees on rank 0's seed, runs body on device
 * local_rank, and prints this rank's closing line (the launcher's exit
 * status says whether any rank failed; scripts/gpu-check sums the lines). */
static inline int gpu_run_launched(const gc_env_ranks_t *e, const char *prefix,
                                   int (*body)(int rank, int n)) {
  C = mmap(NULL, sizeof *C, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (C == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  snprintf(TOKEN, sizeof TOKEN, "%s%d", prefix, (int)getpid());
  T_RANK = e->rank;
  T_N = e->world_size;
  T_DEV = e->local_rank;
  int ngpu = gpu_count();
  if (ngpu == 0) {
    printf("skipped: no GPU\n");
    exit(77);
  }
  if (ngpu < 0) {
    printf("0 passed, 1 failed\n");
    exit(1);
  }
  if (T_DEV >= ngpu) {
    /* every rank of the node sees the same count: they all skip */
    printf("skipped: local rank %d needs %d GPUs, %d present\n", T_DEV, T_DEV + 1, ngpu);
    exit(77);
  }
  gc_init_options_t o = {
      .rank = e->rank, .world_size = e->world_size, .local_rank = e->local_rank, .timeout_s = 60};
  if (gc_init(&o) != GC_OK) {
    fprintf(stderr, "[rank %d] gc_init: %s\n", T_RANK, gc_last_error());
    printf("0 passed, 1 failed\n");
    exit(1);
  }
  /* the seed: GCSHIM_TEST_SEED, else rank 0's clock, broadcast */
  const char *se = getenv("GCSHIM_TEST_SEED");
  uint64_t seed = se ? strtoull(se, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
  int ranks[64], sizes[1] = {T_N};
  for (int i = 0; i < T_N && i < 64; i++) ranks[i] = i;
  gc_group_options_t go = {.group_ranks = ranks,
                           .group_sizes = sizes,
                           .num_groups = 1,
                           .local_rank = T_DEV,
                           .backend = "host",
                           .group_name = "seed"};
  gc_group_t *sg = NULL;
  int64_t one[1] = {1};
  gc_tensor_t st = host_tensor(&seed, GC_INT64, 1, one);
  CHECK(T_N <= 64 && gc_group_new(&go, &sg) == GC_OK && gc_broadcast(sg, &st, 0, NULL) == GC_OK,
        "seed broadcast");
  if (sg) gc_group_destroy(sg);
  SEED = seed;
  if (T_RANK == 0) printf("seed %llu (GCSHIM_TEST_SEED to repeat)\n", SEED);
  printf("rank %d of %d on device %d (%s)\n", T_RANK, T_N, T_DEV, e->source);
  fflush(stdout);
  int bad = body(T_RANK, T_N);
  CHECK(bad == 0, "rank %d body returned %d", T_RANK, bad);
  gc_finalize();
  return finish();
}

static int (*gpu_body_fn)(int rank, int n);
static inline int gpu_body_on_rank_device(int rank, int n) {
  T_DEV = rank;
  return gpu_body_fn(rank, n);
}
/* run_ranks with each forked rank on the GPU of its rank. */
static inline int run_ranks_dev(int n, int (*body)(int rank, int n)) {
  gpu_body_fn = body;
  return run_ranks(n, gpu_body_on_rank_device);
}

/* main() of a tests/gpu program: one rank of a launched job (mpirun -np N,
 * torchrun), else one forked rank per GPU, up to max_forked. */
static inline int gpu_main(const char *prefix, int max_forked, int (*body)(int rank, int n)) {
  gc_env_ranks_t e;
  if (gpu_launched(&e)) return gpu_run_launched(&e, prefix, body);
  int n = gpu_ranks_or_skip(max_forked);
  counters_init(prefix);
  printf("ranks %d (one per GPU, forked)\n", n);
  fflush(stdout);
  int bad = run_ranks_dev(n, body);
  CHECK(bad == 0, "%d ranks exited non-zero", bad);
  return finish();
}

static const gc_dtype_t ALL_DTYPES[] = {GC_INT8,    GC_UINT8,    GC_INT32,   GC_INT64,
                                        GC_FLOAT16, GC_BFLOAT16, GC_FLOAT32, GC_FLOAT64};
#define N_DTYPES 8

#endif
