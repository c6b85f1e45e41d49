/*
 * ctypes_prog.c - a program that loads NCCL the way Python ctypes and vLLM's
 * pynccl do: dlopen(path, RTLD_LOCAL) and dlsym on that handle; it links no
 * NCCL. Under the shim the look-ups must answer the shim's wrappers (the
 * same addresses as dlsym(RTLD_DEFAULT)), and the calls are counted.
 *
 *   ctypes_prog LIBNCCL_PATH NRANKS EXPECT_SHIM(0|1)
 * One rank count; every rank does 3 all-reduces of 64 int32 on a
 * communicator named "ctypes" (commName). Prints "N passed, N failed".
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nccl.h>

static long passed, failed;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      passed++;                                            \
    } else {                                               \
      failed++;                                            \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fputc('\n', stderr);                                 \
    }                                                      \
  } while (0)

typedef ncclResult_t (*id_fn)(ncclUniqueId *);
typedef ncclResult_t (*init_fn)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
typedef ncclResult_t (*ar_fn)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                              cudaStream_t);
typedef ncclResult_t (*destroy_fn)(ncclComm_t);

static void *sym(void *h, const char *name) {
  void *p = dlsym(h, name);
  CHECK(p != NULL, "dlsym(%s): %s", name, dlerror());
  return p;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: ctypes_prog LIBNCCL NRANKS EXPECT_SHIM\n");
    return 2;
  }
  alarm(60);
  int n = atoi(argv[2]), shim = atoi(argv[3]);
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  id_fn get_id;
  init_fn init;
  ar_fn allreduce;
  destroy_fn destroy;
  void *p;
  p = sym(h, "ncclGetUniqueId"), memcpy(&get_id, &p, sizeof p);
  p = sym(h, "ncclCommInitRankConfig"), memcpy(&init, &p, sizeof p);
  p = sym(h, "ncclAllReduce"), memcpy(&allreduce, &p, sizeof p);
  p = sym(h, "ncclCommDestroy"), memcpy(&destroy, &p, sizeof p);
  if (failed) return 1;
  /* The shim's wrapper is what RTLD_DEFAULT finds when the shim is preloaded. */
  void *def = dlsym(RTLD_DEFAULT, "ncclAllReduce");
  void *strong = dlsym(h, "pncclAllReduce");
  if (shim)
    CHECK(def != NULL && (void *)allreduce == def && (void *)allreduce != strong,
          "dlsym(handle, ncclAllReduce) = %p, the shim's is %p", (void *)allreduce, def);
  else
    CHECK(def == NULL, "ncclAllReduce is visible without the shim");
  /* Other look-ups on the handle still answer NCCL's own. */
  CHECK(strong != NULL && strong != def, "pncclAllReduce = %p", strong);
  ncclUniqueId id;
  CHECK(get_id(&id) == ncclSuccess, "ncclGetUniqueId failed");
  fflush(stdout);
  int fds[2];
  if (pipe(fds)) return 1;
  for (int r = 0; r < n; r++)
    if (fork() == 0) {
      close(fds[0]);
      passed = failed = 0;
      ncclComm_t c = NULL;
      ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
      cfg.commName = "ctypes";
      CHECK(init(&c, n, id, r, &cfg) == ncclSuccess, "init failed");
      int32_t x[64], y[64];
      for (int k = 0; k < 3 && c; k++) {
        for (int i = 0; i < 64; i++) x[i] = r + i + k;
        CHECK(allreduce(x, y, 64, ncclInt32, ncclSum, c, NULL) == ncclSuccess, "allreduce");
        CHECK(y[5] == n * (n - 1) / 2 + n * (5 + k), "allreduce gave %d", y[5]);
      }
      if (c) CHECK(destroy(c) == ncclSuccess, "destroy");
      long out[2] = {passed, failed};
      if (write(fds[1], out, sizeof out) != sizeof out) _exit(3);
      exit(failed ? 1 : 0);
    }
  close(fds[1]);
  long out[2];
  int reported = 0;
  while (read(fds[0], out, sizeof out) == sizeof out)
    passed += out[0], failed += out[1], reported++;
  while (wait(NULL) > 0) {
  }
  CHECK(reported == n, "%d of %d ranks reported", reported, n);
  printf("%ld passed, %ld failed\n", passed, failed);
  return failed || !passed;
}
