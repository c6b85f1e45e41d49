/*
 * test_stats.c - src/core/stats.c and src/core/report.c: buckets, per-thread
 * records summed across threads, ticks to ns, and the job report: two forked
 * ranks deposit and one merged JSON report comes out; a rank that dies
 * before depositing is named missing by rank 0, quickly.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/report.h"
#include "core/stats.h"

static char dir[256];

static int add_group(const char *name, uint64_t key, int size, int rank) {
  gc_stats_group_info_t info;
  memset(&info, 0, sizeof info);
  info.key = key;
  snprintf(info.name, sizeof info.name, "%s", name);
  info.source = GC_SOURCE_DEFAULT;
  info.size = size;
  info.rank_in_group = rank;
  for (int i = 0; i < 64; i++) info.ranks[i] = i < size ? i : -1;
  int id = -1;
  ck_assert_int_eq(gc_stats_group_add(&info, &id), GC_OK);
  return id;
}

START_TEST(buckets) {
  ck_assert_int_eq(gc_stats_bucket(0), 0);
  ck_assert_int_eq(gc_stats_bucket(1), 0);
  ck_assert_int_eq(gc_stats_bucket(2), 1);
  ck_assert_int_eq(gc_stats_bucket(3), 2);
  ck_assert_int_eq(gc_stats_bucket(4096), 12);
  ck_assert_int_eq(gc_stats_bucket(4097), 13);
  ck_assert_int_eq(gc_stats_bucket(UINT64_MAX), GC_STATS_BUCKETS - 1);
}
END_TEST

static int g_id;
static void *recorder(void *arg) {
  long k = (long)arg;
  for (long i = 0; i < 1000; i++) gc_stats_record(g_id, 3, (uint64_t)(k + 1) * 100, 10 + k, i < k);
  return NULL;
}

START_TEST(threads_sum) {
  gc_stats_reset();
  g_id = add_group("t", 42, 1, 0);
  pthread_t th[4];
  for (long k = 0; k < 4; k++) pthread_create(&th[k], NULL, recorder, (void *)k);
  for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
  gc_stats_entry_t e;
  gc_stats_collect(g_id, 3, &e);
  ck_assert_uint_eq(e.calls, 4000);
  ck_assert_uint_eq(e.bytes, 1000 * (100 + 200 + 300 + 400));
  ck_assert_uint_eq(e.captured, 0 + 1 + 2 + 3);
  ck_assert_uint_eq(e.hist[gc_stats_bucket(100)], 1000);
  ck_assert_uint_eq(e.hist[gc_stats_bucket(400)], 2000); /* 300 and 400: <= 512 */
  ck_assert(e.t_min_ns <= e.t_max_ns);
  gc_stats_collect(g_id, 4, &e);
  ck_assert_uint_eq(e.calls, 0);
  ck_assert_ptr_eq(gc_stats_group_info(g_id + 1), NULL);
}
END_TEST

START_TEST(ticks) {
  /* Three tries: a preemption between two reads skews one (a busy machine). */
  double ns = 0, want = 1;
  for (int i = 0; i < 3 && !(ns > want * 0.9 && ns < want * 1.1); i++) {
    uint64_t t0 = gc_stats_ticks(), n0 = gc_now_ns();
    usleep(30000);
    uint64_t t1 = gc_stats_ticks(), n1 = gc_now_ns();
    ns = (double)(t1 - t0) * gc_stats_ns_per_tick();
    want = (double)(n1 - n0);
  }
  ck_assert_msg(ns > want * 0.9 && ns < want * 1.1, "ticks give %.0f ns, clock %.0f", ns, want);
}
END_TEST

/* The whole file; valid until the next call. */
static char *slurp(const char *path) {
  static char *buf;
  free(buf);
  buf = NULL;
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, k;
  buf = malloc(cap);
  while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0)
    if ((n += k) == cap - 1) buf = realloc(buf, cap *= 2);
  if (buf) buf[n] = 0;
  fclose(f);
  return buf;
}

/* A rank of a 2-rank job: records, then deposits (or dies first); with
 * flush, it flushes once half-way (a generation of its own). */
static bool die_after_flush; /* rank 1 flushes once, then dies before the last flush */

