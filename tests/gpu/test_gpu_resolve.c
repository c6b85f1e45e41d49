/* test_gpu_resolve.c - the real NCCL resolves through the project's table
 * (a plain-C stand-in for unit/test_nccl_api where Check is missing): every
 * entry point of nccl_api.def as old as the loaded NCCL resolves, newer ones
 * answer GC_ERR_UNSUPPORTED naming the symbol, and a version query works.
 * Exits 77 when no NCCL can be loaded (GCSHIM_NCCL_LIBRARY to point at one). */
#include <stdio.h>
#include <string.h>

#include "nccl/gc_nccl.h"

int main(void) {
  if (gc_nccl_ready() != GC_OK) {
    printf("skipped: no NCCL (%s)\n", gc_last_error());
    return 77;
  }
  int pass = 0, fail = 0, v = gc_nccl_version(), newer = 0;
  char buf[32];
  printf("NCCL %s from %s (%s)\n", gc_nccl_version_string(v, buf, sizeof buf), gc_nccl_library(),
         gc_nccl_source());
  if (v > 0)
    pass++;
  else
    fail++, printf("FAIL: no version\n");
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) {
    bool have = gc_nccl_real.any[i] != NULL;
    if (gc_nccl_api[i].version <= v) {
      gc_status_t s = gc_nccl_require((gc_nccl_id_t)i);
      if (have && s == GC_OK) {
        pass++;
      } else if (!have && s == GC_ERR_UNSUPPORTED) {
        /* nccl_api.def dates it to a release no later than the library's,
         * yet this build lacks it (a patch release added it): it must still
         * answer GC_ERR_UNSUPPORTED rather than crash. Noted, not failed. */
        pass++;
        printf("NOTE: %s listed since %d is missing from this NCCL; require says %s\n",
               gc_nccl_api[i].name, gc_nccl_api[i].version, gc_status_string(s));
      } else {
        fail++;
        printf("FAIL: %s (since %d) does not resolve\n", gc_nccl_api[i].name,
               gc_nccl_api[i].version);
      }
    } else if (!have) {
      newer++;
      gc_status_t s = gc_nccl_require((gc_nccl_id_t)i);
      if (s == GC_ERR_UNSUPPORTED && strstr(gc_last_error(), gc_nccl_api[i].name)) {
        pass++;
      } else {
        fail++;
        printf("FAIL: %s newer than the library but require says %s\n", gc_nccl_api[i].name,
               gc_status_string(s));
      }
    }
  }
  int lv = 0;
  if (gc_nccl_real.fn.GetVersion && gc_nccl_real.fn.GetVersion(&lv) == ncclSuccess && lv == v)
    pass++;
  else
    fail++, printf("FAIL: ncclGetVersion through the table\n");
  printf("%d entry points, %d newer than the library\n", GC_NCCL_API_COUNT, newer);
  printf("%d passed, %d failed\n", pass, fail);
  return fail ? 1 : 0;
}
