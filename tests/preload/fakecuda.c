/*
 * fakecuda.c - a stand-in "libcuda.so.1" for the capture-tracking test
 * (never installed): the driver entry points gcshim loads, answering as a
 * machine with no device would, plus stream capture on any pointer taken
 * as a stream: cuStreamBeginCapture(_v2) / cuStreamEndCapture mark and
 * unmark it, cuStreamIsCapturing reports it, cuGetProcAddress(_v2) hands the
 * functions out by name as the real driver does (a CUDA runtime's way in).
 * fakeBeginCaptureUnseen/fakeEndCaptureUnseen capture through a door the
 * shim does not watch (its own check must find those).
 */
#include <stdint.h>
#include <string.h>

#define MAXS 64
static void *capturing[MAXS];

static int find(void *s) {
  for (int i = 0; i < MAXS; i++)
    if (capturing[i] == s) return i;
  return -1;
}
static int mark(void *s) {
  if (!s || find(s) >= 0) return 900; /* CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED-like */
  int i = find(NULL);
  if (i < 0) return 2;
  capturing[i] = s;
  return 0;
}
static int unmark(void *s, void **graph) {
  int i = find(s);
  if (i < 0 || !s) return 401; /* CUDA_ERROR_ILLEGAL_STATE */
  capturing[i] = NULL;
  if (graph) *graph = (void *)0x600d;
  return 0;
}

int cuInit(unsigned f) { return f ? 1 : 0; }
int cuDriverGetVersion(int *v) { return *v = 13000, 0; }
int cuGetErrorString(int e, const char **s) { return *s = e ? "fake error" : "no error", 0; }
int cuGetErrorName(int e, const char **s) { return *s = e ? "FAKE_ERROR" : "CUDA_SUCCESS", 0; }
int cuDeviceGetCount(int *n) { return *n = 0, 0; }
int cuDeviceGet(int *d, int o) { return (void)d, (void)o, 101; }
int cuDevicePrimaryCtxRetain(void **c, int d) { return (void)c, (void)d, 101; }
int cuCtxSetCurrent(void *c) { return (void)c, 0; }
int cuCtxGetDevice(int *d) { return (void)d, 201; }
int cuStreamIsCapturing(void *s, int *st) { return *st = s && find(s) >= 0, 0; }
int cuStreamSynchronize(void *s) { return (void)s, 0; }
int cuEventCreate(void **e, unsigned f) { return (void)e, (void)f, 201; }
int cuEventDestroy_v2(void *e) { return (void)e, 0; }
int cuEventRecord(void *e, void *s) { return (void)e, (void)s, 0; }
int cuEventSynchronize(void *e) { return (void)e, 0; }
int cuEventElapsedTime(float *ms, void *a, void *b) { return (void)a, (void)b, *ms = 0, 0; }
int cuMemcpyAsync(unsigned long long d, unsigned long long s, size_t n, void *st) {
  return (void)d, (void)s, (void)n, (void)st, 1;
}
int cuMemcpy2DAsync_v2(const void *p, void *s) { return (void)p, (void)s, 1; }
int cuMemsetD8Async(unsigned long long d, unsigned char v, size_t n, void *s) {
  return (void)d, (void)v, (void)n, (void)s, 1;
}

int cuStreamBeginCapture(void *s) { return mark(s); }
int cuStreamBeginCapture_v2(void *s, int mode) { return (void)mode, mark(s); }
int cuStreamEndCapture(void *s, void **graph) { return unmark(s, graph); }
int fakeBeginCaptureUnseen(void *s) { return mark(s); }
int fakeEndCaptureUnseen(void *s) { return unmark(s, NULL); }

int cuGetProcAddress(const char *sym, void **pfn, int ver, uint64_t flags);
int cuGetProcAddress_v2(const char *sym, void **pfn, int ver, uint64_t flags, int *status) {
  (void)flags;
  void *p = NULL;
  if (!strcmp(sym, "cuStreamBeginCapture"))
    p = ver >= 10010 ? (void *)cuStreamBeginCapture_v2 : (void *)cuStreamBeginCapture;
  else if (!strcmp(sym, "cuStreamEndCapture"))
    p = (void *)cuStreamEndCapture;
  else if (!strcmp(sym, "cuStreamIsCapturing"))
    p = (void *)cuStreamIsCapturing;
  else if (!strcmp(sym, "cuGetProcAddress"))
    p = ver >= 12000 ? (void *)cuGetProcAddress_v2 : (void *)cuGetProcAddress;
  if (status) *status = p ? 0 : 1; /* CU_GET_PROC_ADDRESS_SUCCESS / SYMBOL_NOT_FOUND */
  *pfn = p;
  return p ? 0 : 500; /* CUDA_ERROR_NOT_FOUND */
}
int cuGetProcAddress(const char *sym, void **pfn, int ver, uint64_t flags) {
  return cuGetProcAddress_v2(sym, pfn, ver, flags, NULL);
}
