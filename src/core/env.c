/* env.c - the hot switches' line, and the launchers' rank variables. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "core/params.h"

_Alignas(64) gc_hot_t gc_hot;

bool gc_parse_int(const char *s, long lo, long hi, long *out) {
  if (!s || !*s) return false;
  errno = 0;
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

double gc_env_timeout(void) { return gc_param_GCSHIM_TIMEOUT(); }

typedef struct {
  const char *source, *rank, *size, *local_rank;
} launcher_t;

static const launcher_t launchers[] = {
    {"GCSHIM", "GCSHIM_RANK", "GCSHIM_WORLD_SIZE", "GCSHIM_LOCAL_RANK"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"PMI", "PMI_RANK", "PMI_SIZE", NULL},
};

gc_status_t gc_env_ranks(gc_env_ranks_t *out) {
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "gc_env_ranks: out is NULL");
  for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
    const launcher_t *l = &launchers[i];
    const char *r = getenv(l->rank), *s = getenv(l->size);
    if (!r && !s) continue;
    long rank, size, local;
    if (!s) return gc_error(GC_ERR_INVALID_ARG, "%s is set but %s is not", l->rank, l->size);
    if (!r) return gc_error(GC_ERR_INVALID_ARG, "%s is set but %s is not", l->size, l->rank);
    if (!gc_parse_int(s, 1, 1 << 24, &size))
      return gc_error(GC_ERR_INVALID_ARG, "%s=%s is not a world size in 1..%d", l->size, s,
                      1 << 24);
    if (!gc_parse_int(r, 0, size - 1, &rank))
      return gc_error(GC_ERR_INVALID_ARG, "%s=%s is not a rank in 0..%ld", l->rank, r, size - 1);
    const char *lr = l->local_rank ? getenv(l->local_rank) : NULL;
    if (lr) {
      if (!gc_parse_int(lr, 0, size - 1, &local))
        return gc_error(GC_ERR_INVALID_ARG, "%s=%s is not a local rank in 0..%ld", l->local_rank,
                        lr, size - 1);
    } else {
      local = rank;
    }
    out->rank = (int)rank;
    out->world_size = (int)size;
    out->local_rank = (int)local;
    out->source = l->source;
    return GC_OK;
  }
  return gc_error(GC_ERR_NOT_FOUND,
                  "no rank in the environment: set GCSHIM_RANK/GCSHIM_WORLD_SIZE, or launch "
                  "with torchrun, mpirun or a PMI launcher");
}
