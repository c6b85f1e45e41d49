/* plugin_load LIB MODE: opens LIB as NCCL 2.28 opens a plugin (dlopen
 * RTLD_NOW|RTLD_LOCAL, dlsym of ncclProfiler_v5 and ncclTunerPlugin_v5),
 * initialises both for a communicator named "tp", reports 3 AllReduce of
 * 256 floats with their kernel channels, and says on stdout what the
 * profiler logged at init. MODE unused (kept for the script's messages). */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plugin/nccl_plugin.h"

static void logger(int level, unsigned long flags, const char *file, int line, const char *fmt,
                   ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("log %d: ", level);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

int main(int argc, char **argv) {
  alarm(30);
  if (argc < 2) return 2;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("FAIL: dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  const gcnp_profiler_v5_t *prof = dlsym(h, "ncclProfiler_v5");
  const gcnp_tuner_v5_t *tuner = dlsym(h, "ncclTunerPlugin_v5");
  if (!prof || !tuner || !dlsym(h, "ncclProfiler_v4") || !dlsym(h, "ncclTunerPlugin_v4")) {
    printf("FAIL: plugin symbols missing\n");
    return 1;
  }
  void *pctx = NULL, *tctx = NULL;
  int mask = 0;
  if (prof->init(&pctx, 0x42, &mask, "tp", 1, 1, 0, logger) != 0 || !pctx) return 1;
  gcnp_nvl_domain_info_v5_t nvl = {1, 1, 1};
  gcnp_tuner_constants_v5_t consts;
  memset(&consts, 0, sizeof consts);
  if (tuner->init(&tctx, 0x42, 1, 1, logger, &nvl, &consts) != 0) return 1;
  for (int i = 0; i < 3; i++) {
    gcnp_event_descr_v5_t d;
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_COLL;
    d.coll.v4.func = "AllReduce";
    d.coll.v4.count = 256;
    d.coll.v4.datatype = "ncclFloat32";
    d.coll.v4.nChannels = 1;
    d.coll.v4.algo = "RING";
    d.coll.v4.proto = "SIMPLE";
    void *coll = NULL, *ch = NULL;
    prof->startEvent(pctx, &coll, &d);
    prof->stopEvent(coll);
    memset(&d, 0, sizeof d);
    d.type = GCNP_PROF_KERNEL_CH;
    d.parentObj = coll;
    d.kernelCh.pTimer = 1000;
    prof->startEvent(pctx, &ch, &d);
    gcnp_state_args_t a = {.kernelCh = {.pTimer = 3000}};
    prof->recordEventState(ch, GCNP_STATE_KERNEL_CH_STOP, &a);
    prof->stopEvent(ch);
  }
  /* getAlgoInfo's table: one float[7][3] block passed as float ** */
  float t[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  for (int a = 0; a < GCNP_NUM_ALGOS; a++)
    for (int p = 0; p < GCNP_NUM_PROTOS; p++) t[a][p] = GCNP_ALGO_PROTO_IGNORE;
  t[1][2] = 1.0f;
  int nch = 0;
  tuner->getCollInfo(tctx, GCNP_FUNC_ALLREDUCE, 1024, 1, (float **)t, GCNP_NUM_ALGOS,
                     GCNP_NUM_PROTOS, 0, &nch);
  tuner->finalize(tctx);
  prof->finalize(pctx);
  printf("done\n");
  return 0;
}
