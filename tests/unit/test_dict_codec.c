/* test_dict_codec.c - Check suite for src/coord/tensor_dict.c and
 * dict_codec.c: accessors, the metadata round trip, and a fuzz of the
 * decoder with random, truncated and corrupted encodings (run it under
 * ASan: it must never read past its buffer). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coord/dict.h"

static gc_tensor_dict_t *sample(float *data) {
  gc_tensor_dict_t *d;
  ck_assert_int_eq(gc_tensor_dict_new(&d), GC_OK);
  gc_tensor_t t = {.data = data, .dtype = GC_FLOAT32, .ndim = 2, .shape = {2, 3}};
  ck_assert_int_eq(gc_tensor_dict_set_tensor(d, "hidden", &t), GC_OK);
  gc_tensor_t e = {.data = NULL, .dtype = GC_BFLOAT16, .ndim = 3, .shape = {4, 0, 2}};
  ck_assert_int_eq(gc_tensor_dict_set_tensor(d, "empty", &e), GC_OK);
  gc_tensor_t c = {
      .data = (void *)8, .dtype = GC_INT64, .ndim = 1, .shape = {5}, .device = {GC_DEVICE_CUDA, 3}};
  ck_assert_int_eq(gc_tensor_dict_set_tensor(d, "on_gpu", &c), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_set_bytes(d, "blob", "abc\0def", 7), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_set_bytes(d, "nothing", NULL, 0), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_set_int(d, "step", -42), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_set_float(d, "temp", 0.75), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_set_none(d, "void"), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_set_int(d, "", 7), GC_OK);
  return d;
}

START_TEST(accessors) {
  float data[6] = {0};
  gc_tensor_dict_t *d = sample(data);
  ck_assert_uint_eq(gc_tensor_dict_size(d), 9);
  ck_assert_str_eq(gc_tensor_dict_key(d, 0), "hidden");
  ck_assert_str_eq(gc_tensor_dict_key(d, 3), "blob");
  ck_assert_ptr_null(gc_tensor_dict_key(d, 9));
  ck_assert_int_eq(gc_tensor_dict_kind(d, 0), GC_VALUE_TENSOR);
  ck_assert_int_eq(gc_tensor_dict_kind(d, 3), GC_VALUE_BYTES);
  ck_assert_int_eq(gc_tensor_dict_kind(d, 7), GC_VALUE_NONE);
  ck_assert_int_eq((int)gc_tensor_dict_kind(d, 99), -1);
  gc_tensor_t t;
  ck_assert_int_eq(gc_tensor_dict_get_tensor(d, "hidden", &t), GC_OK);
  ck_assert_ptr_eq(t.data, data);
  ck_assert_int_eq(t.shape[1], 3);
  const void *b;
  size_t n;
  ck_assert_int_eq(gc_tensor_dict_get_bytes(d, "blob", &b, &n), GC_OK);
  ck_assert_uint_eq(n, 7);
  ck_assert_int_eq(memcmp(b, "abc\0def", 7), 0);
  int64_t i;
  ck_assert_int_eq(gc_tensor_dict_get_int(d, "step", &i), GC_OK);
  ck_assert_int_eq(i, -42);
  double f;
  ck_assert_int_eq(gc_tensor_dict_get_float(d, "temp", &f), GC_OK);
  ck_assert(f == 0.75);
  /* wrong kind, missing key, NULLs */
  ck_assert_int_eq(gc_tensor_dict_get_int(d, "temp", &i), GC_ERR_INVALID_ARG);
  ck_assert_int_eq(gc_tensor_dict_get_int(d, "nope", &i), GC_ERR_NOT_FOUND);
  ck_assert_int_eq(gc_tensor_dict_set_int(d, NULL, 1), GC_ERR_INVALID_ARG);
  ck_assert_int_eq(gc_tensor_dict_set_int(NULL, "x", 1), GC_ERR_INVALID_ARG);
  ck_assert_int_eq(gc_tensor_dict_set_bytes(d, "x", NULL, 3), GC_ERR_INVALID_ARG);
  gc_tensor_t bad = {.data = NULL, .dtype = GC_FLOAT32, .ndim = 1, .shape = {4}};
  ck_assert_int_eq(gc_tensor_dict_set_tensor(d, "bad", &bad), GC_ERR_INVALID_ARG);
  /* replacing keeps the place */
  ck_assert_int_eq(gc_tensor_dict_set_float(d, "blob", 1.5), GC_OK);
  ck_assert_int_eq(gc_tensor_dict_kind(d, 3), GC_VALUE_FLOAT);
  ck_assert_uint_eq(gc_tensor_dict_size(d), 9);
  gc_tensor_dict_free(d);
  gc_tensor_dict_free(NULL);
}
END_TEST

