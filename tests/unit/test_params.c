/* test_params.c - Check suite for src/core/params.c: the parsers (one rule
 * per type), the cached getters, the notice of a malformed value. */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/params.h"

static bool parse(gc_param_id_t id, const char *s, gc_param_value_t *v, char *why) {
  why[0] = 0;
  return gc_param_parse(id, s, v, why, 512);
}

/* Every malformed GCSHIM_TIMEOUT is refused, said, and 300 s used. */
START_TEST(timeout_malformed) {
  static const char *const bad[] = {"-1",    "NaN",  "nan",    "abc",  "0",   "1e400", "3s",
                                    "inf",   "-inf", "0x10",   " 5",   "5 ",  "1e",    ".",
                                    "1.2.3", "+5",   "0.0001", "1e10", "--1", "e5"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    gc_param_value_t v;
    char why[512], want[512];
    ck_assert_msg(!parse(GC_P_GCSHIM_TIMEOUT, bad[i], &v, why), "%s accepted", bad[i]);
    ck_assert(v.d == 300.0);
    snprintf(want, sizeof want, "GCSHIM_TIMEOUT=%s is not a number from 0.001 to 1e+09; 300 used",
             bad[i]);
    ck_assert_str_eq(why, want);
  }
}
END_TEST

START_TEST(timeout_valid) {
  static const struct {
    const char *s;
    double v;
  } good[] = {{"60", 60},      {"0.5", 0.5},  {"1e3", 1000}, {"2.5E1", 25}, {"1e9", 1e9},
              {"0.001", 1e-3}, {".25", 0.25}, {"7.", 7},     {"1e+2", 100}, {"300", 300}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    gc_param_value_t v;
    char why[512];
    ck_assert_msg(parse(GC_P_GCSHIM_TIMEOUT, good[i].s, &v, why), "%s refused: %s", good[i].s, why);
    ck_assert(v.d == good[i].v);
    ck_assert_str_eq(why, "");
  }
  gc_param_value_t v;
  char why[512];
  ck_assert(parse(GC_P_GCSHIM_TIMEOUT, NULL, &v, why) && v.d == 300.0); /* unset */
  ck_assert(parse(GC_P_GCSHIM_TIMEOUT, "", &v, why) && v.d == 300.0);   /* empty is unset */
}
END_TEST

START_TEST(bool_words) {
  static const char *const on[] = {"1", "true", "TRUE", "True", "yes", "YES", "on", "On"};
  static const char *const off[] = {"0", "false", "FALSE", "no", "No", "off", "OFF"};
  static const char *const bad[] = {"00", "2", "-1", "y", "n", " 1", "1 ", "enable", "t", "0x1"};
  gc_param_value_t v;
  char why[512];
  for (size_t i = 0; i < sizeof on / sizeof *on; i++)
    ck_assert_msg(parse(GC_P_GCSHIM_DISABLE, on[i], &v, why) && v.i == 1, "%s", on[i]);
  for (size_t i = 0; i < sizeof off / sizeof *off; i++)
    ck_assert_msg(parse(GC_P_GCSHIM_CAPTURED, off[i], &v, why) && v.i == 0, "%s", off[i]);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_msg(!parse(GC_P_GCSHIM_DISABLE, bad[i], &v, why), "%s accepted", bad[i]);
    ck_assert_int_eq(v.i, 0); /* the default */
    char want[512];
    snprintf(want, sizeof want,
             "GCSHIM_DISABLE=%s is not 1/0, true/false, yes/no or on/off; 0 used", bad[i]);
    ck_assert_str_eq(why, want);
  }
  ck_assert(!parse(GC_P_GCSHIM_CAPTURED, "00", &v, why) && v.i == 1);
  ck_assert_str_eq(why, "GCSHIM_CAPTURED=00 is not 1/0, true/false, yes/no or on/off; 1 used");
}
END_TEST

