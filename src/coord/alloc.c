/* alloc.c - where library-allocated outputs come from: the user's
 * allocator (gc_set_allocator) or the default of the memory's backend
 * (malloc for host memory, the nccl backend's for CUDA). */
#include <pthread.h>
#include <string.h>

#include "coord/coord.h"

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static gc_allocator_t user_alloc;
static bool have_user;

gc_status_t gc_set_allocator(const gc_allocator_t *a) {
  if (a && (!a->alloc || !a->free))
    return gc_error(GC_ERR_INVALID_ARG, "gc_set_allocator: alloc and free must both be set");
  pthread_mutex_lock(&alloc_lock);
  if (a) user_alloc = *a;
  have_user = a != NULL;
  pthread_mutex_unlock(&alloc_lock);
  return GC_OK;
}

static bool current(gc_allocator_t *out) {
  pthread_mutex_lock(&alloc_lock);
  bool u = have_user;
  *out = user_alloc;
  pthread_mutex_unlock(&alloc_lock);
  return u;
}

gc_status_t gc_coord_alloc(gc_tensor_t *t, void *stream) {
  size_t bytes = gc_tensor_nbytes(t);
  if (bytes == (size_t)-1) return gc_error(GC_ERR_INVALID_ARG, "output size overflows");
  t->data = NULL;
  if (bytes == 0) return GC_OK;
  gc_allocator_t a;
  void *p;
  if (current(&a)) {
    p = a.alloc(bytes, t->device, stream, a.ctx);
  } else {
    const gc_device_ops_t *d;
    GC_CHECK(gc_device_memory(t->device, &d));
    p = d->alloc(bytes, t->device, stream);
  }
  if (!p)
    return gc_error(GC_ERR_NO_MEMORY, "no memory for a %zu-byte output on %s:%d", bytes,
                    t->device.type == GC_DEVICE_HOST ? "host" : "cuda", t->device.index);
  t->data = p;
  return GC_OK;
}

static gc_status_t release(gc_tensor_t *t, void *stream) {
  if (!t->data) return GC_OK;
  gc_allocator_t a;
  if (current(&a)) {
    a.free(t->data, t->device, stream, a.ctx);
  } else {
    const gc_device_ops_t *d;
    GC_CHECK(gc_device_memory(t->device, &d));
    d->free(t->data, t->device, stream);
  }
  t->data = NULL;
  return GC_OK;
}

void gc_coord_release(gc_tensor_t *t, void *stream) { (void)release(t, stream); }

gc_status_t gc_tensor_free(gc_tensor_t *t, void *stream) {
  if (!t) return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_free: tensor is NULL");
  return release(t, stream);
}
