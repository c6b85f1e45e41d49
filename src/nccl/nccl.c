/* nccl.c - placeholder until the NCCL layer lands. */
#include "core/core.h"

GC_INTERNAL int gc_nccl_placeholder;
