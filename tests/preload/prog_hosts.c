/*
 * prog_hosts.c - an unchanged NCCL-API program whose ranks pretend to run
 * on several hosts (GCSHIM_TEST_HOST = "host<rank / per_host>", set by
 * each rank before its first NCCL call), so that the shim finds its
 * communicators incomplete on every "host" and gives them the CPU group on
 * the communicator itself (src/shim/commcpu.c). test_hosts.sh runs it under
 * the shim with the hostnccl fixture.
 *
 *   prog_hosts MODE NRANKS PER_HOST
 *   MODE calls  all-reduces on random data (exact sums checked), a split,
 *               gcshim_barrier on both communicators, all-reduces inside
 *               ncclGroupStart/End (with GCSHIM_CHECK=1: not compared, no
 *               hang)
 *        check  GCSHIM_CHECK=1: rank 1 passes a different count; every
 *               rank must get ncclInvalidUsage naming both calls
 *
 * Prints one closing line "N passed, N failed"; exits non-zero on failure.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nccl_prog.h"

static int check_mode, per_host = 2;

static ncclResult_t barrier(ncclComm_t c) {
  void *f = dlsym(RTLD_DEFAULT, "gcshim_barrier");
  ncclResult_t (*fn)(ncclComm_t);
  if (!f) return ncclInvalidUsage;
  memcpy(&fn, &f, sizeof f);
  return fn(c);
}

/* n int64 all-reduces (sum) of random values, checked exactly. */
static void sums(prog_t *p, ncclComm_t c, int rank, int nranks, const int *world, uint64_t tag,
                 int grouped) {
  enum { N = 257 };
  int64_t in[2][N], out[2][N];
  int reps = grouped ? 2 : 1;
  if (grouped) PROG_OK(p, ncclGroupStart());
  for (int k = 0; k < reps; k++) {
    for (size_t i = 0; i < N; i++)
      in[k][i] = prog_val(p, tag + (uint64_t)k, world[rank], i, -1000000, 1000000);
    PROG_OK(p, ncclAllReduce(in[k], out[k], N, ncclInt64, ncclSum, c, NULL));
  }
  if (grouped) PROG_OK(p, ncclGroupEnd());
  for (int k = 0; k < reps; k++) {
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
      int64_t want = 0;
      for (int r = 0; r < nranks; r++) want += prog_val(p, tag + (uint64_t)k, world[r], i, -1000000, 1000000);
      bad += out[k][i] != want;
    }
    PROG_CHECK(p, !bad, "all-reduce %llu: %d wrong sums", (unsigned long long)tag, bad);
  }
}

static void body(prog_t *p) {
  char host[32];
  snprintf(host, sizeof host, "host%d", p->rank / per_host);
  setenv("GCSHIM_TEST_HOST", host, 1);
  ncclComm_t c;
  PROG_OK(p, ncclCommInitRank(&c, p->nranks, p->id, p->rank));
  int world[64];
  for (int r = 0; r < p->nranks; r++) world[r] = r;
  if (check_mode) {
    int64_t in[8] = {0}, out[8];
    size_t count = p->rank == 1 ? 4 : 8;
    ncclResult_t r = ncclAllReduce(in, out, count, ncclInt64, ncclSum, c, NULL);
    const char *msg = ncclGetLastError(c);
    PROG_CHECK(p, r == ncclInvalidUsage, "mismatched all-reduce returned %d, wanted %d", (int)r,
               (int)ncclInvalidUsage);
    PROG_CHECK(p, msg && strstr(msg, "disagree") && strstr(msg, "count 4") && strstr(msg, "count 8"),
               "ncclGetLastError: %s", msg ? msg : "(null)");
    printf("rank %d: %s\n", p->rank, msg ? msg : "");
    fflush(stdout); /* the rank ends with _exit */
    /* The communicator still works once every rank agrees again. */
    sums(p, c, p->rank, p->nranks, world, 1, 0);
    PROG_OK(p, ncclCommDestroy(c));
    return;
  }
  sums(p, c, p->rank, p->nranks, world, 1, 0);
  PROG_OK(p, barrier(c));
  sums(p, c, p->rank, p->nranks, world, 2, 1); /* inside a group */
  /* A split across the hosts: even and odd ranks. */
  ncclComm_t s;
  PROG_OK(p, ncclCommSplit(c, p->rank % 2, p->rank, &s, NULL));
  int sw[64], sn = 0, me = 0;
  for (int r = p->rank % 2; r < p->nranks; r += 2) {
    if (r == p->rank) me = sn;
    sw[sn++] = r;
  }
  sums(p, s, me, sn, sw, 3, 0);
  PROG_OK(p, barrier(s));
  PROG_OK(p, barrier(c));
  PROG_OK(p, ncclCommDestroy(s));
  PROG_OK(p, ncclCommDestroy(c));
}

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "calls") && strcmp(argv[1], "check"))) {
    fprintf(stderr, "usage: prog_hosts calls|check NRANKS PER_HOST\n");
    return 2;
  }
  check_mode = !strcmp(argv[1], "check");
  per_host = atoi(argv[3]);
  if (per_host < 1) return 2;
  char *args[] = {argv[0], argv[2], NULL};
  return prog_main("prog_hosts", body, 2, args);
}
