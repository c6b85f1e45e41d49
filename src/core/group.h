/*
 * group.h - the one group object. A gc_group_new() group and a communicator
 * adopted by the shim are the same struct in the same registry, with the same
 * CPU group and statistics; they differ only at their entry.
 */
#ifndef GC_GROUP_H
#define GC_GROUP_H

#include "core/core.h"

struct gc_cpu_group;
struct gc_device_ops;

typedef enum {
  GC_SOURCE_API = 0,
  GC_SOURCE_COMMNAME,
  GC_SOURCE_RULE,
  GC_SOURCE_SPLIT,
  GC_SOURCE_DEFAULT
} gc_group_source_t;

struct gc_group {
  char name[GC_NAME_MAX]; /* unique: "tp:0" */
  char base[GC_NAME_MAX]; /* "tp" */
  gc_group_source_t source;
  int rank;          /* world rank of this process */
  int rank_in_group; /* index of rank in ranks */
  int size;
  int *ranks; /* world ranks, group order */
  int local_rank;
  struct gc_cpu_group *cpu;
  const struct gc_device_ops *dev; /* NULL: no device communicator */
  void *dev_state;
  void *mq;    /* message-queue broadcaster, when asked for */
  void *stats; /* per-op statistics (the shim's and the API's) */
  bool destroyed;
};

GC_INTERNAL const char *gc_group_source_name(gc_group_source_t s);

#endif
