/* The tuner plugin called as NCCL 2.28 calls it: init (v5 and v4),
 * getCollInfo with 7x3 cost tables passed as float**, finalize. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/report.h"
#include "core/stats.h"
#include "plugin/nccl_plugin.h"
#include "plugin/plugin.h"
#include "report_test.h"

extern const gcnp_tuner_v5_t ncclTunerPlugin_v5;
extern const gcnp_tuner_v4_t ncclTunerPlugin_v4;
extern const gcnp_profiler_v5_t ncclProfiler_v5;

static char logged[4096];
static int n_logged;
static void logger(int level, unsigned long flags, const char *file, int line, const char *fmt,
                   ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t l = strlen(logged);
  vsnprintf(logged + l, sizeof logged - l, fmt, ap);
  va_end(ap);
  n_logged++;
}

static char rules_path[256];
static void write_rules(const char *text) {
  snprintf(rules_path, sizeof rules_path, "/tmp/gcshim-tuner-%d.rules", (int)getpid());
  FILE *f = fopen(rules_path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
  setenv("GCSHIM_TUNER_RULES", rules_path, 1);
  logged[0] = 0;
  n_logged = 0;
  gc_tuner_reset();
}

/* NCCL's shape: float table[7][3], rows passed as float*[7]. Some ignored. */
typedef struct {
  float t[7][3];
  float *rows[7];
} table_t;
static void table_init(table_t *tb) {
  for (int a = 0; a < 7; a++) {
    for (int p = 0; p < 3; p++) tb->t[a][p] = 10.0f + a * 3 + p;
    tb->rows[a] = tb->t[a];
  }
  /* collnet and nvls unusable, as on a box without them; tree/ll128 too */
  for (int a = 2; a <= 5; a++)
    for (int p = 0; p < 3; p++) tb->t[a][p] = GCNP_ALGO_PROTO_IGNORE;
  tb->t[0][1] = GCNP_ALGO_PROTO_IGNORE;
}
/* Index of the single zero entry, -1 if none, -2 if several. */
static int zero_at(const table_t *tb) {
  int at = -1;
  for (int a = 0; a < 7; a++)
    for (int p = 0; p < 3; p++)
      if (tb->t[a][p] == 0.0f) at = at == -1 ? a * 3 + p : -2;
  return at;
}

static void *init5(uint64_t id) {
  void *ctx = (void *)1;
  gcnp_tuner_constants_v5_t consts;
  gcnp_nvl_domain_info_v5_t nvl = {1, 8, 8};
  memset(&consts, 0, sizeof consts);
  ck_assert_int_eq(ncclTunerPlugin_v5.init(&ctx, id, 8, 1, logger, &nvl, &consts), 0);
  return ctx;
}

static int call(void *ctx, int op, size_t bytes, table_t *tb, int *nch) {
  table_init(tb);
  *nch = -7;
  ck_assert_int_eq(ncclTunerPlugin_v5.getCollInfo(ctx, op, bytes, 1, tb->rows, 7, 3, 0, nch), 0);
  return zero_at(tb);
}

START_TEST(test_names) {
  ck_assert_str_eq(ncclTunerPlugin_v5.name, "gcshim");
  ck_assert_str_eq(ncclTunerPlugin_v4.name, "gcshim");
}
END_TEST