START_TEST(int_ranges) {
  gc_param_value_t v;
  char why[512];
  ck_assert(!parse(GC_P_GCSHIM_TIME_EVERY, "0", &v, why) && v.i == 64);
  ck_assert_str_eq(why,
                   "GCSHIM_TIME_EVERY=0 is not a number from 1 to 1048576 (an integer); 64 used");
  ck_assert(parse(GC_P_GCSHIM_TIME_EVERY, "1", &v, why) && v.i == 1);
  ck_assert(parse(GC_P_GCSHIM_TIME_EVERY, "1048576", &v, why) && v.i == 1048576);
  static const char *const bad[] = {"1048577",
                                    "-5",
                                    "+5",
                                    " 5",
                                    "5 ",
                                    "0x10",
                                    "1.5",
                                    "1e3",
                                    "abc",
                                    "-",
                                    "99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_msg(!parse(GC_P_GCSHIM_TIME_EVERY, bad[i], &v, why), "%s accepted", bad[i]);
    ck_assert_int_eq(v.i, 64);
  }
  /* SIZE: bytes, 0 allowed where the range says so */
  ck_assert(parse(GC_P_GCSHIM_FUSE_MAX, "0", &v, why) && v.i == 0);
  ck_assert(parse(GC_P_GCSHIM_FUSE_MAX, "67108864", &v, why) && v.i == 67108864);
  ck_assert(!parse(GC_P_GCSHIM_FUSE_MAX, "67108865", &v, why) && v.i == 1048576);
  ck_assert(!parse(GC_P_GCSHIM_PROFILER_STALE_MS, "0", &v, why) && v.i == 10000);
  ck_assert_str_eq(why,
                   "GCSHIM_PROFILER_STALE_MS=0 is not a number from 1 to 3600000 (an "
                   "integer); 10000 used");
  /* no default of its own: the reader's */
  ck_assert(parse(GC_P_GCSHIM_SHM_CHUNK_KB, NULL, &v, why) && v.i == GC_PARAM_AUTO);
  ck_assert(!parse(GC_P_GCSHIM_SHM_CHUNK_KB, "63", &v, why) && v.i == GC_PARAM_AUTO);
  ck_assert_str_eq(why,
                   "GCSHIM_SHM_CHUNK_KB=63 is not a number from 64 to 65536 (an integer); "
                   "the default used");
  ck_assert(parse(GC_P_GCSHIM_SHM_SMALL_ALLREDUCE, "0", &v, why) && v.i == 0);
}
END_TEST

START_TEST(enum_words) {
  gc_param_value_t v;
  char why[512];
  ck_assert(parse(GC_P_GCSHIM_DEBUG, "info", &v, why) && v.i == 3);
  ck_assert(parse(GC_P_GCSHIM_DEBUG, "Trace", &v, why) && v.i == 4);
  ck_assert(parse(GC_P_GCSHIM_DEBUG, "WARN", &v, why) && v.i == 2);
  ck_assert(parse(GC_P_GCSHIM_DEBUG, "version", &v, why) && v.i == 1);
  ck_assert(!parse(GC_P_GCSHIM_DEBUG, "1", &v, why) && v.i == 0);
  ck_assert_str_eq(why, "GCSHIM_DEBUG=1 is not one of NONE, VERSION, WARN, INFO, TRACE; NONE used");
  ck_assert(!parse(GC_P_GCSHIM_DEBUG, "INF", &v, why));
  ck_assert(!parse(GC_P_GCSHIM_DEBUG, "INFOS", &v, why));
}
END_TEST

START_TEST(strings) {
  gc_param_value_t v;
  char why[512];
  ck_assert(parse(GC_P_GCSHIM_REPORT, "", &v, why) && v.s == NULL);
  ck_assert(parse(GC_P_GCSHIM_REPORT, "r.json", &v, why) && !strcmp(v.s, "r.json"));
}
END_TEST

/* GCSHIM_CHECK: one setting, one parser; unset, the shim's default is off
 * and the API's on. */
START_TEST(check_per_reader) {
  unsetenv("GCSHIM_CHECK");
  gc_params_reset();
  ck_assert_int_eq(gc_param_GCSHIM_CHECK(), GC_PARAM_AUTO);
  ck_assert(!gc_param_check_shim());
  ck_assert(gc_param_check_api());
  static const struct {
    const char *s;
    bool on;
  } set[] = {{"0", false}, {"off", false}, {"1", true}, {"yes", true}};
  for (size_t i = 0; i < sizeof set / sizeof *set; i++) {
    setenv("GCSHIM_CHECK", set[i].s, 1);
    gc_params_reset();
    ck_assert_int_eq(gc_param_check_shim(), set[i].on);
    ck_assert_int_eq(gc_param_check_api(), set[i].on);
  }
  gc_param_value_t v;
  char why[512];
  ck_assert(!parse(GC_P_GCSHIM_CHECK, "2", &v, why) && v.i == GC_PARAM_AUTO);
  ck_assert_str_eq(why,
                   "GCSHIM_CHECK=2 is not 1/0, true/false, yes/no or on/off; the default used");
}
END_TEST

