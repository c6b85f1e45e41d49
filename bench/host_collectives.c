/*
 * host_collectives.c - GroupCoordinator operations on host tensors against
 * Open MPI, side by side in one run.
 *
 *   mpirun -np N [--oversubscribe] bench/host_collectives [max_bytes [min_bytes [kinds]]]
 *
 * Every rank joins MPI_COMM_WORLD and the gcshim world (gc_init; the CPU
 * transport is "shm" unless GCSHIM_BENCH_TRANSPORT says "mpi"), makes one
 * group of all ranks and times gc_all_reduce (float32 and bfloat16 sums),
 * gc_all_gather and gc_reduce_scatter (float32) against MPI_Allreduce,
 * MPI_Allgather and MPI_Reduce_scatter_block from 4 B to max_bytes
 * (default 256 MiB; from min_bytes, default 4, when given; kinds: a comma
 * list of ar, bf16, ag, rs, default all). Sizes and bandwidths follow nccl-tests: size is the
 * all-reduce buffer, the gathered output, or the reduce-scatter input;
 * algbw = size / time; busbw = algbw * 2(n-1)/n for all-reduce and
 * algbw * (n-1)/n for the others. MPI has no bfloat16: its bf16 column
 * uses a user-defined MPI_Op on 2-byte elements, as an MPI program would.
 * Rank 0 also measures single-thread memcpy bandwidth in the same run.
 * Each figure: the slowest rank's average over back-to-back calls (about
 * 0.2 s), best of three. One call of each kind is checked first.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/reduce.h"
#include "gcshim/gc.h"

enum { K_AR_F32, K_AR_BF16, K_AG, K_RS, K_COUNT };
static const char *kind_names[] = {"all_reduce float32 sum", "all_reduce bfloat16 sum",
                                   "all_gather float32", "reduce_scatter float32 sum"};

static int rank, nranks;
static gc_group_t *grp;
static MPI_Op bf16_sum;
static MPI_Datatype bf16_type;
static bool failed;

static void die(const char *what, gc_status_t s) {
  fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, gc_status_string(s), gc_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bf16_sum_fn(void *in, void *inout, int *len, MPI_Datatype *dt) {
  (void)dt;
  uint16_t *a = inout;
  const uint16_t *b = in;
  for (int i = 0; i < *len; i++)
    a[i] = gc_float_to_bf16(gc_bf16_to_float(a[i]) + gc_bf16_to_float(b[i]));
}

typedef struct {
  int kind;
  bool gc;
  size_t count; /* elements of the all-reduce buffer, gathered output, scatter input */
  void *in, *out;
} job_t;

static gc_tensor_t tensor(void *data, gc_dtype_t dt, size_t n) {
  gc_tensor_t t = {.data = data, .dtype = dt, .ndim = 1, .device = {GC_DEVICE_HOST, 0}};
  t.shape[0] = (int64_t)n;
  return t;
}

static void run_once(const job_t *j) {
  size_t per = j->count / (size_t)nranks;
  gc_status_t s = GC_OK;
  gc_tensor_t ti, to;
  switch (j->kind) {
    case K_AR_F32:
    case K_AR_BF16: {
      gc_dtype_t dt = j->kind == K_AR_F32 ? GC_FLOAT32 : GC_BFLOAT16;
      if (j->gc) {
        ti = tensor(j->in, dt, j->count);
        to = tensor(j->out, dt, j->count);
        s = gc_all_reduce(grp, &ti, &to, GC_SUM, NULL);
      } else {
        MPI_Allreduce(j->in, j->out, (int)j->count, dt == GC_FLOAT32 ? MPI_FLOAT : bf16_type,
                      dt == GC_FLOAT32 ? MPI_SUM : bf16_sum, MPI_COMM_WORLD);
      }
      break;
    }
    case K_AG:
      if (j->gc) {
        ti = tensor(j->in, GC_FLOAT32, per);
        to = tensor(j->out, GC_FLOAT32, j->count);
        s = gc_all_gather(grp, &ti, 0, &to, NULL);
      } else {
        MPI_Allgather(j->in, (int)per, MPI_FLOAT, j->out, (int)per, MPI_FLOAT, MPI_COMM_WORLD);
      }
      break;
    case K_RS:
      if (j->gc) {
        ti = tensor(j->in, GC_FLOAT32, j->count);
        to = tensor(j->out, GC_FLOAT32, per);
        s = gc_reduce_scatter(grp, &ti, 0, &to, NULL);
      } else {
        MPI_Reduce_scatter_block(j->in, j->out, (int)per, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      }
      break;
  }
  if (s != GC_OK) die(kind_names[j->kind], s);
}

static double time_s(const job_t *j, double target_s) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = now();
  for (int i = 0; i < 2; i++) run_once(j);
  double warm = (now() - t0) / 2;
  int iters = warm > 0 ? (int)(target_s / warm) : 1000;
  if (iters < 3) iters = 3;
  if (iters > 5000) iters = 5000;
  MPI_Bcast(&iters, 1, MPI_INT, 0, MPI_COMM_WORLD);
  double best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = now();
    for (int i = 0; i < iters; i++) run_once(j);
    double mine = (now() - t0) / iters, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (worst < best) best = worst;
  }
  return best;
}

