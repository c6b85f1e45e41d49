/*
 * prog_group.c - an unchanged NCCL-API program (nccl.h, libc) that makes
 * its communicators inside ncclGroupStart/End, as nccl-tests and every
 * single-process multi-GPU program do; test_preload.sh runs it under the
 * shim and compares the JSON report with the calls below. Results are
 * checked on every rank on seeded random data.
 *
 *   PROG_GROUP_MODE=procs prog_group [ranks ...]
 *     one rank per process; inside groups: ncclCommInitRank (the world),
 *     ncclCommInitRankConfig non-blocking (commName "nb"),
 *     a non-blocking split of it (outside a group),
 *     ncclCommInitRankScalable, ncclCommSplit by parity, and two
 *     communicators in one group (commNames "ga", "gb"); before each group
 *     ends, the answers NCCL gives for a communicator it has not made yet
 *   PROG_GROUP_MODE=multi PROG_GROUP_PER_PROC=R prog_group [procs ...]
 *     each process makes R ranks of one world in one group (one thread),
 *     drives them with grouped all-reduces, and splits them in a group
 *
 * Calls per rank: procs: world AllReduce 5 x 1000 int32, Broadcast 1 x 512
 * bytes; nb AllReduce 2 x 64 float32; its non-blocking split AllReduce 1 x 4
 * int32; the scalable one AllGather 3 x 10
 * int64; each parity half AllReduce 2 x 32 int32; ga AllGather 1 x 16
 * float32; gb ReduceScatter 1 x 8 float32. multi: world AllReduce 3 x 500
 * int32; its split AllReduce 1 x 8 int32.
 */
#include "../fixtures/hostnccl/nccl_prog.h"

/* Fills n int32 of rank r's seeded data for test t. */
static void fill_i32(const prog_t *p, int t, int r, int32_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) v[i] = (int32_t)prog_val(p, (uint64_t)t, r, i, -1000, 1000);
}

/* The sum over ranks (all of 0..n-1 when members is NULL) of fill_i32. */
static void check_sum_i32(prog_t *p, int t, const int *members, int m, const int32_t *got, size_t n,
                          const char *what) {
  long bad = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t want = 0;
    for (int k = 0; k < m; k++)
      want += prog_val(p, (uint64_t)t, members ? members[k] : k, i, -1000, 1000);
    if (got[i] != want) bad++;
  }
  PROG_CHECK(p, bad == 0, "%s: %ld of %zu elements wrong", what, bad, n);
}

/* Before the group ends, NCCL has only queued the init: the communicator
 * answers ncclSuccess, count 0 and rank 0 (docs/NCCL_FACTS.md C1). */
static void check_not_made(prog_t *p, ncclComm_t c, const char *what) {
  int v = -1;
  PROG_CHECK(p, ncclCommCount(c, &v) == ncclSuccess && v == 0,
             "%s: before ncclGroupEnd, count %d (wanted 0, ncclSuccess)", what, v);
  ncclResult_t st = ncclInternalError;
  PROG_CHECK(p, ncclCommGetAsyncError(c, &st) == ncclSuccess && st == ncclSuccess,
             "%s: before ncclGroupEnd, async state %d (wanted ncclSuccess)", what, (int)st);
}

static void check_made(prog_t *p, ncclComm_t c, int n, int me, const char *what) {
  int v = -1, r = -1;
  PROG_OK(p, ncclCommCount(c, &v));
  PROG_OK(p, ncclCommUserRank(c, &r));
  PROG_CHECK(p, v == n && r == me, "%s: count %d rank %d, wanted %d %d", what, v, r, n, me);
}

static void allreduce_i32(prog_t *p, ncclComm_t c, int t, const int *members, int m, int me,
                          size_t n, const char *what) {
  int32_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  fill_i32(p, t, members ? members[me] : me, in, n);
  PROG_OK(p, ncclAllReduce(in, out, n, ncclInt32, ncclSum, c, NULL));
  check_sum_i32(p, t, members, m, out, n, what);
  free(in);
  free(out);
}

