/* test_rules.c - Check suite for src/shim/rules.c: GCSHIM_GROUPS parsed
 * from a string and matched. */
#include <check.h>
#include <stdlib.h>

#include "shim/rules.h"

static const char *match(const gc_shim_rules_t *r, const int *ranks, int n) {
  return gc_shim_rules_match(r, ranks, n);
}

START_TEST(doc_example) {
  gc_shim_rules_t *r = gc_shim_rules_parse_string("tp=0-3,4-7;pp=0,4;dp=*");
  ck_assert_int_eq(gc_shim_rules_count(r), 3);
  ck_assert_str_eq(match(r, (int[]){3, 1, 2, 0}, 4), "tp");
  ck_assert_str_eq(match(r, (int[]){4, 5, 6, 7}, 4), "tp");
  ck_assert_str_eq(match(r, (int[]){4, 0}, 2), "pp");
  ck_assert_str_eq(match(r, (int[]){1, 5}, 2), "dp");
  gc_shim_rules_free(r);
  ck_assert_ptr_null(gc_shim_rules_parse_string(""));
  ck_assert_ptr_null(gc_shim_rules_parse_string(NULL));
  ck_assert_ptr_null(match(NULL, (int[]){0}, 1));
}
END_TEST

/* Bad rules are left out (and what they allocated freed: fuzz_groups'
 * leak under LeakSanitizer); a rank beyond an int is no rank: 4294967296
 * named rank 0's communicator, and a range ending at LONG_MAX overflowed. */
START_TEST(bad_rules) {
  gc_shim_rules_t *r = gc_shim_rules_parse_string(
      "=0;x;y=1-;z=3-2;w=0-70000;wrap=4294967296;huge=9223372036854775807;"
      "range=0-9223372036854775807;ok=0-3");
  ck_assert_int_eq(gc_shim_rules_count(r), 1);
  ck_assert_ptr_null(match(r, (int[]){0}, 1));
  ck_assert_str_eq(match(r, (int[]){0, 1, 2, 3}, 4), "ok");
  gc_shim_rules_free(r);
  r = gc_shim_rules_parse_string("big=2147483647");
  ck_assert_str_eq(match(r, (int[]){2147483647}, 1), "big");
  gc_shim_rules_free(r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("rules");
  TCase *tc = tcase_create("all");
  tcase_add_test(tc, doc_example);
  tcase_add_test(tc, bad_rules);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