START_TEST(round_trip) {
  float data[6] = {0};
  gc_tensor_dict_t *d = sample(data), *r;
  bool sliced[9] = {[0] = true};
  void *buf;
  size_t len;
  ck_assert_int_eq(gc_dict_encode(d, sliced, &buf, &len), GC_OK);
  ck_assert_int_eq(gc_dict_decode(buf, len, &r), GC_OK);
  ck_assert_uint_eq(gc_tensor_dict_size(r), gc_tensor_dict_size(d));
  for (size_t i = 0; i < d->n; i++) {
    ck_assert_str_eq(r->e[i].key, d->e[i].key);
    ck_assert_int_eq(r->e[i].kind, d->e[i].kind);
    ck_assert_int_eq(r->e[i].sliced, sliced[i]);
  }
  gc_tensor_t t;
  ck_assert_int_eq(gc_tensor_dict_get_tensor(r, "on_gpu", &t), GC_OK);
  ck_assert_ptr_null(t.data);
  ck_assert_int_eq(t.dtype, GC_INT64);
  ck_assert_int_eq(t.device.type, GC_DEVICE_CUDA);
  ck_assert_int_eq(t.device.index, 3);
  ck_assert_int_eq(t.shape[0], 5);
  ck_assert_int_eq(gc_tensor_dict_get_tensor(r, "empty", &t), GC_OK);
  ck_assert_int_eq(t.ndim, 3);
  ck_assert_int_eq(t.shape[1], 0);
  const void *b;
  size_t n;
  ck_assert_int_eq(gc_tensor_dict_get_bytes(r, "blob", &b, &n), GC_OK);
  ck_assert_int_eq(memcmp(b, "abc\0def", 7), 0);
  ck_assert_int_eq(gc_tensor_dict_get_bytes(r, "nothing", &b, &n), GC_OK);
  ck_assert_uint_eq(n, 0);
  double f;
  ck_assert_int_eq(gc_tensor_dict_get_float(r, "temp", &f), GC_OK);
  ck_assert(f == 0.75);
  int64_t i;
  ck_assert_int_eq(gc_tensor_dict_get_int(r, "", &i), GC_OK);
  ck_assert_int_eq(i, 7);
  gc_tensor_dict_free(r);
  /* an empty dict too */
  gc_tensor_dict_t *e;
  ck_assert_int_eq(gc_tensor_dict_new(&e), GC_OK);
  free(buf);
  ck_assert_int_eq(gc_dict_encode(e, NULL, &buf, &len), GC_OK);
  ck_assert_uint_eq(len, 12);
  ck_assert_int_eq(gc_dict_decode(buf, len, &r), GC_OK);
  ck_assert_uint_eq(gc_tensor_dict_size(r), 0);
  gc_tensor_dict_free(r);
  gc_tensor_dict_free(e);
  free(buf);
  gc_tensor_dict_free(d);
}
END_TEST

/* Decodes a copy of exactly len bytes in its own allocation, so that ASan
 * sees any read past the end. */
static gc_status_t decode_exact(const void *p, size_t len) {
  void *c = malloc(len ? len : 1);
  if (len) memcpy(c, p, len);
  gc_tensor_dict_t *r = NULL;
  gc_status_t s = gc_dict_decode(c, len, &r);
  if (s == GC_OK) {
    ck_assert_ptr_nonnull(r);
    gc_tensor_dict_free(r);
  } else {
    ck_assert_ptr_null(r);
    ck_assert_int_eq(s, GC_ERR_INVALID_ARG);
  }
  free(c);
  return s;
}

