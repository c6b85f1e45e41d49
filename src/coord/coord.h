/* coord.h - state of the coordinator layer shared by its files. */
#ifndef GC_COORD_H
#define GC_COORD_H

#include "core/core.h"
#include "core/group.h"
#include "cpu/cpu.h"

typedef struct {
  bool initialized;
  int rank, size, local_rank;
  double timeout_s;
  char transport[8];
  char rendezvous[GC_NAME_MAX];
  gc_cpu_group_t *cpu;  /* the world's CPU group */
  uint64_t groups_made; /* tags subgroups made one after another */
} gc_world_t;

extern GC_INTERNAL gc_world_t gc_world;

/* GC_ERR_INVALID_ARG for NULL, GC_ERR_STATE for a destroyed group. */
GC_INTERNAL gc_status_t gc_group_check(const gc_group_t *g, const char *what);

#endif
