/* reduce.h - element-wise reduction kernels shared by every host path. */
#ifndef GC_REDUCE_H
#define GC_REDUCE_H

#include "core/core.h"

/* acc[i] = acc[i] (op) in[i] for n elements. GC_AVG reduces as GC_SUM; the
 * caller divides once with gc_reduce_finish. fp16/bf16 are converted to
 * float32 for each step and rounded back (round to nearest even). */
GC_INTERNAL void gc_reduce_into(gc_dtype_t dt, gc_redop_t op, void *acc, const void *in, size_t n);
/* dst[i] = a[i] (op) b[i]; dst may alias a or b. */
GC_INTERNAL void gc_reduce_pair(gc_dtype_t dt, gc_redop_t op, void *dst, const void *a,
                                const void *b, size_t n);
/* dst[i] = in[0][i] (op) in[1][i] (op) ... (op) in[nin-1][i], always in that
 * order (so every caller gets the same bits). fp16/bf16 accumulate in float32
 * and round once. dst may alias any in[k]; nin >= 1. */
GC_INTERNAL void gc_reduce_multi(gc_dtype_t dt, gc_redop_t op, void *dst, const void *const *in,
                                 int nin, size_t n);
/* For GC_AVG: acc[i] /= nranks (integers truncate toward zero). No-op otherwise. */
GC_INTERNAL void gc_reduce_finish(gc_dtype_t dt, gc_redop_t op, void *acc, size_t n, int nranks);
GC_INTERNAL bool gc_redop_valid(gc_redop_t op);

/* fp16/bf16 (dt) to float32 and back (round to nearest even); no aliasing. */
GC_INTERNAL void gc_to_float(gc_dtype_t dt, float *restrict dst, const void *src, size_t n);
GC_INTERNAL void gc_from_float(gc_dtype_t dt, void *restrict dst, const float *src, size_t n);

GC_INTERNAL float gc_half_to_float(uint16_t h);
GC_INTERNAL uint16_t gc_float_to_half(float f);
static inline float gc_bf16_to_float(uint16_t b) {
  union {
    uint32_t u;
    float f;
  } v = {.u = (uint32_t)b << 16};
  return v.f;
}
static inline uint16_t gc_float_to_bf16(float f) {
  union {
    float f;
    uint32_t u;
  } v = {.f = f};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* NaN */
  uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
  return (uint16_t)((v.u + rounding) >> 16);
}

#endif