static void rank_main(const char *key, int rank, bool die, bool flush) {
  gc_stats_reset();
  int id = add_group("comm:0", 7, 2, rank);
  if (gc_report_job_open(key, rank, 2, 22809) != GC_OK) _exit(2);
  for (int i = 0; i < 5 + rank; i++) gc_stats_record(id, 30, 4096, 100, false);
  if (die) _exit(0);
  if (flush) {
    gc_report_flush(false, true);
    for (int i = 0; i < 3; i++) gc_stats_record(id, 30, 4096, 100, false);
    if (rank == 1 && die_after_flush) _exit(0);
  }
  gc_report_flush(true, true);
  _exit(0);
}

static void run_job2(bool die, bool flush, const char *path) {
  char key[64];
  snprintf(key, sizeof key, "test-stats-%d-%d-%d", (int)getpid(), die, flush);
  setenv("GCSHIM_REPORT", path, 1);
  pid_t p1 = fork();
  if (p1 == 0) rank_main(key, 1, die, flush);
  int st;
  waitpid(p1, &st, 0); /* rank 1 first: it deposits (or dies) and leaves */
  pid_t p0 = fork();
  if (p0 == 0) rank_main(key, 0, false, flush);
  waitpid(p0, &st, 0);
  ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void run_job(bool die, const char *path) { run_job2(die, false, path); }

START_TEST(job_merged) {
  char path[300];
  snprintf(path, sizeof path, "%s/merged.json", dir);
  run_job(false, path);
  char *j = slurp(path);
  ck_assert_ptr_nonnull(j);
  ck_assert_msg(strstr(j, "\"world_size\": 2") && strstr(j, "\"missing_ranks\": []"), "%s", j);
  ck_assert_msg(strstr(j, "\"calls\": 11, \"captured_calls\": 0, \"bytes\": 45056"), "%s", j);
  ck_assert_msg(strstr(j, "\"sizes\": {\"4096\": 11}"), "%s", j);
}
END_TEST

START_TEST(job_missing_rank) {
  char path[300];
  snprintf(path, sizeof path, "%s/missing.json", dir);
  uint64_t t0 = gc_now_ns();
  run_job(true, path);
  /* valgrind and sanitizer runs stretch the bound by GCSHIM_TEST_TIME_SCALE */
  const char *scale_s = getenv("GCSHIM_TEST_TIME_SCALE");
  double scale = scale_s && atof(scale_s) > 1 ? atof(scale_s) : 1;
  ck_assert_msg((double)(gc_now_ns() - t0) < 5e9 * scale, "rank 0 waited for a dead rank");
  char *j = slurp(path);
  ck_assert_ptr_nonnull(j);
  ck_assert_msg(strstr(j, "\"missing_ranks\": [1]"), "%s", j);
  ck_assert_msg(strstr(j, "\"calls\": 5,"), "%s", j);
}
END_TEST

START_TEST(job_flush) {
  char path[300];
  snprintf(path, sizeof path, "%s/flush.json", dir);
  run_job2(false, true, path);
  char *j = slurp(path);
  ck_assert_ptr_nonnull(j);
  ck_assert_msg(strstr(j, "\"calls\": 17, \"captured_calls\": 0, \"bytes\": 69632"), "%s", j);
  /* Both generations' segments are gone. */
  for (int gen = 0; gen < 3; gen++) {
    char key[64], cmd[200];
    snprintf(key, sizeof key, "test-stats-%d-0-1", (int)getpid());
    uint64_t h = 1469598103934665603ull;
    for (const char *c = key; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    snprintf(cmd, sizeof cmd, "/dev/shm/gcshim-job-%016llx-%u-%d", (unsigned long long)h,
             (unsigned)getuid(), gen);
    ck_assert_msg(access(cmd, F_OK) != 0, "%s left behind", cmd);
  }
}
END_TEST

/* The report of a flush stays when a rank dies before the last one; nobody
 * waits for it, and no segment is left. */
START_TEST(job_flush_then_dead) {
  char path[300];
  snprintf(path, sizeof path, "%s/flushdead.json", dir);
  die_after_flush = true;
  uint64_t t0 = gc_now_ns();
  run_job2(false, true, path);
  die_after_flush = false;
  const char *scale_s = getenv("GCSHIM_TEST_TIME_SCALE");
  double scale = scale_s && atof(scale_s) > 1 ? atof(scale_s) : 1;
  ck_assert_msg((double)(gc_now_ns() - t0) < 3e9 * scale, "rank 0 waited at the last flush");
  char *j = slurp(path);
  ck_assert_ptr_nonnull(j);
  ck_assert_msg(strstr(j, "\"missing_ranks\": []"), "%s", j);
  ck_assert_msg(strstr(j, "\"calls\": 11, \"captured_calls\": 0, \"bytes\": 45056"), "%s", j);
  for (int gen = 0; gen < 3; gen++) {
    char key[64], name[200];
    snprintf(key, sizeof key, "test-stats-%d-0-1", (int)getpid());
    uint64_t h = 1469598103934665603ull;
    for (const char *c = key; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    snprintf(name, sizeof name, "/dev/shm/gcshim-job-%016llx-%u-%d", (unsigned long long)h,
             (unsigned)getuid(), gen);
    ck_assert_msg(access(name, F_OK) != 0, "%s left behind", name);
  }
}
END_TEST

/* A job of thousands of communicators is reported whole (the deposit
 * used to stop at its 256 KiB slot, about 240 groups): 3000 groups on each
 * of two ranks, every one with its calls from both; nothing of the
 * deposits left in /dev/shm. */
#define MANY 3000
static void many_rank(const char *key, int rank) {
  gc_stats_reset();
  for (int g = 0; g < MANY; g++) {
    char name[32];
    snprintf(name, sizeof name, "c%d", g);
    int id = add_group(name, 1000 + (uint64_t)g, 2, rank);
    gc_stats_record(id, 30, 64, 100, false);
  }
  if (gc_report_job_open(key, rank, 2, 22809) != GC_OK) _exit(2);
  gc_report_flush(true, true);
  _exit(0);
}

START_TEST(job_many_groups) {
  char path[300], key[64];
  snprintf(path, sizeof path, "%s/many.json", dir);
  snprintf(key, sizeof key, "test-stats-many-%d", (int)getpid());
  setenv("GCSHIM_REPORT", path, 1);
  pid_t p[2];
  for (int r = 0; r < 2; r++)
    if ((p[r] = fork()) == 0) many_rank(key, r);
  for (int r = 0; r < 2; r++) {
    int st;
    waitpid(p[r], &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  char *j = slurp(path);
  ck_assert_ptr_nonnull(j);
  int n = 0;
  for (const char *c = j; (c = strstr(c, "\"calls\": 2, ")); c++) n++;
  ck_assert_int_eq(n, MANY);
  ck_assert_msg(strstr(j, "\"name\": \"c2999\"") && strstr(j, "\"missing_ranks\": []"), "%.300s",
                j);
  uint64_t h = 1469598103934665603ull;
  for (const char *c = key; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
  for (int r = -1; r < 2; r++) {
    char name[200];
    int k = snprintf(name, sizeof name, "/dev/shm/gcshim-job-%016llx-%u-0", (unsigned long long)h,
                     (unsigned)geteuid());
    if (r >= 0) snprintf(name + k, sizeof name - (size_t)k, "-r%d", r);
    ck_assert_msg(access(name, F_OK) != 0, "%s left behind", name);
  }
}
END_TEST

/* The table's header names NCCL's version in both encodings (2804 was
 * printed 0.28.4). */
START_TEST(table_version) {
  char path[300];
  snprintf(path, sizeof path, "%s/version.txt", dir);
  setenv("GCSHIM_REPORT", path, 1);
  pid_t p = fork();
  if (p == 0) {
    gc_stats_reset();
    gc_stats_record(add_group("v", 9, 1, 0), 30, 8, 100, false);
    if (gc_report_job_open("test-stats-version", 0, 1, 2804) != GC_OK) _exit(2);
    gc_report_flush(true, true);
    _exit(0);
  }
  int st;
  waitpid(p, &st, 0);
  char *t = slurp(path);
  ck_assert_ptr_nonnull(t);
  ck_assert_msg(strstr(t, "NCCL 2.8.4\n"), "%s", t);
}
END_TEST

int main(void) {
  alarm(60);
  snprintf(dir, sizeof dir, "/tmp/gcshim-test-stats-%d", (int)getpid());
  if (mkdir(dir, 0700)) return 1;
  Suite *s = suite_create("stats");
  TCase *tc = tcase_create("stats");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, buckets);
  tcase_add_test(tc, threads_sum);
  tcase_add_test(tc, ticks);
  tcase_add_test(tc, job_merged);
  tcase_add_test(tc, job_missing_rank);
  tcase_add_test(tc, job_flush);
  tcase_add_test(tc, job_flush_then_dead);
  tcase_add_test(tc, job_many_groups);
  tcase_add_test(tc, table_version);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) failed++;
  return failed ? 1 : 0;
}
