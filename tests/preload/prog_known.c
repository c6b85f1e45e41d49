/*
 * prog_known.c - an unchanged NCCL-API program (nccl.h, libc, libdl) whose
 * calls are known exactly, for the preload tests: test_preload.sh runs it
 * under LD_PRELOAD=libgcshim.so and compares the JSON report with the calls
 * below. Each rank checks its results, and, when the shim is there
 * (gcshim_comm_name found by dlsym(RTLD_DEFAULT)), the group names.
 *
 *   prog_known MODE NRANKS
 *   MODE calls   the calls of calls() below
 *        check   GCSHIM_CHECK: rank 1 passes a different count; every rank
 *                must get ncclInvalidUsage
 *        kill    the last rank dies (SIGKILL) before an all-reduce; the
 *                others must get an error within the timeout
 *        threads NRANKS threads of one process are the ranks (adoption must
 *                not wait on itself); with the shim, gcshim.h: names,
 *                lookup, group, barrier
 *        late    calls after the job's communicator is finalized and
 *                destroyed, on a second one and on a third made afterwards
 *        stopabort, stopdestroy  the last rank stops itself (SIGSTOP); the
 *                others' all-reduce fails, they abort (destroy) and exit;
 *                then the parent kills the stopped rank
 *        latekill as late, but the last rank dies (SIGKILL) once the job's
 *                communicator is destroyed; the others leave at once (the
 *                parent checks that they exit within 3 s)
 *
 * Prints one closing line "N passed, N failed"; exits non-zero on failure.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nccl.h>

static int rank, nranks;
static long passed, failed;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (cond) {                                                            \
      passed++;                                                            \
    } else {                                                               \
      failed++;                                                            \
      fprintf(stderr, "[rank %d] FAIL %s:%d: ", rank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                        \
      fputc('\n', stderr);                                                 \
    }                                                                      \
  } while (0)
#define OK(call) CHECK((call) == ncclSuccess, "%s failed: %s", #call, ncclGetLastError(NULL))

static const char *(*comm_name)(ncclComm_t);

static void check_name(ncclComm_t c, const char *want) {
  if (!comm_name || getenv("PROG_NO_NAMES")) return;
  const char *n = comm_name(c);
  CHECK(n && !strcmp(n, want), "group name %s, wanted %s", n ? n : "(null)", want);
}

/* The calls, per rank (test_preload.sh has the same numbers):
 *   world "comm:0" (InitRank): AllReduce 5 x 1000 float, Bcast 3 x 10 int32,
 *     Broadcast 2 x 7 int8, AllGather 1 x 16 int64, Send 2 + Recv 2 x 5 float
 *     (ring, in a group; only with 2+ ranks)
 *   "half:0" (split by parity, commName "half"): AllReduce 4 x 3 double
 *   "comm:0/<colour>:0" (split without config, colour 10 + rank % 2):
 *     Reduce 1 x 33 int32
 * PROG_WORLD_NAME: the world's expected name when GCSHIM_GROUPS names it;
 * PROG_NO_NAMES: names are not checked (GCSHIM_DISABLE). */
