/*
 * shim_preload.c - an NCCL program that links nothing: it finds the NCCL API
 * in the global scope (LD_PRELOAD of libgcshim.so puts the wrappers there)
 * and compares their answers with the library's own, opened directly.
 *
 *   shim_preload real|fake LIBRARY    (run by shim_preload.sh, with
 *                                      GCSHIM_NCCL_LIBRARY=LIBRARY)
 *
 * Prints "N passed, M failed"; exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*get_version_fn)(int *);
typedef const char *(*error_string_fn)(int);
typedef const char *(*last_error_fn)(void *);
typedef int (*shrink_fn)(void *, int *, int, void **, void *, int);
typedef int (*alltoall_fn)(const void *, void *, size_t, int, void *, void *);
typedef int (*unique_id_fn)(char *);

static int passed, failed;
#define EXPECT(cond, ...)                 \
  do {                                    \
    if (cond) {                           \
      passed++;                           \
    } else {                              \
      failed++;                           \
      printf("FAIL line %d: ", __LINE__); \
      printf(__VA_ARGS__);                \
      printf("\n");                       \
    }                                     \
  } while (0)

static void *sym(void *handle, const char *name) {
  void *p = dlsym(handle, name);
  if (!p) {
    printf("FAIL: %s not found: %s\n", name, dlerror());
    printf("%d passed, %d failed\n", passed, failed + 1);
    exit(1);
  }
  return p;
}

int main(int argc, char **argv) {
  alarm(30);
  if (argc != 3) {
    fprintf(stderr, "usage: %s real|fake LIBRARY\n", argv[0]);
    return 2;
  }
  const int fake = strcmp(argv[1], "fake") == 0;
  void *direct = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (!direct) {
    printf("FAIL: %s: %s\n0 passed, 1 failed\n", argv[2], dlerror());
    return 1;
  }

  /* The global scope's ncclGetVersion is the shim's; no pncclX is there. */
  void *p = sym(RTLD_DEFAULT, "ncclGetVersion");
  Dl_info info;
  EXPECT(dladdr(p, &info) && strstr(info.dli_fname, "libgcshim"), "ncclGetVersion from %s",
         info.dli_fname);
  EXPECT(dlsym(RTLD_DEFAULT, "pncclGetVersion") == NULL, "pncclGetVersion in the global scope");

  get_version_fn shim_version, real_version;
  error_string_fn shim_error, real_error;
  p = sym(RTLD_DEFAULT, "ncclGetVersion");
  memcpy(&shim_version, &p, sizeof p);
  p = sym(direct, "pncclGetVersion");
  memcpy(&real_version, &p, sizeof p);
  p = sym(RTLD_DEFAULT, "ncclGetErrorString");
  memcpy(&shim_error, &p, sizeof p);
  p = sym(direct, "pncclGetErrorString");
  memcpy(&real_error, &p, sizeof p);

  int v = -1, rv = -2;
  EXPECT(shim_version(&v) == 0, "ncclGetVersion through the shim failed");
  EXPECT(real_version(&rv) == 0, "ncclGetVersion of the library failed");
  EXPECT(v == rv, "version through the shim %d, library %d", v, rv);
  EXPECT(fake ? v == 21905 : v >= 22800, "version %d", v);
  for (int r = 0; r <= 8; r++) {
    const char *a = shim_error(r), *b = real_error(r);
    EXPECT(a == b, "ncclGetErrorString(%d): shim \"%s\", library \"%s\"", r, a ? a : "(null)",
           b ? b : "(null)");
  }
  printf("ncclGetVersion -> %d, ncclGetErrorString(5) -> \"%s\"\n", v, shim_error(5));

  if (fake) {
    /* Entry points the fake lacks answer ncclInvalidUsage (5), no crash. */
    shrink_fn shrink;
    alltoall_fn a2a;
    last_error_fn last;
    unique_id_fn uid;
    p = sym(RTLD_DEFAULT, "ncclCommShrink");
    memcpy(&shrink, &p, sizeof p);
    p = sym(RTLD_DEFAULT, "ncclAlltoAll");
    memcpy(&a2a, &p, sizeof p);
    p = sym(RTLD_DEFAULT, "ncclGetLastError");
    memcpy(&last, &p, sizeof p);
    p = sym(RTLD_DEFAULT, "ncclGetUniqueId");
    memcpy(&uid, &p, sizeof p);
    void *newcomm = (void *)0x1;
    EXPECT(shrink(NULL, NULL, 0, &newcomm, NULL, 0) == 5, "ncclCommShrink on the fake");
    EXPECT(newcomm == (void *)0x1, "ncclCommShrink touched its output");
    EXPECT(a2a(NULL, NULL, 0, 7, NULL, NULL) == 5, "ncclAlltoAll on the fake");
    const char *s = last(NULL);
    EXPECT(s && strncmp(s, "gcshim: ", 8) == 0 && strstr(s, "ncclGetLastError"),
           "ncclGetLastError on the fake: %s", s ? s : "(null)");
    char id[128];
    memset(id, 0x7f, sizeof id);
    EXPECT(uid(id) == 0 && id[0] == 0 && id[127] == 127, "ncclGetUniqueId through the shim");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