static void body_procs(prog_t *p) {
  int n = p->nranks, me = p->rank;
  ncclComm_t world = NULL;
  PROG_OK(p, ncclGroupStart());
  PROG_OK(p, ncclCommInitRank(&world, n, p->id, me));
  check_not_made(p, world, "world");
  PROG_OK(p, ncclGroupEnd());
  if (!world) return;
  check_made(p, world, n, me, "world");
  for (int t = 0; t < 5; t++) allreduce_i32(p, world, t, NULL, n, me, 1000, "world all-reduce");

  /* Four more unique ids, from rank 0. */
  ncclUniqueId ids[4];
  if (me == 0)
    for (int i = 0; i < 4; i++) PROG_OK(p, ncclGetUniqueId(&ids[i]));
  PROG_OK(p, ncclBroadcast(ids, ids, sizeof ids, ncclInt8, 0, world, NULL));

  /* Non-blocking, inside a group: the group's end says ncclInProgress. */
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  cfg.commName = "nb";
  ncclComm_t nb = NULL;
  PROG_OK(p, ncclGroupStart());
  PROG_OK(p, ncclCommInitRankConfig(&nb, n, ids[0], me, &cfg));
  PROG_EXPECT(p, ncclGroupEnd(), ncclInProgress);
  ncclResult_t st = ncclInProgress;
  for (int i = 0; nb && i < 60000 && st == ncclInProgress; i++)
    if (ncclCommGetAsyncError(nb, &st) == ncclSuccess && st == ncclInProgress) usleep(1000);
  PROG_CHECK(p, st == ncclSuccess, "non-blocking init in a group ended in %d", (int)st);
  if (nb && st == ncclSuccess) {
    check_made(p, nb, n, me, "nb");
    for (int t = 0; t < 2; t++) {
      float in[64], out[64];
      for (int i = 0; i < 64; i++)
        in[i] = (float)prog_val(p, 10 + (uint64_t)t, me, (size_t)i, -50, 50);
      PROG_OK(p, ncclAllReduce(in, out, 64, ncclFloat32, ncclSum, nb, NULL));
      long bad = 0;
      for (int i = 0; i < 64; i++) {
        long want = 0;
        for (int q = 0; q < n; q++) want += prog_val(p, 10 + (uint64_t)t, q, (size_t)i, -50, 50);
        bad += out[i] != (float)want;
      }
      PROG_CHECK(p, bad == 0, "nb all-reduce: %ld wrong", bad);
    }
  }

  /* A non-blocking split outside a group: NCCL writes *newcomm when it is
   * done, which the parent's async state tells (NCCL_FACTS C4). */
  if (nb && st == ncclSuccess) {
    ncclComm_t nbs = NULL;
    ncclResult_t r = ncclCommSplit(nb, 0, me, &nbs, NULL);
    PROG_CHECK(p, r == ncclSuccess || r == ncclInProgress, "non-blocking split returned %d",
               (int)r);
    ncclResult_t ps = ncclInProgress;
    for (int i = 0; i < 60000 && ps == ncclInProgress; i++)
      if (ncclCommGetAsyncError(nb, &ps) == ncclSuccess && ps == ncclInProgress) usleep(1000);
    PROG_CHECK(p, ps == ncclSuccess && nbs, "non-blocking split: parent %d, child %p", (int)ps,
               (void *)nbs);
    if (nbs) {
      allreduce_i32(p, nbs, 15, NULL, n, me, 4, "non-blocking split all-reduce");
      PROG_OK(p, ncclCommDestroy(nbs));
    }
  }

  /* Scalable init inside a group. */
  ncclComm_t sc = NULL;
  PROG_OK(p, ncclGroupStart());
  PROG_OK(p, ncclCommInitRankScalable(&sc, n, me, 1, &ids[1], NULL));
  check_not_made(p, sc, "scalable");
  PROG_OK(p, ncclGroupEnd());
  if (sc) {
    check_made(p, sc, n, me, "scalable");
    for (int t = 0; t < 3; t++) {
      int64_t in[10], *out = malloc(sizeof(int64_t) * 10 * (size_t)n);
      for (int i = 0; i < 10; i++)
        in[i] = prog_val(p, 20 + (uint64_t)t, me, (size_t)i, -(1L << 30), 1L << 30);
      PROG_OK(p, ncclAllGather(in, out, 10, ncclInt64, sc, NULL));
      long bad = 0;
      for (int q = 0; q < n; q++)
        for (int i = 0; i < 10; i++)
          bad +=
              out[q * 10 + i] != prog_val(p, 20 + (uint64_t)t, q, (size_t)i, -(1L << 30), 1L << 30);
      PROG_CHECK(p, bad == 0, "scalable all-gather: %ld wrong", bad);
      free(out);
    }
  }

  /* A split inside a group: *newcomm is written at the group's end. */
  ncclComm_t half = (ncclComm_t)&half;
  PROG_OK(p, ncclGroupStart());
  PROG_OK(p, ncclCommSplit(world, me % 2, me, &half, NULL));
  PROG_CHECK(p, half == NULL, "split in a group: newcomm %p before the group's end", (void *)half);
  PROG_OK(p, ncclGroupEnd());
  PROG_CHECK(p, half != NULL, "split in a group: no communicator after the group's end");
  if (half) {
    int members[64], m = 0;
    for (int q = me % 2; q < n; q += 2) members[m++] = q;
    check_made(p, half, m, me / 2, "half");
    for (int t = 0; t < 2; t++)
      allreduce_i32(p, half, 30 + t, members, m, me / 2, 32, "half all-reduce");
  }

  /* Two communicators in one group. */
  ncclConfig_t ca = NCCL_CONFIG_INITIALIZER, cb = NCCL_CONFIG_INITIALIZER;
  ca.commName = "ga";
  cb.commName = "gb";
  ncclComm_t a = NULL, b = NULL;
  PROG_OK(p, ncclGroupStart());
  PROG_OK(p, ncclCommInitRankConfig(&a, n, ids[2], me, &ca));
  PROG_OK(p, ncclCommInitRankConfig(&b, n, ids[3], me, &cb));
  check_not_made(p, a, "ga");
  check_not_made(p, b, "gb");
  PROG_OK(p, ncclGroupEnd());
  if (a && b) {
    check_made(p, a, n, me, "ga");
    check_made(p, b, n, me, "gb");
    float in[16], *all = malloc(sizeof(float) * 16 * (size_t)n), rin[64 * 8], rout[8];
    for (int i = 0; i < 16; i++) in[i] = (float)prog_val(p, 40, me, (size_t)i, -9, 9);
    PROG_OK(p, ncclAllGather(in, all, 16, ncclFloat32, a, NULL));
    long bad = 0;
    for (int q = 0; q < n; q++)
      for (int i = 0; i < 16; i++)
        bad += all[q * 16 + i] != (float)prog_val(p, 40, q, (size_t)i, -9, 9);
    PROG_CHECK(p, bad == 0, "ga all-gather: %ld wrong", bad);
    for (int i = 0; i < 8 * n; i++) rin[i] = (float)prog_val(p, 41, me, (size_t)i, -9, 9);
    PROG_OK(p, ncclReduceScatter(rin, rout, 8, ncclFloat32, ncclSum, b, NULL));
    bad = 0;
    for (int i = 0; i < 8; i++) {
      long want = 0;
      for (int q = 0; q < n; q++) want += prog_val(p, 41, q, (size_t)(me * 8 + i), -9, 9);
      bad += rout[i] != (float)want;
    }
    PROG_CHECK(p, bad == 0, "gb reduce-scatter: %ld wrong", bad);
    free(all);
  }
  ncclComm_t all_comms[] = {b, a, half, sc, nb, world};
  for (size_t i = 0; i < sizeof all_comms / sizeof *all_comms; i++)
    if (all_comms[i]) PROG_OK(p, ncclCommDestroy(all_comms[i]));
}

