/* nccl_mismatch.c - GCSHIM_CHECK=1 turns mismatched collectives into an
 * error on every rank instead of a hang. An unchanged NCCL program (it
 * opens libnccl.so.2 with dlopen and looks the entry points up with dlsym,
 * as pynccl does; the preloaded shim answers those look-ups): every rank
 * makes a communicator, then
 *   - a matched all-reduce (checked exactly),
 *   - an all-reduce where the last rank passes half the count,
 *   - an all-reduce where rank 0 passes another datatype,
 *   - a broadcast where the last rank names another root,
 * each mismatch followed by a matched all-reduce: every rank must get
 * ncclInvalidUsage from the mismatch within seconds, with ncclGetLastError
 * naming GCSHIM_CHECK, and the communicator must still work.
 *
 *   nccl_mismatch [--host] [ranks]     forked ranks (default 2), or one rank
 *                                      of a job under mpirun/torchrun
 *
 * Buffers are on the GPU of the local rank (the driver through dlopen);
 * --host (or NCCL_MISMATCH_HOST=1) uses host memory, for the hostnccl
 * fixture (NCCL_MISMATCH_LIBRARY names the library to open). Exits 77
 * when the shim is not preloaded with GCSHIM_CHECK=1, with fewer than two
 * ranks, or without a GPU (device mode). The unique id goes from rank 0 to
 * the others through a file in /tmp named by the job. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nccl.h>

typedef struct {
  _Atomic long pass, fail;
} counters_t;
static counters_t *C;
static int RANK = -1, NRANKS = 0, LOCAL = 0;

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (cond) {                                                               \
      atomic_fetch_add(&C->pass, 1);                                          \
    } else {                                                                  \
      atomic_fetch_add(&C->fail, 1);                                          \
      fprintf(stderr, "[rank %d/%d] FAIL line %d: ", RANK, NRANKS, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                    \
    }                                                                         \
  } while (0)

/* ---- NCCL through dlopen/dlsym ---- */
static struct {
  ncclResult_t (*GetUniqueId)(ncclUniqueId *);
  ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            void *);
  ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, void *);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  const char *(*GetLastError)(ncclComm_t);
  const char *(*GetErrorString)(ncclResult_t);
} nc;

static int load_nccl(void) {
  const char *lib = getenv("NCCL_MISMATCH_LIBRARY");
  void *h = dlopen(lib && *lib ? lib : "libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    fprintf(stderr, "dlopen NCCL: %s\n", dlerror());
    return -1;
  }
#define SYM(f, name)                                      \
  do {                                                    \
    *(void **)&nc.f = dlsym(h, name);                     \
    if (!nc.f) {                                          \
      fprintf(stderr, "dlsym %s: %s\n", name, dlerror()); \
      return -1;                                          \
    }                                                     \
  } while (0)
  SYM(GetUniqueId, "ncclGetUniqueId");
  SYM(CommInitRank, "ncclCommInitRank");
  SYM(AllReduce, "ncclAllReduce");
  SYM(Broadcast, "ncclBroadcast");
  SYM(CommDestroy, "ncclCommDestroy");
  SYM(GetLastError, "ncclGetLastError");
  SYM(GetErrorString, "ncclGetErrorString");
  return 0;
}

/* ---- memory: the CUDA driver through dlopen, or the host ---- */
static bool HOST;
static struct {
  int (*Init)(unsigned);
  int (*DeviceGetCount)(int *);
  int (*DeviceGet)(int *, int);
  int (*PrimaryCtxRetain)(void **, int);
  int (*CtxSetCurrent)(void *);
  int (*MemAlloc)(unsigned long long *, size_t);
  int (*MemFree)(unsigned long long);
  int (*HtoD)(unsigned long long, const void *, size_t);
  int (*DtoH)(void *, unsigned long long, size_t);
  int (*CtxSynchronize)(void);
} cu;

