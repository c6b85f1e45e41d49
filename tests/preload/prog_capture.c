/*
 * prog_capture.c - an unchanged NCCL-API program that captures streams the
 * way a CUDA runtime reaches the driver, for test_capture.sh: the driver is
 * the fakecuda fixture (LD_LIBRARY_PATH), NCCL the hostnccl fixture.
 *
 *   prog_capture NRANKS
 *
 * Every rank makes the same random numbers of all-reduces (seed
 * NCCL_PROG_SEED) in phases:
 *   A  on stream 1, nothing capturing
 *   B  stream 1 capturing (begun through cuGetProcAddress_v2, as libcudart
 *      does); calls on stream 1, and on stream 2, which does not capture
 *   C  stream 2 capturing, begun through a cuGetProcAddress obtained from
 *      cuGetProcAddress itself (version 11030: the first signature)
 *   D  stream 1 capturing, begun through dlsym("cuStreamBeginCapture_v2")
 *   E  nothing capturing again
 *   F  stream 1 capturing through a door the shim does not watch
 * checks every result, and prints "expect calls C captured K unseen U" (per
 * rank; K the captured calls of B, C and D, U those of F) before the closing
 * "N passed, N failed".
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

typedef int (*gpa2_t)(const char *, void **, int, uint64_t, int *);
typedef int (*gpa1_t)(const char *, void **, int, uint64_t);
typedef int (*begin2_t)(void *, int);
typedef int (*begin1_t)(void *);
typedef int (*end_t)(void *, void **);

static void *sym(void *h, const char *name) {
  void *p = dlsym(h, name);
  if (!p) {
    fprintf(stderr, "prog_capture: %s: %s\n", name, dlerror());
    exit(2);
  }
  return p;
}

static ncclComm_t comm;
static long calls;

/* n all-reduces of random int32 vectors on stream s, each checked. */
static void allreduces(long n, void *s, unsigned *seed) {
  enum { N = 64 };
  int32_t in[N], out[N];
  for (long k = 0; k < n; k++) {
    unsigned base = (unsigned)rand_r(seed); /* the same on every rank */
    for (int i = 0; i < N; i++) in[i] = (int32_t)((base + (unsigned)i * 7u) % 1000u) + rank;
    ncclResult_t r = ncclAllReduce(in, out, N, ncclInt32, ncclSum, comm, (cudaStream_t)s);
    int bad = 0;
    for (int i = 0; i < N; i++)
      bad += out[i] != nranks * (int32_t)((base + (unsigned)i * 7u) % 1000u) +
                           nranks * (nranks - 1) / 2;
    CHECK(r == ncclSuccess && !bad, "all-reduce %ld: result %d, %d wrong elements", k, (int)r, bad);
    calls++;
  }
}

