/*
 * capture.c - which streams of the process may be capturing, seen from the
 * driver entry points that begin and end a capture, so that a counted call
 * asks the driver about its stream only while some capture is live.
 *
 * Asking the driver (cuStreamIsCapturing) on every call cost 20-70 ns per
 * call next to a real NCCL (docs/PERFORMANCE.md "Shim overhead"). A stream
 * can only start capturing through cuStreamBeginCapture (or
 * cuStreamBeginCaptureToGraph) on it or on a stream it waits on: with no
 * capture begun and not yet ended anywhere in the process, no stream is
 * capturing. CUDA runtimes (libcudart, the static one inside NCCL and
 * PyTorch's) reach the driver through dlopen("libcuda.so.1") + dlsym of
 * cuGetProcAddress, then everything through cuGetProcAddress; the shim's
 * dlsym (dl.c) hands out the wrappers here for those look-ups, and the
 * cuGetProcAddress wrappers hand out the begin/end wrappers. A program that
 * links libcuda and calls cuStreamBeginCapture directly is not seen: the
 * timed calls (a sample, shim.h) still ask the driver, and a capturing
 * stream the shim did not see begin makes it ask on every call from then on
 * (said once).
 *
 * Switch bits (shim.h): GC_SW_CAPTURE_LIVE while the set of streams seen to
 * begin a capture is not empty (every counted call asks the driver then),
 * GC_SW_CAPTURE_BLIND for good when tracking cannot be trusted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "nccl/gc_cuda.h"
#include "shim/shim.h"

typedef int cu_result_t; /* CUresult */
enum {
  CU_ERROR_STREAM_CAPTURE_INVALIDATED = 901, /* the capture ended, invalidated */
  CU_STREAM_LEGACY = 1,
  CU_STREAM_PER_THREAD = 2
};

/* ---- the streams seen to begin a capture ------------------------------------ */

#define MAX_LIVE 64
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static void *live[MAX_LIVE];
static int n_live;

void gc_shim_capture_blind(const char *why) {
  int old = atomic_fetch_or(&GC_SHIM_SWITCHES, GC_SW_CAPTURE_BLIND);
  if (!(old & GC_SW_CAPTURE_BLIND))
    GC_INFO("%s: every counted call asks the driver whether its stream is capturing from now on",
            why);
}

/* Before the real begin: the stream counts as capturing from here. */
static int will_begin(void *stream) {
  gc_shim_switches(); /* read the environment before the first bit is set */
  pthread_mutex_lock(&live_lock);
  int slot = -1;
  if (n_live < MAX_LIVE) {
    slot = n_live;
    live[n_live++] = stream;
    atomic_fetch_or(&GC_SHIM_SWITCHES, GC_SW_CAPTURE_LIVE);
  }
  pthread_mutex_unlock(&live_lock);
  if (slot < 0) gc_shim_capture_blind("more than 64 stream captures at once");
  return slot;
}

static void forget(void *stream) {
  pthread_mutex_lock(&live_lock);
  for (int i = 0; i < n_live; i++)
    if (live[i] == stream) {
      live[i] = live[--n_live];
      break;
    }
  if (!n_live) atomic_fetch_and(&GC_SHIM_SWITCHES, ~GC_SW_CAPTURE_LIVE);
  pthread_mutex_unlock(&live_lock);
}

static void began(void *stream, int slot, cu_result_t r) {
  if (slot >= 0 && r != 0) forget(stream);
}

/* After the real end: the stream leaves the set once the driver says it no
 * longer captures (the special handles, which the query would read as other
 * streams, by the result: success or an invalidated capture end it). */
