/* shim.c - the preload library's entry. The NCCL interposer lands here
 * (see DESIGN.md); for now it only carries the core and CPU groups. */
#include "core/core.h"

GC_INTERNAL int gc_shim_placeholder;