START_TEST(test_rules_match) {
  write_rules(
      "# comment\n"
      "group=tp* op=allreduce bytes=0-64K algo=ring proto=ll channels=4\n"
      "\n"
      "op=AllReduce bytes=64K-1M algo=tree proto=simple  # trailing comment\n"
      "group=tp* op=allgather algo=pat\n"
      "group=dp proto=ll128\n"
      "op=reducescatter algo=nvls proto=simple\n"
      "op=broadcast bytes=1G- channels=2\n");
  gc_plugin_name_set(0x1234, "tp:0");
  gc_plugin_name_set(0x5678, "dp");
  void *tp = init5(0x1234), *dp = init5(0x5678), *anon = init5(0x9abc);
  ck_assert_ptr_nonnull(tp);
  ck_assert_msg(strstr(logged, "6 rules") != NULL, "%s", logged);
  table_t tb;
  int nch;
  /* first rule, boundaries inclusive */
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLREDUCE, 0, &tb, &nch), 1 * 3 + 0);
  ck_assert_int_eq(nch, 4);
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLREDUCE, 65536, &tb, &nch), 1 * 3 + 0);
  /* 64K matches the first rule first; 64K+1 the second (any group) */
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLREDUCE, 65537, &tb, &nch), 0 * 3 + 2);
  ck_assert_int_eq(nch, -7);
  ck_assert_int_eq(call(anon, GCNP_FUNC_ALLREDUCE, 1000, &tb, &nch), -1); /* group mismatch */
  ck_assert_int_eq(call(anon, GCNP_FUNC_ALLREDUCE, 1 << 20, &tb, &nch), 0 * 3 + 2);
  ck_assert_int_eq(call(anon, GCNP_FUNC_ALLREDUCE, (1 << 20) + 1, &tb, &nch), -1);
  /* algo only: its cheapest usable proto (pat: ll at 28) */
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLGATHER, 123, &tb, &nch), 6 * 3 + 0);
  /* proto only: its cheapest usable algo (tree/ll128 ignored -> ring/ll128) */
  ck_assert_int_eq(call(dp, GCNP_FUNC_REDUCE, 5, &tb, &nch), 1 * 3 + 1);
  /* dp's rule comes before the reducescatter rule: first match wins */
  ck_assert_int_eq(call(dp, GCNP_FUNC_REDUCESCATTER, 5, &tb, &nch), 1 * 3 + 1);
  /* an unusable entry stays untouched (-1), nothing zeroed */
  ck_assert_int_eq(call(anon, GCNP_FUNC_REDUCESCATTER, 5, &tb, &nch), -1);
  ck_assert_float_eq(tb.t[4][2], -1.0f);
  /* channels only, open range */
  ck_assert_int_eq(call(anon, GCNP_FUNC_BROADCAST, (size_t)1 << 30, &tb, &nch), -1);
  ck_assert_int_eq(nch, 2);
  ck_assert_int_eq(call(anon, GCNP_FUNC_BROADCAST, ((size_t)1 << 30) - 1, &tb, &nch), -1);
  ck_assert_int_eq(nch, -7);
  /* decisions counted per group, op, bucket */
  ck_assert_uint_eq(gc_tuner_count("tp:0", GCNP_FUNC_ALLREDUCE, 0, GC_TUNER_APPLIED), 1);
  ck_assert_uint_eq(gc_tuner_count("tp:0", GCNP_FUNC_ALLREDUCE, 16, GC_TUNER_APPLIED), 1);
  ck_assert_uint_eq(gc_tuner_count("tp:0", GCNP_FUNC_ALLREDUCE, 17, GC_TUNER_APPLIED), 1);
  ck_assert_uint_eq(gc_tuner_count("0000000000009abc", GCNP_FUNC_ALLREDUCE, 10, GC_TUNER_NO_MATCH),
                    1);
  ck_assert_uint_eq(
      gc_tuner_count("0000000000009abc", GCNP_FUNC_REDUCESCATTER, 3, GC_TUNER_UNUSABLE), 1);
  ck_assert_uint_eq(gc_tuner_count("dp", GCNP_FUNC_REDUCESCATTER, 3, GC_TUNER_UNUSABLE), 0);
  ck_assert_uint_eq(gc_tuner_count("dp", GCNP_FUNC_REDUCESCATTER, 3, GC_TUNER_APPLIED), 1);
  FILE *f = tmpfile();
  ck_assert_int_gt(gc_tuner_dump(f), 5);
  fclose(f);
  /* calls NCCL never makes with the tuner, and a NULL context: no effect */
  nch = -7;
  ck_assert_int_eq(ncclTunerPlugin_v5.getCollInfo(tp, GCNP_FUNC_SEND, 5, 1, tb.rows, 7, 3, 0, &nch),
                   0);
  ck_assert_int_eq(call(NULL, GCNP_FUNC_ALLREDUCE, 5, &tb, &nch), -1);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(tp), 0);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(dp), 0);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(anon), 0);
  unlink(rules_path);
}
END_TEST

