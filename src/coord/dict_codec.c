/* dict_codec.c - the versioned binary encoding of a tensor dict's metadata
 * (format in dict.h). The decoder trusts nothing: a reader that knows how
 * many bytes remain checks every length before it reads. */
#include <stdlib.h>
#include <string.h>

#include "coord/dict.h"

static const unsigned char magic[4] = {'G', 'C', 'T', 'D'};
#define HEADER_BYTES 12
#define FLAG_SLICED 1u

/* ---- writer ---------------------------------------------------------------- */

typedef struct {
  unsigned char *p;
  size_t n;
} writer_t;

static void put_u(writer_t *w, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) w->p[w->n++] = (unsigned char)(v >> (8 * i));
}

static void put_raw(writer_t *w, const void *b, size_t n) {
  if (n) memcpy(w->p + w->n, b, n);
  w->n += n;
}

static gc_status_t entry_size(const gc_dict_entry_t *e, size_t *out) {
  size_t n = 4 + e->key_len + 1;
  switch (e->kind) {
    case GC_VALUE_TENSOR:
      n += 8 + 8 * (size_t)e->v.t.ndim;
      break;
    case GC_VALUE_BYTES:
      if (__builtin_add_overflow(n, 8 + e->v.b.n, &n))
        return gc_error(GC_ERR_INVALID_ARG, "tensor dict: bytes value too large");
      break;
    case GC_VALUE_INT:
    case GC_VALUE_FLOAT:
      n += 8;
      break;
    case GC_VALUE_NONE:
      break;
    default:
      return gc_error(GC_ERR_INTERNAL, "tensor dict: kind %d", (int)e->kind);
  }
  *out = n;
  return GC_OK;
}

gc_status_t gc_dict_encode(const gc_tensor_dict_t *d, const bool *sliced, void **out,
                           size_t *out_len) {
  if (!d) return gc_error(GC_ERR_INVALID_ARG, "tensor dict encode: dict is NULL");
  if (d->n > UINT32_MAX)
    return gc_error(GC_ERR_INVALID_ARG, "tensor dict: %zu entries is too many", d->n);
  size_t total = HEADER_BYTES;
  for (size_t i = 0; i < d->n; i++) {
    size_t n = 0;
    if (d->e[i].key_len > UINT32_MAX)
      return gc_error(GC_ERR_INVALID_ARG, "tensor dict: key %zu is too long", i);
    GC_CHECK(entry_size(&d->e[i], &n));
    if (__builtin_add_overflow(total, n, &total))
      return gc_error(GC_ERR_INVALID_ARG, "tensor dict: metadata too large");
  }
  writer_t w = {malloc(total), 0};
  if (!w.p) return gc_error(GC_ERR_NO_MEMORY, "tensor dict: no memory for %zu bytes", total);
  put_raw(&w, magic, 4);
  put_u(&w, GC_DICT_CODEC_VERSION, 2);
  put_u(&w, 0, 2);
  put_u(&w, d->n, 4);
  for (size_t i = 0; i < d->n; i++) {
    const gc_dict_entry_t *e = &d->e[i];
    put_u(&w, e->key_len, 4);
    put_raw(&w, e->key, e->key_len);
    put_u(&w, (uint64_t)e->kind, 1);
    switch (e->kind) {
      case GC_VALUE_TENSOR:
        put_u(&w, (uint64_t)e->v.t.dtype, 1);
        put_u(&w, (uint64_t)e->v.t.device.type, 1);
        put_u(&w, sliced && sliced[i] ? FLAG_SLICED : 0, 1);
        put_u(&w, (uint64_t)e->v.t.ndim, 1);
        put_u(&w, (uint32_t)e->v.t.device.index, 4);
        for (int k = 0; k < e->v.t.ndim; k++) put_u(&w, (uint64_t)e->v.t.shape[k], 8);
        break;
      case GC_VALUE_BYTES:
        put_u(&w, e->v.b.n, 8);
        put_raw(&w, e->v.b.p, e->v.b.n);
        break;
      case GC_VALUE_INT:
        put_u(&w, (uint64_t)e->v.i, 8);
        break;
      case GC_VALUE_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &e->v.f, sizeof bits);
        put_u(&w, bits, 8);
        break;
      }
      default:
        break;
    }
  }
  *out = w.p;
  *out_len = w.n;
  return GC_OK;
}

/* ---- reader ---------------------------------------------------------------- */

typedef struct {
  const unsigned char *p;
  size_t left;
} reader_t;

static gc_status_t bad(const char *why, size_t at) {
  return gc_error(GC_ERR_INVALID_ARG, "tensor dict metadata is malformed: %s (at byte %zu)", why,
                  at);
}

static bool get_u(reader_t *r, int bytes, uint64_t *v) {
  if (r->left < (size_t)bytes) return false;
  uint64_t x = 0;
  for (int i = 0; i < bytes; i++) x |= (uint64_t)r->p[i] << (8 * i);
  r->p += bytes;
  r->left -= (size_t)bytes;
  *v = x;
  return true;
}

