/*
 * dlvsym_prog.c - versioned look-ups under the shim (and without it):
 *   dlvsym_prog DIR     (DIR: preload/traps, with vnccl/libnccl.so.2)
 * - dlvsym(RTLD_NEXT, ...) from a library (libvnext.so) still finds its
 *   dependency's definition (the interposer never becomes the caller);
 * - dlvsym(handle of an NCCL, "ncclAllReduce", its version) answers the
 *   shim's wrapper when the shim is preloaded (TRAP_EXPECT_SHIM=1), NCCL's
 *   own otherwise; with a version it lacks, NULL either way;
 * - a name the shim does not wrap, and a non-NCCL look-up, pass through.
 * Prints "N passed, N failed".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vtrap_next_check(void);

static int passed, failed;
#define CHECK(cond, ...)            \
  do {                              \
    if (cond) {                     \
      passed++;                     \
    } else {                        \
      failed++;                     \
      fprintf(stderr, "FAIL: ");    \
      fprintf(stderr, __VA_ARGS__); \
      fputc('\n', stderr);          \
    }                               \
  } while (0)

static int call(void *p) {
  int (*f)(void);
  memcpy(&f, &p, sizeof p);
  return f();
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: dlvsym_prog DIR\n");
    return 2;
  }
  alarm(30);
  const char *e = getenv("TRAP_EXPECT_SHIM");
  int shim = e && atoi(e);
  CHECK(vtrap_next_check() == 0, "dlvsym(RTLD_NEXT) from a library");
  char path[4096];
  snprintf(path, sizeof path, "%s/vnccl/libnccl.so.2", argv[1]);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(h != NULL, "dlopen %s: %s", path, dlerror());
  if (!h) goto out;
  void *wrapper = dlsym(RTLD_DEFAULT, "ncclAllReduce"); /* the shim's, when preloaded */
  CHECK((wrapper != NULL) == shim, "ncclAllReduce by RTLD_DEFAULT = %p", wrapper);
  void *v = dlvsym(h, "ncclAllReduce", "GCTEST_1");
  void *d = dlsym(h, "ncclAllReduce");
  if (shim) {
    CHECK(v == wrapper, "dlvsym(nccl, ncclAllReduce, GCTEST_1) = %p, the wrapper is %p", v,
          wrapper);
    CHECK(d == wrapper, "dlsym(nccl, ncclAllReduce) = %p, the wrapper is %p", d, wrapper);
  } else {
    CHECK(v && call(v) == 42, "dlvsym(nccl, ncclAllReduce, GCTEST_1) = %p, not NCCL's", v);
    CHECK(d == v, "dlsym and dlvsym disagree: %p %p", d, v);
  }
  CHECK(dlvsym(h, "ncclAllReduce", "NOPE_9") == NULL, "a version NCCL lacks answered");
  void *nw = dlvsym(h, "ncclNotWrapped", "GCTEST_1");
  CHECK(nw && call(nw) == 7, "dlvsym of a name not wrapped = %p", nw);
  CHECK(dlvsym(h, "vtrap_value", "GCTEST_1") == NULL, "a name the library lacks answered");
  /* A non-NCCL look-up on libc: as without the shim. */
  void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
  if (libc) {
    void *m = dlsym(libc, "malloc");
    void *found = NULL;
    static const char *const vers[] = {"GLIBC_2.2.5", "GLIBC_2.17", NULL};
    for (int i = 0; vers[i] && !found; i++) found = dlvsym(libc, "malloc", vers[i]);
    CHECK(found == m, "dlvsym(libc, malloc) = %p, dlsym %p", found, m);
    dlclose(libc);
  }
  dlclose(h);
out:
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
