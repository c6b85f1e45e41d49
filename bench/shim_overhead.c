/*
 * shim_overhead.c - nanoseconds the shim adds per NCCL call: the same
 * entry point called directly (the real library's pncclX, from dlsym on its
 * handle) and through the exported name (dlsym(RTLD_DEFAULT): the shim's
 * wrapper when it is preloaded), in pairs of batches of N calls; the
 * figure is the median of the pairs' differences, with its 95% interval
 * (the minimum batch of each side is printed too). One rank, so the call
 * itself is as cheap as it gets. With a real NCCL, short batches and many
 * pairs (100 and 2000) make a steadier figure than long ones in the same
 * time: fewer batches hold a disturbance of the host, and the median
 * leaves those out.
 *
 *   LD_PRELOAD=src/.libs/libgcshim.so GCSHIM_NCCL_LIBRARY=LIB shim_overhead LIB
 *   (add GCSHIM_DISABLE=1 for the pass-through path; preload
 *   bench/.libs/libforward_only.so instead for the floor under any
 *   interposer)
 *   shim_overhead LIB N PAIRS [components] [pollute] [group]
 *   group: each call is ncclGroupStart, the all-reduce, ncclGroupEnd
 *   pollute: between two calls, run 1024 small functions 256 B apart (256 KiB
 *   of address space) and touch 1024 lines of 256 KiB of data, as a real
 *   NCCL's microseconds of enqueue do,
 *   so that the shim's code and data are no longer in the nearest caches
 *   (the fixture's call alone leaves them all there)
 *   (no shim: what each piece of the shim's hot path costs next to the real
 *   call - the driver's capture query, two time-stamp-counter reads, reads of
 *   a few cache lines - each as the median of PAIRS pair differences)
 * LIB: the NCCL to measure (the hostnccl fixture's .libs/libnccl.so.2 here;
 * a real NCCL on a GPU machine, with device buffers and a created stream,
 * so that the shim's capture check runs as it does under a framework).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nccl/nccl_types.h"

typedef ncclResult_t (*ar_t)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t);
typedef ncclResult_t (*id_t_)(ncclUniqueId *);
typedef ncclResult_t (*init_t)(ncclComm_t *, int, ncclUniqueId, int);
typedef ncclResult_t (*destroy_t)(ncclComm_t);

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *need(void *h, const char *name) {
  void *p = dlsym(h, name);
  if (!p) {
    fprintf(stderr, "shim_overhead: %s: %s\n", name, dlerror());
    exit(1);
  }
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ---- pollute: caches and branch predictors disturbed between calls ---- */

