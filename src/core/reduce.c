/* reduce.c - reduction kernels, written so that the compiler vectorises them. */
/* GCC 12 vectorises loops of unknown length only from -O3 (the -O2 cost
 * model keeps them scalar). The kernels are element-wise, so the vector
 * code gives the same bits as the scalar one. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include <string.h>

#include "core/reduce.h"

bool gc_redop_valid(gc_redop_t op) { return (unsigned)op <= (unsigned)GC_AVG; }

float gc_half_to_float(uint16_t h) {
  _Float16 v;
  memcpy(&v, &h, 2);
  return (float)v;
}

uint16_t gc_float_to_half(float f) {
  _Float16 v = (_Float16)f;
  uint16_t h;
  memcpy(&h, &v, 2);
  return h;
}

#define GC_SUM_F(a, b) ((a) + (b))
#define GC_PROD_F(a, b) ((a) * (b))
#define GC_MAX_F(a, b) ((a) > (b) ? (a) : (b))
#define GC_MIN_F(a, b) ((a) < (b) ? (a) : (b))

/* One loop per (type, op): restrict pointers, no branches inside. */
#define GC_PAIR_LOOP(T, F)                                  \
  do {                                                      \
    T *d = dst;                                             \
    const T *x = a, *y = b;                                 \
    for (size_t i = 0; i < n; i++) d[i] = (T)F(x[i], y[i]); \
  } while (0)

#define GC_PAIR_OPS(T)            \
  switch (op) {                   \
    case GC_SUM:                  \
    case GC_AVG:                  \
      GC_PAIR_LOOP(T, GC_SUM_F);  \
      break;                      \
    case GC_PROD:                 \
      GC_PAIR_LOOP(T, GC_PROD_F); \
      break;                      \
    case GC_MAX:                  \
      GC_PAIR_LOOP(T, GC_MAX_F);  \
      break;                      \
    case GC_MIN:                  \
      GC_PAIR_LOOP(T, GC_MIN_F);  \
      break;                      \
  }

/* Unsigned arithmetic for signed sums/products: wraps like NCCL instead of
 * being undefined behaviour. */
#define GC_PAIR_INT(T, U)                                           \
  switch (op) {                                                     \
    case GC_SUM:                                                    \
    case GC_AVG: {                                                  \
      T *d = dst;                                                   \
      const T *x = a, *y = b;                                       \
      for (size_t i = 0; i < n; i++) d[i] = (T)((U)x[i] + (U)y[i]); \
      break;                                                        \
    }                                                               \
    case GC_PROD: {                                                 \
      T *d = dst;                                                   \
      const T *x = a, *y = b;                                       \
      for (size_t i = 0; i < n; i++) d[i] = (T)((U)x[i] * (U)y[i]); \
      break;                                                        \
    }                                                               \
    case GC_MAX:                                                    \
      GC_PAIR_LOOP(T, GC_MAX_F);                                    \
      break;                                                        \
    case GC_MIN:                                                    \
      GC_PAIR_LOOP(T, GC_MIN_F);                                    \
      break;                                                        \
  }

/* 16-bit floats: widen to float, reduce, round back. */
#define GC_PAIR_HALF(TOF, FROMF)             \
  do {                                       \
    uint16_t *d = dst;                       \
    const uint16_t *x = a, *y = b;           \
    for (size_t i = 0; i < n; i++) {         \
      float u = TOF(x[i]), v = TOF(y[i]), r; \
      switch (op) {                          \
        case GC_PROD:                        \
          r = u * v;                         \
          break;                             \
        case GC_MAX:                         \
          r = u > v ? u : v;                 \
          break;                             \
        case GC_MIN:                         \
          r = u < v ? u : v;                 \
          break;                             \
        default:                             \
          r = u + v;                         \
      }                                      \
      d[i] = FROMF(r);                       \
    }                                        \
  } while (0)

