/* shm.c - placeholder until the shared-memory transport lands. */
#include "cpu/cpu.h"

gc_status_t gc_cpu_shm_create(const char *key, int rank, int size, double timeout_s,
                              gc_cpu_group_t **out) {
  (void)key;
  (void)rank;
  (void)size;
  (void)timeout_s;
  (void)out;
  return gc_error(GC_ERR_UNSUPPORTED, "shm transport not built yet");
}
