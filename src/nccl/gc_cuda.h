/*
 * gc_cuda.h - the few CUDA driver calls gcshim makes, through
 * dlopen("libcuda.so.1") at first use: no link-time dependency on libcuda or
 * libcudart. On a machine without a driver everything answers GC_ERR_CUDA
 * with a message ("libcuda.so.1 not found: ...") and nothing crashes.
 *
 * Streams, events and device pointers are passed as void *: they are the
 * driver's CUstream/CUevent/CUdeviceptr, which are the runtime's
 * cudaStream_t/cudaEvent_t/device pointers (with unified addressing).
 */
#ifndef GC_CUDA_H
#define GC_CUDA_H

#include "core/core.h"

/* Loads the driver and calls cuInit(0), once. GC_OK, or GC_ERR_CUDA with the
 * reason (library missing, entry point missing, cuInit's error), again on
 * every call. */
GC_INTERNAL gc_status_t gc_cuda_load(void);
/* The driver's version (cuDriverGetVersion; 13000 for 13.0). */
GC_INTERNAL gc_status_t gc_cuda_driver_version(int *out);

typedef enum {
  GC_CUDA_CAPTURE_NONE = 0,       /* CU_STREAM_CAPTURE_STATUS_NONE */
  GC_CUDA_CAPTURE_ACTIVE = 1,     /* CU_STREAM_CAPTURE_STATUS_ACTIVE */
  GC_CUDA_CAPTURE_INVALIDATED = 2 /* CU_STREAM_CAPTURE_STATUS_INVALIDATED */
} gc_cuda_capture_t;

/* Capture status of stream and, when capturing, the capture's id (0 when
 * not capturing or unknown; id may be NULL). Never synchronizes. */
GC_INTERNAL gc_status_t gc_cuda_capture_info(void *stream, gc_cuda_capture_t *status,
                                             unsigned long long *id);
/* *out = true while stream is capturing (active or invalidated). */
GC_INTERNAL gc_status_t gc_cuda_is_capturing(void *stream, bool *out);

/* Events. timing = false makes a lighter event (CU_EVENT_DISABLE_TIMING). */
GC_INTERNAL gc_status_t gc_cuda_event_create(bool timing, void **out);
GC_INTERNAL gc_status_t gc_cuda_event_destroy(void *ev);
GC_INTERNAL gc_status_t gc_cuda_event_record(void *ev, void *stream);
GC_INTERNAL gc_status_t gc_cuda_event_synchronize(void *ev);
GC_INTERNAL gc_status_t gc_cuda_event_elapsed_ms(void *start, void *end, float *out);

/* Copies and fills on stream (pointers of any kind: unified addressing). */
GC_INTERNAL gc_status_t gc_cuda_memcpy_async(void *dst, const void *src, size_t bytes,
                                             void *stream);
/* height rows of width bytes, from src every spitch bytes to dst every dpitch. */
GC_INTERNAL gc_status_t gc_cuda_memcpy2d_async(void *dst, size_t dpitch, const void *src,
                                               size_t spitch, size_t width, size_t height,
                                               void *stream);
GC_INTERNAL gc_status_t gc_cuda_memset_d8_async(void *dst, unsigned char value, size_t bytes,
                                                void *stream);
/* Stream-ordered allocation (cuMemAllocAsync / cuMemFreeAsync). */
GC_INTERNAL gc_status_t gc_cuda_malloc_async(size_t bytes, void *stream, void **out);
GC_INTERNAL gc_status_t gc_cuda_free_async(void *ptr, void *stream);
GC_INTERNAL gc_status_t gc_cuda_stream_synchronize(void *stream);

/* Devices: count, the current context's device, and making device ordinal's
 * primary context current on this thread (retained once per process). */
GC_INTERNAL gc_status_t gc_cuda_device_count(int *out);
GC_INTERNAL gc_status_t gc_cuda_current_device(int *out);
GC_INTERNAL gc_status_t gc_cuda_set_device(int ordinal);
/* Pushes device ordinal's primary context onto this thread's stack (the
 * caller's current context comes back with gc_cuda_pop_device). */
GC_INTERNAL gc_status_t gc_cuda_push_device(int ordinal);
GC_INTERNAL gc_status_t gc_cuda_pop_device(void);
/* Pinned host memory that kernels (and NCCL) can address (current context). */
GC_INTERNAL gc_status_t gc_cuda_host_alloc(size_t bytes, void **out);
GC_INTERNAL void gc_cuda_host_free(void *p);
/* *done: every piece of work queued on stream has finished (no waiting). */
GC_INTERNAL gc_status_t gc_cuda_stream_query(void *stream, bool *done);

/* Streams (created non-blocking), capture and graphs. mode is the driver's
 * CUstreamCaptureMode: 0 global, 1 thread-local, 2 relaxed. */
GC_INTERNAL gc_status_t gc_cuda_stream_create(void **out);
GC_INTERNAL gc_status_t gc_cuda_stream_destroy(void *stream);
GC_INTERNAL gc_status_t gc_cuda_stream_begin_capture(void *stream, int mode);
GC_INTERNAL gc_status_t gc_cuda_stream_end_capture(void *stream, void **graph);
GC_INTERNAL gc_status_t gc_cuda_graph_instantiate(void *graph, void **exec);
GC_INTERNAL gc_status_t gc_cuda_graph_launch(void *exec, void *stream);
GC_INTERNAL gc_status_t gc_cuda_graph_exec_destroy(void *exec);
GC_INTERNAL gc_status_t gc_cuda_graph_destroy(void *graph);

/* Kernels from PTX text (JIT-compiled by the driver for the current
 * context's device), launched 1-D. params as cuLaunchKernel takes them. */
GC_INTERNAL gc_status_t gc_cuda_module_load_data(const char *image, void **out);
GC_INTERNAL gc_status_t gc_cuda_module_function(void *module, const char *name, void **out);
GC_INTERNAL gc_status_t gc_cuda_launch(void *fn, unsigned grid, unsigned block, void *stream,
                                       void **params);
/* cuDeviceGetAttribute(attr) of device ordinal. */
GC_INTERNAL gc_status_t gc_cuda_device_attribute(int attr, int ordinal, int *out);

#endif /* GC_CUDA_H */