static void calls(ncclUniqueId id) {
  ncclComm_t world = NULL;
  OK(ncclCommInitRank(&world, nranks, id, rank));
  if (!world) return;
  const char *wname = getenv("PROG_WORLD_NAME");
  check_name(world, wname ? wname : "comm:0");
  float f[1000], g[1000];
  for (int k = 0; k < 5; k++) {
    for (int i = 0; i < 1000; i++) f[i] = (float)(rank + i % 7 + k);
    OK(ncclAllReduce(f, g, 1000, ncclFloat32, ncclSum, world, NULL));
    int bad = 0;
    for (int i = 0; i < 1000; i++)
      bad += g[i] != (float)(nranks * (nranks - 1) / 2 + nranks * (i % 7 + k));
    CHECK(!bad, "allreduce %d: %d wrong elements", k, bad);
  }
  int32_t b[10];
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < 10; i++) b[i] = rank == 0 ? 100 * k + i : -1;
    OK(ncclBcast(b, 10, ncclInt32, 0, world, NULL));
    CHECK(b[9] == 100 * k + 9 && b[0] == 100 * k, "bcast %d gave %d", k, b[9]);
  }
  int8_t c[7], d[7];
  for (int k = 0; k < 2; k++) {
    memset(c, rank == nranks - 1 ? 5 + k : 0, sizeof c);
    OK(ncclBroadcast(c, d, 7, ncclInt8, nranks - 1, world, NULL));
    CHECK(d[6] == 5 + k, "broadcast %d gave %d", k, d[6]);
  }
  int64_t ag[16], agr[16 * 64];
  for (int i = 0; i < 16; i++) ag[i] = rank * 100 + i;
  OK(ncclAllGather(ag, agr, 16, ncclInt64, world, NULL));
  CHECK(agr[16 * (nranks - 1) + 3] == (nranks - 1) * 100 + 3, "allgather gave %lld",
        (long long)agr[16 * (nranks - 1) + 3]);
  if (nranks > 1) {
    float s[5], r[5];
    for (int k = 0; k < 2; k++) {
      for (int i = 0; i < 5; i++) s[i] = (float)(rank * 10 + i + k);
      OK(ncclGroupStart());
      OK(ncclSend(s, 5, ncclFloat32, (rank + 1) % nranks, world, NULL));
      OK(ncclRecv(r, 5, ncclFloat32, (rank + nranks - 1) % nranks, world, NULL));
      OK(ncclGroupEnd());
      int from = (rank + nranks - 1) % nranks;
      CHECK(r[4] == (float)(from * 10 + 4 + k), "recv %d gave %g", k, r[4]);
    }
  }
  /* A split named by commName. */
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.commName = "half";
  ncclComm_t half = NULL;
  OK(ncclCommSplit(world, rank % 2, rank, &half, &cfg));
  if (half) {
    check_name(half, "half:0");
    double x[3] = {1, 2, rank}, y[3];
    for (int k = 0; k < 4; k++) OK(ncclAllReduce(x, y, 3, ncclFloat64, ncclSum, half, NULL));
    int m = 0, sum = 0;
    for (int q = rank % 2; q < nranks; q += 2) m++, sum += q;
    CHECK(y[0] == m && y[2] == sum, "half allreduce gave %g %g", y[0], y[2]);
    OK(ncclCommDestroy(half));
  }
  /* A split without a name: <parent>/<colour>. */
  ncclComm_t other = NULL;
  OK(ncclCommSplit(world, 10 + rank % 2, 0, &other, NULL));
  if (other) {
    char want[64];
    snprintf(want, sizeof want, "%s/%d:0", wname ? wname : "comm:0", 10 + rank % 2);
    check_name(other, want);
    int32_t v[33], w[33];
    for (int i = 0; i < 33; i++) v[i] = i;
    OK(ncclReduce(v, w, 33, ncclInt32, ncclSum, 0, other, NULL));
    OK(ncclCommDestroy(other));
  }
  OK(ncclCommFinalize(world));
  OK(ncclCommDestroy(world));
}

static void check_mismatch(ncclUniqueId id) {
  ncclComm_t world = NULL;
  OK(ncclCommInitRank(&world, nranks, id, rank));
  if (!world) return;
  int x[8] = {0}, y[8];
  OK(ncclAllReduce(x, y, 8, ncclInt32, ncclSum, world, NULL));
  ncclResult_t r = ncclAllReduce(x, y, rank == 1 ? 4 : 8, ncclInt32, ncclSum, world, NULL);
  CHECK(r == ncclInvalidUsage, "a mismatched allreduce returned %d, wanted ncclInvalidUsage",
        (int)r);
  printf("rank %d: %s\n", rank, ncclGetLastError(world));
  OK(ncclAllReduce(x, y, 8, ncclInt32, ncclSum, world, NULL));
  OK(ncclCommDestroy(world));
}

static void killed(ncclUniqueId id) {
  ncclComm_t world = NULL;
  OK(ncclCommInitRank(&world, nranks, id, rank));
  if (!world) return;
  int x = 1, y = 0;
  OK(ncclAllReduce(&x, &y, 1, ncclInt32, ncclSum, world, NULL));
  if (rank == nranks - 1) raise(SIGKILL);
  ncclResult_t r = ncclAllReduce(&x, &y, 1, ncclInt32, ncclSum, world, NULL);
  CHECK(r == ncclRemoteError || r == ncclSystemError, "allreduce with a dead peer returned %d",
        (int)r);
  OK(ncclCommAbort(world));
}

/* stopabort/stopdestroy: the last rank stops itself (SIGSTOP) before the
 * second all-reduce; the others' call fails within GCSHIM_TIMEOUT and they
 * abort (or destroy) the communicator and exit. */
