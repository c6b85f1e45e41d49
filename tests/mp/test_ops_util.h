/* test_ops_util.h - fork harness of the coordinator operation tests:
 * pass/fail counters in shared memory, seeded data, a reference reduction
 * computed on each rank, and the world and group set-up. */
#ifndef TEST_OPS_UTIL_H
#define TEST_OPS_UTIL_H

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/reduce.h"
#include "gcshim/gc.h"

typedef struct {
  _Atomic long pass, fail;
} counters_t;

static counters_t *C;
static int T_RANK = -1, T_N = 0;
static unsigned long long SEED;
static char TOKEN[64];

#define CHECK(cond, ...)                                                               \
  do {                                                                                 \
    if (cond) {                                                                        \
      atomic_fetch_add(&C->pass, 1);                                                   \
    } else {                                                                           \
      atomic_fetch_add(&C->fail, 1);                                                   \
      fprintf(stderr, "[n=%d rank %d] FAIL %s:%d: ", T_N, T_RANK, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                                    \
      fprintf(stderr, " (last error: %s)\n", gc_last_error());                         \
    }                                                                                  \
  } while (0)

static inline void counters_init(const char *prefix) {
  C = mmap(NULL, sizeof *C, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (C == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  const char *e = getenv("GCSHIM_TEST_SEED");
  SEED = e ? strtoull(e, NULL, 0) : (unsigned long long)time(NULL) ^ (unsigned long long)getpid();
  printf("seed %llu (GCSHIM_TEST_SEED to repeat)\n", SEED);
  fflush(stdout);
  snprintf(TOKEN, sizeof TOKEN, "%s%d", prefix, (int)getpid());
}

/* xorshift64* from a seed mixed with up to three integers. */
typedef struct {
  uint64_t s;
} rng_t;
static inline rng_t rng_make(uint64_t a, uint64_t b, uint64_t c) {
  rng_t r = {SEED * 0x9e3779b97f4a7c15ull ^ (a + 1) * 0xbf58476d1ce4e5b9ull ^
             (b + 3) * 0x94d049bb133111ebull ^ (c + 7) * 0xd6e8feb86659fd93ull};
  if (!r.s) r.s = 1;
  return r;
}
static inline uint64_t rng_next(rng_t *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ull;
}
static inline int64_t rng_range(rng_t *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Values whose sums and products are exact in every dtype and in any order,
 * so that results compare bit for bit. */
static inline void fill_values(void *buf, gc_dtype_t dt, size_t n, gc_redop_t op, rng_t *r) {
  static const float prod_f[] = {-2.f, -1.f, -0.5f, 0.5f, 1.f, 2.f};
  for (size_t i = 0; i < n; i++) {
    bool prod = op == GC_PROD;
    int64_t k = prod ? rng_range(r, -1, 2) : rng_range(r, -15, 15);
    if (prod && k == 0) k = 1;
    float f = prod ? prod_f[rng_range(r, 0, 5)] : (float)rng_range(r, -32, 32) / 4.f;
    switch (dt) {
      case GC_INT8:
        ((int8_t *)buf)[i] = (int8_t)k;
        break;
      case GC_UINT8:
        ((uint8_t *)buf)[i] = (uint8_t)(prod ? rng_range(r, 1, 3) : k + 15);
        break;
      case GC_INT32:
        ((int32_t *)buf)[i] = (int32_t)(prod ? k : k * 61);
        break;
      case GC_INT64:
        ((int64_t *)buf)[i] = prod ? k : k * 1000003;
        break;
      case GC_FLOAT16:
        ((uint16_t *)buf)[i] = gc_float_to_half(f);
        break;
      case GC_BFLOAT16:
        ((uint16_t *)buf)[i] = gc_float_to_bf16(f);
        break;
      case GC_FLOAT32:
        ((float *)buf)[i] = f;
        break;
      case GC_FLOAT64:
        ((double *)buf)[i] = (double)f;
        break;
    }
  }
}

/* The reference: element-wise over the ranks' inputs in rank order; integer
 * sums and products wrap, fp16/bf16 accumulate in float32 and round once,
 * AVG divides at the end (integers truncate). */
#define REF_INT(T, U)                                               \
  do {                                                              \
    T *o = out;                                                     \
    for (size_t i = 0; i < count; i++) {                            \
      T acc = ((const T *)ins[0])[i];                               \
      for (int r = 1; r < n; r++) {                                 \
        T v = ((const T *)ins[r])[i];                               \
        if (op == GC_SUM || op == GC_AVG) acc = (T)((U)acc + (U)v); \
        if (op == GC_PROD) acc = (T)((U)acc * (U)v);                \
        if (op == GC_MAX) acc = v > acc ? v : acc;                  \
        if (op == GC_MIN) acc = v < acc ? v : acc;                  \
      }                                                             \
      o[i] = op == GC_AVG ? (T)(acc / (T)n) : acc;                  \
    }                                                               \
  } while (0)
#define REF_FLOAT(T, ACC, LOAD, STORE)                   \
  do {                                                   \
    for (size_t i = 0; i < count; i++) {                 \
      ACC acc = LOAD(((const T *)ins[0])[i]);            \
      for (int r = 1; r < n; r++) {                      \
        ACC v = LOAD(((const T *)ins[r])[i]);            \
        if (op == GC_SUM || op == GC_AVG) acc = acc + v; \
        if (op == GC_PROD) acc = acc * v;                \
        if (op == GC_MAX) acc = v > acc ? v : acc;       \
        if (op == GC_MIN) acc = v < acc ? v : acc;       \
      }                                                  \
      if (op == GC_AVG) acc = acc / (ACC)n;              \
      ((T *)out)[i] = STORE(acc);                        \
    }                                                    \
  } while (0)
#define ID(x) (x)
static inline void ref_reduce(gc_dtype_t dt, gc_redop_t op, int n, void *const *ins, size_t count,
                              void *out) {
  switch (dt) {
    case GC_INT8:
      REF_INT(int8_t, uint8_t);
      break;
    case GC_UINT8:
      REF_INT(uint8_t, uint8_t);
      break;
    case GC_INT32:
      REF_INT(int32_t, uint32_t);
      break;
    case GC_INT64:
      REF_INT(int64_t, uint64_t);
      break;
    case GC_FLOAT16:
      REF_FLOAT(uint16_t, float, gc_half_to_float, gc_float_to_half);
      break;
    case GC_BFLOAT16:
      REF_FLOAT(uint16_t, float, gc_bf16_to_float, gc_float_to_bf16);
      break;
    case GC_FLOAT32:
      REF_FLOAT(float, float, ID, ID);
      break;
    case GC_FLOAT64:
      REF_FLOAT(double, double, ID, ID);
      break;
  }
}

static inline gc_tensor_t host_tensor(void *data, gc_dtype_t dt, int ndim, const int64_t *shape) {
  gc_tensor_t t = {.data = data, .dtype = dt, .ndim = ndim};
  for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
  return t;
}

static inline size_t prod_dims(const int64_t *s, int a, int b) {
  size_t n = 1;
  for (int i = a; i < b; i++) n *= (size_t)s[i];
  return n;
}

/* Joins a world of n ranks (rendezvous unique to this run and n). */
static inline int world_join(int rank, int n) {
  char rv[96];
  snprintf(rv, sizeof rv, "%s-n%d", TOKEN, n);
  gc_init_options_t o = {
      .rank = rank, .world_size = n, .local_rank = rank, .rendezvous = rv, .timeout_s = 60};
  gc_status_t s = gc_init(&o);
  if (s != GC_OK) fprintf(stderr, "[rank %d] gc_init: %s\n", rank, gc_last_error());
  return s == GC_OK ? 0 : 1;
}

/* Makes the groups of a layout; returns this rank's. */
static inline gc_group_t *group_make(const int *ranks, const int *sizes, int ngroups,
                                     const char *name, bool use_dev) {
  gc_group_options_t o = {.group_ranks = ranks,
                          .group_sizes = sizes,
                          .num_groups = ngroups,
                          .local_rank = T_RANK,
                          .backend = "host",
                          .use_device_communicator = use_dev,
                          .group_name = name};
  gc_group_t *g = NULL;
  gc_status_t s = gc_group_new(&o, &g);
  CHECK(s == GC_OK, "gc_group_new %s", name);
  return s == GC_OK ? g : NULL;
}

/* Forks n ranks running fn; returns how many exited non-zero. */
static inline int run_ranks(int n, int (*fn)(int rank, int n)) {
  pid_t pids[64];
  T_N = n;
  for (int r = 0; r < n; r++) {
    pids[r] = fork();
    if (pids[r] == 0) {
      T_RANK = r;
      alarm(90);
      int bad = world_join(r, n);
      if (!bad) bad = fn(r, n);
      if (gc_world_size() > 0) gc_finalize();
      fflush(NULL);
      _exit(bad ? 1 : 0);
    }
  }
  int bad = 0;
  for (int r = 0; r < n; r++) {
    int st;
    waitpid(pids[r], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
  }
  return bad;
}

/* Counts /dev/shm entries naming this run (there must be none at the end). */
static inline int shm_leftovers(void) {
  DIR *d = opendir("/dev/shm");
  int n = 0;
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strstr(e->d_name, TOKEN)) n++;
  closedir(d);
  return n;
}

static inline int finish(void) {
  CHECK(shm_leftovers() == 0, "/dev/shm has entries naming %s", TOKEN);
  long p = atomic_load(&C->pass), f = atomic_load(&C->fail);
  printf("%ld passed, %ld failed\n", p, f);
  return f ? 1 : 0;
}

#endif
