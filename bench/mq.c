/*
 * mq.c - the message queue against the group's own gc_broadcast of the same
 * bytes, side by side in one run.
 *
 *   bench/mq [readers ...]        (default: 1 2 3 4)
 *
 * For each reader count R it forks R + 1 ranks (a shm world of its own),
 * makes one group of all of them and its broadcaster (writer: rank 0), and
 * for each size times:
 *   latency   one message alone: an untimed gc_barrier, then the writer's
 *             gc_mq_enqueue and every reader's gc_mq_dequeue (+ free), or
 *             one gc_broadcast of a host tensor from rank 0 (agreement round
 *             included, as every API call pays it); the slowest rank's
 *             average from the barrier's exit to its call's return;
 *   stream    n messages back to back after one barrier: the slowest rank's
 *             time divided by n (and the payload rate that gives).
 * Before timing, one message of each kind is checked byte for byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gcshim/gc.h"

static const size_t SIZES[] = {64, 4096, 65536, 1u << 20, 16u << 20};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])
#define MAXR 16
enum { LAT_MQ, LAT_BC, STR_MQ, STR_BC, NK };

typedef struct {
  double t[MAXR + 1][NSIZES][NK]; /* seconds per message, per rank */
  int failed;
} shared_t;
static shared_t *SH;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int iters_for(size_t size) {
  return size <= 4096 ? 2000 : size <= 65536 ? 1000 : size <= (1u << 20) ? 100 : 10;
}