static void body_multi(prog_t *p) {
  int per = (int)prog_env_size("PROG_GROUP_PER_PROC", 2);
  if (per < 1 || per > 8) per = 2;
  int n = p->nranks * per, first = p->rank * per;
  ncclComm_t c[8] = {0}, s[8] = {0};
  PROG_OK(p, ncclGroupStart());
  for (int r = 0; r < per; r++) {
    PROG_OK(p, ncclCommInitRank(&c[r], n, p->id, first + r));
    check_not_made(p, c[r], "world rank");
  }
  PROG_OK(p, ncclGroupEnd());
  for (int r = 0; r < per; r++) check_made(p, c[r], n, first + r, "world rank");
  int32_t *in[8], *out[8];
  for (int t = 0; t < 3; t++) {
    for (int r = 0; r < per; r++) {
      in[r] = malloc(500 * sizeof(int32_t));
      out[r] = malloc(500 * sizeof(int32_t));
      fill_i32(p, 50 + t, first + r, in[r], 500);
    }
    PROG_OK(p, ncclGroupStart());
    for (int r = 0; r < per; r++)
      PROG_OK(p, ncclAllReduce(in[r], out[r], 500, ncclInt32, ncclSum, c[r], NULL));
    PROG_OK(p, ncclGroupEnd());
    for (int r = 0; r < per; r++) {
      check_sum_i32(p, 50 + t, NULL, n, out[r], 500, "grouped all-reduce");
      free(in[r]);
      free(out[r]);
    }
  }
  PROG_OK(p, ncclGroupStart());
  for (int r = 0; r < per; r++) PROG_OK(p, ncclCommSplit(c[r], 0, first + r, &s[r], NULL));
  PROG_OK(p, ncclGroupEnd());
  int32_t sin[8][8], sout[8][8];
  PROG_OK(p, ncclGroupStart());
  for (int r = 0; r < per; r++) {
    PROG_CHECK(p, s[r] != NULL, "split of rank %d in a group: no communicator", first + r);
    fill_i32(p, 60, first + r, sin[r], 8);
    if (s[r]) PROG_OK(p, ncclAllReduce(sin[r], sout[r], 8, ncclInt32, ncclSum, s[r], NULL));
  }
  PROG_OK(p, ncclGroupEnd());
  for (int r = 0; r < per; r++)
    if (s[r]) check_sum_i32(p, 60, NULL, n, sout[r], 8, "split all-reduce");
  for (int r = 0; r < per; r++) {
    if (s[r]) PROG_OK(p, ncclCommDestroy(s[r]));
    PROG_OK(p, ncclCommDestroy(c[r]));
  }
}

int main(int argc, char **argv) {
  const char *mode = getenv("PROG_GROUP_MODE");
  if (mode && !strcmp(mode, "multi")) return prog_main("prog_group multi", body_multi, argc, argv);
  return prog_main("prog_group", body_procs, argc, argv);
}