/* Small integers: every summation order gives the same bits, in bf16 too. */
static float value(int r, size_t i) { return (float)((int)((i * 7 + (size_t)r * 3) % 9) - 4); }

static void fill_in(const job_t *j) {
  size_t n = j->kind == K_AG ? j->count / (size_t)nranks : j->count;
  size_t base = j->kind == K_AG ? n * (size_t)rank : 0;
  for (size_t i = 0; i < n; i++) {
    float v = value(rank, base + i);
    if (j->kind == K_AR_BF16)
      ((uint16_t *)j->in)[i] = gc_float_to_bf16(v);
    else
      ((float *)j->in)[i] = v;
  }
}

static void verify(const job_t *j) {
  size_t per = j->count / (size_t)nranks;
  size_t n = j->kind == K_RS ? per : j->count, off = j->kind == K_RS ? per * (size_t)rank : 0;
  fill_in(j);
  memset(j->out, 0xff, n * (j->kind == K_AR_BF16 ? 2 : 4));
  run_once(j);
  size_t bad = 0;
  for (size_t i = 0; i < n && !bad; i++) {
    float want = 0, got;
    if (j->kind == K_AG) {
      want = value((int)(i / per), i);
    } else {
      for (int r = 0; r < nranks; r++) want += value(r, off + i);
    }
    got = j->kind == K_AR_BF16 ? gc_bf16_to_float(((uint16_t *)j->out)[i]) : ((float *)j->out)[i];
    if (got != want) bad = i + 1;
  }
  if (bad) {
    fprintf(stderr, "rank %d: %s %s of %zu elements: wrong value at %zu\n", rank,
            j->gc ? "gcshim" : "mpi", kind_names[j->kind], j->count, bad - 1);
    failed = true;
  }
}

static double memcpy_gbps(size_t bytes) {
  char *a = malloc(bytes), *b = malloc(bytes);
  if (!a || !b) die("memcpy buffers", GC_ERR_NO_MEMORY);
  memset(a, 1, bytes);
  memset(b, 2, bytes);
  double best = 1e30;
  for (int i = 0; i < 5; i++) {
    double t0 = now();
    memcpy(i % 2 ? a : b, i % 2 ? b : a, bytes);
    double t = now() - t0;
    if (t < best) best = t;
  }
  volatile char sink = a[bytes / 2] + b[bytes / 3];
  (void)sink;
  free(a);
  free(b);
  return (double)bytes / best / 1e9;
}

