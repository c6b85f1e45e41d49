/*
 * trap_origin.c - liborigin.so, whose RUNPATH is $ORIGIN/origin-dep: it
 * dlopens libgcorigindep.so, which is found nowhere else. glibc searches the
 * RUNPATH of the object that calls dlopen, so an interposer that made
 * itself the caller would break this.
 */
#include <dlfcn.h>
#include <stdio.h>

int trap_origin_check(void) {
  void *h = dlopen("libgcorigindep.so", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "trap: dlopen(libgcorigindep.so) through $ORIGIN: %s\n", dlerror());
    return 1;
  }
  int (*v)(void) = (int (*)(void))dlsym(h, "origin_dep_value");
  int bad = !v || v() != 42;
  if (bad) fprintf(stderr, "trap: origin_dep_value missing or wrong\n");
  dlclose(h);
  return bad;
}
