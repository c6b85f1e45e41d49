/*
 * demo_cpu_groups - the main job of README's first command: N processes
 * (scripts/gcshim-launch) join a world, build vLLM-style TP x PP groups,
 * and time barriers, broadcasts and all-gathers over their CPU groups,
 * checking every byte. Rank 0 prints what was done and how long it took.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/coord.h"
#include "core/group.h"
#include "cpu/cpu.h"

#define DIE(s)                                                                       \
  do {                                                                               \
    fprintf(stderr, "demo: %s:%d %s: %s\n", __FILE__, __LINE__, gc_status_string(s), \
            gc_last_error());                                                        \
    exit(1);                                                                         \
  } while (0)
#define OK(call)              \
  do {                        \
    gc_status_t s_ = (call);  \
    if (s_ != GC_OK) DIE(s_); \
  } while (0)

static double now_s(void) { return (double)gc_now_ns() * 1e-9; }

/* Same bytes on every rank from a seed: a deterministic xorshift. */
static void fill(unsigned char *p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (unsigned char)x;
  }
}

#define REPS 5

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[n / 2];
}

int main(void) {
  double t0 = now_s();
  OK(gc_init(NULL));
  int rank = gc_world_rank(), world = gc_world_size();
  double t_init = now_s() - t0;

  /* TP x PP like vLLM: tp = consecutive ranks, pp = strided. */
  int tp = world % 2 == 0 ? 2 : 1, pp = world / tp;
  int *tp_ranks = malloc(sizeof(int) * (size_t)world),
      *pp_ranks = malloc(sizeof(int) * (size_t)world);
  int *tp_sizes = malloc(sizeof(int) * (size_t)pp), *pp_sizes = malloc(sizeof(int) * (size_t)tp);
  for (int i = 0; i < world; i++) tp_ranks[i] = i;
  for (int j = 0; j < pp; j++) tp_sizes[j] = tp;
  for (int i = 0, k = 0; i < tp; i++) {
    pp_sizes[i] = pp;
    for (int j = 0; j < pp; j++) pp_ranks[k++] = j * tp + i;
  }
  gc_group_t *gtp, *gpp;
  double t1 = now_s();
  OK(gc_group_new(
      &(gc_group_options_t){
          .group_ranks = tp_ranks, .group_sizes = tp_sizes, .num_groups = pp, .group_name = "tp"},
      &gtp));
  OK(gc_group_new(
      &(gc_group_options_t){
          .group_ranks = pp_ranks, .group_sizes = pp_sizes, .num_groups = tp, .group_name = "pp"},
      &gpp));
  double t_groups = now_s() - t1;

  const int iters = 2000;
  OK(gc_barrier(gtp));
  double t2 = now_s();
  for (int i = 0; i < iters; i++) OK(gc_barrier(gtp));
  double t_barrier = (now_s() - t2) / iters;

  /* Broadcast 8 MiB from each pp stage's first rank, checked everywhere. */
  size_t nb = 8u << 20;
  unsigned char *buf = malloc(nb), *want = malloc(nb);
  fill(want, nb, 42);
  if (gc_group_is_first_rank(gpp))
    memcpy(buf, want, nb);
  else
    memset(buf, 0, nb);
  /* Warm calls only (the first touches the segment's pages): the median
   * of REPS after one more. */
  double ts[REPS + 1];
  for (int k = 0; k <= REPS; k++) {
    double t3 = now_s();
    OK(gc_cpu_broadcast(gpp->cpu, buf, nb, 0));
    ts[k] = now_s() - t3;
  }
  double t_bcast = median(ts + 1, REPS);
  int bad = memcmp(buf, want, nb) != 0;

  /* All-gather 1 MiB from every world rank. */
  size_t na = 1u << 20;
  unsigned char *mine = malloc(na), *all = malloc(na * (size_t)world), *exp = malloc(na);
  fill(mine, na, (uint64_t)rank + 7);
  for (int k = 0; k <= REPS; k++) {
    double t4 = now_s();
    OK(gc_cpu_allgather(gc_world.cpu, mine, na, all));
    ts[k] = now_s() - t4;
  }
  double t_ag = median(ts + 1, REPS);
  for (int r = 0; r < world; r++) {
    fill(exp, na, (uint64_t)r + 7);
    bad |= memcmp(all + (size_t)r * na, exp, na) != 0;
  }

  /* Every rank reports to rank 0 over the world CPU group. */
  double mine_t[5] = {t_init, t_groups, t_barrier, t_bcast, t_ag};
  double *all_t = malloc(sizeof mine_t * (size_t)world);
  int *all_bad = malloc(sizeof(int) * (size_t)world);
  OK(gc_cpu_allgather(gc_world.cpu, mine_t, sizeof mine_t, all_t));
  OK(gc_cpu_allgather(gc_world.cpu, &bad, sizeof bad, all_bad));
  int nbad = 0;
  for (int r = 0; r < world; r++) nbad += all_bad[r];
  if (rank == 0) {
    printf("gcshim demo: %d processes, one host, CPU groups over %s\n", world, gc_world.transport);
    printf("  groups: %s %s (tp=%d x pp=%d)\n", gc_group_name(gtp), gc_group_name(gpp), tp, pp);
    printf("  %-28s %13s\n", "step", "slowest rank");
    const char *names[5] = {"join world (gc_init)", "make tp and pp groups",
                            "tp barrier (mean of 2000)", "pp broadcast 8 MiB",
                            "world all-gather 1 MiB/rank"};
    for (int k = 0; k < 5; k++) {
      double mx = 0;
      for (int r = 0; r < world; r++) mx = all_t[r * 5 + k] > mx ? all_t[r * 5 + k] : mx;
      if (k == 2)
        printf("  %-28s %10.2f us\n", names[k], mx * 1e6);
      else if (k == 3)
        printf("  %-28s %10.3f ms  (%.2f GB/s)\n", names[k], mx * 1e3, nb / mx * 1e-9);
      else if (k == 4)
        printf("  %-28s %10.3f ms  (%.2f GB/s received)\n", names[k], mx * 1e3,
               na * (double)world / mx * 1e-9);
      else
        printf("  %-28s %10.3f ms\n", names[k], mx * 1e3);
    }
    printf(
        "  (broadcast and all-gather: median of %d warm calls on this machine, shared with\n"
        "  the other ranks; a loaded or small machine says little about the transport's\n"
        "  speed: docs/PERFORMANCE.md has measured figures)\n",
        REPS);
    printf("  data checked on every rank: %s\n", nbad ? "MISMATCH" : "all bytes correct");
  }
  OK(gc_finalize());
  free(tp_ranks), free(pp_ranks), free(tp_sizes), free(pp_sizes), free(buf), free(want);
  free(mine), free(all), free(exp), free(all_t), free(all_bad);
  return nbad ? 1 : 0;
}