static void pair_f16(gc_redop_t op, void *restrict dst, const void *a, const void *b, size_t n) {
  GC_PAIR_HALF(gc_half_to_float, gc_float_to_half);
}
static void pair_bf16(gc_redop_t op, void *restrict dst, const void *a, const void *b, size_t n) {
  GC_PAIR_HALF(gc_bf16_to_float, gc_float_to_bf16);
}

void gc_reduce_pair(gc_dtype_t dt, gc_redop_t op, void *dst, const void *a, const void *b,
                    size_t n) {
  switch (dt) {
    case GC_INT8:
      GC_PAIR_INT(int8_t, uint8_t);
      break;
    case GC_UINT8:
      GC_PAIR_INT(uint8_t, uint8_t);
      break;
    case GC_INT32:
      GC_PAIR_INT(int32_t, uint32_t);
      break;
    case GC_INT64:
      GC_PAIR_INT(int64_t, uint64_t);
      break;
    case GC_FLOAT16:
      pair_f16(op, dst, a, b, n);
      break;
    case GC_BFLOAT16:
      pair_bf16(op, dst, a, b, n);
      break;
    case GC_FLOAT32:
      GC_PAIR_OPS(float);
      break;
    case GC_FLOAT64:
      GC_PAIR_OPS(double);
      break;
  }
}

void gc_reduce_into(gc_dtype_t dt, gc_redop_t op, void *acc, const void *in, size_t n) {
  gc_reduce_pair(dt, op, acc, acc, in, n);
}

/* Blocks small enough to stay in L1 while every input is folded in. */
#define GC_MULTI_BYTES 8192

#define GC_ACC_HALF(TOF)                                            \
  do {                                                              \
    switch (op) {                                                   \
      case GC_PROD:                                                 \
        for (size_t i = 0; i < m; i++) acc[i] = acc[i] * TOF(x[i]); \
        break;                                                      \
      case GC_MAX:                                                  \
        for (size_t i = 0; i < m; i++) {                            \
          float v = TOF(x[i]);                                      \
          acc[i] = acc[i] > v ? acc[i] : v;                         \
        }                                                           \
        break;                                                      \
      case GC_MIN:                                                  \
        for (size_t i = 0; i < m; i++) {                            \
          float v = TOF(x[i]);                                      \
          acc[i] = acc[i] < v ? acc[i] : v;                         \
        }                                                           \
        break;                                                      \
      default:                                                      \
        for (size_t i = 0; i < m; i++) acc[i] = acc[i] + TOF(x[i]); \
    }                                                               \
  } while (0)

static void multi_half(gc_dtype_t dt, gc_redop_t op, uint16_t *dst, const void *const *in, int nin,
                       size_t n) {
  float acc[GC_MULTI_BYTES / sizeof(float)];
  const size_t B = sizeof acc / sizeof acc[0];
  for (size_t b = 0; b < n; b += B) {
    size_t m = n - b < B ? n - b : B;
    const uint16_t *x0 = (const uint16_t *)in[0] + b;
    if (dt == GC_FLOAT16)
      for (size_t i = 0; i < m; i++) acc[i] = gc_half_to_float(x0[i]);
    else
      for (size_t i = 0; i < m; i++) acc[i] = gc_bf16_to_float(x0[i]);
    for (int k = 1; k < nin; k++) {
      const uint16_t *x = (const uint16_t *)in[k] + b;
      if (dt == GC_FLOAT16)
        GC_ACC_HALF(gc_half_to_float);
      else
        GC_ACC_HALF(gc_bf16_to_float);
    }
    uint16_t *d = dst + b;
    if (dt == GC_FLOAT16)
      for (size_t i = 0; i < m; i++) d[i] = gc_float_to_half(acc[i]);
    else
      for (size_t i = 0; i < m; i++) d[i] = gc_float_to_bf16(acc[i]);
  }
}