static void stopped(ncclUniqueId id, bool abort_it) {
  ncclComm_t world = NULL;
  OK(ncclCommInitRank(&world, nranks, id, rank));
  if (!world) return;
  int x = 1, y = 0;
  OK(ncclAllReduce(&x, &y, 1, ncclInt32, ncclSum, world, NULL));
  if (rank == nranks - 1) raise(SIGSTOP);
  ncclResult_t r = ncclAllReduce(&x, &y, 1, ncclInt32, ncclSum, world, NULL);
  CHECK(r != ncclSuccess, "allreduce with a stopped peer returned ncclSuccess");
  if (abort_it)
    OK(ncclCommAbort(world));
  else
    ncclCommDestroy(world);
}

/* late/latekill, per rank (test_preload.sh has the same numbers):
 *   "comm:0" (the job): AllReduce 3 x 64 float
 *   "comm:1": AllReduce 2 x 16 float (before comm:0's finalize),
 *     Broadcast 1 x 8 int32 (after it), then, after comm:0's destroy,
 *     latekill: AllReduce 1 x 1 float (every rank is past the report), the
 *     last rank dies, the others leave without destroying it;
 *     late: AllGather 2 x 4 int64
 *   "comm:2" (made after comm:0's destroy; late only): AllReduce 1 x 2 float */
static void late(ncclUniqueId id, ncclUniqueId id2, ncclUniqueId id3, bool die) {
  ncclComm_t world = NULL, second = NULL, third = NULL;
  OK(ncclCommInitRank(&world, nranks, id, rank));
  OK(ncclCommInitRank(&second, nranks, id2, rank));
  if (!world || !second) return;
  float f[64], g[64];
  for (int i = 0; i < 64; i++) f[i] = (float)(rank + i);
  for (int k = 0; k < 3; k++) OK(ncclAllReduce(f, g, 64, ncclFloat32, ncclSum, world, NULL));
  CHECK(g[5] == (float)(nranks * (nranks - 1) / 2 + 5 * nranks), "world allreduce gave %g", g[5]);
  for (int k = 0; k < 2; k++) OK(ncclAllReduce(f, g, 16, ncclFloat32, ncclSum, second, NULL));
  OK(ncclCommFinalize(world));
  int32_t b[8];
  for (int i = 0; i < 8; i++) b[i] = rank == 0 ? 40 + i : -1;
  OK(ncclBroadcast(b, b, 8, ncclInt32, 0, second, NULL));
  CHECK(b[7] == 47, "broadcast after finalize gave %d", b[7]);
  OK(ncclCommDestroy(world));
  if (die) {
    OK(ncclAllReduce(f, g, 1, ncclFloat32, ncclSum, second, NULL));
    if (rank == nranks - 1) raise(SIGKILL);
    return;
  }
  int64_t ag[4], agr[4 * 64];
  for (int i = 0; i < 4; i++) ag[i] = rank * 10 + i;
  for (int k = 0; k < 2; k++) OK(ncclAllGather(ag, agr, 4, ncclInt64, second, NULL));
  CHECK(agr[4 * (nranks - 1) + 2] == (nranks - 1) * 10 + 2, "allgather after destroy gave %lld",
        (long long)agr[4 * (nranks - 1) + 2]);
  OK(ncclCommInitRank(&third, nranks, id3, rank));
  if (third) {
    OK(ncclAllReduce(f, g, 2, ncclFloat32, ncclSum, third, NULL));
    CHECK(g[1] == (float)(nranks * (nranks - 1) / 2 + nranks), "third allreduce gave %g", g[1]);
    OK(ncclCommFinalize(third));
    OK(ncclCommDestroy(third));
  }
  OK(ncclCommFinalize(second));
  OK(ncclCommDestroy(second));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
  ncclUniqueId id;
  int rank;
  long passed, failed;
} thread_arg_t;

static pthread_barrier_t tbar;

static void *thread_rank(void *p) {
  thread_arg_t *a = p;
  ncclComm_t c = NULL;
  ncclResult_t r = ncclCommInitRank(&c, nranks, a->id, a->rank);
  a->passed += r == ncclSuccess;
  a->failed += r != ncclSuccess;
  if (!c) return NULL;
  int x = a->rank + 1, y = 0;
  r = ncclAllReduce(&x, &y, 1, ncclInt32, ncclSum, c, NULL);
  a->passed += r == ncclSuccess && y == nranks * (nranks + 1) / 2;
  a->failed += !(r == ncclSuccess && y == nranks * (nranks + 1) / 2);
  void *f;
  if ((f = dlsym(RTLD_DEFAULT, "gcshim_barrier")) && !getenv("PROG_NO_NAMES")) {
    ncclResult_t (*barrier)(ncclComm_t);
    ncclComm_t (*lookup)(const char *);
    void *(*group)(ncclComm_t);
    memcpy(&barrier, &f, sizeof f);
    f = dlsym(RTLD_DEFAULT, "gcshim_comm_lookup");
    memcpy(&lookup, &f, sizeof f);
    f = dlsym(RTLD_DEFAULT, "gcshim_comm_group");
    memcpy(&group, &f, sizeof f);
    const char *name = comm_name(c);
    int good = name && lookup(name) == c && group(c) != NULL && barrier(c) == ncclSuccess &&
               lookup("no-such-group:0") == NULL && comm_name(NULL) == NULL;
    if (!good) fprintf(stderr, "[thread %d] gcshim.h answers wrong (name %s)\n", a->rank, name);
    a->passed += good;
    a->failed += !good;
  }
  pthread_barrier_wait(&tbar); /* no rank destroys before every barrier is done */
  r = ncclCommDestroy(c);
  a->passed += r == ncclSuccess;
  a->failed += r != ncclSuccess;
  return NULL;
}

