/* test_core.c - Check suite for src/core: statuses, dtypes, tensor sizes,
 * the registry and the environment parsers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/reduce.h"

START_TEST(status_strings) {
  ck_assert_str_eq(gc_status_string(GC_OK), "GC_OK");
  ck_assert_str_eq(gc_status_string(GC_ERR_TIMEOUT), "GC_ERR_TIMEOUT");
  ck_assert_str_eq(gc_status_string(GC_ERR_INTERNAL), "GC_ERR_INTERNAL");
  ck_assert_str_eq(gc_status_string((gc_status_t)999), "GC_ERR_UNKNOWN");
  ck_assert_ptr_nonnull(gc_last_error());
  ck_assert_int_eq(gc_error(GC_ERR_INVALID_ARG, "rank %d is bad", 7), GC_ERR_INVALID_ARG);
  ck_assert_str_eq(gc_last_error(), "rank 7 is bad");
  gc_error_clear();
  ck_assert_str_eq(gc_last_error(), "");
}
END_TEST

START_TEST(dtype_sizes) {
  static const size_t want[] = {1, 1, 4, 8, 2, 2, 4, 8};
  for (int t = GC_INT8; t <= GC_FLOAT64; t++)
    ck_assert_uint_eq(gc_dtype_size((gc_dtype_t)t), want[t]);
  ck_assert_uint_eq(gc_dtype_size((gc_dtype_t)-1), 0);
  ck_assert_uint_eq(gc_dtype_size((gc_dtype_t)8), 0);
}
END_TEST

START_TEST(numel_and_overflow) {
  gc_tensor_t t = {.dtype = GC_FLOAT32, .ndim = 3, .shape = {2, 3, 4}};
  ck_assert_int_eq(gc_tensor_numel(&t), 24);
  ck_assert_uint_eq(gc_tensor_nbytes(&t), 96);
  t.ndim = 0;
  ck_assert_int_eq(gc_tensor_numel(&t), 1); /* scalar */
  t.ndim = 2;
  t.shape[0] = INT64_MAX / 2;
  t.shape[1] = 3;
  ck_assert_int_eq(gc_tensor_numel(&t), -1);
  t.shape[0] = INT64_MAX / 2; /* numel fits, bytes do not */
  t.shape[1] = 1;
  t.dtype = GC_FLOAT64;
  ck_assert_uint_eq(gc_tensor_nbytes(&t), (size_t)-1);
  t.shape[0] = -1;
  ck_assert_int_eq(gc_tensor_numel(&t), -1);
  t.ndim = GC_MAX_DIMS + 1;
  ck_assert_int_eq(gc_tensor_numel(&t), -1);
  ck_assert_int_eq(gc_tensor_numel(NULL), -1);
  ck_assert_int_eq(gc_tensor_check(&t, "x"), GC_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(gc_last_error(), "ndim"));
  int d;
  ck_assert_int_eq(gc_dim_normalize(3, -1, &d), GC_OK);
  ck_assert_int_eq(d, 2);
  ck_assert_int_eq(gc_dim_normalize(3, 3, &d), GC_ERR_INVALID_ARG);
  ck_assert_int_eq(gc_dim_normalize(3, -4, &d), GC_ERR_INVALID_ARG);
}
END_TEST

START_TEST(unique_names_and_lookup) {
  gc_registry_reset(NULL);
  int a, b, c;
  char n1[GC_NAME_MAX], n2[GC_NAME_MAX], n3[GC_NAME_MAX];
  ck_assert_int_eq(gc_registry_add("tp", &a, n1), GC_OK);
  ck_assert_int_eq(gc_registry_add("tp", &b, n2), GC_OK);
  ck_assert_int_eq(gc_registry_add(NULL, &c, n3), GC_OK);
  ck_assert_str_eq(n1, "tp:0");
  ck_assert_str_eq(n2, "tp:1");
  ck_assert_str_eq(n3, "anonymous:0");
  void *o;
  ck_assert_int_eq(gc_registry_lookup("tp:1", &o), GC_OK);
  ck_assert_ptr_eq(o, &b);
  ck_assert_int_eq(gc_registry_lookup("tp:2", &o), GC_ERR_NOT_FOUND);
  ck_assert_int_eq(gc_registry_retire("tp:0"), GC_OK);
  ck_assert_int_eq(gc_registry_lookup("tp:0", &o), GC_ERR_STATE);
  ck_assert_ptr_nonnull(strstr(gc_last_error(), "tp:0"));
  ck_assert_int_eq(gc_registry_retire("tp:0"), GC_ERR_STATE);
  /* the name stays reserved */
  ck_assert_int_eq(gc_registry_add("tp", &a, n1), GC_OK);
  ck_assert_str_eq(n1, "tp:2");
  /* many names: the table grows and every one is still found */
  static int objs[1000];
  char name[GC_NAME_MAX];
  for (int i = 0; i < 1000; i++) ck_assert_int_eq(gc_registry_add("pp", &objs[i], name), GC_OK);
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof name, "pp:%d", i);
    ck_assert_int_eq(gc_registry_lookup(name, &o), GC_OK);
    ck_assert_ptr_eq(o, &objs[i]);
  }
  ck_assert_int_eq(gc_registry_add("", &a, n1), GC_ERR_INVALID_ARG);
  ck_assert_int_eq(gc_registry_lookup(NULL, &o), GC_ERR_INVALID_ARG);
  gc_registry_reset(NULL);
  ck_assert_int_eq(gc_registry_lookup("pp:0", &o), GC_ERR_NOT_FOUND);
}
END_TEST

