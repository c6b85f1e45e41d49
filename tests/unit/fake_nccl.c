/* fake_nccl.c - a stand-in NCCL for test_nccl_api: an "NCCL 2.19.5" that
 * exports only four entry points, one of them under its weak ncclX name
 * only, so that the resolver's fallbacks and its answer for missing entry
 * points can be tested. Built for the tests only, never installed. */
#include "nccl/nccl_types.h"

#define FAKE_EXPORT __attribute__((visibility("default")))

FAKE_EXPORT ncclResult_t pncclGetVersion(int *version) {
  *version = GC_NCCL_VERSION_CODE(2, 19, 5);
  return ncclSuccess;
}

FAKE_EXPORT const char *pncclGetErrorString(ncclResult_t result) {
  return result == ncclSuccess ? "fake: no error" : "fake: some error";
}

/* Only the weak-style name: the resolver must fall back to it. */
FAKE_EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId) {
  for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) uniqueId->internal[i] = (char)i;
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t pncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                                        ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                                        cudaStream_t stream) {
  (void)sendbuff, (void)recvbuff, (void)count, (void)datatype, (void)op, (void)comm, (void)stream;
  return ncclInvalidUsage;
}