START_TEST(malformed) {
  float data[6] = {0};
  gc_tensor_dict_t *d = sample(data);
  void *buf;
  size_t len;
  ck_assert_int_eq(gc_dict_encode(d, NULL, &buf, &len), GC_OK);
  unsigned char *b = buf;
  /* every truncation fails, and so does one extra byte */
  for (size_t l = 0; l < len; l++) ck_assert_int_eq(decode_exact(b, l), GC_ERR_INVALID_ARG);
  unsigned char *longer = malloc(len + 1);
  memcpy(longer, b, len);
  longer[len] = 0;
  ck_assert_int_eq(decode_exact(longer, len + 1), GC_ERR_INVALID_ARG);
  free(longer);
  /* targeted corruptions */
  unsigned char *c = malloc(len);
#define CORRUPT(off, val, expect)                     \
  do {                                                \
    memcpy(c, b, len);                                \
    c[off] = (unsigned char)(val);                    \
    ck_assert_int_eq(decode_exact(c, len), (expect)); \
  } while (0)
  CORRUPT(0, 'X', GC_ERR_INVALID_ARG);   /* magic */
  CORRUPT(4, 2, GC_ERR_INVALID_ARG);     /* version */
  CORRUPT(6, 1, GC_ERR_INVALID_ARG);     /* reserved */
  CORRUPT(8, 10, GC_ERR_INVALID_ARG);    /* count larger */
  CORRUPT(11, 0xff, GC_ERR_INVALID_ARG); /* count huge */
  CORRUPT(12, 0xff, GC_ERR_INVALID_ARG); /* first key length */
  CORRUPT(15, 0x80, GC_ERR_INVALID_ARG); /* first key length huge */
  /* first entry: key "hidden" at 16..21, kind at 22, dtype 23, dev 24,
   * flags 25, ndim 26, index 27..30, shape 31.. */
  CORRUPT(16, 0, GC_ERR_INVALID_ARG);    /* NUL in key */
  CORRUPT(22, 9, GC_ERR_INVALID_ARG);    /* kind */
  CORRUPT(23, 8, GC_ERR_INVALID_ARG);    /* dtype */
  CORRUPT(24, 2, GC_ERR_INVALID_ARG);    /* device type */
  CORRUPT(25, 2, GC_ERR_INVALID_ARG);    /* flags */
  CORRUPT(26, 9, GC_ERR_INVALID_ARG);    /* ndim */
  CORRUPT(30, 0x80, GC_ERR_INVALID_ARG); /* negative device index */
  CORRUPT(38, 0x80, GC_ERR_INVALID_ARG); /* negative shape[0] */
  CORRUPT(38, 0x40, GC_ERR_INVALID_ARG); /* size overflow */
  /* duplicate key: rename "empty" (second entry) to "hidden" is a length
   * change; instead make the second key equal by copying the first entry. */
  {
    gc_tensor_dict_t *dd;
    ck_assert_int_eq(gc_tensor_dict_new(&dd), GC_OK);
    ck_assert_int_eq(gc_tensor_dict_set_int(dd, "ab", 1), GC_OK);
    ck_assert_int_eq(gc_tensor_dict_set_int(dd, "ac", 2), GC_OK);
    void *db;
    size_t dl;
    ck_assert_int_eq(gc_dict_encode(dd, NULL, &db, &dl), GC_OK);
    ((unsigned char *)db)[12 + 4 + 2 + 1 + 8 + 4 + 1] = 'b';
    ck_assert_int_eq(decode_exact(db, dl), GC_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(gc_last_error(), "duplicate"));
    free(db);
    gc_tensor_dict_free(dd);
  }
  free(c);
  free(buf);
  gc_tensor_dict_free(d);
}
END_TEST