/* GPUs visible (0: no driver or none). Called in a child before forking. */
static int load_cuda(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) return 0;
  *(void **)&cu.Init = dlsym(h, "cuInit");
  *(void **)&cu.DeviceGetCount = dlsym(h, "cuDeviceGetCount");
  *(void **)&cu.DeviceGet = dlsym(h, "cuDeviceGet");
  *(void **)&cu.PrimaryCtxRetain = dlsym(h, "cuDevicePrimaryCtxRetain");
  *(void **)&cu.CtxSetCurrent = dlsym(h, "cuCtxSetCurrent");
  *(void **)&cu.MemAlloc = dlsym(h, "cuMemAlloc_v2");
  *(void **)&cu.MemFree = dlsym(h, "cuMemFree_v2");
  *(void **)&cu.HtoD = dlsym(h, "cuMemcpyHtoD_v2");
  *(void **)&cu.DtoH = dlsym(h, "cuMemcpyDtoH_v2");
  *(void **)&cu.CtxSynchronize = dlsym(h, "cuCtxSynchronize");
  int n = 0;
  if (!cu.Init || !cu.DeviceGetCount || !cu.DeviceGet || !cu.PrimaryCtxRetain ||
      !cu.CtxSetCurrent || !cu.MemAlloc || !cu.MemFree || !cu.HtoD || !cu.DtoH ||
      !cu.CtxSynchronize || cu.Init(0) != 0 || cu.DeviceGetCount(&n) != 0)
    return 0;
  return n;
}

static int count_gpus_in_child(void) {
  pid_t p = fork();
  if (p == 0) _exit(load_cuda() > 100 ? 100 : load_cuda());
  int st = 0;
  if (p < 0 || waitpid(p, &st, 0) < 0 || !WIFEXITED(st)) return 0;
  return WEXITSTATUS(st);
}

static void *buf_alloc(size_t bytes) {
  if (HOST) return calloc(1, bytes);
  unsigned long long d = 0;
  return cu.MemAlloc(&d, bytes) == 0 ? (void *)(uintptr_t)d : NULL;
}
static void buf_free(void *p) {
  if (HOST)
    free(p);
  else if (p)
    cu.MemFree((unsigned long long)(uintptr_t)p);
}
static void put(void *dst, const void *src, size_t bytes) {
  if (HOST)
    memcpy(dst, src, bytes);
  else
    cu.HtoD((unsigned long long)(uintptr_t)dst, src, bytes);
}
static void get(void *dst, const void *src, size_t bytes) {
  if (HOST) {
    memcpy(dst, src, bytes);
  } else {
    cu.CtxSynchronize();
    cu.DtoH(dst, (unsigned long long)(uintptr_t)src, bytes);
  }
}

/* ---- the unique id through a file ---- */
static char ID_PATH[256];

static int exchange_id(ncclUniqueId *id) {
  if (RANK == 0) {
    if (nc.GetUniqueId(id) != ncclSuccess) return -1;
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.%d", ID_PATH, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(id, sizeof *id, 1, f) != 1 || fclose(f) != 0 || rename(tmp, ID_PATH) != 0) {
      fprintf(stderr, "writing %s: %s\n", ID_PATH, strerror(errno));
      return -1;
    }
    return 0;
  }
  for (int i = 0; i < 6000; i++) { /* 60 s */
    FILE *f = fopen(ID_PATH, "rb");
    if (f) {
      size_t got = fread(id, sizeof *id, 1, f);
      fclose(f);
      if (got == 1) return 0;
    }
    usleep(10000);
  }
  fprintf(stderr, "[rank %d] no unique id in %s after 60 s\n", RANK, ID_PATH);
  return -1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { COUNT = 4096 };