START_TEST(test_v4) {
  write_rules("op=allreduce algo=ring proto=simple\ngroup=tp* channels=3\n");
  void *ctx = NULL;
  ck_assert_int_eq(ncclTunerPlugin_v4.init(2, 1, logger, &ctx), 0);
  ck_assert_ptr_nonnull(ctx);
  table_t tb;
  table_init(&tb);
  int nch = -7;
  ck_assert_int_eq(
      ncclTunerPlugin_v4.getCollInfo(ctx, GCNP_FUNC_ALLREDUCE, 1 << 20, 1, tb.rows, 7, 3, 0, &nch),
      0);
  ck_assert_int_eq(zero_at(&tb), 1 * 3 + 2);
  ck_assert_int_eq(nch, -7);
  ck_assert_int_eq(ncclTunerPlugin_v4.destroy(ctx), 0);
  unlink(rules_path);
}
END_TEST

static void bad_file(const char *text, const char *line_tag, const char *what) {
  write_rules(text);
  void *ctx = init5(0x1234);
  ck_assert_ptr_nonnull(ctx); /* init never fails */
  ck_assert_msg(strstr(logged, line_tag) && strstr(logged, what), "'%s' lacks %s / %s", logged,
                line_tag, what);
  table_t tb;
  int nch;
  ck_assert_int_eq(call(ctx, GCNP_FUNC_ALLREDUCE, 100, &tb, &nch), -1); /* no rules */
  ck_assert_int_eq(nch, -7);
  ncclTunerPlugin_v5.finalize(ctx);
  unlink(rules_path);
}

START_TEST(test_malformed) {
  bad_file("op=allreduce algo=ring\nop=allreduce algo=rign\n", ":2:", "rign");
  bad_file("\n\nop=allreduce bytes=64K-1Q\n", ":3:", "bytes");
  bad_file("op=allreduce bytes=2M-1M\n", ":1:", "bytes");
  bad_file("op=alltoall\n", ":1:", "alltoall");
  bad_file("algo=ring proto=ll256\n", ":1:", "ll256");
  bad_file("colour=red\n", ":1:", "colour");
  bad_file("op allreduce\n", ":1:", "key=value");
  bad_file("channels=0\n", ":1:", "channels");
  /* a missing file is reported too */
  setenv("GCSHIM_TUNER_RULES", "/nonexistent/gcshim.rules", 1);
  logged[0] = 0;
  void *ctx = init5(1);
  ck_assert_ptr_nonnull(strstr(logged, "/nonexistent/gcshim.rules"));
  ncclTunerPlugin_v5.finalize(ctx);
  unsetenv("GCSHIM_TUNER_RULES");
}
END_TEST

START_TEST(test_every_algo_proto) {
  static const char *const an[7] = {"tree",      "ring", "collnet_direct", "collnet_chain", "nvls",
                                    "nvls_tree", "pat"};
  static const char *const pn[3] = {"LL", "LL128", "Simple"};
  for (int a = 0; a < 7; a++)
    for (int p = 0; p < 3; p++) {
      char text[128];
      snprintf(text, sizeof text, "algo=%s proto=%s\n", an[a], pn[p]);
      write_rules(text);
      void *ctx = init5(42);
      float t[7][3], *rows[7];
      for (int i = 0; i < 7; i++) {
        rows[i] = t[i];
        for (int j = 0; j < 3; j++) t[i][j] = 1.0f;
      }
      int nch = -7;
      ncclTunerPlugin_v5.getCollInfo(ctx, GCNP_FUNC_ALLREDUCE, 8, 1, rows, 7, 3, 0, &nch);
      ck_assert_float_eq(t[a][p], 0.0f);
      ncclTunerPlugin_v5.finalize(ctx);
      unlink(rules_path);
    }
}
END_TEST


/* Decisions in the JSON report, per group, op, size bucket and choice,
 * exactly: with the profiler of the same commId (its group, as NCCL loads
 * both), and inside a call of the shim (its group, gc_stats_current). */