static void size_label(char *b, size_t n, size_t v) {
  if (v >= (1u << 20) && v % (1u << 20) == 0)
    snprintf(b, n, "%zuM", v >> 20);
  else if (v >= 1024 && v % 1024 == 0)
    snprintf(b, n, "%zuK", v >> 10);
  else
    snprintf(b, n, "%zu", v);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  size_t max_bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : (256u << 20);
  if (max_bytes < 4 || max_bytes > (1u << 30)) max_bytes = 256u << 20;
  size_t min_bytes = argc > 2 ? strtoull(argv[2], NULL, 0) : 4;
  const char *kinds = argc > 3 ? argv[3] : "ar,bf16,ag,rs";
  static const char *kind_keys[] = {"ar", "bf16", "ag", "rs"};
  MPI_Type_contiguous(2, MPI_BYTE, &bf16_type);
  MPI_Type_commit(&bf16_type);
  MPI_Op_create(bf16_sum_fn, 1, &bf16_sum);

  const char *tr = getenv("GCSHIM_BENCH_TRANSPORT");
  gc_init_options_t io = {.rank = rank,
                          .world_size = nranks,
                          .local_rank = rank,
                          .cpu_transport = tr && *tr ? tr : "shm"};
  gc_status_t s = gc_init(&io);
  if (s != GC_OK) die("gc_init", s);
  int *all = malloc(sizeof(int) * (size_t)nranks);
  for (int i = 0; i < nranks; i++) all[i] = i;
  gc_group_options_t go = {.group_ranks = all,
                           .group_sizes = &nranks,
                           .num_groups = 1,
                           .local_rank = rank,
                           .backend = "host",
                           .group_name = "bench"};
  if ((s = gc_group_new(&go, &grp)) != GC_OK) die("gc_group_new", s);

  double mc = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) mc = memcpy_gbps(max_bytes < (64u << 20) ? (64u << 20) : max_bytes);
  MPI_Bcast(&mc, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    printf(
        "host_collectives: %d ranks, gcshim over %s against Open MPI; single-thread memcpy "
        "%.2f GB/s\n",
        nranks, io.cpu_transport, mc);
    printf("time: us per call, slowest rank, best of 3; algbw/busbw in GB/s (nccl-tests)\n");
  }

  void *in = malloc(max_bytes), *out = malloc(max_bytes);
  if (!in || !out) die("buffers", GC_ERR_NO_MEMORY);
  memset(in, 0, max_bytes);
  memset(out, 0, max_bytes);

  for (int k = 0; k < K_COUNT; k++) {
    char key[8];
    snprintf(key, sizeof key, ",%s,", kind_keys[k]);
    char list[64];
    snprintf(list, sizeof list, ",%s,", kinds);
    if (!strstr(list, key)) continue;
    size_t es = k == K_AR_BF16 ? 2 : 4;
    double busf = k <= K_AR_BF16 ? 2.0 * (nranks - 1) / nranks : (double)(nranks - 1) / nranks;
    if (rank == 0) {
      printf("\n%s\n%8s %12s %12s %9s %9s %9s %9s %8s\n", kind_names[k], "bytes", "gc us", "mpi us",
             "gc algbw", "gc busbw", "mpi algbw", "mpi busbw", "speedup");
    }
    for (size_t bytes = 4; bytes <= max_bytes; bytes *= 4) {
      if (bytes < min_bytes) continue;
      size_t count = bytes / es;
      if (k >= K_AG) count -= count % (size_t)nranks;
      if (count == 0) continue;
      size_t real = count * es;
      job_t jg = {.kind = k, .gc = true, .count = count, .in = in, .out = out};
      job_t jm = jg;
      jm.gc = false;
      verify(&jg);
      verify(&jm);
      double tg = time_s(&jg, 0.2), tm = time_s(&jm, 0.2);
      if (rank == 0) {
        char label[32];
        size_label(label, sizeof label, real);
        double ag = (double)real / tg / 1e9, am = (double)real / tm / 1e9;
        printf("%8s %12.2f %12.2f %9.3f %9.3f %9.3f %9.3f %8.2f\n", label, tg * 1e6, tm * 1e6, ag,
               ag * busf, am, am * busf, tm / tg);
        fflush(stdout);
      }
    }
  }
  int bad = failed, any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("\nspeedup: mpi time / gc time (> 1: gcshim faster)\n");
    if (any) printf("some results were wrong (see stderr)\n");
  }
  gc_group_destroy(grp);
  gc_finalize();
  free(all);
  free(in);
  free(out);
  MPI_Op_free(&bf16_sum);
  MPI_Type_free(&bf16_type);
  MPI_Finalize();
  return any ? 1 : 0;
}
