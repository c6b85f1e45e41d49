/* hooks.c - what the interposer does around each real call. Empty for now:
 * adoption of communicators, capture accounting and statistics land here. */
#include "shim/shim.h"

void gc_shim_enter(gc_nccl_id_t id, gc_shim_call_t *call) {
  (void)id;
  call->t0 = 0;
  call->captured = false;
}

void gc_shim_leave(gc_nccl_id_t id, gc_shim_call_t *call, int result) {
  (void)id, (void)call, (void)result;
}
