/*
 * vtrap.c - the dlvsym traps, one source built three ways (preload.am):
 *   -DVTRAP_NCCL  vnccl/libnccl.so.2: an "NCCL" whose symbols have the
 *                 version GCTEST_1 (ncclAllReduce, which the shim wraps, and
 *                 ncclNotWrapped, which it does not)
 *   -DVTRAP_DEP   libvdep.so: vtrap_value@@GCTEST_1, answering 2
 *   -DVTRAP_NEXT  libvnext.so: needs libvdep.so, has its own vtrap_value
 *                 (1), and asks dlvsym(RTLD_NEXT, "vtrap_value", "GCTEST_1"):
 *                 the dependency's, unless an interposer became the caller.
 */
#if defined(VTRAP_NCCL)
int ncclAllReduce(void) { return 42; }
int ncclNotWrapped(void) { return 7; }
#elif defined(VTRAP_DEP)
int vtrap_value(void) { return 2; }
#elif defined(VTRAP_NEXT)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
int vtrap_value(void) { return 1; }
int vtrap_next_check(void) {
  void *p = dlvsym(RTLD_NEXT, "vtrap_value", "GCTEST_1");
  int (*next)(void);
  memcpy(&next, &p, sizeof p);
  if (next && next() == 2) return 0;
  fprintf(stderr, "vtrap: dlvsym(RTLD_NEXT, vtrap_value, GCTEST_1) = %p, wanted libvdep's\n", p);
  return 1;
}
#endif
