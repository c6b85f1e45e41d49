/* dict.h - the tensor dict inside the coordinator, and its metadata codec. */
#ifndef GC_DICT_H
#define GC_DICT_H

#include "coord/coord.h"

typedef struct {
  char *key;
  size_t key_len;
  uint64_t hash; /* of the key: the index's */
  gc_value_kind_t kind;
  bool owned;  /* tensor data allocated by the library; freed with the dict */
  bool sliced; /* decoded: the sender sent one all-gather slice of it */
  union {
    gc_tensor_t t;
    struct {
      void *p;
      size_t n;
    } b;
    int64_t i;
    double f;
  } v;
} gc_dict_entry_t;

struct gc_tensor_dict {
  gc_dict_entry_t *e;
  size_t n, cap;
  /* Index of the keys: open addressing, a power-of-two number of slots,
   * each 0 (empty) or 1 + an entry's place; at most half full. A decoder
   * checking every key of a 100 000-key dict against the others must not
   * scan them all. */
  size_t *slot;
  size_t n_slots;
  /* Slots looked at by lookups, for tests (a const lookup counts too:
   * relaxed atomic, since readers may share a dict). */
  _Atomic uint64_t probes;
};

/* The entry for key (key_len bytes, no NUL inside), appended when new; an
 * existing entry keeps its place and loses its old value. */
GC_INTERNAL gc_status_t gc_dict_put(gc_tensor_dict_t *d, const char *key, size_t key_len,
                                    gc_dict_entry_t **out);
/* NULL when absent. One hash probe (expected), whatever the dict's size. */
GC_INTERNAL gc_dict_entry_t *gc_dict_find(const gc_tensor_dict_t *d, const char *key,
                                          size_t key_len);

/*
 * Metadata encoding, version 1, little-endian:
 *   "GCTD" u16 version(=1) u16 reserved(=0) u32 count, then count entries:
 *   u32 key_len, key bytes (no NUL), u8 kind, then by kind:
 *     TENSOR: u8 dtype, u8 device type, u8 flags (bit 0: sliced), u8 ndim,
 *             i32 device index, i64 shape[ndim]
 *     BYTES:  u64 n, n bytes      INT: i64      FLOAT: f64 bits      NONE: -
 * The decoder checks every length and count against the buffer before it
 * reads, and rejects unknown versions, kinds, dtypes, devices, flag bits,
 * negative or overflowing shapes, duplicate keys and trailing bytes with
 * GC_ERR_INVALID_ARG.
 */
#define GC_DICT_CODEC_VERSION 1
/* Encodes d into a malloc'd buffer; sliced[i] (NULL: all false) is the
 * flag of entry i. Tensors' data is not encoded. */
GC_INTERNAL gc_status_t gc_dict_encode(const gc_tensor_dict_t *d, const bool *sliced, void **out,
                                       size_t *out_len);
/* A new dict from an encoding: tensors have data NULL and owned false,
 * entries' sliced flags set. */
GC_INTERNAL gc_status_t gc_dict_decode(const void *buf, size_t len, gc_tensor_dict_t **out);

#endif
