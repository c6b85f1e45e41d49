/*
 * test_ops_mpi.c - the coordinator operations on host tensors against Open
 * MPI's own results for the same data, under mpirun (run_ops_mpi.sh).
 *
 * Every rank joins MPI_COMM_WORLD and the gcshim world over shm (the
 * rendezvous drawn by rank 0 and sent with MPI_Bcast), then for every dtype
 * MPI has (int8, uint8, int32, int64, float32, float64) and the reductions
 * both define (sum, prod, max, min) compares gc_all_reduce with
 * MPI_Allreduce, gc_reduce_scatter with MPI_Reduce_scatter_block and
 * gc_all_gather (dim 0 and -1) with MPI_Allgather on seeded random data.
 * Integers, max/min and float sums of integer-valued data are compared bit
 * for bit (any summation order gives the same result); float sums of
 * general data within 1e-5 relative (float32) or 1e-12 (float64), because
 * MPI does not promise the order in which it adds. Prints one closing line
 * 'N passed, N failed'; exit 77 when the mpi support is not built.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gcshim/gc.h"

#ifdef GC_HAVE_MPI
#include <mpi.h>

static int rank, nranks;
static long pass, fail;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (cond) {                                                            \
      pass++;                                                              \
    } else {                                                               \
      fail++;                                                              \
      fprintf(stderr, "[rank %d] FAIL %s:%d: ", rank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, " (last error: %s)\n", gc_last_error());             \
    }                                                                      \
  } while (0)

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

typedef struct {
  gc_dtype_t gc;
  MPI_Datatype mpi;
  size_t size;
  int is_float;
  const char *name;
} dt_t;

/* Values small enough that a product over 8 ranks stays exact in every type. */
static void fill(const dt_t *d, void *p, size_t n, int general_float) {
  for (size_t i = 0; i < n; i++) {
    int64_t v = (int64_t)(rnd() % 7) - 3;
    if (v == 0) v = 1;
    switch (d->gc) {
      case GC_INT8:
        ((int8_t *)p)[i] = (int8_t)v;
        break;
      case GC_UINT8:
        ((uint8_t *)p)[i] = (uint8_t)(v + 3);
        break;
      case GC_INT32:
        ((int32_t *)p)[i] = (int32_t)(v * 1000 + (int64_t)(rnd() % 999));
        break;
      case GC_INT64:
        ((int64_t *)p)[i] = v * 1000000007LL + (int64_t)(rnd() % 99991);
        break;
      case GC_FLOAT32:
        ((float *)p)[i] =
            general_float ? (float)((double)(rnd() >> 11) / 9007199254740992.0 - 0.5) : (float)v;
        break;
      case GC_FLOAT64:
        ((double *)p)[i] =
            general_float ? (double)(rnd() >> 11) / 9007199254740992.0 - 0.5 : (double)v;
        break;
      default:
        break;
    }
  }
}

static int same(const dt_t *d, const void *a, const void *b, size_t n, int tolerant) {
  if (!tolerant || !d->is_float) return memcmp(a, b, n * d->size) == 0;
  for (size_t i = 0; i < n; i++) {
    double x = d->gc == GC_FLOAT32 ? ((const float *)a)[i] : ((const double *)a)[i];
    double y = d->gc == GC_FLOAT32 ? ((const float *)b)[i] : ((const double *)b)[i];
    double tol = d->gc == GC_FLOAT32 ? 1e-5 : 1e-12;
    if (fabs(x - y) > tol * (fabs(x) + fabs(y) + 1e-30) + tol) return 0;
  }
  return 1;
}