/* Read once: a later change of the environment is not seen. */
START_TEST(cached_once) {
  setenv("GCSHIM_TIMEOUT", "60", 1);
  setenv("GCSHIM_REPORT", "a.json", 1);
  gc_params_reset();
  ck_assert(gc_param_GCSHIM_TIMEOUT() == 60.0);
  ck_assert(gc_env_timeout() == 60.0);
  ck_assert_str_eq(gc_param_GCSHIM_REPORT(), "a.json");
  setenv("GCSHIM_TIMEOUT", "30", 1);
  setenv("GCSHIM_REPORT", "b.json", 1);
  ck_assert(gc_param_GCSHIM_TIMEOUT() == 60.0);
  ck_assert_str_eq(gc_param_GCSHIM_REPORT(), "a.json");
  unsetenv("GCSHIM_REPORT");
  unsetenv("GCSHIM_TIMEOUT");
  gc_params_reset();
  ck_assert(gc_param_GCSHIM_TIMEOUT() == 300.0);
  ck_assert_ptr_null(gc_param_GCSHIM_REPORT());
}
END_TEST

/* Every default is a value of its type and range (or none: AUTO). */
START_TEST(defaults_in_range) {
  for (int i = 0; i < GC_PARAM_COUNT; i++) {
    const gc_param_info_t *p = &gc_param_info[i];
    ck_assert_msg(!strncmp(p->name, "GCSHIM_", 7), "%s", p->name);
    ck_assert_msg(p->doc && *p->doc && !strchr(p->doc, '\n'), "%s: doc", p->name);
    ck_assert_msg(p->readers && *p->readers, "%s: readers", p->name);
    if (p->type == GC_PARAM_INT || p->type == GC_PARAM_SIZE || p->type == GC_PARAM_DOUBLE)
      ck_assert_msg(p->dflt == GC_PARAM_AUTO || (p->lo <= p->dflt && p->dflt <= p->hi),
                    "%s: default %g outside %g..%g", p->name, p->dflt, p->lo, p->hi);
    if (p->type == GC_PARAM_BOOL)
      ck_assert_msg(p->dflt == 0 || p->dflt == 1 || p->dflt == GC_PARAM_AUTO, "%s", p->name);
    if (p->type == GC_PARAM_ENUM) ck_assert_msg(p->words && p->dflt >= 0, "%s", p->name);
    for (int j = 0; j < i; j++) ck_assert_str_ne(p->name, gc_param_info[j].name);
  }
}
END_TEST

/* Reads stderr's lines written while fn runs. */
static int stderr_lines(void (*fn)(void), char *text, size_t len) {
  char path[] = "/tmp/gcshim-params-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  ssize_t n = pread(fd, text, len - 1, 0);
  close(fd);
  unlink(path);
  text[n > 0 ? n : 0] = 0;
  int lines = 0;
  for (char *p = text; *p; p++) lines += *p == '\n';
  return lines;
}

static void read_timeout_twice(void) {
  ck_assert(gc_param_GCSHIM_TIMEOUT() == 300.0);
  ck_assert(gc_env_timeout() == 300.0);
}

/* Malformed: one line on stderr without GCSHIM_DEBUG, however often read. */
START_TEST(notice_once) {
  unsetenv("GCSHIM_DEBUG");
  setenv("GCSHIM_TIMEOUT", "abc", 1);
  gc_params_reset();
  char text[4096];
  ck_assert_int_eq(stderr_lines(read_timeout_twice, text, sizeof text), 1);
  ck_assert_msg(strstr(text,
                       " GCSHIM WARN GCSHIM_TIMEOUT=abc is not a number from 0.001 to "
                       "1e+09; 300 used\n"),
                "%s", text);
  ck_assert_int_eq(stderr_lines(read_timeout_twice, text, sizeof text), 0);
}
END_TEST

