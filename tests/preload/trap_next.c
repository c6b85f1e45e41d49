/*
 * trap_next.c - libtrapnext.so, linked by trap_prog; it needs libtrapdep.so,
 * which comes after it in the global scope. glibc answers RTLD_NEXT from the
 * calling object's place in that scope; under a dlsym interposer that merely
 * forwarded, the interposer (loaded first) would be the caller and
 * RTLD_NEXT would find this library's own trap_value.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int trap_value(void) { return 1; }

/* 0 when every look-up answers what it should; else the number wrong. */
int trap_next_check(void) {
  int bad = 0;
  /* The next trap_value after this library: the dependency's. */
  int (*next)(void) = (int (*)(void))dlsym(RTLD_NEXT, "trap_value");
  if (!next || next() != 2) {
    fprintf(stderr, "trap: dlsym(RTLD_NEXT, trap_value) = %p, wanted libtrapdep's\n", (void *)next);
    bad++;
  }
  /* RTLD_DEFAULT: the first in the global scope, ours. */
  int (*dflt)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "trap_value");
  if (!dflt || dflt() != 1) {
    fprintf(stderr, "trap: dlsym(RTLD_DEFAULT, trap_value) = %p, wanted ours\n", (void *)dflt);
    bad++;
  }
  /* The next malloc is libc's. */
  void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
  void *want = libc ? dlsym(libc, "malloc") : NULL;
  void *got = dlsym(RTLD_NEXT, "malloc");
  if (!got || got != want) {
    fprintf(stderr, "trap: dlsym(RTLD_NEXT, malloc) = %p, libc's is %p\n", got, want);
    bad++;
  }
  if (libc) dlclose(libc);
  return bad;
}
