/* The tuner plugin called as NCCL 2.28 calls it (src/init.cc,
 * src/enqueue.cc): init once per communicator, after the profiler's, with
 * the logger, the NVLink domain information and the tuner constants; then
 * getCollInfo with the cost table getAlgoInfo builds (a contiguous
 * float[7][3] cast to float **, not an array of rows) and nMaxChannels at
 * 0; finalize when the communicator is destroyed. v4 as NCCL 2.27 calls it.
 * Any status but success fails NCCL's init or the collective. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/params.h"
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
  gc_params_reset(); /* settings are read once */
  logged[0] = 0;
  n_logged = 0;
  gc_tuner_reset();
}

/* initCollCostTable: every entry NCCL_ALGO_PROTO_IGNORE. */
static void cost_table_init(float table[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS]) {
  for (int a = 0; a < GCNP_NUM_ALGOS; a++)
    for (int p = 0; p < GCNP_NUM_PROTOS; p++) table[a][p] = GCNP_ALGO_PROTO_IGNORE;
}

/* updateCollCostTable: one rank, only [RING][SIMPLE], at 0.0; more, a time
 * for each algorithm the box has (here tree, ring and pat: collnet and nvls
 * stay ignored) and protocol (tree/ll128 ignored too). */
static void cost_table_update(float table[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS], size_t n_ranks) {
  if (n_ranks == 1) {
    table[1][2] = 0.0f;
    return;
  }
  static const int algos[3] = {0, 1, 6};
  for (int i = 0; i < 3; i++)
    for (int p = 0; p < GCNP_NUM_PROTOS; p++) table[algos[i]][p] = 10.0f + algos[i] * 3 + p;
  table[0][1] = GCNP_ALGO_PROTO_IGNORE;
}

/* The one entry the plugin changed, and changed to 0.0, as a * 3 + p; -1
 * when the table is NCCL's as built; -2 for any other change. */