START_TEST(test_report) {
  write_rules(
      "group=rep op=allreduce bytes=0-4K algo=ring proto=ll channels=4\n"
      "op=allgather algo=nvls\n"
      "op=reduce proto=simple\n");
  void *pctx = NULL;
  int mask = 0;
  ck_assert_int_eq(ncclProfiler_v5.init(&pctx, 0xabc, &mask, "rep", 1, 1, 0, logger), 0);
  void *t = init5(0xabc);
  table_t tb;
  int nch;
  for (int i = 0; i < 3; i++) ck_assert_int_eq(call(t, GCNP_FUNC_ALLREDUCE, 1000, &tb, &nch), 3);
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(call(t, GCNP_FUNC_ALLREDUCE, 1 << 20, &tb, &nch), -1);
  ck_assert_int_eq(call(t, GCNP_FUNC_ALLGATHER, 100, &tb, &nch), -1); /* nvls unusable */
  ck_assert_int_eq(call(t, GCNP_FUNC_REDUCE, 2, &tb, &nch), 2);       /* tree/simple */
  const char *g = report_group("rep");
  ck_assert_msg(g != NULL, "%s", report_buf);
  const char *want =
      "\"tuner\": ["
      "\n    {\"op\": \"AllGather\", \"size\": 128, \"decision\": \"unusable\", \"algo\": "
      "\"NVLS\", "
      "\"proto\": null, \"channels\": null, \"count\": 1},"
      "\n    {\"op\": \"AllReduce\", \"size\": 1024, \"decision\": \"applied\", \"algo\": "
      "\"RING\", "
      "\"proto\": \"LL\", \"channels\": 4, \"count\": 3},"
      "\n    {\"op\": \"AllReduce\", \"size\": 1048576, \"decision\": \"no_match\", \"algo\": "
      "null, "
      "\"proto\": null, \"channels\": null, \"count\": 2},"
      "\n    {\"op\": \"Reduce\", \"size\": 2, \"decision\": \"applied\", \"algo\": \"TREE\", "
      "\"proto\": \"SIMPLE\", \"channels\": null, \"count\": 1}]}";
  ck_assert_msg(strstr(g, want) != NULL, "%s", g);
  /* Inside a call of the shim on its group "shim:0": decisions go there,
   * and that group is then this commId's. */
  gc_stats_group_info_t info;
  memset(&info, 0, sizeof info);
  info.key = 0xdef;
  snprintf(info.name, sizeof info.name, "shim:0");
  info.size = 1;
  int sid = -1;
  ck_assert_int_eq(gc_stats_group_add(&info, &sid), GC_OK);
  void *u = init5(0xdef);
  gc_stats_current = sid;
  ck_assert_int_eq(call(u, GCNP_FUNC_ALLREDUCE, 4096, &tb, &nch), -1);
  gc_stats_current = -1;
  ck_assert_int_eq(call(u, GCNP_FUNC_ALLREDUCE, 4096, &tb, &nch), -1); /* at a group's end */
  ck_assert_int_eq(gc_plugin_group_get(0xdef), sid);
  g = report_group("shim:0");
  ck_assert_msg(g != NULL, "%s", report_buf);
  ck_assert_msg(strstr(g,
                       "\"ops\": [], \"tuner\": [\n    {\"op\": \"AllReduce\", \"size\": 4096, "
                       "\"decision\": \"no_match\", \"algo\": null, \"proto\": null, "
                       "\"channels\": null, \"count\": 2}]}") != NULL,
                "%s", g);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(t), 0);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(u), 0);
  ck_assert_int_eq(ncclProfiler_v5.finalize(pctx), 0);
  unlink(rules_path);
}
END_TEST

int main(void) {
  alarm(60);
  snprintf(report_dir, sizeof report_dir, "/tmp/gcshim-tuner-rep-%d", (int)getpid());
  if (mkdir(report_dir, 0700)) return 1;
  char path[256];
  snprintf(path, sizeof path, "%s/r%%r.json", report_dir);
  setenv("GCSHIM_REPORT", path, 1);
  Suite *s = suite_create("plugin_tuner");
  TCase *tc = tcase_create("tuner");
  tcase_add_test(tc, test_names);
  tcase_add_test(tc, test_rules_match);
  tcase_add_test(tc, test_v4);
  tcase_add_test(tc, test_malformed);
  tcase_add_test(tc, test_every_algo_proto);
  tcase_add_test(tc, test_report);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  snprintf(path, sizeof path, "%s/r0.json", report_dir);
  unlink(path);
  rmdir(report_dir);
  return failed ? 1 : 0;
}