START_TEST(fuzz) {
  const char *e = getenv("GCSHIM_TEST_SEED");
  unsigned seed = e ? (unsigned)strtoul(e, NULL, 0) : (unsigned)time(NULL) ^ (unsigned)getpid();
  printf("test_dict_codec fuzz seed %u\n", seed);
  srand(seed);
  float data[6] = {0};
  gc_tensor_dict_t *d = sample(data);
  void *buf;
  size_t len;
  ck_assert_int_eq(gc_dict_encode(d, NULL, &buf, &len), GC_OK);
  unsigned char *c = malloc(len + 64);
  int ok = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t l;
    int mode = rand() % 3;
    if (mode == 0) { /* flips in a valid encoding, maybe truncated */
      memcpy(c, buf, len);
      int flips = 1 + rand() % 4;
      for (int k = 0; k < flips; k++) c[rand() % len] ^= (unsigned char)(1 + rand() % 255);
      l = rand() % 4 ? len : (size_t)rand() % (len + 1);
    } else if (mode == 1) { /* a valid header, then noise */
      l = 12 + (size_t)rand() % 64;
      memcpy(c, buf, 12);
      for (size_t k = 12; k < l; k++) c[k] = (unsigned char)rand();
      c[8] = (unsigned char)(rand() % 6);
      c[9] = c[10] = c[11] = 0;
    } else { /* pure noise */
      l = (size_t)rand() % (len + 64);
      for (size_t k = 0; k < l; k++) c[k] = (unsigned char)rand();
    }
    if (decode_exact(c, l) == GC_OK) ok++;
  }
  printf("test_dict_codec fuzz: %d of 20000 inputs decoded\n", ok);
  free(c);
  free(buf);
  gc_tensor_dict_free(d);
}
END_TEST

/* 100 000 keys decode in linear time: the duplicate-key check used to scan
 * every earlier key (5e9 key comparisons, 25 s). The bound is on the index's
 * probes, so it holds under valgrind too; the time is printed. */
START_TEST(many_keys) {
  enum { N = 100000 };
  gc_tensor_dict_t *d, *r;
  ck_assert_int_eq(gc_tensor_dict_new(&d), GC_OK);
  char key[32];
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "layer.%d.weight", i);
    ck_assert_int_eq(gc_tensor_dict_set_int(d, key, i), GC_OK);
  }
  ck_assert_uint_eq(gc_tensor_dict_size(d), N);
  void *buf;
  size_t len;
  ck_assert_int_eq(gc_dict_encode(d, NULL, &buf, &len), GC_OK);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(gc_dict_decode(buf, len, &r), GC_OK);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  uint64_t probes = r->probes;
  printf("test_dict_codec many_keys: %d keys decoded in %.3f s, %llu probes\n", N,
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
         (unsigned long long)probes);
  /* two lookups a key (the duplicate check, the insertion): a few probes
   * each; a scan would make N * N / 2 */
  ck_assert_uint_le(probes, 8ull * N);
  ck_assert_uint_eq(gc_tensor_dict_size(r), N);
  for (int i = 0; i < N; i += 9973) {
    int64_t v;
    snprintf(key, sizeof key, "layer.%d.weight", i);
    ck_assert_int_eq(gc_tensor_dict_get_int(r, key, &v), GC_OK);
    ck_assert_int_eq(v, i);
    ck_assert_str_eq(gc_tensor_dict_key(r, (size_t)i), key);
  }
  ck_assert_int_eq(gc_tensor_dict_get_int(r, "layer.100000.weight", &(int64_t){0}),
                   GC_ERR_NOT_FOUND);
  gc_tensor_dict_free(r);
  /* the last key a copy of the first: still found */
  unsigned char *b = buf;
  size_t last = len - (4 + strlen("layer.99999.weight") + 1 + 8);
  ck_assert_int_eq(memcmp(b + last + 4, "layer.99999.weight", 18), 0);
  memcpy(b + last + 4, "layer.00000.weight", 18);
  ck_assert_int_eq(decode_exact(b, len), GC_OK); /* "00000" is not "0" */
  memcpy(b + last, (uint32_t[]){14}, 4);
  memcpy(b + last + 4, "layer.0.weight", 14);
  ck_assert_int_eq(decode_exact(b, len - 4), GC_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(gc_last_error(), "duplicate"));
  free(buf);
  gc_tensor_dict_free(d);
}
END_TEST

int main(void) {
  Suite *s = suite_create("dict_codec");
  TCase *tc = tcase_create("all");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, accessors);
  tcase_add_test(tc, round_trip);
  tcase_add_test(tc, malformed);
  tcase_add_test(tc, fuzz);
  tcase_add_test(tc, many_keys);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