static int zero_at(float table[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS], size_t n_ranks) {
  float built[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  cost_table_init(built);
  cost_table_update(built, n_ranks);
  int at = -1;
  for (int a = 0; a < GCNP_NUM_ALGOS; a++)
    for (int p = 0; p < GCNP_NUM_PROTOS; p++) {
      if (table[a][p] == built[a][p]) continue;
      at = at == -1 && table[a][p] == 0.0f ? a * 3 + p : -2;
    }
  return at;
}

/* Tuner init as initTransportsRank makes it: the constants
 * ncclTopoInitTunerConstants filled (NCCL tunes its model with them after
 * init), which the plugin leaves as they are. */
static void *init5_ranks(uint64_t id, size_t n_ranks, size_t n_nodes) {
  void *ctx = NULL;
  gcnp_tuner_constants_v5_t consts, before;
  double *d = (double *)&consts;
  for (size_t i = 0; i < sizeof consts / sizeof *d; i++) d[i] = 1.0 + (double)i / 8;
  before = consts;
  gcnp_nvl_domain_info_v5_t nvl = {1, (int)n_ranks, (int)n_ranks};
  ck_assert_int_eq(ncclTunerPlugin_v5.init(&ctx, id, n_ranks, n_nodes, logger, &nvl, &consts),
                   GCNP_SUCCESS);
  ck_assert(memcmp(&consts, &before, sizeof consts) == 0);
  return ctx;
}
static void *init5(uint64_t id) { return init5_ranks(id, 8, 1); }

/* getAlgoInfo's call: the table a local float[7][3] built for n_ranks,
 * passed as (float **), numPipeOps 1, regBuff 0, nMaxChannels from 0. */
static int call_ranks(void *ctx, int op, size_t bytes, size_t n_ranks,
                      float table[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS], int *nch) {
  cost_table_init(table);
  cost_table_update(table, n_ranks);
  *nch = 0;
  ck_assert_int_eq(ncclTunerPlugin_v5.getCollInfo(ctx, op, bytes, 1, (float **)table,
                                                  GCNP_NUM_ALGOS, GCNP_NUM_PROTOS, 0, nch),
                   GCNP_SUCCESS);
  return zero_at(table, n_ranks);
}
static int call(void *ctx, int op, size_t bytes, float table[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS],
                int *nch) {
  return call_ranks(ctx, op, bytes, 8, table, nch);
}

START_TEST(test_names) {
  ck_assert_str_eq(ncclTunerPlugin_v5.name, "gcshim");
  ck_assert_str_eq(ncclTunerPlugin_v4.name, "gcshim");
}
END_TEST

/* A communicator's life as NCCL 2.28 drives the tuner: init in
 * initTransportsRank (after the profiler's init, so the name is known),
 * getCollInfo for each aggregated collective at ncclGroupEnd, finalize in
 * commCleanup. The first rule zeroes [RING][LL] of the contiguous table and
 * nothing else, and sets nMaxChannels. */
START_TEST(test_nccl_lifecycle) {
  write_rules("op=allreduce bytes=0-64K algo=ring proto=ll channels=4\n");
  void *pctx = NULL;
  int mask = 0;
  ck_assert_int_eq(ncclProfiler_v5.init(&pctx, 0x2801, &mask, "life", 1, 8, 0, logger),
                   GCNP_SUCCESS);
  void *ctx = init5(0x2801);
  ck_assert_ptr_nonnull(ctx);
  float tb[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  int nch;
  ck_assert_int_eq(call(ctx, GCNP_FUNC_ALLREDUCE, 4096, tb, &nch), 1 * 3 + 0);
  ck_assert_float_eq(tb[1][0], 0.0f);
  ck_assert_int_eq(nch, 4);
  /* outside the rule: the table as NCCL built it, nMaxChannels still 0 */
  ck_assert_int_eq(call(ctx, GCNP_FUNC_ALLREDUCE, 65537, tb, &nch), -1);
  ck_assert_int_eq(nch, 0);
  ck_assert_int_eq(call(ctx, GCNP_FUNC_ALLGATHER, 4096, tb, &nch), -1);
  ck_assert_int_eq(nch, 0);
  ck_assert_uint_eq(gc_tuner_count("life", GCNP_FUNC_ALLREDUCE, 12, GC_TUNER_APPLIED), 1);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(ctx), GCNP_SUCCESS);
  ck_assert_int_eq(ncclProfiler_v5.finalize(pctx), GCNP_SUCCESS);
  /* commCleanup finalizes whatever init left in tunerContext, NULL too */
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(NULL), GCNP_SUCCESS);
  unlink(rules_path);
}
END_TEST

/* One rank: updateCollCostTable leaves every entry ignored but
 * [RING][SIMPLE] = 0.0. (getAlgoInfo is not reached for one rank in 2.28,
 * taskAppend copies locally; the table's shape is what counts.) */