#define TRY(call)                                                                 \
  do {                                                                            \
    gc_status_t s_ = (call);                                                      \
    if (s_ != GC_OK) {                                                            \
      fprintf(stderr, "rank %d: %s: %s: %s\n", rank, #call, gc_status_string(s_), \
              gc_last_error());                                                   \
      SH->failed = 1;                                                             \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

static int run_rank(int rank, int n, const char *rv) {
  gc_init_options_t io = {
      .rank = rank, .world_size = n, .local_rank = rank, .rendezvous = rv, .timeout_s = 120};
  TRY(gc_init(&io));
  int ranks[MAXR + 1], sizes[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_options_t go = {.group_ranks = ranks,
                           .group_sizes = sizes,
                           .num_groups = 1,
                           .local_rank = rank,
                           .backend = "host",
                           .group_name = "bench"};
  gc_group_t *g;
  TRY(gc_group_new(&go, &g));
  gc_mq_t *q;
  TRY(gc_group_create_mq_broadcaster(g, 0, NULL, true, &q));
  bool writer = rank == 0;
  for (size_t k = 0; k < NSIZES; k++) {
    size_t size = SIZES[k];
    int iters = iters_for(size);
    unsigned char *buf = malloc(size);
    for (size_t i = 0; i < size; i++) buf[i] = writer ? (unsigned char)(i * 131 + 7) : 0;
    gc_tensor_t t = {.data = buf, .dtype = GC_UINT8, .ndim = 1, .shape = {(int64_t)size}};
    /* Check once: both deliver the writer's bytes. */
    void *m = NULL;
    size_t len = 0;
    if (writer) {
      TRY(gc_mq_enqueue(q, buf, size, 60));
    } else {
      TRY(gc_mq_dequeue(q, &m, &len, 60));
      for (size_t i = 0; i < size; i++)
        if (len != size || ((unsigned char *)m)[i] != (unsigned char)(i * 131 + 7)) {
          fprintf(stderr, "rank %d: wrong message of %zu bytes\n", rank, size);
          SH->failed = 1;
          return 1;
        }
      free(m);
    }
    TRY(gc_broadcast(g, &t, 0, NULL));
    for (size_t i = 0; i < size; i++)
      if (buf[i] != (unsigned char)(i * 131 + 7)) {
        fprintf(stderr, "rank %d: wrong broadcast of %zu bytes\n", rank, size);
        SH->failed = 1;
        return 1;
      }
    for (int kind = 0; kind < NK; kind++) {
      bool mq = kind == LAT_MQ || kind == STR_MQ, lat = kind == LAT_MQ || kind == LAT_BC;
      double acc = 0;
      TRY(gc_barrier(g));
      double t0 = now();
      for (int i = 0; i < iters; i++) {
        if (lat) {
          TRY(gc_barrier(g));
          t0 = now();
        }
        if (mq && writer) {
          TRY(gc_mq_enqueue(q, buf, size, 60));
        } else if (mq) {
          TRY(gc_mq_dequeue(q, &m, &len, 60));
          free(m);
        } else {
          TRY(gc_broadcast(g, &t, 0, NULL));
        }
        if (lat) acc += now() - t0;
      }
      if (!lat) acc = now() - t0;
      SH->t[rank][k][kind] = acc / iters;
    }
    free(buf);
  }
  TRY(gc_barrier(g));
  TRY(gc_mq_destroy(q));
  gc_finalize();
  return 0;
}

static void size_str(size_t b, char *out, size_t n) {
  if (b >= (1u << 20))
    snprintf(out, n, "%zu MiB", b >> 20);
  else if (b >= 1024)
    snprintf(out, n, "%zu KiB", b >> 10);
  else
    snprintf(out, n, "%zu B", b);
}

int main(int argc, char **argv) {
  int readers[MAXR], nr = 0;
  for (int i = 1; i < argc && nr < MAXR; i++) {
    int r = atoi(argv[i]);
    if (r < 1 || r > MAXR - 1) {
      fprintf(stderr, "usage: %s [readers 1..%d ...]\n", argv[0], MAXR - 1);
      return 2;
    }
    readers[nr++] = r;
  }
  if (!nr)
    for (int r = 1; r <= 4; r++) readers[nr++] = r;
  SH = mmap(NULL, sizeof *SH, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (SH == MAP_FAILED) return 2;
  printf(
      "mq: message queue (gc_mq_enqueue -> gc_mq_dequeue) against gc_broadcast (host tensor,\n"
      "shm CPU group) of the same bytes; us per message, slowest rank; %ld CPUs online\n",
      sysconf(_SC_NPROCESSORS_ONLN));
  for (int ri = 0; ri < nr; ri++) {
    int n = readers[ri] + 1;
    char rv[64];
    snprintf(rv, sizeof rv, "gcbenchmq-%d-%d", (int)getpid(), n);
    memset(SH, 0, sizeof *SH);
    fflush(stdout);
    pid_t pids[MAXR + 1];
    for (int r = 0; r < n; r++)
      if ((pids[r] = fork()) == 0) _exit(run_rank(r, n, rv));
    int bad = 0;
    for (int r = 0; r < n; r++) {
      int st;
      waitpid(pids[r], &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
    }
    if (bad || SH->failed) {
      fprintf(stderr, "mq: %d readers: %d ranks failed\n", n - 1, bad);
      return 1;
    }
    printf(
        "\n%d reader%s    latency: mq us  bcast us  mq/bcast   stream: mq us  bcast us  "
        "mq/bcast   mq MB/s\n",
        n - 1, n > 2 ? "s" : " ");
    for (size_t k = 0; k < NSIZES; k++) {
      double v[NK] = {0};
      for (int kind = 0; kind < NK; kind++)
        for (int r = 0; r < n; r++)
          if (SH->t[r][k][kind] > v[kind]) v[kind] = SH->t[r][k][kind];
      char sz[32];
      size_str(SIZES[k], sz, sizeof sz);
      printf("%-10s %19.2f %9.2f %9.2f %16.2f %9.2f %9.2f %9.0f\n", sz, v[LAT_MQ] * 1e6,
             v[LAT_BC] * 1e6, v[LAT_MQ] / v[LAT_BC], v[STR_MQ] * 1e6, v[STR_BC] * 1e6,
             v[STR_MQ] / v[STR_BC], (double)SIZES[k] / v[STR_MQ] / 1e6);
    }
  }
  return 0;
}
