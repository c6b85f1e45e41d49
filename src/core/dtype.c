/* dtype.c - element types and tensor sizes. */
#include "core.h"

static const struct {
  size_t size;
  const char *name;
} dtypes[] = {
    [GC_INT8] = {1, "int8"},       [GC_UINT8] = {1, "uint8"},     [GC_INT32] = {4, "int32"},
    [GC_INT64] = {8, "int64"},     [GC_FLOAT16] = {2, "float16"}, [GC_BFLOAT16] = {2, "bfloat16"},
    [GC_FLOAT32] = {4, "float32"}, [GC_FLOAT64] = {8, "float64"},
};

bool gc_dtype_valid(gc_dtype_t t) { return (unsigned)t <= (unsigned)GC_FLOAT64; }

size_t gc_dtype_size(gc_dtype_t t) { return gc_dtype_valid(t) ? dtypes[t].size : 0; }

const char *gc_dtype_name(gc_dtype_t t) { return gc_dtype_valid(t) ? dtypes[t].name : "invalid"; }

int64_t gc_tensor_numel(const gc_tensor_t *t) {
  if (!t || t->ndim < 0 || t->ndim > GC_MAX_DIMS) return -1;
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] < 0 || __builtin_mul_overflow(n, t->shape[i], &n)) return -1;
  }
  return n;
}

size_t gc_tensor_nbytes(const gc_tensor_t *t) {
  int64_t n = gc_tensor_numel(t);
  size_t es = t ? gc_dtype_size(t->dtype) : 0;
  size_t bytes;
  if (n < 0 || es == 0 || __builtin_mul_overflow((size_t)n, es, &bytes)) return (size_t)-1;
  return bytes;
}

gc_status_t gc_tensor_check(const gc_tensor_t *t, const char *what) {
  if (!t) return gc_error(GC_ERR_INVALID_ARG, "%s: tensor is NULL", what);
  if (!gc_dtype_valid(t->dtype))
    return gc_error(GC_ERR_INVALID_ARG, "%s: dtype %d is not a gc_dtype_t", what, (int)t->dtype);
  if (t->ndim < 0 || t->ndim > GC_MAX_DIMS)
    return gc_error(GC_ERR_INVALID_ARG, "%s: ndim %d is outside 0..%d", what, t->ndim, GC_MAX_DIMS);
  for (int i = 0; i < t->ndim; i++)
    if (t->shape[i] < 0)
      return gc_error(GC_ERR_INVALID_ARG, "%s: shape[%d] = %lld is negative", what, i,
                      (long long)t->shape[i]);
  if (gc_tensor_nbytes(t) == (size_t)-1)
    return gc_error(GC_ERR_INVALID_ARG, "%s: size overflows", what);
  if (t->device.type != GC_DEVICE_HOST && t->device.type != GC_DEVICE_CUDA)
    return gc_error(GC_ERR_INVALID_ARG, "%s: device type %d is unknown", what, (int)t->device.type);
  if (t->device.index < 0)
    return gc_error(GC_ERR_INVALID_ARG, "%s: device index %d is negative", what, t->device.index);
  return GC_OK;
}

gc_status_t gc_dim_normalize(int ndim, int dim, int *out) {
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    return gc_error(GC_ERR_INVALID_ARG, "dim %d is out of range for a tensor of %d dims", dim,
                    ndim);
  *out = d;
  return GC_OK;
}
