/* tensor_dict.c - the ordered dict of tensors and small values: entries in
 * insertion order, found through a hash index of their keys (dicts are
 * usually small, but a decoded one holds whatever its sender put there). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "coord/dict.h"

static void clear_value(gc_dict_entry_t *e) {
  if (e->kind == GC_VALUE_TENSOR && e->owned) gc_coord_release(&e->v.t, NULL);
  if (e->kind == GC_VALUE_BYTES) free(e->v.b.p);
  e->owned = false;
  e->sliced = false;
  e->kind = GC_VALUE_NONE;
  memset(&e->v, 0, sizeof e->v);
}

static uint64_t key_hash(const char *key, size_t key_len) { /* FNV-1a */
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < key_len; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
  return h;
}

/* The slot holding key's entry, or the empty slot where it would go. */
static size_t find_slot(const gc_tensor_dict_t *d, const char *key, size_t key_len, uint64_t h,
                        _Atomic uint64_t *probes) {
  size_t mask = d->n_slots - 1, i = (size_t)h & mask;
  for (;; i = (i + 1) & mask) {
    size_t s = d->slot[i];
    if (!s) return i;
    const gc_dict_entry_t *e = &d->e[s - 1];
    atomic_fetch_add_explicit(probes, 1, memory_order_relaxed);
    if (e->hash == h && e->key_len == key_len && !memcmp(e->key, key, key_len)) return i;
  }
}

gc_dict_entry_t *gc_dict_find(const gc_tensor_dict_t *d, const char *key, size_t key_len) {
  if (!d->n_slots) return NULL;
  /* probes is statistics, not the dict's value: a const lookup counts too */
  _Atomic uint64_t *probes = &((gc_tensor_dict_t *)d)->probes;
  size_t s = d->slot[find_slot(d, key, key_len, key_hash(key, key_len), probes)];
  return s ? &d->e[s - 1] : NULL;
}

/* Room in the index for one more key, keeping it at most half full. */
static gc_status_t index_reserve(gc_tensor_dict_t *d) {
  if ((d->n + 1) * 2 <= d->n_slots) return GC_OK;
  size_t n_slots = d->n_slots ? d->n_slots * 2 : 16;
  size_t *slot = calloc(n_slots, sizeof *slot);
  if (!slot) return gc_error(GC_ERR_NO_MEMORY, "tensor dict: no memory for %zu slots", n_slots);
  for (size_t k = 0; k < d->n; k++) {
    size_t i = (size_t)d->e[k].hash & (n_slots - 1);
    while (slot[i]) i = (i + 1) & (n_slots - 1);
    slot[i] = k + 1;
  }
  free(d->slot);
  d->slot = slot;
  d->n_slots = n_slots;
  return GC_OK;
}

gc_status_t gc_dict_put(gc_tensor_dict_t *d, const char *key, size_t key_len,
                        gc_dict_entry_t **out) {
  uint64_t h = key_hash(key, key_len);
  GC_CHECK(index_reserve(d));
  size_t at = find_slot(d, key, key_len, h, &d->probes);
  gc_dict_entry_t *e;
  if (d->slot[at]) {
    e = &d->e[d->slot[at] - 1];
    clear_value(e);
    *out = e;
    return GC_OK;
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 8;
    gc_dict_entry_t *ne = realloc(d->e, cap * sizeof *ne);
    if (!ne) return gc_error(GC_ERR_NO_MEMORY, "tensor dict: no memory for %zu entries", cap);
    d->e = ne;
    d->cap = cap;
  }
  char *k = malloc(key_len + 1);
  if (!k) return gc_error(GC_ERR_NO_MEMORY, "tensor dict: no memory for a key");
  memcpy(k, key, key_len);
  k[key_len] = 0;
  e = &d->e[d->n++];
  memset(e, 0, sizeof *e);
  e->key = k;
  e->key_len = key_len;
  e->hash = h;
  e->kind = GC_VALUE_NONE;
  d->slot[at] = d->n;
  *out = e;
  return GC_OK;
}

gc_status_t gc_tensor_dict_new(gc_tensor_dict_t **out) {
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_dict_new: out is NULL");
  gc_tensor_dict_t *d = calloc(1, sizeof *d);
  if (!d) return gc_error(GC_ERR_NO_MEMORY, "gc_tensor_dict_new: no memory");
  *out = d;
  return GC_OK;
}

void gc_tensor_dict_free(gc_tensor_dict_t *d) {
  if (!d) return;
  for (size_t i = 0; i < d->n; i++) {
    clear_value(&d->e[i]);
    free(d->e[i].key);
  }
  free(d->e);
  free(d->slot);
  free(d);
}

static gc_status_t put(gc_tensor_dict_t *d, const char *key, const char *what,
                       gc_dict_entry_t **out) {
  if (!d) return gc_error(GC_ERR_INVALID_ARG, "%s: dict is NULL", what);
  if (!key) return gc_error(GC_ERR_INVALID_ARG, "%s: key is NULL", what);
  return gc_dict_put(d, key, strlen(key), out);
}

