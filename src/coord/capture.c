/*
 * capture.c - CUDA graph capture of a group's operations and the buffers
 * captured operations use.
 *
 * gc_graph_capture_begin picks the stream (creating one when ctx->stream is
 * NULL) and, unless the caller already captures on it (as torch.cuda.graph
 * does), begins a global-mode capture; gc_graph_capture_end then ends it and
 * instantiates the graph for gc_graph_replay. Global mode makes the driver
 * reject any unsafe call (synchronization, cuMemAlloc, event queries) made
 * by any thread while the capture runs, so a successful capture is also the
 * proof that the captured path did none.
 *
 * While a stream captures, the coordinator skips its CPU-group steps (the
 * agreement round, the p2p handshake: the backend's capturing() says so),
 * outputs must come allocated, and scratch memory comes from what
 * gc_group_prepare_buffers reserved before capture: the nccl backend
 * refuses to grow it under capture with GC_ERR_STATE naming the sizes.
 */
#include <string.h>

#include "coord/coord.h"
#include "nccl/gc_cuda.h"

enum { CAPTURE_OWN_STREAM = 1, CAPTURE_BEGUN = 2 };
enum { CU_CAPTURE_MODE_GLOBAL = 0 };

static gc_status_t cuda_group(gc_group_t *g, const char *what) {
  GC_CHECK(gc_group_check(g, what));
  if (!g->dev || g->dev->device_type != GC_DEVICE_CUDA)
    return gc_error(GC_ERR_UNSUPPORTED,
                    "%s: group '%s' has no CUDA device communicator (backend \"nccl\" with "
                    "use_device_communicator)",
                    what, g->name);
  return GC_OK;
}

gc_status_t gc_graph_capture_begin(gc_group_t *g, gc_graph_capture_t *ctx) {
  GC_CHECK(cuda_group(g, "gc_graph_capture_begin"));
  if (!ctx) return gc_error(GC_ERR_INVALID_ARG, "gc_graph_capture_begin: ctx is NULL");
  GC_CHECK(gc_cuda_set_device(g->local_rank));
  void *stream = ctx->stream;
  int flags = 0;
  if (!stream) {
    GC_CHECK(gc_cuda_stream_create(&stream));
    flags |= CAPTURE_OWN_STREAM;
  }
  bool capturing = false;
  gc_status_t s = gc_cuda_is_capturing(stream, &capturing);
  if (s == GC_OK && !capturing) {
    s = gc_cuda_stream_begin_capture(stream, CU_CAPTURE_MODE_GLOBAL);
    if (s == GC_OK) flags |= CAPTURE_BEGUN;
  }
  if (s != GC_OK) {
    if (flags & CAPTURE_OWN_STREAM) (void)gc_cuda_stream_destroy(stream);
    return s;
  }
  ctx->stream = stream;
  ctx->graph_exec = NULL;
  ctx->graph = NULL;
  ctx->flags = flags;
  GC_INFO("group %s: graph capture on stream %p%s", g->name, stream,
          flags & CAPTURE_BEGUN ? "" : " (the caller's capture)");
  return GC_OK;
}

gc_status_t gc_graph_capture_end(gc_group_t *g, gc_graph_capture_t *ctx) {
  GC_CHECK(cuda_group(g, "gc_graph_capture_end"));
  if (!ctx || !ctx->stream)
    return gc_error(GC_ERR_INVALID_ARG, "gc_graph_capture_end: ctx is NULL or was never begun");
  if (!(ctx->flags & CAPTURE_BEGUN)) return GC_OK;
  ctx->flags &= ~CAPTURE_BEGUN;
  void *graph = NULL, *exec = NULL;
  gc_status_t s = gc_cuda_stream_end_capture(ctx->stream, &graph);
  if (s != GC_OK)
    return gc_error(s,
                    "gc_graph_capture_end: the capture on stream %p failed (an unsafe call was "
                    "made while capturing?): %s",
                    ctx->stream, gc_last_error());
  s = gc_cuda_graph_instantiate(graph, &exec);
  if (s != GC_OK) {
    (void)gc_cuda_graph_destroy(graph);
    return s;
  }
  ctx->graph = graph;
  ctx->graph_exec = exec;
  return GC_OK;
}

gc_status_t gc_graph_replay(const gc_graph_capture_t *ctx, void *stream) {
  if (!ctx || !ctx->graph_exec)
    return gc_error(GC_ERR_INVALID_ARG,
                    "gc_graph_replay: no graph (did gc_graph_capture_end run?)");
  return gc_cuda_graph_launch(ctx->graph_exec, stream ? stream : ctx->stream);
}

gc_status_t gc_graph_release(gc_graph_capture_t *ctx) {
  if (!ctx) return gc_error(GC_ERR_INVALID_ARG, "gc_graph_release: ctx is NULL");
  gc_status_t s = GC_OK, r;
  if (ctx->graph_exec && (r = gc_cuda_graph_exec_destroy(ctx->graph_exec)) != GC_OK) s = r;
  if (ctx->graph && (r = gc_cuda_graph_destroy(ctx->graph)) != GC_OK) s = r;
  if ((ctx->flags & CAPTURE_OWN_STREAM) && ctx->stream) {
    if ((r = gc_cuda_stream_synchronize(ctx->stream)) != GC_OK) s = r;
    if ((r = gc_cuda_stream_destroy(ctx->stream)) != GC_OK) s = r;
    ctx->stream = NULL;
  }
  ctx->graph_exec = ctx->graph = NULL;
  ctx->flags = 0;
  return s;
}

gc_status_t gc_group_prepare_buffers(gc_group_t *g, const gc_buffer_plan_t *plan) {
  GC_CHECK(gc_group_check(g, "gc_group_prepare_buffers"));
  if (!plan) return gc_error(GC_ERR_INVALID_ARG, "gc_group_prepare_buffers: plan is NULL");
  /* Host tensors never run under capture: nothing to prepare. */
  if (!g->dev || g->dev->device_type != GC_DEVICE_CUDA) return GC_OK;
  /* Every captured operation stages at most its payload (a dim != 0
   * all-gather its output, a reduce-scatter its input) in the coordinator's
   * two scratch slots; the plan's larger figure bounds both. */
  size_t bytes = plan->max_all_reduce_bytes > plan->max_dispatch_bytes ? plan->max_all_reduce_bytes
                                                                       : plan->max_dispatch_bytes;
  if (bytes == 0) return GC_OK;
  gc_device_t dev = {GC_DEVICE_CUDA, g->local_rank};
  void *p;
  GC_CHECK(gc_cuda_set_device(g->local_rank));
  for (int slot = 0; slot < 2; slot++) GC_CHECK(g->dev->scratch(g, slot, bytes, dev, NULL, &p));
  return g->dev->sync(dev, NULL);
}
