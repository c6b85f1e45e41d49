/*
 * cpu_group.c - the shm CPU group against Open MPI, side by side in one run.
 *
 *   mpirun -np N [--oversubscribe] bench/cpu_group [max_bytes]
 *
 * Every rank joins MPI_COMM_WORLD and a shm CPU group made from a key that
 * rank 0 draws and broadcasts over MPI. For barrier latency, broadcast (root
 * 0) and all-gather, each row times the shm call and the MPI call
 * (MPI_Barrier, MPI_Bcast, MPI_Allgather) on the same buffers (see time_us
 * for how). All-gather sizes are the gathered total (as
 * nccl-tests count them): each rank sends size / N bytes. Before timing,
 * one call of each transport is checked for exact contents.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu.h"

enum { OP_BARRIER, OP_BCAST, OP_ALLGATHER };

typedef struct {
  int op;
  bool shm;
  size_t bytes; /* broadcast: the payload; all-gather: per rank */
  char *buf, *recv;
} job_t;

static gc_cpu_group_t *shm;
static int rank, nranks;
static bool failed;

static void die(const char *what, gc_status_t s) {
  fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, gc_status_string(s), gc_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
}

static void run_once(const job_t *j) {
  gc_status_t s = GC_OK;
  switch (j->op) {
    case OP_BARRIER:
      if (j->shm)
        s = gc_cpu_barrier(shm);
      else
        MPI_Barrier(MPI_COMM_WORLD);
      break;
    case OP_BCAST:
      if (j->shm)
        s = gc_cpu_broadcast(shm, j->buf, j->bytes, 0);
      else
        MPI_Bcast(j->buf, (int)j->bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
      break;
    case OP_ALLGATHER:
      if (j->shm)
        s = gc_cpu_allgather(shm, j->buf, j->bytes, j->recv);
      else
        MPI_Allgather(j->buf, (int)j->bytes, MPI_BYTE, j->recv, (int)j->bytes, MPI_BYTE,
                      MPI_COMM_WORLD);
      break;
  }
  if (s != GC_OK) die("shm call", s);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Microseconds per call: the barrier back to back; a broadcast or
 * all-gather alone, each call after an (untimed) MPI_Barrier, as OSU's
 * benchmarks time them, so that a root racing ahead through buffered
 * broadcasts is not counted as speed. The figure is the slowest rank's
 * average, best of three runs of about 0.1 s; rank 0 picks the count from
 * a warm-up so that every rank makes the same number of calls. */
static double time_us(const job_t *j) {
  bool sync = j->op != OP_BARRIER;
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = now();
  for (int i = 0; i < 3; i++) run_once(j);
  double warm = (now() - t0) / 3;
  int iters = warm > 0 ? (int)(0.1 / warm) : 1000;
  if (iters < 3) iters = 3;
  if (iters > 20000) iters = 20000;
  if (sync && iters > 2000) iters = 2000;
  MPI_Bcast(&iters, 1, MPI_INT, 0, MPI_COMM_WORLD);
  double best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double sum = 0;
    t0 = now();
    for (int i = 0; i < iters; i++) {
      if (sync) {
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
      }
      run_once(j);
      if (sync) sum += now() - t0;
    }
    if (!sync) sum = now() - t0;
    double mine = sum / iters, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (worst < best) best = worst;
  }
  return best * 1e6;
}

static void pattern(char *p, size_t n, int r, int salt) {
  for (size_t i = 0; i < n; i++) p[i] = (char)(i * 131 + (size_t)r * 17 + (size_t)salt);
}

/* One call of the job with known data, checked on every rank. */
static void verify(const job_t *j, int salt) {
  size_t n = j->bytes;
  char *want = malloc(n * (size_t)nranks + 1);
  if (!want) die("verify: no memory", GC_ERR_NO_MEMORY);
  bool ok = true;
  if (j->op == OP_BCAST) {
    if (rank == 0)
      pattern(j->buf, n, 0, salt);
    else
      memset(j->buf, 0, n);
    run_once(j);
    pattern(want, n, 0, salt);
    ok = !memcmp(j->buf, want, n);
  } else if (j->op == OP_ALLGATHER) {
    pattern(j->buf, n, rank, salt);
    memset(j->recv, 0, n * (size_t)nranks);
    run_once(j);
    for (int r = 0; r < nranks; r++) pattern(want + n * (size_t)r, n, r, salt);
    ok = !memcmp(j->recv, want, n * (size_t)nranks);
  }
  free(want);
  if (!ok) {
    fprintf(stderr, "rank %d: %s %s of %zu bytes delivered wrong data\n", rank,
            j->shm ? "shm" : "mpi", j->op == OP_BCAST ? "broadcast" : "allgather", n);
    failed = true;
  }
}

static void row(const char *label, double shm_us, double mpi_us) {
  if (rank != 0) return;
  if (shm_us < 0)
    printf("%-12s %12s %12.2f %8s\n", label, "-", mpi_us, "-");
  else
    printf("%-12s %12.2f %12.2f %8.2f\n", label, shm_us, mpi_us, shm_us / mpi_us);
  fflush(stdout);
}

static void size_label(char *b, size_t n, size_t v) {
  if (v >= (1u << 20) && v % (1u << 20) == 0)
    snprintf(b, n, "%zu MiB", v >> 20);
  else if (v >= 1024 && v % 1024 == 0)
    snprintf(b, n, "%zu KiB", v >> 10);
  else
    snprintf(b, n, "%zu B", v);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  size_t max_bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : (64u << 20);
  if (max_bytes < 64 || max_bytes > (1u << 30)) max_bytes = 64u << 20;

  char key[96] = {0};
  if (rank == 0)
    snprintf(key, sizeof key, "u%u-bench-cpu-group-%d-%ld", (unsigned)getuid(), (int)getpid(),
             (long)time(NULL));
  MPI_Bcast(key, sizeof key, MPI_CHAR, 0, MPI_COMM_WORLD);
  gc_status_t s = gc_cpu_shm_create(key, rank, nranks, gc_env_timeout(), &shm);
  char why[256] = "";
  if (s != GC_OK) snprintf(why, sizeof why, "%s: %s", gc_status_string(s), gc_last_error());
  int have_shm = s == GC_OK, all_shm = 0;
  MPI_Allreduce(&have_shm, &all_shm, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all_shm && shm) {
    gc_cpu_destroy(shm);
    shm = NULL;
  }
  if (rank == 0) {
    printf("cpu_group: %d ranks; shm against Open MPI; us per call, slowest rank, best of 3\n",
           nranks);
    if (!all_shm) printf("shm transport unavailable (%s): MPI only\n", why[0] ? why : "on a peer");
  }

  char *buf = malloc(max_bytes), *recv = malloc(max_bytes + (size_t)nranks);
  if (!buf || !recv) die("no memory for buffers", GC_ERR_NO_MEMORY);
  memset(buf, 1, max_bytes);
  memset(recv, 1, max_bytes);

  if (rank == 0) printf("\n%-12s %12s %12s %8s\n", "barrier", "shm us", "mpi us", "shm/mpi");
  job_t jb = {.op = OP_BARRIER, .shm = true};
  double su = all_shm ? time_us(&jb) : -1;
  jb.shm = false;
  row("-", su, time_us(&jb));

  for (int op = OP_BCAST; op <= OP_ALLGATHER; op++) {
    if (rank == 0)
      printf("\n%-12s %12s %12s %8s\n", op == OP_BCAST ? "broadcast" : "all-gather", "shm us",
             "mpi us", "shm/mpi");
    int salt = 0;
    for (size_t total = 64; total <= max_bytes; total *= 4, salt++) {
      size_t per = op == OP_BCAST ? total : total / (size_t)nranks;
      job_t js = {.op = op, .shm = true, .bytes = per, .buf = buf, .recv = recv};
      job_t jm = js;
      jm.shm = false;
      if (all_shm) verify(&js, salt);
      verify(&jm, salt + 7);
      su = all_shm ? time_us(&js) : -1;
      double mu = time_us(&jm);
      char label[32];
      size_label(label, sizeof label, total);
      row(label, su, mu);
    }
  }
  int bad = failed, any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any) printf("\nsome transfers delivered wrong data (see stderr)\n");
  if (shm) gc_cpu_destroy(shm);
  free(buf);
  free(recv);
  MPI_Finalize();
  return any ? 1 : 0;
}
