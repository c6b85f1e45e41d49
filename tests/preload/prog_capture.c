/*
 * prog_capture.c - an unchanged NCCL-API program that captures streams the
 * way a CUDA runtime reaches the driver, for test_capture.sh: the driver is
 * the fakecuda fixture (LD_LIBRARY_PATH), NCCL the hostnccl fixture.
 *
 *   prog_capture NRANKS...   (nccl_prog.h's harness: forked ranks, NCCL_PROG_SEED)
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
 * checks every result, and rank 0 prints "expect calls C captured K unseen U"
 * (per rank; K the captured calls of B, C and D, U those of F) before the
 * closing "N passed, N failed".
 */
#include <dlfcn.h>

#include "nccl_prog.h"

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

/* n all-reduces of int32 vectors from the shared seed on stream s, each
 * checked; returns n. */
static long allreduces(prog_t *p, ncclComm_t comm, long n, void *s, unsigned *seed) {
  enum { N = 64 };
  int32_t in[N], out[N];
  for (long k = 0; k < n; k++) {
    unsigned base = (unsigned)rand_r(seed); /* the same on every rank */
    for (int i = 0; i < N; i++) in[i] = (int32_t)((base + (unsigned)i * 7u) % 1000u) + p->rank;
    ncclResult_t r = ncclAllReduce(in, out, N, ncclInt32, ncclSum, comm, (cudaStream_t)s);
    int bad = 0;
    for (int i = 0; i < N; i++)
      bad += out[i] != p->nranks * (int32_t)((base + (unsigned)i * 7u) % 1000u) +
                           p->nranks * (p->nranks - 1) / 2;
    PROG_CHECK(p, r == ncclSuccess && !bad, "all-reduce %ld: result %d, %d wrong elements", k,
               (int)r, bad);
  }
  return n;
}

static void body(prog_t *p) {
  ncclComm_t comm;
  PROG_EXPECT(p, ncclCommInitRank(&comm, p->nranks, p->id, p->rank), ncclSuccess);
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "prog_capture: libcuda.so.1: %s\n", dlerror());
    exit(2);
  }
  gpa2_t gpa2;
  void *fp = sym(h, "cuGetProcAddress_v2");
  memcpy(&gpa2, &fp, sizeof fp);
  begin2_t begin;
  end_t end;
  PROG_CHECK(p, gpa2("cuStreamBeginCapture", &fp, 12080, 0, NULL) == 0, "cuGetProcAddress begin");
  memcpy(&begin, &fp, sizeof fp);
  PROG_CHECK(p, gpa2("cuStreamEndCapture", &fp, 12080, 0, NULL) == 0, "cuGetProcAddress end");
  memcpy(&end, &fp, sizeof fp);
  void *s1 = (void *)(uintptr_t)0x51000, *s2 = (void *)(uintptr_t)0x52000, *graph = NULL;
  unsigned seed = (unsigned)p->seed, cnt = seed ^ 0x5eedu;
  long a = 20 + rand_r(&cnt) % 50, b1 = 1 + rand_r(&cnt) % 40, b2 = 1 + rand_r(&cnt) % 40,
       c = 1 + rand_r(&cnt) % 40, d = 1 + rand_r(&cnt) % 40, e = 1 + rand_r(&cnt) % 40,
       f = 100 + rand_r(&cnt) % 100;
  long captured = 0, calls = 0;

  calls += allreduces(p, comm, a, s1, &seed); /* A */
  PROG_CHECK(p, begin(s1, 0) == 0, "begin capture of stream 1");
  calls += allreduces(p, comm, b1, s1, &seed); /* B */
  captured += b1;
  calls += allreduces(p, comm, b2, s2, &seed);
  PROG_CHECK(p, end(s1, &graph) == 0 && graph, "end capture of stream 1");

  gpa1_t gpa1;
  PROG_CHECK(p, gpa2("cuGetProcAddress", &fp, 11030, 0, NULL) == 0, "cuGetProcAddress of itself");
  memcpy(&gpa1, &fp, sizeof fp);
  PROG_CHECK(p, gpa1("cuStreamBeginCapture", &fp, 12080, 0) == 0,
             "begin through the first signature");
  begin2_t begin_c;
  memcpy(&begin_c, &fp, sizeof fp);
  PROG_CHECK(p, begin_c(s2, 1) == 0, "begin capture of stream 2");
  calls += allreduces(p, comm, c, s2, &seed); /* C */
  captured += c;
  PROG_CHECK(p, end(s2, &graph) == 0, "end capture of stream 2");

  begin2_t begin_d;
  fp = sym(h, "cuStreamBeginCapture_v2");
  memcpy(&begin_d, &fp, sizeof fp);
  PROG_CHECK(p, begin_d(s1, 2) == 0, "begin capture of stream 1 again");
  PROG_CHECK(p, begin_d(s1, 2) != 0, "a second begin on a capturing stream fails");
  calls += allreduces(p, comm, d, s1, &seed); /* D */
  captured += d;
  PROG_CHECK(p, end(s1, &graph) == 0, "end capture of stream 1 again");
  PROG_CHECK(p, end(s1, &graph) != 0, "ending a stream that does not capture fails");

  calls += allreduces(p, comm, e, s1, &seed); /* E */

  begin1_t unseen_begin, unseen_end;
  fp = sym(h, "fakeBeginCaptureUnseen");
  memcpy(&unseen_begin, &fp, sizeof fp);
  fp = sym(h, "fakeEndCaptureUnseen");
  memcpy(&unseen_end, &fp, sizeof fp);
  char mark[64];
  int ml = snprintf(mark, sizeof mark, "prog_capture: pid %d phase F\n", (int)getpid());
  PROG_CHECK(p, write(2, mark, (size_t)ml) == ml,
             "marker"); /* one write: whole among the ranks' lines */
  PROG_CHECK(p, unseen_begin(s1) == 0, "unseen begin");
  calls += allreduces(p, comm, f, s1, &seed); /* F */
  PROG_CHECK(p, unseen_end(s1) == 0, "unseen end");
  if (p->rank == 0) {
    printf("expect calls %ld captured %ld unseen %ld\n", calls, captured, f);
    fflush(stdout); /* the ranks leave with _exit */
  }
  PROG_EXPECT(p, ncclCommDestroy(comm), ncclSuccess);
}

int main(int argc, char **argv) { return prog_main("prog_capture", body, argc, argv); }
