/* fuzz_dict.c - libFuzzer target: the tensor dict's metadata decoder
 * (src/coord/dict_codec.c) on any bytes, as a peer's metadata arrives.
 * A decoded dict must encode back to exactly the input (the encoding is
 * canonical); a refusal is GC_ERR_INVALID_ARG with no dict. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coord/dict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gc_tensor_dict_t *d = NULL;
  gc_status_t s = gc_dict_decode(data, size, &d);
  if (s != GC_OK) {
    if (d || s != GC_ERR_INVALID_ARG) abort();
    return 0;
  }
  bool *sliced = calloc(d->n + 1, sizeof *sliced);
  if (!sliced) abort();
  for (size_t i = 0; i < d->n; i++) sliced[i] = d->e[i].sliced;
  void *buf;
  size_t len;
  if (gc_dict_encode(d, sliced, &buf, &len) != GC_OK) abort();
  if (len != size || memcmp(buf, data, size)) abort();
  for (size_t i = 0; i < d->n; i++) /* every key is found again */
    if (gc_dict_find(d, d->e[i].key, d->e[i].key_len) != &d->e[i]) abort();
  free(buf);
  free(sliced);
  gc_tensor_dict_free(d);
  return 0;
}