/* A matched all-reduce of (rank + 1 + round) in every element: exact sum. */
static void matched(ncclComm_t comm, int32_t *dbuf, int round, const char *after) {
  int32_t *h = malloc(COUNT * sizeof *h);
  for (int i = 0; i < COUNT; i++) h[i] = RANK + 1 + round;
  put(dbuf, h, COUNT * sizeof *h);
  ncclResult_t r = nc.AllReduce(dbuf, dbuf, COUNT, ncclInt32, ncclSum, comm, NULL);
  CHECK(r == ncclSuccess, "matched all-reduce %s: %s", after, nc.GetErrorString(r));
  get(h, dbuf, COUNT * sizeof *h);
  int32_t want = NRANKS * (NRANKS + 1) / 2 + NRANKS * round;
  int bad = 0;
  for (int i = 0; i < COUNT; i++) bad += h[i] != want;
  CHECK(r == ncclSuccess && bad == 0, "matched all-reduce %s: %d elements differ from %d", after,
        bad, want);
  free(h);
}

/* A mismatch: every rank must get ncclInvalidUsage quickly, naming GCSHIM_CHECK. */
static void expect_refused(ncclResult_t r, double t0, ncclComm_t comm, const char *what) {
  double dt = now() - t0;
  const char *msg = nc.GetLastError(comm);
  CHECK(r == ncclInvalidUsage, "%s returned %d (%s), want ncclInvalidUsage", what, (int)r,
        nc.GetErrorString(r));
  CHECK(dt < 10.0, "%s took %.2f s", what, dt);
  CHECK(msg && strstr(msg, "GCSHIM_CHECK"), "%s: last error '%s' does not name GCSHIM_CHECK", what,
        msg ? msg : "(null)");
  if (RANK == 0) printf("%s: ncclInvalidUsage after %.3f s: %s\n", what, dt, msg ? msg : "");
}

static int body(void) {
  if (!HOST) {
    int dev = 0;
    void *ctx = NULL;
    if (cu.DeviceGet(&dev, LOCAL) != 0 || cu.PrimaryCtxRetain(&ctx, dev) != 0 ||
        cu.CtxSetCurrent(ctx) != 0) {
      fprintf(stderr, "[rank %d] no context on device %d\n", RANK, LOCAL);
      return 1;
    }
  }
  ncclUniqueId id;
  if (exchange_id(&id)) return 1;
  ncclComm_t comm = NULL;
  ncclResult_t r = nc.CommInitRank(&comm, NRANKS, id, RANK);
  CHECK(r == ncclSuccess && comm, "ncclCommInitRank: %s", nc.GetErrorString(r));
  if (RANK == 0) unlink(ID_PATH); /* every rank read it: the init needed all */
  if (!comm) return 1;
  int32_t *d = buf_alloc(COUNT * sizeof(int32_t)), *d2 = buf_alloc(COUNT * sizeof(int32_t));
  if (!d || !d2) return 1;
  matched(comm, d, 0, "first");

  bool last = RANK == NRANKS - 1;
  double t0 = now();
  r = nc.AllReduce(d, d2, last ? COUNT / 2 : COUNT, ncclInt32, ncclSum, comm, NULL);
  expect_refused(r, t0, comm, "all-reduce, last rank with half the count");
  matched(comm, d, 1, "after the count mismatch");

  t0 = now();
  r = nc.AllReduce(d, d2, COUNT, RANK == 0 ? ncclFloat32 : ncclInt32, ncclSum, comm, NULL);
  expect_refused(r, t0, comm, "all-reduce, rank 0 with float32");
  matched(comm, d, 2, "after the datatype mismatch");

  t0 = now();
  r = nc.Broadcast(d, d, COUNT, ncclInt32, last ? 1 % NRANKS : 0, comm, NULL);
  expect_refused(r, t0, comm, "broadcast, last rank naming root 1");
  matched(comm, d, 3, "after the root mismatch");

  buf_free(d);
  buf_free(d2);
  r = nc.CommDestroy(comm);
  CHECK(r == ncclSuccess, "ncclCommDestroy: %s", nc.GetErrorString(r));
  return 0;
}

static int finish(void) {
  long p = atomic_load(&C->pass), f = atomic_load(&C->fail);
  printf("%ld passed, %ld failed\n", p, f);
  fflush(stdout);
  return f ? 1 : 0;
}

