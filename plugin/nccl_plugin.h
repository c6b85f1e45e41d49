/*
 * nccl_plugin.h - the tuner and profiler plugin interfaces of NCCL 2.28
 * (tuner v5/v4, profiler v5/v4), redeclared from their documented layout
 * (NCCL's src/include/plugin/tuner/tuner_v5.h, tuner_v4.h, profiler/profiler_v5.h, profiler_v4.h
 * and nccl_common.h) under the project's own names. Only facts: field order and types, enum values;
 * sizes and offsets checked below for LP64.
 */
#ifndef GC_NCCL_PLUGIN_H
#define GC_NCCL_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef int gcnp_result_t; /* ncclResult_t: 0 success, 3 internal error, 4 invalid argument */
#define GCNP_SUCCESS 0
#define GCNP_INTERNAL_ERROR 3

/* ncclDebugLogLevel and two subsystem flags. */
enum { GCNP_LOG_WARN = 2, GCNP_LOG_INFO = 3 };
enum { GCNP_LOG_INIT = 0x1, GCNP_LOG_TUNING = 0x40, GCNP_LOG_PROFILE = 0x4000 };
typedef void (*gcnp_logger_t)(int level, unsigned long flags, const char *file, int line,
                              const char *fmt, ...);

/* ncclFunc_t (the collectives the tuner sees are the first five). */
enum {
  GCNP_FUNC_BROADCAST = 0,
  GCNP_FUNC_REDUCE = 1,
  GCNP_FUNC_ALLGATHER = 2,
  GCNP_FUNC_REDUCESCATTER = 3,
  GCNP_FUNC_ALLREDUCE = 4,
  GCNP_FUNC_SENDRECV = 5,
  GCNP_FUNC_SEND = 6,
  GCNP_FUNC_RECV = 7
};

/* ---- tuner ---------------------------------------------------------------- */
#define GCNP_NUM_ALGOS 7  /* tree ring collnet_direct collnet_chain nvls nvls_tree pat */
#define GCNP_NUM_PROTOS 3 /* ll ll128 simple */
#define GCNP_ALGO_PROTO_IGNORE (-1.0f)

typedef struct {
  int nNvlDomains, minRanksPerNvlDomain, maxRanksPerNvlDomain;
} gcnp_nvl_domain_info_v5_t;

typedef struct {
  double baseLatencies[7][3];
  double hwLatencies[3][7][3];
  double llMaxBws[4][3];
  double perChMaxRingLL128Bws[4][3];
  double perChMaxTreeLL128Bws[4][3];
  double perChMaxTreeBws[4][3];
  double perChMaxNVLSTreeBws[4][3];
} gcnp_tuner_constants_v5_t;

/* collCostTable is getAlgoInfo's local float[numAlgo][numProto], one block
 * cast to float ** (src/enqueue.cc): index it through float (*)[numProto]. */
typedef gcnp_result_t (*gcnp_get_coll_info_t)(void *ctx, int collType, size_t nBytes,
                                              int numPipeOps, float **collCostTable, int numAlgo,
                                              int numProto, int regBuff, int *nChannels);

typedef struct {
  const char *name;
  gcnp_result_t (*init)(void **ctx, uint64_t commId, size_t nRanks, size_t nNodes,
                        gcnp_logger_t logFunction, gcnp_nvl_domain_info_v5_t *nvlDomainInfo,
                        gcnp_tuner_constants_v5_t *constants);
  gcnp_get_coll_info_t getCollInfo;
  gcnp_result_t (*finalize)(void *ctx);
} gcnp_tuner_v5_t;

typedef struct {
  const char *name;
  gcnp_result_t (*init)(size_t nRanks, size_t nNodes, gcnp_logger_t logFunction, void **ctx);
  gcnp_get_coll_info_t getCollInfo;
  gcnp_result_t (*destroy)(void *ctx);
} gcnp_tuner_v4_t;

/* ---- profiler ------------------------------------------------------------- */
enum {
  GCNP_PROF_GROUP = 1 << 0,
  GCNP_PROF_COLL = 1 << 1,
  GCNP_PROF_P2P = 1 << 2,
  GCNP_PROF_PROXY_OP = 1 << 3,
  GCNP_PROF_PROXY_STEP = 1 << 4,
  GCNP_PROF_PROXY_CTRL = 1 << 5,
  GCNP_PROF_KERNEL_CH = 1 << 6,
  GCNP_PROF_NET_PLUGIN = 1 << 7,
  GCNP_PROF_GROUP_API = 1 << 8,
  GCNP_PROF_COLL_API = 1 << 9,
  GCNP_PROF_P2P_API = 1 << 10,
  GCNP_PROF_KERNEL_LAUNCH = 1 << 11
};
/* ncclProfilerEventState_t values used here. */
enum {
  GCNP_STATE_KERNEL_CH_STOP = 22,
  GCNP_STATE_GROUP_START_API_STOP = 23,
  GCNP_STATE_GROUP_END_API_START = 24
};

struct gcnp_coll_v4 {
  uint64_t seqNumber;
  const char *func;
  const void *sendBuff;
  void *recvBuff;
  size_t count;
  int root;
  const char *datatype;
  uint8_t nChannels, nWarps;
  const char *algo, *proto;
};
struct gcnp_p2p_v4 {
  const char *func;
  void *buff;
  const char *datatype;
  size_t count;
  int peer;
  uint8_t nChannels;
};
struct gcnp_proxy_op {
  pid_t pid;
  uint8_t channelId;
  int peer, nSteps, chunkSize, isSend;
};
struct gcnp_kernel_ch {
  uint8_t channelId;
  uint64_t pTimer;
};
struct gcnp_net_plugin {
  int64_t id;
  void *data;
};

