/* device.c - choosing a device backend: by name at group creation, by
 * tensor device per operation, by memory type for allocation. */
#include <string.h>

#include "device/device.h"

/* The backend that owns each device type's memory. */
static const gc_device_ops_t *const memory_owner[] = {
    [GC_DEVICE_HOST] = &gc_device_host,
    [GC_DEVICE_CUDA] = &gc_device_nccl,
};

gc_status_t gc_device_by_name(const char *name, const gc_device_ops_t **out) {
  if (!name || !strcmp(name, "host")) {
    *out = &gc_device_host;
    return GC_OK;
  }
  if (!strcmp(name, "nccl")) {
    *out = &gc_device_nccl;
    return GC_OK;
  }
  return gc_error(GC_ERR_INVALID_ARG, "device backend '%s' is neither \"nccl\" nor \"host\"", name);
}

gc_status_t gc_device_memory(gc_device_t dev, const gc_device_ops_t **out) {
  if ((unsigned)dev.type >= sizeof memory_owner / sizeof memory_owner[0])
    return gc_error(GC_ERR_INVALID_ARG, "device type %d is unknown", (int)dev.type);
  if (!memory_owner[dev.type])
    return gc_error(GC_ERR_UNSUPPORTED, "no device backend for %s memory is built",
                    dev.type == GC_DEVICE_CUDA ? "CUDA" : "this");
  *out = memory_owner[dev.type];
  return GC_OK;
}

gc_status_t gc_device_for(const gc_group_t *g, gc_device_t dev, const gc_device_ops_t **out) {
  if (GC_LIKELY(dev.type == GC_DEVICE_HOST)) {
    *out = &gc_device_host;
    return GC_OK;
  }
  if (dev.type != GC_DEVICE_CUDA)
    return gc_error(GC_ERR_INVALID_ARG, "device type %d is unknown", (int)dev.type);
  if (!g->dev || g->dev->device_type != GC_DEVICE_CUDA)
    return gc_error(GC_ERR_UNSUPPORTED,
                    "group '%s' has no CUDA device communicator (device %s); CUDA tensors need "
                    "use_device_communicator with backend \"nccl\"",
                    g->name, g->dev ? g->dev->name : "none");
  *out = g->dev;
  return GC_OK;
}