static int pollute;
static volatile unsigned long pollute_sink;
/* 1024 small functions 256 B apart, and the table of them, from one list. */
// clang-format off
#define PX16(X, p) X(p##0) X(p##1) X(p##2) X(p##3) X(p##4) X(p##5) X(p##6) X(p##7) \
                   X(p##8) X(p##9) X(p##a) X(p##b) X(p##c) X(p##d) X(p##e) X(p##f)
#define PX256(X, p) PX16(X, p##0) PX16(X, p##1) PX16(X, p##2) PX16(X, p##3) PX16(X, p##4) \
                    PX16(X, p##5) PX16(X, p##6) PX16(X, p##7) PX16(X, p##8) PX16(X, p##9) \
                    PX16(X, p##a) PX16(X, p##b) PX16(X, p##c) PX16(X, p##d) PX16(X, p##e) \
                    PX16(X, p##f)
#define PX1024(X) PX256(X, 0) PX256(X, 1) PX256(X, 2) PX256(X, 3)
#define PF(n)                                                                            \
  __attribute__((noinline, aligned(256))) static unsigned long pf_##n(unsigned long x) { \
    return (x & 1) ? x * 0x##n##1ul + 3 : (x >> 1) ^ 0x##n##7ul;                         \
  }
#define PE(n) pf_##n,
PX1024(PF)
static unsigned long (*const pf[1024])(unsigned long) = {PX1024(PE)};
// clang-format on
static unsigned char pollute_data[256 << 10];

static void disturb(unsigned long i) {
  unsigned long x = i;
  for (int k = 0; k < 1024; k++) x = pf[k](x);
  for (size_t o = 0; o < sizeof pollute_data; o += 256) x += pollute_data[o]++;
  pollute_sink = x;
}

/* ns per call of f over n calls. */
static cudaStream_t stream; /* a created stream with a real NCCL, as frameworks use */

/* The call measured, per side: [0] the real library's pncclX, [1] the
 * exported names (the shim's wrappers when it is preloaded). With "group",
 * one call is ncclGroupStart, the all-reduce, ncclGroupEnd (the pattern of
 * nccl-tests and of every program that drives several communicators). */
typedef ncclResult_t (*grp_t)(void);
static ar_t ar_of[2];
static grp_t gs_of[2], ge_of[2];
static int group_mode;

static double batch(int side, ncclComm_t c, char *buf, long n) {
  ar_t f = ar_of[side];
  grp_t gs = gs_of[side], ge = ge_of[side];
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (pollute) disturb((unsigned long)i);
    if ((group_mode && gs() != ncclSuccess) ||
        f(buf, buf + 64, 1, ncclInt8, ncclSum, c, stream) != ncclSuccess ||
        (group_mode && ge() != ncclSuccess)) {
      fprintf(stderr, "shim_overhead: allreduce failed\n");
      exit(1);
    }
  }
  return (now_ns() - t0) / (double)n;
}

/* ---- components: the shim's hot-path pieces, each done next to the real
 * call without the shim, against the bare call ---------------------------- */

static int (*is_capturing_fn)(cudaStream_t, int *);
enum { C_BARE, C_CAPQ, C_TSC, C_CLOCK, C_LINES, C_COUNT };
static const char *c_name[C_COUNT] = {
    "bare call", "cuStreamIsCapturing before the call", "two TSC reads around the call",
    "two clock_gettime around the call", "8 reads of 8 cache lines (64 B apart)"};
static volatile uint64_t sink;
static struct { _Alignas(64) uint64_t v[8]; } lines[8];

static double batch_with(int what, ar_t f, ncclComm_t c, char *buf, long n) {
  double t0 = now_ns();
  uint64_t acc = 0;
  for (long i = 0; i < n; i++) {
    int st = 0;
    uint64_t a = 0;
    if (pollute) disturb((unsigned long)i);
    switch (what) {
      case C_CAPQ:
        is_capturing_fn(stream, &st), acc += (uint64_t)st;
        break;
#if defined(__x86_64__)
      case C_TSC:
        a = __builtin_ia32_rdtsc();
        break;
#endif
      case C_CLOCK:
        a = (uint64_t)now_ns();
        break;
      case C_LINES:
        for (int l = 0; l < 8; l++) acc += lines[l].v[0];
        break;
      default:
        break;
    }
    if (f(buf, buf + 64, 1, ncclInt8, ncclSum, c, stream) != ncclSuccess) {
      fprintf(stderr, "shim_overhead: allreduce failed\n");
      exit(1);
    }
    switch (what) {
#if defined(__x86_64__)
      case C_TSC:
        acc += __builtin_ia32_rdtsc() - a;
        break;
#endif
      case C_CLOCK:
        acc += (uint64_t)now_ns() - a;
        break;
      case C_LINES:
        lines[i & 7].v[1]++;
        break;
      default:
        break;
    }
  }
  sink = acc;
  return (now_ns() - t0) / (double)n;
}

static void components(ar_t direct, ncclComm_t c, char *buf, long n, int pairs) {
  double *diff = calloc((size_t)pairs, sizeof *diff);
  if (!diff) exit(1);
  for (int w = 1; w < C_COUNT; w++) {
    if (w == C_CAPQ && !is_capturing_fn) continue;
    for (int b = 0; b < pairs; b++) {
      double d, x;
      if (b & 1) {
        x = batch_with(w, direct, c, buf, n);
        d = batch_with(C_BARE, direct, c, buf, n);
      } else {
        d = batch_with(C_BARE, direct, c, buf, n);
        x = batch_with(w, direct, c, buf, n);
      }
      diff[b] = x - d;
    }
    qsort(diff, (size_t)pairs, sizeof *diff, cmp_double);
    printf("shim_overhead: component: %-40s added %.1f ns/call (median of %d pair differences)\n",
           c_name[w], diff[pairs / 2], pairs);
  }
  free(diff);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: shim_overhead LIBNCCL [calls per batch] [batches]\n");
    return 2;
  }
  long n = argc > 2 ? atol(argv[2]) : 200000;
  int batches = argc > 3 ? atoi(argv[3]) : 15, want_components = 0;
  if (n < 1 || batches < 1) {
    fprintf(stderr, "shim_overhead: calls per batch and pairs must be at least 1\n");
    return 2;
  }
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "components"))
      want_components = 1;
    else if (!strcmp(argv[i], "pollute"))
      pollute = 1;
    else if (!strcmp(argv[i], "group"))
      group_mode = 1;
    else {
      fprintf(stderr, "shim_overhead: unknown word %s (components, pollute, group)\n", argv[i]);
      return 2;
    }
  }
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    fprintf(stderr, "shim_overhead: dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  void *p;
  ar_t direct, named;
  id_t_ get_id;
  init_t init;
  destroy_t destroy;
  p = need(h, "pncclAllReduce"), memcpy(&direct, &p, sizeof p);
  p = need(RTLD_DEFAULT, "ncclAllReduce"), memcpy(&named, &p, sizeof p);
  p = need(RTLD_DEFAULT, "ncclGetUniqueId"), memcpy(&get_id, &p, sizeof p);
  p = need(RTLD_DEFAULT, "ncclCommInitRank"), memcpy(&init, &p, sizeof p);
  p = need(RTLD_DEFAULT, "ncclCommDestroy"), memcpy(&destroy, &p, sizeof p);
  ar_of[0] = direct, ar_of[1] = named;
  p = need(h, "pncclGroupStart"), memcpy(&gs_of[0], &p, sizeof p);
  p = need(h, "pncclGroupEnd"), memcpy(&ge_of[0], &p, sizeof p);
  p = need(RTLD_DEFAULT, "ncclGroupStart"), memcpy(&gs_of[1], &p, sizeof p);
  p = need(RTLD_DEFAULT, "ncclGroupEnd"), memcpy(&ge_of[1], &p, sizeof p);
  int shim = dlsym(RTLD_DEFAULT, "gcshim_report_flush") != NULL;
  const char *dis = getenv("GCSHIM_DISABLE"), *cap = getenv("GCSHIM_CAPTURED"),
             *every = getenv("GCSHIM_TIME_EVERY");
  ncclUniqueId id;
  ncclComm_t c = NULL;
  if (get_id(&id) != ncclSuccess || init(&c, 1, id, 0) != ncclSuccess) {
    fprintf(stderr, "shim_overhead: no communicator\n");
    return 1;
  }
  /* Device memory when the library is a real NCCL (it has loaded the
   * driver, whose current context is now the communicator's device); host
   * memory for the fixture. */
  static char host_buf[128];
  char *buf = host_buf;
  void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (cu) {
    int (*mem_alloc)(unsigned long long *, size_t);
    unsigned long long dptr = 0;
    p = need(cu, "cuMemAlloc_v2"), memcpy(&mem_alloc, &p, sizeof p);
    if (mem_alloc(&dptr, sizeof host_buf) != 0) {
      fprintf(stderr, "shim_overhead: cuMemAlloc failed\n");
      return 1;
    }
    buf = (char *)(uintptr_t)dptr;
    int (*stream_create)(cudaStream_t *, unsigned);
    p = need(cu, "cuStreamCreate"), memcpy(&stream_create, &p, sizeof p);
    if (stream_create(&stream, 1 /* CU_STREAM_NON_BLOCKING */) != 0) {
      fprintf(stderr, "shim_overhead: cuStreamCreate failed\n");
      return 1;
    }
  }
  batch(0, c, buf, n / 10); /* warm up */
  batch(1, c, buf, n / 10);
  /* Pairs of batches (direct, then through the name; the order alternates
   * so that neither side always runs second): the minimum of each side, and
   * the median of the pairs' differences, which holds up better when a call
   * costs microseconds with jitter (the real NCCL) than min - min. */
  double best_d = 1e30, best_n = 1e30, *diff = calloc((size_t)batches, sizeof *diff);
  if (!diff) return 1;
  for (int b = 0; b < batches; b++) {
    double d, w;
    if (b & 1) {
      w = batch(1, c, buf, n);
      d = batch(0, c, buf, n);
    } else {
      d = batch(0, c, buf, n);
      w = batch(1, c, buf, n);
    }
    if (d < best_d) best_d = d;
    if (w < best_n) best_n = w;
    diff[b] = w - d;
  }
  qsort(diff, (size_t)batches, sizeof *diff, cmp_double);
  double med = batches & 1 ? diff[batches / 2] : (diff[batches / 2 - 1] + diff[batches / 2]) / 2;
  /* Distribution-free 95% interval of the median: the order statistics
   * n/2 -+ 0.98 sqrt(n) (normal approximation of the binomial). */
  long k = (long)((double)batches / 2 - 0.98 * sqrt((double)batches));
  if (k < 0) k = 0;
  printf(
      "shim_overhead: %s, %s: direct %.1f ns/call, through ncclAllReduce %.1f ns/call, "
      "added %.1f ns/call (min of %d batches of %ld), median of pair differences %.1f ns/call "
      "[95%% interval %.1f..%.1f] (%s%s%s)\n",
      argv[1],
      !shim && (void *)named != (void *)direct ? "an interposer that only forwards"
      : !shim                                  ? "no shim"
      : dis && !strcmp(dis, "1")               ? "shim, GCSHIM_DISABLE=1"
      : cap && !strcmp(cap, "0")               ? "shim, statistics on, GCSHIM_CAPTURED=0"
      : every && !strcmp(every, "1")
          ? "shim, statistics on, every call timed (GCSHIM_TIME_EVERY=1)"
          : "shim, statistics on, host time of a sample (GCSHIM_TIME_EVERY)",
      best_d, best_n, best_n - best_d, batches, n, med, diff[k], diff[batches - 1 - k],
      cu ? "device buffers, a created stream" : "host buffers",
      pollute ? "; caches disturbed between calls" : "",
      group_mode ? "; each call ncclGroupStart, the all-reduce, ncclGroupEnd" : "");
  free(diff);
  if (cu) { /* what the shim's capture check costs by itself: one driver query */
    int (*is_capturing)(cudaStream_t, int *);
    p = need(cu, "cuStreamIsCapturing"), memcpy(&is_capturing, &p, sizeof p);
    is_capturing_fn = is_capturing;
    double best = 1e30;
    for (int b = 0; b < batches; b++) {
      int st = 0;
      double t0 = now_ns();
      for (long i = 0; i < n; i++) is_capturing(stream, &st);
      double t = (now_ns() - t0) / (double)n;
      if (t < best) best = t;
    }
    printf("shim_overhead: cuStreamIsCapturing alone: %.1f ns/call (min of %d batches of %ld)\n",
           best, batches, n);
  }
  if (want_components) components(direct, c, buf, n, batches);
  destroy(c);
  return 0;
}