typedef struct {
  uint8_t type;
  void *parentObj;
  int rank;
  union {
    struct gcnp_coll_v4 coll;
    struct gcnp_p2p_v4 p2p;
    struct gcnp_proxy_op proxyOp;
    struct {
      int step;
    } proxyStep;
    struct gcnp_kernel_ch kernelCh;
    struct gcnp_net_plugin netPlugin;
  };
} gcnp_event_descr_v4_t;

typedef struct {
  uint64_t type;
  void *parentObj;
  int rank;
  union {
    struct {
      bool graphCaptured;
      int groupDepth;
    } groupApi;
    struct {
      const char *func;
      size_t count;
      const char *datatype;
      int root;
      void *stream;
      bool graphCaptured;
    } collApi;
    struct {
      const char *func;
      size_t count;
      const char *datatype;
      void *stream;
      bool graphCaptured;
    } p2pApi;
    struct {
      void *stream;
    } kernelLaunch;
    struct {
      struct gcnp_coll_v4 v4; /* the v4 fields, same layout */
      void *parentGroup;
    } coll;
    struct {
      struct gcnp_p2p_v4 v4;
      void *parentGroup;
    } p2p;
    struct gcnp_proxy_op proxyOp;
    struct {
      int step;
    } proxyStep;
    struct gcnp_kernel_ch kernelCh;
    struct gcnp_net_plugin netPlugin;
  };
} gcnp_event_descr_v5_t;

typedef union {
  struct {
    size_t transSize;
  } proxyStep;
  struct {
    int appendedProxyOps;
  } proxyCtrl;
  struct {
    void *data;
  } netPlugin;
  struct {
    uint64_t pTimer;
  } kernelCh;
} gcnp_state_args_t; /* v4 and v5 */

typedef struct {
  const char *name;
  gcnp_result_t (*init)(void **ctx, uint64_t commId, int *eActivationMask, const char *commName,
                        int nNodes, int nranks, int rank, gcnp_logger_t logfn);
  gcnp_result_t (*startEvent)(void *ctx, void **eHandle, gcnp_event_descr_v5_t *eDescr);
  gcnp_result_t (*stopEvent)(void *eHandle);
  gcnp_result_t (*recordEventState)(void *eHandle, int eState, gcnp_state_args_t *eStateArgs);
  gcnp_result_t (*finalize)(void *ctx);
} gcnp_profiler_v5_t;

typedef struct {
  const char *name;
  gcnp_result_t (*init)(void **ctx, int *eActivationMask, const char *commName, uint64_t commHash,
                        int nNodes, int nranks, int rank, gcnp_logger_t logfn);
  gcnp_result_t (*startEvent)(void *ctx, void **eHandle, gcnp_event_descr_v4_t *eDescr);
  gcnp_result_t (*stopEvent)(void *eHandle);
  gcnp_result_t (*recordEventState)(void *eHandle, int eState, gcnp_state_args_t *eStateArgs);
  gcnp_result_t (*finalize)(void *ctx);
} gcnp_profiler_v4_t;

#if defined(__LP64__)
_Static_assert(sizeof(gcnp_tuner_constants_v5_t) == (21 + 63 + 5 * 12) * 8, "tuner constants");
_Static_assert(sizeof(gcnp_tuner_v5_t) == 32 && sizeof(gcnp_tuner_v4_t) == 32, "tuner structs");
_Static_assert(offsetof(gcnp_tuner_v5_t, finalize) == 24, "tuner v5 finalize");
_Static_assert(sizeof(gcnp_nvl_domain_info_v5_t) == 12, "nvl domain info");
_Static_assert(sizeof(struct gcnp_coll_v4) == 80, "coll v4");
_Static_assert(offsetof(struct gcnp_coll_v4, nChannels) == 56, "coll v4 nChannels");
_Static_assert(offsetof(struct gcnp_coll_v4, algo) == 64, "coll v4 algo");
_Static_assert(offsetof(gcnp_event_descr_v4_t, coll) == 24, "descr v4 union");
_Static_assert(sizeof(gcnp_event_descr_v4_t) == 104, "descr v4");
_Static_assert(offsetof(gcnp_event_descr_v5_t, coll.parentGroup) == 24 + 80, "coll v5 parent");
_Static_assert(offsetof(gcnp_event_descr_v5_t, p2p.parentGroup) == 24 + 40, "p2p v5 parent");
_Static_assert(offsetof(gcnp_event_descr_v5_t, collApi.graphCaptured) == 24 + 40, "collApi");
_Static_assert(offsetof(gcnp_event_descr_v5_t, kernelCh.pTimer) == 32, "kernelCh pTimer");
_Static_assert(sizeof(gcnp_event_descr_v5_t) == 112, "descr v5");
_Static_assert(sizeof(gcnp_state_args_t) == 8, "state args");
_Static_assert(sizeof(gcnp_profiler_v5_t) == 48 && sizeof(gcnp_profiler_v4_t) == 48, "profiler");
#endif

#endif /* GC_NCCL_PLUGIN_H */