START_TEST(test_one_rank_table) {
  write_rules(
      "op=allreduce algo=ring proto=ll channels=2\n"
      "op=allgather proto=simple channels=2\n"
      "op=broadcast algo=tree\n");
  void *ctx = init5_ranks(0x2802, 1, 1);
  float tb[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  int nch;
  /* ring/ll ignored: nothing touched, not the channels either */
  ck_assert_int_eq(call_ranks(ctx, GCNP_FUNC_ALLREDUCE, 8, 1, tb, &nch), -1);
  ck_assert_int_eq(nch, 0);
  ck_assert_float_eq(tb[1][0], GCNP_ALGO_PROTO_IGNORE);
  ck_assert_float_eq(tb[1][2], 0.0f);
  /* simple's only usable entry is ring/simple, already 0.0 */
  ck_assert_int_eq(call_ranks(ctx, GCNP_FUNC_ALLGATHER, 8, 1, tb, &nch), -1);
  ck_assert_float_eq(tb[1][2], 0.0f);
  ck_assert_int_eq(nch, 2);
  ck_assert_int_eq(call_ranks(ctx, GCNP_FUNC_BROADCAST, 8, 1, tb, &nch), -1);
  ck_assert_uint_eq(gc_tuner_count("0000000000002802", GCNP_FUNC_ALLREDUCE, 3, GC_TUNER_UNUSABLE),
                    1);
  ck_assert_uint_eq(gc_tuner_count("0000000000002802", GCNP_FUNC_ALLGATHER, 3, GC_TUNER_APPLIED),
                    1);
  ck_assert_uint_eq(gc_tuner_count("0000000000002802", GCNP_FUNC_BROADCAST, 3, GC_TUNER_UNUSABLE),
                    1);
  ck_assert_int_eq(ncclTunerPlugin_v5.finalize(ctx), GCNP_SUCCESS);
  unlink(rules_path);
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
  float tb[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  int nch;
  /* first rule, boundaries inclusive */
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLREDUCE, 0, tb, &nch), 1 * 3 + 0);
  ck_assert_int_eq(nch, 4);
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLREDUCE, 65536, tb, &nch), 1 * 3 + 0);
  /* 64K matches the first rule first; 64K+1 the second (any group) */
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLREDUCE, 65537, tb, &nch), 0 * 3 + 2);
  ck_assert_int_eq(nch, 0);
  ck_assert_int_eq(call(anon, GCNP_FUNC_ALLREDUCE, 1000, tb, &nch), -1); /* group mismatch */
  ck_assert_int_eq(call(anon, GCNP_FUNC_ALLREDUCE, 1 << 20, tb, &nch), 0 * 3 + 2);
  ck_assert_int_eq(call(anon, GCNP_FUNC_ALLREDUCE, (1 << 20) + 1, tb, &nch), -1);
  /* algo only: its cheapest usable proto (pat: ll at 28) */
  ck_assert_int_eq(call(tp, GCNP_FUNC_ALLGATHER, 123, tb, &nch), 6 * 3 + 0);
  /* proto only: its cheapest usable algo (tree/ll128 ignored -> ring/ll128) */
  ck_assert_int_eq(call(dp, GCNP_FUNC_REDUCE, 5, tb, &nch), 1 * 3 + 1);
  /* dp's rule comes before the reducescatter rule: first match wins */
  ck_assert_int_eq(call(dp, GCNP_FUNC_REDUCESCATTER, 5, tb, &nch), 1 * 3 + 1);
  /* an unusable entry stays untouched (-1), nothing zeroed */
  ck_assert_int_eq(call(anon, GCNP_FUNC_REDUCESCATTER, 5, tb, &nch), -1);
  ck_assert_float_eq(tb[4][2], GCNP_ALGO_PROTO_IGNORE);
  /* channels only, open range */
  ck_assert_int_eq(call(anon, GCNP_FUNC_BROADCAST, (size_t)1 << 30, tb, &nch), -1);
  ck_assert_int_eq(nch, 2);
  ck_assert_int_eq(call(anon, GCNP_FUNC_BROADCAST, ((size_t)1 << 30) - 1, tb, &nch), -1);
  ck_assert_int_eq(nch, 0);
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
  cost_table_init(tb);
  cost_table_update(tb, 8);
  nch = 0;
  ck_assert_int_eq(ncclTunerPlugin_v5.getCollInfo(tp, GCNP_FUNC_SEND, 5, 1, (float **)tb,
                                                  GCNP_NUM_ALGOS, GCNP_NUM_PROTOS, 0, &nch),
                   GCNP_SUCCESS);
  ck_assert_int_eq(zero_at(tb, 8), -1);
  ck_assert_int_eq(nch, 0);
  ck_assert_int_eq(call(NULL, GCNP_FUNC_ALLREDUCE, 5, tb, &nch), -1);
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
  float tb[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  cost_table_init(tb);
  cost_table_update(tb, 2);
  int nch = 0;
  ck_assert_int_eq(
      ncclTunerPlugin_v4.getCollInfo(ctx, GCNP_FUNC_ALLREDUCE, 1 << 20, 1, (float **)tb,
                                     GCNP_NUM_ALGOS, GCNP_NUM_PROTOS, 0, &nch),
      GCNP_SUCCESS);
  ck_assert_int_eq(zero_at(tb, 2), 1 * 3 + 2);
  ck_assert_int_eq(nch, 0);
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
  float tb[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  int nch;
  ck_assert_int_eq(call(ctx, GCNP_FUNC_ALLREDUCE, 100, tb, &nch), -1); /* no rules */
  ck_assert_int_eq(nch, 0);
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
  gc_params_reset(); /* settings are read once */
  logged[0] = 0;
  void *ctx = init5(1);
  ck_assert_ptr_nonnull(strstr(logged, "/nonexistent/gcshim.rules"));
  ncclTunerPlugin_v5.finalize(ctx);
  unsetenv("GCSHIM_TUNER_RULES");
  gc_params_reset(); /* settings are read once */
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
      float t[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS]; /* every pair usable */
      for (int i = 0; i < GCNP_NUM_ALGOS; i++)
        for (int j = 0; j < GCNP_NUM_PROTOS; j++) t[i][j] = 1.0f;
      int nch = 0;
      ck_assert_int_eq(ncclTunerPlugin_v5.getCollInfo(ctx, GCNP_FUNC_ALLREDUCE, 8, 1, (float **)t,
                                                      GCNP_NUM_ALGOS, GCNP_NUM_PROTOS, 0, &nch),
                       GCNP_SUCCESS);
      for (int i = 0; i < GCNP_NUM_ALGOS; i++)
        for (int j = 0; j < GCNP_NUM_PROTOS; j++)
          ck_assert_float_eq(t[i][j], i == a && j == p ? 0.0f : 1.0f);
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
  float tb[GCNP_NUM_ALGOS][GCNP_NUM_PROTOS];
  int nch;
  for (int i = 0; i < 3; i++) ck_assert_int_eq(call(t, GCNP_FUNC_ALLREDUCE, 1000, tb, &nch), 3);
  for (int i = 0; i < 2; i++) ck_assert_int_eq(call(t, GCNP_FUNC_ALLREDUCE, 1 << 20, tb, &nch), -1);
  ck_assert_int_eq(call(t, GCNP_FUNC_ALLGATHER, 100, tb, &nch), -1); /* nvls unusable */
  ck_assert_int_eq(call(t, GCNP_FUNC_REDUCE, 2, tb, &nch), 2);       /* tree/simple */
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
  ck_assert_int_eq(call(u, GCNP_FUNC_ALLREDUCE, 4096, tb, &nch), -1);
  gc_stats_current = -1;
  ck_assert_int_eq(call(u, GCNP_FUNC_ALLREDUCE, 4096, tb, &nch), -1); /* at a group's end */
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

/* The rules from a string read as from the file (tests/fuzz's entry). */
START_TEST(test_rules_string) {
  const char *ok =
      "group=tp* op=allreduce bytes=0-64K algo=ring proto=ll channels=4\n"
      "  # a comment\n\nop=bcast bytes=1M- # trailing\nproto=simple";
  ck_assert_int_eq(gc_tuner_rules_parse_string(ok, strlen(ok)), 3);
  ck_assert_int_eq(gc_tuner_rules_parse_string("op=allreduce\nop=scan\n", 23), 0);
  ck_assert_int_eq(gc_tuner_rules_parse_string("bytes=2K-1K", 11), 0);
  ck_assert_int_eq(gc_tuner_rules_parse_string("", 0), 0);
  ck_assert_int_eq(gc_tuner_rules_parse_string("op=reduce\0junk", 15), 1);
  char *longl = malloc(1100);
  memset(longl, ' ', 1100);
  memcpy(longl, "op=reduce", 9);
  ck_assert_int_eq(gc_tuner_rules_parse_string(longl, 1100), 0); /* line longer than 1022 */
  free(longl);
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
  tcase_add_test(tc, test_nccl_lifecycle);
  tcase_add_test(tc, test_one_rank_table);
  tcase_add_test(tc, test_rules_match);
  tcase_add_test(tc, test_v4);
  tcase_add_test(tc, test_malformed);
  tcase_add_test(tc, test_rules_string);
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
