/* error.c - statuses and the thread-local last error. */
#include <stdio.h>
#include <string.h>

#include "core.h"

static _Thread_local char last_error[1024];

const char *gc_status_string(gc_status_t s) {
  switch (s) {
#define GC_STATUS_NAME(x) \
  case x:                 \
    return #x;
    GC_STATUS_NAME(GC_OK)
    GC_STATUS_NAME(GC_ERR_INVALID_ARG)
    GC_STATUS_NAME(GC_ERR_NOT_FOUND)
    GC_STATUS_NAME(GC_ERR_STATE)
    GC_STATUS_NAME(GC_ERR_TIMEOUT)
    GC_STATUS_NAME(GC_ERR_PEER_LOST)
    GC_STATUS_NAME(GC_ERR_NO_MEMORY)
    GC_STATUS_NAME(GC_ERR_SYSTEM)
    GC_STATUS_NAME(GC_ERR_NCCL)
    GC_STATUS_NAME(GC_ERR_CUDA)
    GC_STATUS_NAME(GC_ERR_UNSUPPORTED)
    GC_STATUS_NAME(GC_ERR_TRUNCATED)
    GC_STATUS_NAME(GC_ERR_CANCELLED)
    GC_STATUS_NAME(GC_ERR_INTERNAL)
#undef GC_STATUS_NAME
  }
  return "GC_ERR_UNKNOWN";
}

const char *gc_last_error(void) { return last_error; }

void gc_error_clear(void) { last_error[0] = '\0'; }

gc_status_t gc_error(gc_status_t s, const char *fmt, ...) {
  /* Formatted apart first: an argument may be gc_last_error() itself
   * ("...: %s", gc_last_error()), which must not overlap the destination. */
  char buf[sizeof last_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  memcpy(last_error, buf, sizeof buf);
  GC_INFO("%s: %s", gc_status_string(s), last_error);
  return s;
}