static gc_tensor_t host(void *p, gc_dtype_t dt, int64_t d0, int64_t d1) {
  gc_tensor_t t = {.data = p, .dtype = dt, .ndim = 2, .shape = {d0, d1}};
  return t;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--probe")) return 0; /* run_ops_mpi.sh: MPI is built in */
  alarm(120);
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  unsigned long long seed = 0;
  char key[64] = "";
  if (rank == 0) {
    const char *e = getenv("GCSHIM_TEST_SEED");
    seed = e ? strtoull(e, NULL, 0) : (unsigned long long)getpid() * 2654435761ull ^ 0x5eed;
    snprintf(key, sizeof key, "opsmpi-%d-%llu", (int)getpid(), seed % 100000);
    printf("seed %llu (GCSHIM_TEST_SEED to repeat), %d ranks\n", seed, nranks);
    fflush(stdout);
  }
  MPI_Bcast(&seed, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  MPI_Bcast(key, sizeof key, MPI_CHAR, 0, MPI_COMM_WORLD);
  rng_state = seed * 0x9e3779b97f4a7c15ull + (uint64_t)rank + 1;

  gc_init_options_t io = {.rank = rank,
                          .world_size = nranks,
                          .local_rank = rank,
                          .cpu_transport = "shm",
                          .rendezvous = key,
                          .timeout_s = 60};
  gc_status_t s = gc_init(&io);
  CHECK(s == GC_OK, "gc_init: %s", gc_status_string(s));
  int *ranks = malloc(sizeof(int) * (size_t)nranks), size = nranks;
  for (int i = 0; i < nranks; i++) ranks[i] = i;
  gc_group_t *g = NULL;
  s = gc_group_new(
      &(gc_group_options_t){
          .group_ranks = ranks, .group_sizes = &size, .num_groups = 1, .group_name = "world"},
      &g);
  CHECK(s == GC_OK && g, "gc_group_new: %s", gc_status_string(s));
  if (!g) MPI_Abort(MPI_COMM_WORLD, 1);

  const dt_t dts[] = {
      {GC_INT8, MPI_INT8_T, 1, 0, "int8"},      {GC_UINT8, MPI_UINT8_T, 1, 0, "uint8"},
      {GC_INT32, MPI_INT32_T, 4, 0, "int32"},   {GC_INT64, MPI_INT64_T, 8, 0, "int64"},
      {GC_FLOAT32, MPI_FLOAT, 4, 1, "float32"}, {GC_FLOAT64, MPI_DOUBLE, 8, 1, "float64"}};
  const struct {
    gc_redop_t gc;
    MPI_Op mpi;
    const char *name;
  } ops[] = {{GC_SUM, MPI_SUM, "sum"},
             {GC_PROD, MPI_PROD, "prod"},
             {GC_MAX, MPI_MAX, "max"},
             {GC_MIN, MPI_MIN, "min"}};
  const int64_t rows_list[] = {1, 3, 64, 1000};
  for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++) {
    const dt_t *d = &dts[di];
    for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++) {
      int64_t rows = rows_list[ri] * nranks, cols = 1 + (int64_t)(rnd() % 17);
      MPI_Bcast(&cols, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
      size_t n = (size_t)(rows * cols);
      char *in = malloc(n * d->size), *a = malloc(n * d->size), *b = malloc(n * d->size);
      char *ga = malloc(n * d->size * (size_t)nranks), *gb = malloc(n * d->size * (size_t)nranks);
      for (int general = 0; general <= d->is_float; general++) {
        fill(d, in, n, general);
        for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
          if (ops[oi].gc == GC_PROD && (d->gc == GC_INT8 || d->gc == GC_UINT8) && nranks > 4)
            continue; /* both wrap, but MPI does not define overflow */
          if (general && ops[oi].gc == GC_PROD) continue;
          gc_tensor_t ti = host(in, d->gc, rows, cols), to = host(a, d->gc, rows, cols);
          s = gc_all_reduce(g, &ti, &to, ops[oi].gc, NULL);
          MPI_Allreduce(in, b, (int)n, d->mpi, ops[oi].mpi, MPI_COMM_WORLD);
          int tolerant = general && ops[oi].gc == GC_SUM;
          CHECK(s == GC_OK && same(d, a, b, n, tolerant), "all_reduce %s %s %zu elements%s: %s",
                d->name, ops[oi].name, n, general ? " (general floats)" : "", gc_status_string(s));
          /* reduce-scatter (sum only in the API) */
          if (ops[oi].gc == GC_SUM) {
            size_t part = n / (size_t)nranks;
            gc_tensor_t tr = host(a, d->gc, rows / nranks, cols);
            s = gc_reduce_scatter(g, &ti, 0, &tr, NULL);
            MPI_Reduce_scatter_block(in, b, (int)part, d->mpi, MPI_SUM, MPI_COMM_WORLD);
            CHECK(s == GC_OK && same(d, a, b, part, tolerant), "reduce_scatter %s %zu%s: %s",
                  d->name, part, general ? " (general floats)" : "", gc_status_string(s));
          }
        }
        /* all-gather on dim 0 is MPI_Allgather exactly */
        gc_tensor_t ti = host(in, d->gc, rows, cols), to = host(ga, d->gc, rows * nranks, cols);
        s = gc_all_gather(g, &ti, 0, &to, NULL);
        MPI_Allgather(in, (int)n, d->mpi, gb, (int)n, d->mpi, MPI_COMM_WORLD);
        CHECK(s == GC_OK && !memcmp(ga, gb, n * d->size * (size_t)nranks),
              "all_gather dim 0 %s %zu: %s", d->name, n, gc_status_string(s));
        /* dim -1: row r of the output is rank 0's row r, then rank 1's, ... */
        to = host(ga, d->gc, rows, cols * nranks);
        s = gc_all_gather(g, &ti, -1, &to, NULL);
        int ok = s == GC_OK;
        for (int64_t r = 0; ok && r < rows; r++)
          for (int k = 0; k < nranks && ok; k++)
            ok = !memcmp(ga + ((size_t)r * (size_t)(cols * nranks) + (size_t)(k * cols)) * d->size,
                         gb + ((size_t)k * n + (size_t)(r * cols)) * d->size,
                         (size_t)cols * d->size);
        CHECK(ok, "all_gather dim -1 %s %zu: %s", d->name, n, gc_status_string(s));
      }
      free(in), free(a), free(b), free(ga), free(gb);
    }
  }
  gc_group_destroy(g);
  gc_finalize();
  long tot[2] = {pass, fail}, sum[2];
  MPI_Reduce(tot, sum, 2, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("%ld passed, %ld failed\n", sum[0], sum[1]);
  MPI_Bcast(sum, 2, MPI_LONG, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  free(ranks);
  return sum[1] ? 1 : 0;
}
#else
int main(int argc, char **argv) {
  (void)argv;
  if (argc > 1) return 77;
  printf("mpi support not built: skipped\n");
  return 77;
}
#endif
