/*
 * trap_prog.c - the dlsym/dlopen traps of the preload tests: linked with
 * libtrapnext.so (which needs libtrapdep.so), it runs its look-ups, then
 * loads liborigin.so from DIR with dlopen(RTLD_LOCAL) and runs its $ORIGIN
 * dlopen (see trap_next.c, trap_origin.c). Run with and without the shim
 * preloaded; the answers must not change.
 *   trap_prog DIR
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int run(const char *dir, const char *lib, const char *fn) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, lib);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "FAIL: dlopen %s: %s\n", path, dlerror());
    return 1;
  }
  int (*check)(void) = (int (*)(void))dlsym(h, fn);
  if (!check) {
    fprintf(stderr, "FAIL: %s missing in %s\n", fn, lib);
    return 1;
  }
  int bad = check();
  if (bad) fprintf(stderr, "FAIL: %s: %d wrong answers\n", fn, bad);
  return bad ? 1 : 0;
}

int trap_next_check(void);

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: trap_prog DIR\n");
    return 2;
  }
  alarm(30);
  int failed = trap_next_check() ? 1 : 0;
  if (failed) fprintf(stderr, "FAIL: trap_next_check\n");
  failed += run(argv[1], "liborigin.so", "trap_origin_check");
  /* The shim's control API, when preloaded, by dlsym(RTLD_DEFAULT). */
  void *flush = dlsym(RTLD_DEFAULT, "gcshim_report_flush");
  const char *want = getenv("TRAP_EXPECT_SHIM");
  if (want && (atoi(want) != 0) != (flush != NULL)) {
    fprintf(stderr, "FAIL: gcshim_report_flush by RTLD_DEFAULT = %p\n", flush);
    failed++;
  }
  printf("%d passed, %d failed\n", 3 - failed, failed);
  return failed ? 1 : 0;
}
