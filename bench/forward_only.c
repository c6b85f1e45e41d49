/*
 * forward_only.c - the floor under any interposer: a preloadable library
 * whose ncclAllReduce does nothing but jump to the real one (pncclAllReduce,
 * looked up on the first call). bench/shim_overhead measures it as it
 * measures the shim: what one more function and one more indirect jump in
 * front of NCCL cost on the machine, whatever the shim does in between.
 *
 *   LD_PRELOAD=bench/.libs/libforward_only.so bench/shim_overhead LIB N PAIRS
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "nccl/nccl_types.h"

typedef ncclResult_t (*ar_t)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t);
static ar_t real;

static __attribute__((noinline, cold)) ar_t resolve(void) {
  void *p = dlsym(RTLD_DEFAULT, "pncclAllReduce");
  if (!p) {
    fprintf(stderr, "forward_only: pncclAllReduce: %s\n", dlerror());
    abort();
  }
  ar_t f;
  __builtin_memcpy(&f, &p, sizeof f);
  __atomic_store_n(&real, f, __ATOMIC_RELEASE);
  return f;
}

__attribute__((visibility("default"), aligned(64))) ncclResult_t ncclAllReduce(
    const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
    ncclComm_t comm, cudaStream_t stream) {
  ar_t f = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
  if (__builtin_expect(f == NULL, 0)) f = resolve();
  return f(sendbuff, recvbuff, count, datatype, op, comm, stream);
}