gc_status_t gc_tensor_dict_set_tensor(gc_tensor_dict_t *d, const char *key, const gc_tensor_t *t) {
  GC_CHECK(gc_coord_check_input(t, "gc_tensor_dict_set_tensor"));
  gc_dict_entry_t *e;
  GC_CHECK(put(d, key, "gc_tensor_dict_set_tensor", &e));
  e->kind = GC_VALUE_TENSOR;
  e->v.t = *t;
  return GC_OK;
}

gc_status_t gc_tensor_dict_set_bytes(gc_tensor_dict_t *d, const char *key, const void *b,
                                     size_t n) {
  if (!b && n)
    return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_dict_set_bytes: bytes are NULL for %zu", n);
  void *copy = malloc(n ? n : 1);
  if (!copy) return gc_error(GC_ERR_NO_MEMORY, "gc_tensor_dict_set_bytes: no memory for %zu", n);
  if (n) memcpy(copy, b, n);
  gc_dict_entry_t *e;
  gc_status_t s = put(d, key, "gc_tensor_dict_set_bytes", &e);
  if (s != GC_OK) {
    free(copy);
    return s;
  }
  e->kind = GC_VALUE_BYTES;
  e->v.b.p = copy;
  e->v.b.n = n;
  return GC_OK;
}

gc_status_t gc_tensor_dict_set_int(gc_tensor_dict_t *d, const char *key, int64_t v) {
  gc_dict_entry_t *e;
  GC_CHECK(put(d, key, "gc_tensor_dict_set_int", &e));
  e->kind = GC_VALUE_INT;
  e->v.i = v;
  return GC_OK;
}

gc_status_t gc_tensor_dict_set_float(gc_tensor_dict_t *d, const char *key, double v) {
  gc_dict_entry_t *e;
  GC_CHECK(put(d, key, "gc_tensor_dict_set_float", &e));
  e->kind = GC_VALUE_FLOAT;
  e->v.f = v;
  return GC_OK;
}

gc_status_t gc_tensor_dict_set_none(gc_tensor_dict_t *d, const char *key) {
  gc_dict_entry_t *e;
  GC_CHECK(put(d, key, "gc_tensor_dict_set_none", &e));
  e->kind = GC_VALUE_NONE;
  return GC_OK;
}

size_t gc_tensor_dict_size(const gc_tensor_dict_t *d) { return d ? d->n : 0; }

const char *gc_tensor_dict_key(const gc_tensor_dict_t *d, size_t i) {
  return d && i < d->n ? d->e[i].key : NULL;
}

/* Out of range: (gc_value_kind_t)-1. */
gc_value_kind_t gc_tensor_dict_kind(const gc_tensor_dict_t *d, size_t i) {
  return d && i < d->n ? d->e[i].kind : (gc_value_kind_t)-1;
}

static gc_status_t get(const gc_tensor_dict_t *d, const char *key, gc_value_kind_t kind,
                       const char *what, const gc_dict_entry_t **out) {
  static const char *names[] = {"a tensor", "bytes", "an int", "a float", "none"};
  if (!d || !key) return gc_error(GC_ERR_INVALID_ARG, "%s: dict or key is NULL", what);
  const gc_dict_entry_t *e = gc_dict_find(d, key, strlen(key));
  if (!e) return gc_error(GC_ERR_NOT_FOUND, "%s: no key '%s'", what, key);
  if (e->kind != kind)
    return gc_error(GC_ERR_INVALID_ARG, "%s: '%s' holds %s, not %s", what, key, names[e->kind],
                    names[kind]);
  *out = e;
  return GC_OK;
}

gc_status_t gc_tensor_dict_get_tensor(const gc_tensor_dict_t *d, const char *key,
                                      gc_tensor_t *out) {
  const gc_dict_entry_t *e;
  GC_CHECK(get(d, key, GC_VALUE_TENSOR, "gc_tensor_dict_get_tensor", &e));
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_dict_get_tensor: out is NULL");
  *out = e->v.t;
  return GC_OK;
}

gc_status_t gc_tensor_dict_get_bytes(const gc_tensor_dict_t *d, const char *key, const void **b,
                                     size_t *n) {
  const gc_dict_entry_t *e;
  GC_CHECK(get(d, key, GC_VALUE_BYTES, "gc_tensor_dict_get_bytes", &e));
  if (!b || !n) return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_dict_get_bytes: b or n is NULL");
  *b = e->v.b.p;
  *n = e->v.b.n;
  return GC_OK;
}

gc_status_t gc_tensor_dict_get_int(const gc_tensor_dict_t *d, const char *key, int64_t *v) {
  const gc_dict_entry_t *e;
  GC_CHECK(get(d, key, GC_VALUE_INT, "gc_tensor_dict_get_int", &e));
  if (!v) return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_dict_get_int: v is NULL");
  *v = e->v.i;
  return GC_OK;
}

gc_status_t gc_tensor_dict_get_float(const gc_tensor_dict_t *d, const char *key, double *v) {
  const gc_dict_entry_t *e;
  GC_CHECK(get(d, key, GC_VALUE_FLOAT, "gc_tensor_dict_get_float", &e));
  if (!v) return gc_error(GC_ERR_INVALID_ARG, "gc_tensor_dict_get_float: v is NULL");
  *v = e->v.f;
  return GC_OK;
}