static void run(ncclUniqueId id) {
  CHECK(ncclCommInitRank(&comm, nranks, id, rank) == ncclSuccess, "init");
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "prog_capture: libcuda.so.1: %s\n", dlerror());
    exit(2);
  }
  gpa2_t gpa2;
  void *p = sym(h, "cuGetProcAddress_v2");
  memcpy(&gpa2, &p, sizeof p);
  begin2_t begin;
  end_t end;
  CHECK(gpa2("cuStreamBeginCapture", &p, 12080, 0, NULL) == 0, "cuGetProcAddress begin");
  memcpy(&begin, &p, sizeof p);
  CHECK(gpa2("cuStreamEndCapture", &p, 12080, 0, NULL) == 0, "cuGetProcAddress end");
  memcpy(&end, &p, sizeof p);
  void *s1 = (void *)(uintptr_t)0x51000, *s2 = (void *)(uintptr_t)0x52000, *graph = NULL;
  unsigned seed = (unsigned)strtoul(getenv("NCCL_PROG_SEED") ? getenv("NCCL_PROG_SEED") : "1", 0, 10);
  unsigned cnt = seed ^ 0x5eedu;
  long a = 20 + rand_r(&cnt) % 50, b1 = 1 + rand_r(&cnt) % 40, b2 = 1 + rand_r(&cnt) % 40,
       c = 1 + rand_r(&cnt) % 40, d = 1 + rand_r(&cnt) % 40, e = 1 + rand_r(&cnt) % 40,
       f = 100 + rand_r(&cnt) % 100;
  long captured = 0;

  allreduces(a, s1, &seed); /* A */
  CHECK(begin(s1, 0) == 0, "begin capture of stream 1");
  allreduces(b1, s1, &seed); /* B */
  captured += b1;
  allreduces(b2, s2, &seed);
  CHECK(end(s1, &graph) == 0 && graph, "end capture of stream 1");

  gpa1_t gpa1;
  CHECK(gpa2("cuGetProcAddress", &p, 11030, 0, NULL) == 0, "cuGetProcAddress of itself");
  memcpy(&gpa1, &p, sizeof p);
  CHECK(gpa1("cuStreamBeginCapture", &p, 12080, 0) == 0, "begin through the first signature");
  begin2_t begin_c;
  memcpy(&begin_c, &p, sizeof p);
  CHECK(begin_c(s2, 1) == 0, "begin capture of stream 2");
  allreduces(c, s2, &seed); /* C */
  captured += c;
  CHECK(end(s2, &graph) == 0, "end capture of stream 2");

  begin2_t begin_d;
  p = sym(h, "cuStreamBeginCapture_v2");
  memcpy(&begin_d, &p, sizeof p);
  CHECK(begin_d(s1, 2) == 0, "begin capture of stream 1 again");
  CHECK(begin_d(s1, 2) != 0, "a second begin on a capturing stream fails");
  allreduces(d, s1, &seed); /* D */
  captured += d;
  CHECK(end(s1, &graph) == 0, "end capture of stream 1 again");
  CHECK(end(s1, &graph) != 0, "ending a stream that does not capture fails");

  allreduces(e, s1, &seed); /* E */

  begin1_t unseen_begin, unseen_end;
  p = sym(h, "fakeBeginCaptureUnseen");
  memcpy(&unseen_begin, &p, sizeof p);
  p = sym(h, "fakeEndCaptureUnseen");
  memcpy(&unseen_end, &p, sizeof p);
  char mark[64];
  int ml = snprintf(mark, sizeof mark, "prog_capture: pid %d phase F\n", (int)getpid());
  CHECK(write(2, mark, (size_t)ml) == ml, "marker"); /* one write: whole among the ranks' lines */
  CHECK(unseen_begin(s1) == 0, "unseen begin");
  allreduces(f, s1, &seed); /* F */
  CHECK(unseen_end(s1) == 0, "unseen end");
  printf("expect calls %ld captured %ld unseen %ld\n", calls, captured, f);
  CHECK(ncclCommDestroy(comm) == ncclSuccess, "destroy");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: prog_capture NRANKS\n");
    return 2;
  }
  nranks = atoi(argv[1]);
  alarm(60);
  ncclUniqueId id;
  if (ncclGetUniqueId(&id) != ncclSuccess) return 1;
  int fds[2];
  if (pipe(fds)) return 1;
  fflush(stdout);
  for (int r = 0; r < nranks; r++) {
    if (fork() == 0) {
      close(fds[0]);
      rank = r;
      if (r && !freopen("/dev/null", "w", stdout)) _exit(3);
      run(id);
      long out[2] = {passed, failed};
      if (write(fds[1], out, sizeof out) != sizeof out) _exit(3);
      exit(failed ? 1 : 0); /* exit: the report is written at exit */
    }
  }
  close(fds[1]);
  long out[2];
  int reported = 0;
  while (read(fds[0], out, sizeof out) == sizeof out) passed += out[0], failed += out[1], reported++;
  while (wait(NULL) > 0) {
  }
  if (reported != nranks) {
    fprintf(stderr, "%d of %d ranks reported\n", reported, nranks);
    failed++;
  }
  printf("%ld passed, %ld failed\n", passed, failed);
  return failed || !passed;
}