static gc_status_t read_tensor(reader_t *r, size_t at, gc_dict_entry_t *e) {
  uint64_t dt, dev, flags, ndim, idx;
  if (!get_u(r, 1, &dt) || !get_u(r, 1, &dev) || !get_u(r, 1, &flags) || !get_u(r, 1, &ndim) ||
      !get_u(r, 4, &idx))
    return bad("tensor header truncated", at);
  if (!gc_dtype_valid((gc_dtype_t)dt)) return bad("unknown dtype", at);
  if (dev != GC_DEVICE_HOST && dev != GC_DEVICE_CUDA) return bad("unknown device type", at);
  if (flags & ~(uint64_t)FLAG_SLICED) return bad("unknown tensor flags", at);
  if (ndim > GC_MAX_DIMS) return bad("too many dims", at);
  if ((int32_t)(uint32_t)idx < 0) return bad("negative device index", at);
  gc_tensor_t t = {.dtype = (gc_dtype_t)dt, .ndim = (int)ndim};
  t.device.type = (gc_device_type_t)dev;
  t.device.index = (int)(int32_t)(uint32_t)idx;
  for (uint64_t k = 0; k < ndim; k++) {
    uint64_t s;
    if (!get_u(r, 8, &s)) return bad("shape truncated", at);
    if ((int64_t)s < 0) return bad("negative shape", at);
    t.shape[k] = (int64_t)s;
  }
  if (gc_tensor_nbytes(&t) == (size_t)-1) return bad("tensor size overflows", at);
  e->kind = GC_VALUE_TENSOR;
  e->v.t = t;
  e->sliced = flags & FLAG_SLICED;
  return GC_OK;
}

static gc_status_t read_entry(reader_t *r, const unsigned char *base, gc_tensor_dict_t *d) {
  size_t at = (size_t)(r->p - base);
  uint64_t klen, kind;
  if (!get_u(r, 4, &klen)) return bad("key length truncated", at);
  if (klen > r->left) return bad("key longer than the buffer", at);
  const char *key = (const char *)r->p;
  if (memchr(key, 0, (size_t)klen)) return bad("NUL inside a key", at);
  if (gc_dict_find(d, key, (size_t)klen)) return bad("duplicate key", at);
  r->p += klen;
  r->left -= (size_t)klen;
  if (!get_u(r, 1, &kind)) return bad("kind truncated", at);
  gc_dict_entry_t tmp = {0};
  switch (kind) {
    case GC_VALUE_TENSOR:
      GC_CHECK(read_tensor(r, at, &tmp));
      break;
    case GC_VALUE_BYTES: {
      uint64_t n;
      if (!get_u(r, 8, &n)) return bad("bytes length truncated", at);
      if (n > r->left) return bad("bytes longer than the buffer", at);
      tmp.v.b.p = malloc(n ? (size_t)n : 1);
      if (!tmp.v.b.p) return gc_error(GC_ERR_NO_MEMORY, "tensor dict: no memory for bytes");
      if (n) memcpy(tmp.v.b.p, r->p, (size_t)n);
      tmp.v.b.n = (size_t)n;
      r->p += n;
      r->left -= (size_t)n;
      tmp.kind = GC_VALUE_BYTES;
      break;
    }
    case GC_VALUE_INT:
    case GC_VALUE_FLOAT: {
      uint64_t v;
      if (!get_u(r, 8, &v)) return bad("value truncated", at);
      tmp.kind = (gc_value_kind_t)kind;
      if (kind == GC_VALUE_INT)
        tmp.v.i = (int64_t)v;
      else
        memcpy(&tmp.v.f, &v, sizeof v);
      break;
    }
    case GC_VALUE_NONE:
      tmp.kind = GC_VALUE_NONE;
      break;
    default:
      return bad("unknown value kind", at);
  }
  gc_dict_entry_t *e;
  gc_status_t s = gc_dict_put(d, key, (size_t)klen, &e);
  if (s != GC_OK) {
    if (tmp.kind == GC_VALUE_BYTES) free(tmp.v.b.p);
    return s;
  }
  e->kind = tmp.kind;
  e->sliced = tmp.sliced;
  e->v = tmp.v;
  return GC_OK;
}

gc_status_t gc_dict_decode(const void *buf, size_t len, gc_tensor_dict_t **out) {
  if (!buf && len) return gc_error(GC_ERR_INVALID_ARG, "tensor dict decode: buffer is NULL");
  reader_t r = {buf, len};
  uint64_t version = 0, reserved = 0, count = 0;
  if (len < HEADER_BYTES) return bad("shorter than the header", 0);
  if (memcmp(buf, magic, 4)) return bad("bad magic", 0);
  r.p += 4;
  r.left -= 4;
  get_u(&r, 2, &version);
  get_u(&r, 2, &reserved);
  get_u(&r, 4, &count);
  if (version != GC_DICT_CODEC_VERSION)
    return gc_error(GC_ERR_INVALID_ARG, "tensor dict metadata has version %u, this reads %d",
                    (unsigned)version, GC_DICT_CODEC_VERSION);
  if (reserved) return bad("reserved bits set", 4);
  /* Every entry takes at least 5 bytes: no count can make us loop past it. */
  if (count > r.left / 5) return bad("more entries than the buffer can hold", 8);
  gc_tensor_dict_t *d;
  GC_CHECK(gc_tensor_dict_new(&d));
  gc_status_t s = GC_OK;
  for (uint64_t i = 0; i < count && s == GC_OK; i++) s = read_entry(&r, buf, d);
  if (s == GC_OK && r.left) s = bad("trailing bytes", len - r.left);
  if (s != GC_OK) {
    gc_tensor_dict_free(d);
    return s;
  }
  *out = d;
  return GC_OK;
}