static void ended(void *stream, cu_result_t r) {
  uintptr_t h = (uintptr_t)stream;
  bool done;
  if (h == 0 || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD) {
    done = r == 0 || r == CU_ERROR_STREAM_CAPTURE_INVALIDATED;
  } else {
    bool cap = true;
    done = gc_cuda_is_capturing(stream, &cap) == GC_OK
               ? !cap
               : r == 0 || r == CU_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  if (done) forget(stream);
}

/* ---- wrappers: a few slots per signature, one per real function ------------ */

enum { K_GPA1, K_GPA2, K_BEGIN1, K_BEGIN2, K_TOGRAPH, K_END, K_KINDS };
#define SLOTS 4
static void *_Atomic real_fn[K_KINDS][SLOTS];

typedef cu_result_t (*gpa1_t)(const char *, void **, int, uint64_t);
typedef cu_result_t (*gpa2_t)(const char *, void **, int, uint64_t, int *);
typedef cu_result_t (*begin1_t)(void *);
typedef cu_result_t (*begin2_t)(void *, int);
typedef cu_result_t (*tograph_t)(void *, void *, const void *, const void *, size_t, int);
typedef cu_result_t (*end_t)(void *, void **);

#define REAL(k, s, type) ((type)atomic_load_explicit(&real_fn[k][s], memory_order_acquire))

static void *wrap(int kind, void *real);

/* cuGetProcAddress: the begin/end functions (and itself) come back wrapped. */
static void after_gpa(const char *symbol, void **pfn, int version, cu_result_t r) {
  if (r != 0 || !symbol || !pfn || !*pfn || symbol[0] != 'c' || symbol[1] != 'u') return;
  int kind = -1;
  if (!strcmp(symbol, "cuStreamBeginCapture"))
    kind = version >= 10010 ? K_BEGIN2 : K_BEGIN1;
  else if (!strcmp(symbol, "cuStreamBeginCaptureToGraph"))
    kind = K_TOGRAPH;
  else if (!strcmp(symbol, "cuStreamEndCapture"))
    kind = K_END;
  else if (!strcmp(symbol, "cuGetProcAddress"))
    kind = version >= 12000 ? K_GPA2 : K_GPA1;
  if (kind >= 0) *pfn = wrap(kind, *pfn);
}

#define GC_CAPTURE_SLOT(s)                                                                         \
  static cu_result_t gpa1_##s(const char *sym, void **pfn, int ver, uint64_t fl) {                 \
    cu_result_t r = REAL(K_GPA1, s, gpa1_t)(sym, pfn, ver, fl);                                    \
    after_gpa(sym, pfn, ver, r);                                                                   \
    return r;                                                                                      \
  }                                                                                                \
  static cu_result_t gpa2_##s(const char *sym, void **pfn, int ver, uint64_t fl, int *st) {        \
    cu_result_t r = REAL(K_GPA2, s, gpa2_t)(sym, pfn, ver, fl, st);                                \
    after_gpa(sym, pfn, ver, r);                                                                   \
    return r;                                                                                      \
  }                                                                                                \
  static cu_result_t begin1_##s(void *st) {                                                        \
    int slot = will_begin(st);                                                                     \
    cu_result_t r = REAL(K_BEGIN1, s, begin1_t)(st);                                               \
    began(st, slot, r);                                                                            \
    return r;                                                                                      \
  }                                                                                                \
  static cu_result_t begin2_##s(void *st, int mode) {                                              \
    int slot = will_begin(st);                                                                     \
    cu_result_t r = REAL(K_BEGIN2, s, begin2_t)(st, mode);                                         \
    began(st, slot, r);                                                                            \
    return r;                                                                                      \
  }                                                                                                \
  static cu_result_t tograph_##s(void *st, void *g, const void *deps, const void *edges, size_t n, \
                                 int mode) {                                                       \
    int slot = will_begin(st);                                                                     \
    cu_result_t r = REAL(K_TOGRAPH, s, tograph_t)(st, g, deps, edges, n, mode);                    \
    began(st, slot, r);                                                                            \
    return r;                                                                                      \
  }                                                                                                \
  static cu_result_t end_##s(void *st, void **graph) {                                             \
    cu_result_t r = REAL(K_END, s, end_t)(st, graph);                                              \
    ended(st, r);                                                                                  \
    return r;                                                                                      \
  }
GC_CAPTURE_SLOT(0)
GC_CAPTURE_SLOT(1)
GC_CAPTURE_SLOT(2)
GC_CAPTURE_SLOT(3)

#define GC_CAPTURE_ROW(k) \
  { (void *)k##_0, (void *)k##_1, (void *)k##_2, (void *)k##_3 }
static void *const wrappers[K_KINDS][SLOTS] = {GC_CAPTURE_ROW(gpa1),    GC_CAPTURE_ROW(gpa2),
                                               GC_CAPTURE_ROW(begin1),  GC_CAPTURE_ROW(begin2),
                                               GC_CAPTURE_ROW(tograph), GC_CAPTURE_ROW(end)};

/* The wrapper for real (the slot already holding it, or a free one); real
 * itself, and tracking given up, when the slots are full. */
static void *wrap(int kind, void *real) {
  for (int s = 0; s < SLOTS; s++) {
    if (real == wrappers[kind][s]) return real; /* ours already */
    void *cur = atomic_load_explicit(&real_fn[kind][s], memory_order_acquire);
    if (cur == real) return wrappers[kind][s];
    if (!cur) {
      void *expect = NULL;
      if (atomic_compare_exchange_strong(&real_fn[kind][s], &expect, real) || expect == real)
        return wrappers[kind][s];
    }
  }
  gc_shim_capture_blind("more driver entry points to watch for stream capture than slots");
  return real;
}

/* ---- dlsym's side -------------------------------------------------------------- */

static const struct {
  const char *name;
  int kind;
} by_name[] = {
    {"cuGetProcAddress", K_GPA1},
    {"cuGetProcAddress_v2", K_GPA2},
    {"cuStreamBeginCapture", K_BEGIN1},
    {"cuStreamBeginCapture_ptsz", K_BEGIN1},
    {"cuStreamBeginCapture_v2", K_BEGIN2},
    {"cuStreamBeginCapture_v2_ptsz", K_BEGIN2},
    {"cuStreamBeginCaptureToGraph", K_TOGRAPH},
    {"cuStreamBeginCaptureToGraph_ptsz", K_TOGRAPH},
    {"cuStreamEndCapture", K_END},
    {"cuStreamEndCapture_ptsz", K_END},
};

void *gc_shim_capture_lookup(void *handle, const char *name,
                             void *(*real_dlsym)(void *, const char *)) {
  if (name[0] != 'c' || name[1] != 'u') return NULL;
  for (size_t i = 0; i < sizeof by_name / sizeof *by_name; i++)
    if (!strcmp(by_name[i].name, name)) {
      void *def = real_dlsym(handle, name);
      return gc_shim_defined_in(def, "libcuda.so", NULL) ? wrap(by_name[i].kind, def) : NULL;
    }
  return NULL;
}
