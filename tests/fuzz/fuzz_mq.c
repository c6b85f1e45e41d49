/* fuzz_mq.c - libFuzzer target: the message queue (src/coord/mq.c) from
 * bytes, with no live peer.
 *   byte 0 even: bytes 2.. are a handle (gc_mq_handle_t, zero-padded) for
 *     gc_mq_attach as reader byte 1 % 4; byte 0 & 2: its checksum is made
 *     right first (FNV-1a of the 256 bytes with the check zero, mq.c), so
 *     that the checks behind it are reached. It must be refused or name no
 *     segment (GC_ERR_INVALID_ARG / GC_ERR_NOT_FOUND).
 *   byte 0 odd: the rest is messages (a length byte, then its bytes) through
 *     a queue of this process with both readers attached (so its segment is
 *     already gone from /dev/shm): each arrives whole at both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gcshim/gc.h"

#define CHUNK 64
#define CHUNKS 4

static gc_mq_t *w, *r[2];

static void setup(void) {
  gc_mq_handle_t h;
  if (gc_mq_create(2, CHUNK, CHUNKS, true, &w) != GC_OK || gc_mq_get_handle(w, &h) != GC_OK ||
      gc_mq_attach(&h, 0, true, &r[0]) != GC_OK || gc_mq_attach(&h, 1, true, &r[1]) != GC_OK)
    abort();
}

static uint64_t fnv1a(const unsigned char *b, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static void attach(const uint8_t *data, size_t size) {
  gc_mq_handle_t h;
  memset(&h, 0, sizeof h);
  memcpy(h.bytes, data + 2, size - 2 > sizeof h.bytes ? sizeof h.bytes : size - 2);
  if (data[0] & 2) {
    memset(h.bytes, 0, 8);
    uint64_t c = fnv1a(h.bytes, sizeof h.bytes);
    memcpy(h.bytes, &c, 8);
  }
  gc_mq_t *q = NULL;
  gc_status_t s = gc_mq_attach(&h, data[1] % 4, true, &q);
  if (s == GC_OK) abort(); /* no segment of a live writer can match */
  if (q || (s != GC_ERR_INVALID_ARG && s != GC_ERR_NOT_FOUND)) abort();
}

/* The largest message the ring holds at once: the writer never waits. */
#define RING_MAX (CHUNK * CHUNKS - 16)

static void messages(const uint8_t *data, size_t size) {
  size_t at = 1;
  while (at < size) {
    size_t len = data[at++] * 2u;
    if (len > RING_MAX) len = RING_MAX;
    if (len > size - at) len = size - at;
    if (gc_mq_enqueue(w, data + at, len, 0) != GC_OK) abort();
    for (int k = 0; k < 2; k++) {
      void *m = NULL;
      size_t n = 0;
      if (gc_mq_dequeue(r[k], &m, &n, 0) != GC_OK) abort();
      if (n != len || (len && memcmp(m, data + at, len))) abort();
      free(m);
    }
    at += len;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!w) setup();
  if (size < 2) return 0;
  if (data[0] & 1)
    messages(data, size);
  else
    attach(data, size);
  return 0;
}