/* The launcher's rank, size and local rank (mpirun, torchrun, GCSHIM_*). */
static bool launched(char *key, size_t klen) {
  static const char *const vars[][4] = {
      {"GCSHIM_RANK", "GCSHIM_WORLD_SIZE", "GCSHIM_LOCAL_RANK", "GCSHIM_RENDEZVOUS"},
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_MCA_ess_base_jobid"},
      {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"},
  };
  for (int i = 0; i < 3; i++) {
    const char *r = getenv(vars[i][0]), *s = getenv(vars[i][1]), *l = getenv(vars[i][2]),
               *k = getenv(vars[i][3]);
    if (!r || !s) continue;
    RANK = atoi(r);
    NRANKS = atoi(s);
    LOCAL = l ? atoi(l) : RANK;
    snprintf(key, klen, "%s-%s", vars[i][0], k ? k : "nokey");
    return true;
  }
  return false;
}

int main(int argc, char **argv) {
  alarm(120);
  int want = 2;
  HOST = getenv("NCCL_MISMATCH_HOST") && !strcmp(getenv("NCCL_MISMATCH_HOST"), "1");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--host"))
      HOST = true;
    else
      want = atoi(argv[i]);
  }
  C = mmap(NULL, sizeof *C, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (C == MAP_FAILED) return 2;
  const char *chk = getenv("GCSHIM_CHECK");
  if (!dlsym(RTLD_DEFAULT, "gcshim_report_flush") || !chk || strcmp(chk, "1")) {
    printf("skipped: needs the preloaded shim (LD_PRELOAD=libgcshim.so) and GCSHIM_CHECK=1\n");
    return 77;
  }
  char key[160];
  bool job = launched(key, sizeof key);
  int ngpu = HOST ? 1 << 20 : count_gpus_in_child();
  if (!HOST && ngpu == 0) {
    printf("skipped: no GPU\n");
    return 77;
  }
  if (!job) {
    NRANKS = want < ngpu ? want : ngpu;
    snprintf(key, sizeof key, "fork-%d", (int)getpid());
  }
  if (NRANKS < 2) {
    printf("skipped: a mismatch needs 2 ranks (%d, %d GPUs)\n", NRANKS, HOST ? 0 : ngpu);
    return 77;
  }
  if (!HOST && LOCAL >= ngpu) {
    printf("skipped: local rank %d, %d GPUs\n", LOCAL, ngpu);
    return 77;
  }
  for (char *c = key; *c; c++)
    if (*c == '/') *c = '_';
  snprintf(ID_PATH, sizeof ID_PATH, "/tmp/gcshim-mismatch-u%u-%s.id", (unsigned)getuid(), key);
  if (job) {
    if (RANK == 0) printf("%d ranks (launched), %s memory\n", NRANKS, HOST ? "host" : "GPU");
    fflush(stdout);
    if (load_nccl() || (!HOST && !load_cuda())) return 1;
    int bad = body();
    CHECK(bad == 0, "rank %d gave up", RANK);
    return finish();
  }
  printf("%d ranks (forked), %s memory\n", NRANKS, HOST ? "host" : "GPU");
  fflush(stdout);
  pid_t pids[64];
  for (int r = 0; r < NRANKS && r < 64; r++) {
    pids[r] = fork();
    if (pids[r] == 0) {
      RANK = r;
      LOCAL = r;
      int bad = load_nccl() || (!HOST && !load_cuda()) ? 1 : body();
      CHECK(bad == 0, "rank %d gave up", r);
      fflush(NULL);
      _exit(bad);
    }
  }
  int bad = 0;
  for (int r = 0; r < NRANKS && r < 64; r++) {
    int st;
    waitpid(pids[r], &st, 0);
    bad += !WIFEXITED(st) || WEXITSTATUS(st);
  }
  unlink(ID_PATH);
  CHECK(bad == 0, "%d ranks exited non-zero", bad);
  return finish();
}