static void *read_every(void *arg) {
  (void)arg;
  return (void *)(long)gc_param_GCSHIM_TIME_EVERY();
}
static void read_in_threads(void) {
  pthread_t t[8];
  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, read_every, NULL);
  for (int i = 0; i < 8; i++) {
    void *r;
    pthread_join(t[i], &r);
    ck_assert_int_eq((long)r, 64);
  }
}

/* Eight threads read it first at once: one value, one notice. */
START_TEST(notice_once_threads) {
  setenv("GCSHIM_TIME_EVERY", "0", 1);
  gc_params_reset();
  char text[4096];
  ck_assert_int_eq(stderr_lines(read_in_threads, text, sizeof text), 1);
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM_TIME_EVERY=0 is not a number from 1 to 1048576"));
}
END_TEST

static void read_debug(void) { gc_log_level_init(); }
static void read_mq_chunks(void) { ck_assert_int_eq(gc_param_GCSHIM_MQ_CHUNKS(), 16); }

/* A malformed GCSHIM_DEBUG, read by the log's own setup, is said too. */
START_TEST(notice_debug) {
  setenv("GCSHIM_DEBUG", "verbose", 1);
  gc_params_reset();
  char text[4096];
  ck_assert_int_eq(stderr_lines(read_debug, text, sizeof text), 1);
  ck_assert_ptr_nonnull(strstr(
      text, "GCSHIM_DEBUG=verbose is not one of NONE, VERSION, WARN, INFO, TRACE; NONE used"));
  ck_assert_int_eq(gc_log_level(), GC_LOG_NONE);
}
END_TEST

/* GCSHIM_DEBUG=INFO: one line per setting, as in effect. */
START_TEST(info_dump) {
  setenv("GCSHIM_DEBUG", "INFO", 1);
  setenv("GCSHIM_TIMEOUT", "42", 1);
  setenv("GCSHIM_MQ_CHUNKS", "lots", 1);
  unsetenv("GCSHIM_TEST_HOST");
  gc_params_reset();
  char text[16384];
  ck_assert_int_eq(stderr_lines(read_debug, text, sizeof text), GC_PARAM_COUNT);
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM INFO setting GCSHIM_TIMEOUT=42 (set)\n"));
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM INFO setting GCSHIM_TIME_EVERY=64 (default)\n"));
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM INFO setting GCSHIM_DEBUG=INFO (set)\n"));
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM INFO setting GCSHIM_REPORT unset\n"));
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM INFO setting GCSHIM_CHECK=auto (default)\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "GCSHIM INFO setting GCSHIM_MQ_CHUNKS=16 (malformed: default)\n"));
  /* the list fixes nothing: a setting is read at its first use */
  setenv("GCSHIM_TEST_HOST", "late", 1);
  ck_assert_str_eq(gc_param_GCSHIM_TEST_HOST(), "late");
  /* and a malformed one said then */
  ck_assert_int_eq(stderr_lines(read_mq_chunks, text, sizeof text), 1);
  ck_assert_ptr_nonnull(strstr(text, "GCSHIM WARN GCSHIM_MQ_CHUNKS=lots is not a number"));
}
END_TEST

START_TEST(host) {
  char h[64];
  setenv("GCSHIM_TEST_HOST", "nodeA", 1);
  gc_params_reset();
  gc_param_host(h, sizeof h);
  ck_assert_str_eq(h, "nodeA");
}
END_TEST

int main(void) {
  Suite *s = suite_create("params");
  TCase *tc = tcase_create("params");
  tcase_add_test(tc, timeout_malformed);
  tcase_add_test(tc, timeout_valid);
  tcase_add_test(tc, bool_words);
  tcase_add_test(tc, int_ranges);
  tcase_add_test(tc, enum_words);
  tcase_add_test(tc, strings);
  tcase_add_test(tc, check_per_reader);
  tcase_add_test(tc, cached_once);
  tcase_add_test(tc, defaults_in_range);
  tcase_add_test(tc, notice_once);
  tcase_add_test(tc, notice_once_threads);
  tcase_add_test(tc, notice_debug);
  tcase_add_test(tc, info_dump);
  tcase_add_test(tc, host);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  /* each test in its own process: the log is set up once per process */
  srunner_set_fork_status(sr, CK_FORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