static void clear_env(void) {
  const char *vars[] = {"GCSHIM_RANK",
                        "GCSHIM_WORLD_SIZE",
                        "GCSHIM_LOCAL_RANK",
                        "RANK",
                        "WORLD_SIZE",
                        "LOCAL_RANK",
                        "OMPI_COMM_WORLD_RANK",
                        "OMPI_COMM_WORLD_SIZE",
                        "OMPI_COMM_WORLD_LOCAL_RANK",
                        "PMI_RANK",
                        "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

START_TEST(env_launchers) {
  gc_env_ranks_t e;
  clear_env();
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_NOT_FOUND);
  setenv("PMI_RANK", "3", 1);
  setenv("PMI_SIZE", "4", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_OK);
  ck_assert_int_eq(e.rank, 3);
  ck_assert_int_eq(e.world_size, 4);
  ck_assert_int_eq(e.local_rank, 3);
  ck_assert_str_eq(e.source, "PMI");
  setenv("OMPI_COMM_WORLD_RANK", "1", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_OK);
  ck_assert_str_eq(e.source, "mpirun");
  ck_assert_int_eq(e.rank, 1);
  ck_assert_int_eq(e.local_rank, 0);
  setenv("RANK", "5", 1);
  setenv("WORLD_SIZE", "8", 1);
  setenv("LOCAL_RANK", "1", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_OK);
  ck_assert_str_eq(e.source, "torchrun");
  ck_assert_int_eq(e.rank, 5);
  ck_assert_int_eq(e.world_size, 8);
  setenv("GCSHIM_RANK", "0", 1);
  setenv("GCSHIM_WORLD_SIZE", "1", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_OK);
  ck_assert_str_eq(e.source, "GCSHIM");
  ck_assert_int_eq(e.world_size, 1);
  /* garbage */
  setenv("GCSHIM_RANK", "1x", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(gc_last_error(), "GCSHIM_RANK=1x"));
  setenv("GCSHIM_RANK", "1", 1); /* rank >= size */
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_INVALID_ARG);
  setenv("GCSHIM_WORLD_SIZE", "-2", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_INVALID_ARG);
  setenv("GCSHIM_WORLD_SIZE", "99999999999999999999", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_INVALID_ARG);
  unsetenv("GCSHIM_WORLD_SIZE");
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_INVALID_ARG); /* rank without size */
  clear_env();
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "2", 1);
  setenv("LOCAL_RANK", "", 1);
  ck_assert_int_eq(gc_env_ranks(&e), GC_ERR_INVALID_ARG);
  clear_env();
}
END_TEST

START_TEST(parse_int) {
  long v;
  ck_assert(gc_parse_int("42", 0, 100, &v) && v == 42);
  ck_assert(!gc_parse_int("", 0, 100, &v));
  ck_assert(!gc_parse_int(" 4", 0, 100, &v) || v == 4);
  ck_assert(!gc_parse_int("101", 0, 100, &v));
  ck_assert(!gc_parse_int("4.5", 0, 100, &v));
  ck_assert(!gc_parse_int(NULL, 0, 100, &v));
}
END_TEST

START_TEST(reduce_kernels) {
  int32_t a[5] = {1, -2, 3, INT32_MAX, 7}, b[5] = {4, 5, -6, 1, 7};
  int32_t d[5];
  gc_reduce_pair(GC_INT32, GC_SUM, d, a, b, 5);
  ck_assert_int_eq(d[0], 5);
  ck_assert_int_eq(d[2], -3);
  ck_assert_int_eq(d[3], INT32_MIN); /* wraps like NCCL */
  gc_reduce_pair(GC_INT32, GC_MAX, d, a, b, 5);
  ck_assert_int_eq(d[1], 5);
  gc_reduce_pair(GC_INT32, GC_MIN, d, a, b, 5);
  ck_assert_int_eq(d[2], -6);
  gc_reduce_pair(GC_INT32, GC_PROD, d, a, b, 5);
  ck_assert_int_eq(d[4], 49);
  int32_t s[2] = {7, -7};
  gc_reduce_finish(GC_INT32, GC_AVG, s, 2, 2);
  ck_assert_int_eq(s[0], 3);
  ck_assert_int_eq(s[1], -3); /* truncates toward zero */
  uint16_t h = gc_float_to_bf16(1.5f);
  ck_assert(gc_bf16_to_float(h) == 1.5f);
  h = gc_float_to_half(-2.25f);
  ck_assert(gc_half_to_float(h) == -2.25f);
}
END_TEST

int main(void) {
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, status_strings);
  tcase_add_test(tc, dtype_sizes);
  tcase_add_test(tc, numel_and_overflow);
  tcase_add_test(tc, unique_names_and_lookup);
  tcase_add_test(tc, env_launchers);
  tcase_add_test(tc, parse_int);
  tcase_add_test(tc, reduce_kernels);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