static int threads_main(void) {
  thread_arg_t a[16];
  pthread_t th[16];
  if (nranks < 1 || nranks > 16) return 2;
  pthread_barrier_init(&tbar, NULL, (unsigned)nranks);
  ncclUniqueId id;
  if (ncclGetUniqueId(&id) != ncclSuccess) return 1;
  for (int r = 0; r < nranks; r++) {
    a[r] = (thread_arg_t){id, r, 0, 0};
    pthread_create(&th[r], NULL, thread_rank, &a[r]);
  }
  for (int r = 0; r < nranks; r++) {
    pthread_join(th[r], NULL);
    passed += a[r].passed;
    failed += a[r].failed;
  }
  printf("%ld passed, %ld failed\n", passed, failed);
  return failed || !passed;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr,
            "usage: prog_known calls|check|kill|threads|late|latekill|stopabort|stopdestroy "
            "NRANKS\n");
    return 2;
  }
  const char *mode = argv[1];
  nranks = atoi(argv[2]);
  alarm(60);
  void *f = dlsym(RTLD_DEFAULT, "gcshim_comm_name");
  memcpy(&comm_name, &f, sizeof f);
  if (!strcmp(mode, "threads")) return threads_main();
  ncclUniqueId id, id2, id3;
  if (ncclGetUniqueId(&id) != ncclSuccess || ncclGetUniqueId(&id2) != ncclSuccess ||
      ncclGetUniqueId(&id3) != ncclSuccess)
    return 1;
  bool die = !strcmp(mode, "latekill");
  bool stop = !strcmp(mode, "stopabort") || !strcmp(mode, "stopdestroy");
  int fds[2];
  if (pipe(fds)) return 1;
  fflush(stdout);
  pid_t last = 0;
  for (int r = 0; r < nranks; r++) {
    pid_t pid = fork();
    if (pid > 0 && r == nranks - 1) last = pid;
    if (pid == 0) {
      close(fds[0]);
      rank = r;
      if (!strcmp(mode, "calls"))
        calls(id);
      else if (!strcmp(mode, "check"))
        check_mismatch(id);
      else if (!strcmp(mode, "late") || die)
        late(id, id2, id3, die);
      else if (stop)
        stopped(id, !strcmp(mode, "stopabort"));
      else
        killed(id);
      long out[2] = {passed, failed};
      if (write(fds[1], out, sizeof out) != sizeof out) _exit(3);
      exit(failed ? 1 : 0); /* exit, not _exit: the report is written at exit too */
    }
  }
  close(fds[1]);
  long out[2];
  int reported = 0;
  int expect = (!strcmp(mode, "kill") || die || stop) && nranks > 1 ? nranks - 1 : nranks;
  while ((!(die || stop) || reported < expect) && read(fds[0], out, sizeof out) == sizeof out)
    passed += out[0], failed += out[1], reported++;
  double t_done = now_s(); /* latekill: every survivor is done; now they exit */
  if (stop) {              /* the survivors exit (writing the report); then the stopped rank goes */
    for (int i = 0; i < nranks - 1; i++) wait(NULL);
    kill(last, SIGKILL);
  }
  while (wait(NULL) > 0) {
  }
  if (die) {
    double t = now_s() - t_done;
    printf("the surviving ranks exited in %.3f s\n", t);
    if (t < 3)
      passed++;
    else
      failed++, fprintf(stderr, "the surviving ranks took %.3f s to exit\n", t);
  }
  if (reported != expect) {
    fprintf(stderr, "%d of %d ranks reported\n", reported, expect);
    failed++;
  }
  printf("%ld passed, %ld failed\n", passed, failed);
  return failed || !passed;
}