void gc_reduce_multi(gc_dtype_t dt, gc_redop_t op, void *dst, const void *const *in, int nin,
                     size_t n) {
  size_t es = gc_dtype_size(dt);
  if (!n || !es || nin < 1) return;
  if (nin == 1) {
    if (dst != in[0]) memmove(dst, in[0], n * es);
    return;
  }
  if (dt == GC_FLOAT16 || dt == GC_BFLOAT16) {
    multi_half(dt, op, dst, in, nin, n);
    return;
  }
  _Alignas(64) unsigned char acc[GC_MULTI_BYTES];
  const size_t B = sizeof acc / es;
  bool direct = true; /* dst is no later input: fold into dst block by block */
  for (int k = 2; k < nin; k++) direct = direct && in[k] != dst;
  if (direct) {
    for (size_t b = 0; b < n; b += B) {
      size_t m = n - b < B ? n - b : B, off = b * es;
      char *d = (char *)dst + off;
      gc_reduce_pair(dt, op, d, (const char *)in[0] + off, (const char *)in[1] + off, m);
      for (int k = 2; k < nin; k++) gc_reduce_pair(dt, op, d, d, (const char *)in[k] + off, m);
    }
    return;
  }
  for (size_t b = 0; b < n; b += B) {
    size_t m = n - b < B ? n - b : B, off = b * es;
    gc_reduce_pair(dt, op, acc, (const char *)in[0] + off, (const char *)in[1] + off, m);
    for (int k = 2; k < nin; k++) gc_reduce_pair(dt, op, acc, acc, (const char *)in[k] + off, m);
    memcpy((char *)dst + off, acc, m * es);
  }
}

void gc_reduce_finish(gc_dtype_t dt, gc_redop_t op, void *acc, size_t n, int nranks) {
  if (op != GC_AVG || nranks <= 1) return;
  switch (dt) {
#define GC_DIV_LOOP(T)                                           \
  do {                                                           \
    T *p = acc;                                                  \
    for (size_t i = 0; i < n; i++) p[i] = (T)(p[i] / (T)nranks); \
  } while (0)
    case GC_INT8:
      GC_DIV_LOOP(int8_t);
      break;
    case GC_UINT8:
      GC_DIV_LOOP(uint8_t);
      break;
    case GC_INT32:
      GC_DIV_LOOP(int32_t);
      break;
    case GC_INT64:
      GC_DIV_LOOP(int64_t);
      break;
    case GC_FLOAT32:
      GC_DIV_LOOP(float);
      break;
    case GC_FLOAT64:
      GC_DIV_LOOP(double);
      break;
#undef GC_DIV_LOOP
    case GC_FLOAT16: {
      uint16_t *p = acc;
      for (size_t i = 0; i < n; i++)
        p[i] = gc_float_to_half(gc_half_to_float(p[i]) / (float)nranks);
      break;
    }
    case GC_BFLOAT16: {
      uint16_t *p = acc;
      for (size_t i = 0; i < n; i++)
        p[i] = gc_float_to_bf16(gc_bf16_to_float(p[i]) / (float)nranks);
      break;
    }
  }
}

void gc_to_float(gc_dtype_t dt, float *restrict dst, const void *src, size_t n) {
  const uint16_t *h = src;
  if (dt == GC_BFLOAT16)
    for (size_t i = 0; i < n; i++) dst[i] = gc_bf16_to_float(h[i]);
  else
    for (size_t i = 0; i < n; i++) dst[i] = gc_half_to_float(h[i]);
}

void gc_from_float(gc_dtype_t dt, void *restrict dst, const float *src, size_t n) {
  uint16_t *h = dst;
  if (dt == GC_BFLOAT16)
    for (size_t i = 0; i < n; i++) h[i] = gc_float_to_bf16(src[i]);
  else
    for (size_t i = 0; i < n; i++) h[i] = gc_float_to_half(src[i]);
}
