/*
 * tuner.c - NCCL tuner plugin (v5 for NCCL 2.28, v4 for 2.27) steered by
 * GCSHIM_TUNER_RULES: one rule per line, first match wins, e.g.
 *   group=tp* op=allreduce bytes=0-64K algo=ring proto=ll channels=4
 * A matching rule zeroes the chosen cost-table entry (unless NCCL marked it
 * unusable) and sets the channel count when asked; no match touches nothing.
 * A file that does not parse is reported with its line number and the
 * plugin runs without rules. init never fails and getCollInfo always answers
 * success: NCCL checks both with NCCLCHECK (src/init.cc, src/enqueue.cc), so
 * a failure fails the communicator's init or the collective, whatever the
 * tuner header says about falling back.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/stats.h"
#include "nccl/gc_nccl.h"
#include "plugin/nccl_plugin.h"
#include "plugin/plugin.h"

#define RULES_MAX 256

typedef struct {
  char group[GC_NAME_MAX]; /* glob; empty: any */
  int op;                  /* ncclFunc_t, -1: any */
  uint64_t lo, hi;         /* bytes, inclusive */
  int algo, proto;         /* -1: not asked */
  int channels;            /* 0: not asked */
} rule_t;

typedef struct {
  uint64_t comm_id;
  bool has_id; /* v5: the commId is known */
  char name[GC_NAME_MAX];
  bool named; /* name resolved to a commName */
  gcnp_logger_t log;
  int n_rules;
  rule_t rules[RULES_MAX];
} tuner_ctx_t;

static const char *const algo_names[GCNP_NUM_ALGOS] = {
    "tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat"};
static const char *const proto_names[GCNP_NUM_PROTOS] = {"ll", "ll128", "simple"};
static const char *const op_names[5] = {"broadcast", "reduce", "allgather", "reducescatter",
                                        "allreduce"};

/* ---- communicator names ------------------------------------------------- */

#define NAMES_MAX 1024
static struct {
  _Atomic uint64_t id;
  char name[GC_NAME_MAX];
} names[NAMES_MAX];
static _Atomic int n_names;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

void gc_plugin_name_set(uint64_t comm_id, const char *name) {
  if (!name || !*name) return;
  pthread_mutex_lock(&names_lock);
  int n = atomic_load(&n_names);
  int i = 0;
  while (i < n && atomic_load(&names[i].id) != comm_id) i++;
  if (i == n && n < NAMES_MAX) {
    snprintf(names[n].name, sizeof names[n].name, "%s", name);
    atomic_store(&names[n].id, comm_id);
    atomic_store(&n_names, n + 1); /* published after the name */
  }
  pthread_mutex_unlock(&names_lock);
}

bool gc_plugin_name_get(uint64_t comm_id, char *buf, size_t len) {
  int n = atomic_load(&n_names);
  for (int i = 0; i < n; i++)
    if (atomic_load(&names[i].id) == comm_id) {
      snprintf(buf, len, "%s", names[i].name);
      return true;
    }
  snprintf(buf, len, "%016llx", (unsigned long long)comm_id);
  return false;
}

/* ---- communicator -> report group --------------------------------------- */

static struct {
  _Atomic uint64_t id;
  _Atomic int group;
} groups[NAMES_MAX];
static _Atomic int n_groups;

void gc_plugin_group_set(uint64_t comm_id, int group) {
  if (group < 0) return;
  int n = atomic_load(&n_groups);
  for (int i = 0; i < n; i++)
    if (atomic_load(&groups[i].id) == comm_id) {
      atomic_store(&groups[i].group, group);
      return;
    }
  pthread_mutex_lock(&names_lock);
  n = atomic_load(&n_groups);
  int i = 0;
  while (i < n && atomic_load(&groups[i].id) != comm_id) i++;
  if (i < NAMES_MAX) {
    atomic_store(&groups[i].group, group);
    atomic_store(&groups[i].id, comm_id);
    if (i == n) atomic_store(&n_groups, n + 1); /* published after the entry */
  }
  pthread_mutex_unlock(&names_lock);
}

int gc_plugin_group_get(uint64_t comm_id) {
  int n = atomic_load(&n_groups);
  for (int i = 0; i < n; i++)
    if (atomic_load(&groups[i].id) == comm_id) return atomic_load(&groups[i].group);
  return -1;
}

static const char *op_name_tab[GC_NCCL_API_COUNT];
static void op_names_once(void) {
  if (strcmp(gc_stats_op_name(GC_NCCL_ID_AllReduce), "?") != 0) return; /* the shim named them */
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) op_name_tab[i] = gc_nccl_api[i].name + 4;
  gc_stats_set_op_names(op_name_tab, GC_NCCL_API_COUNT);
}
static pthread_once_t op_names_ctl = PTHREAD_ONCE_INIT;
void gc_plugin_op_names(void) {
  atomic_store_explicit(&gc_stats_current_wanted, 1, memory_order_relaxed);
  pthread_once(&op_names_ctl, op_names_once);
}

/* ---- decision counters --------------------------------------------------- */

#define DEC_GROUPS 256
static struct {
  char name[GC_NAME_MAX];
  _Atomic uint64_t n[5][GC_STATS_BUCKETS][GC_TUNER_KINDS];
} dec[DEC_GROUPS];
static _Atomic int n_dec;
static pthread_mutex_t dec_lock = PTHREAD_MUTEX_INITIALIZER;

static int dec_find(const char *name, bool add) {
  int n = atomic_load(&n_dec);
  for (int i = 0; i < n; i++)
    if (strcmp(dec[i].name, name) == 0) return i;
  if (!add) return -1;
  pthread_mutex_lock(&dec_lock);
  n = atomic_load(&n_dec);
  int i = 0;
  while (i < n && strcmp(dec[i].name, name) != 0) i++;
  if (i == n) {
    if (n == DEC_GROUPS) {
      i = -1;
    } else {
      snprintf(dec[n].name, sizeof dec[n].name, "%s", name);
      atomic_store(&n_dec, n + 1);
    }
  }
  pthread_mutex_unlock(&dec_lock);
  return i;
}

uint64_t gc_tuner_count(const char *group, int op, int bucket, int kind) {
  int g = dec_find(group, false);
  if (g < 0 || op < 0 || op >= 5 || bucket < 0 || bucket >= GC_STATS_BUCKETS || kind < 0 ||
      kind >= GC_TUNER_KINDS)
    return 0;
  return atomic_load_explicit(&dec[g].n[op][bucket][kind], memory_order_relaxed);
}

int gc_tuner_dump(FILE *f) {
  static const char *const kinds[GC_TUNER_KINDS] = {"applied", "unusable", "no_match"};
  int lines = 0, n = atomic_load(&n_dec);
  for (int g = 0; g < n; g++)
    for (int op = 0; op < 5; op++)
      for (int b = 0; b < GC_STATS_BUCKETS; b++)
        for (int k = 0; k < GC_TUNER_KINDS; k++) {
          uint64_t c = atomic_load_explicit(&dec[g].n[op][b][k], memory_order_relaxed);
          if (!c) continue;
          fprintf(f, "tuner %s %s <=2^%d B %s %llu\n", dec[g].name, op_names[op], b, kinds[k],
                  (unsigned long long)c);
          lines++;
        }
  return lines;
}

void gc_tuner_reset(void) {
  pthread_mutex_lock(&dec_lock);
  memset(dec, 0, sizeof dec);
  atomic_store(&n_dec, 0);
  pthread_mutex_unlock(&dec_lock);
}

/* ---- rules -------------------------------------------------------------- */

static int find_name(const char *const *tab, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (strcasecmp(tab[i], s) == 0) return i;
  return -1;
}

static int parse_op(const char *s) {
  int i = find_name(op_names, 5, s);
  if (i >= 0) return i;
  if (strcasecmp(s, "bcast") == 0) return GCNP_FUNC_BROADCAST;
  return -1;
}

/* "64K", "1M", "0": bytes into *v; false on junk. */
static bool parse_size(const char *s, uint64_t *v) {
  if (!isdigit((unsigned char)*s)) return false;
  errno = 0;
  char *end;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno) return false;
  int shift = 0;
  switch (toupper((unsigned char)*end)) {
    case 'K':
      shift = 10;
      end++;
      break;
    case 'M':
      shift = 20;
      end++;
      break;
    case 'G':
      shift = 30;
      end++;
      break;
    default:
      break;
  }
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return false;
  if (shift && x > (UINT64_MAX >> shift)) return false;
  *v = (uint64_t)x << shift;
  return true;
}

/* "lo-hi", "lo-" (no upper bound) or "n" (exactly n). */
static bool parse_range(char *s, uint64_t *lo, uint64_t *hi) {
  char *dash = strchr(s, '-');
  if (!dash) {
    if (!parse_size(s, lo)) return false;
    *hi = *lo;
    return true;
  }
  *dash = 0;
  if (!parse_size(s, lo)) return false;
  if (!dash[1]) {
    *hi = UINT64_MAX;
    return true;
  }
  return parse_size(dash + 1, hi) && *lo <= *hi;
}

/* One line into *r; NULL when fine, else what is wrong (err holds it). */
static const char *parse_rule(char *line, rule_t *r, char *err, size_t len) {
  memset(r, 0, sizeof *r);
  r->op = r->algo = r->proto = -1;
  r->hi = UINT64_MAX;
  char *save = NULL;
  for (char *tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq || eq == tok || !eq[1]) {
      snprintf(err, len, "'%s' is not key=value", tok);
      return err;
    }
    *eq = 0;
    const char *k = tok;
    char *v = eq + 1;
    if (strcmp(k, "group") == 0) {
      if (strlen(v) >= sizeof r->group) {
        snprintf(err, len, "group pattern longer than %d", GC_NAME_MAX - 1);
        return err;
      }
      snprintf(r->group, sizeof r->group, "%s", v);
    } else if (strcmp(k, "op") == 0) {
      if ((r->op = parse_op(v)) < 0) {
        snprintf(err, len, "unknown op '%s' (broadcast reduce allgather reducescatter allreduce)",
                 v);
        return err;
      }
    } else if (strcmp(k, "bytes") == 0) {
      if (!parse_range(v, &r->lo, &r->hi)) {
        snprintf(err, len, "bad bytes range '%s' (lo-hi, lo-, n; K M G suffixes)", v);
        return err;
      }
    } else if (strcmp(k, "algo") == 0) {
      if ((r->algo = find_name(algo_names, GCNP_NUM_ALGOS, v)) < 0) {
        snprintf(err, len,
                 "unknown algo '%s' (tree ring collnet_direct collnet_chain nvls nvls_tree pat)",
                 v);
        return err;
      }
    } else if (strcmp(k, "proto") == 0) {
      if ((r->proto = find_name(proto_names, GCNP_NUM_PROTOS, v)) < 0) {
        snprintf(err, len, "unknown proto '%s' (ll ll128 simple)", v);
        return err;
      }
    } else if (strcmp(k, "channels") == 0) {
      char *end;
      long c = strtol(v, &end, 10);
      if (*end || c < 1 || c > 64) {
        snprintf(err, len, "bad channels '%s' (1..64)", v);
        return err;
      }
      r->channels = (int)c;
    } else {
      snprintf(err, len, "unknown key '%s' (group op bytes algo proto channels)", k);
      return err;
    }
  }
  return NULL;
}

#define LOG(ctx, level, ...)                                                                 \
  do {                                                                                       \
    if ((ctx)->log)                                                                          \
      (ctx)->log((level), GCNP_LOG_TUNING | GCNP_LOG_INIT, __FILE__, __LINE__, __VA_ARGS__); \
    else if ((level) == GCNP_LOG_WARN)                                                       \
      GC_WARN(__VA_ARGS__);                                                                  \
    else                                                                                     \
      GC_INFO(__VA_ARGS__);                                                                  \
  } while (0)

/* Reads the rules of f (named path in messages) into ctx; on any error, no
 * rules. */
static void read_rules(tuner_ctx_t *ctx, FILE *f, const char *path) {
  char line[1024], err[256];
  int lineno = 0, n = 0;
  bool bad = false;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t l = strlen(line);
    if (l == sizeof line - 1 && line[l - 1] != '\n') {
      LOG(ctx, GCNP_LOG_WARN, "gcshim tuner: %s:%d: line longer than %zu; no rules", path, lineno,
          sizeof line - 2);
      bad = true;
      break;
    }
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) continue;
    if (n == RULES_MAX) {
      LOG(ctx, GCNP_LOG_WARN, "gcshim tuner: %s:%d: more than %d rules; no rules", path, lineno,
          RULES_MAX);
      bad = true;
      break;
    }
    if (parse_rule(p, &ctx->rules[n], err, sizeof err)) {
      LOG(ctx, GCNP_LOG_WARN, "gcshim tuner: %s:%d: %s; no rules", path, lineno, err);
      bad = true;
      break;
    }
    n++;
  }
  ctx->n_rules = bad ? 0 : n;
  if (!bad) LOG(ctx, GCNP_LOG_INFO, "gcshim tuner: %d rules from %s", n, path);
}

/* Reads GCSHIM_TUNER_RULES into ctx; on any error, no rules. */
static void load_rules(tuner_ctx_t *ctx) {
  const char *path = gc_param_GCSHIM_TUNER_RULES();
  if (!path || !*path) return;
  FILE *f = fopen(path, "r");
  if (!f) {
    LOG(ctx, GCNP_LOG_WARN, "gcshim tuner: cannot open GCSHIM_TUNER_RULES=%s: %s; no rules", path,
        strerror(errno));
    return;
  }
  read_rules(ctx, f, path);
  fclose(f);
}

int gc_tuner_rules_parse_string(const char *text, size_t len) {
  if (!text || !len) return 0;
  tuner_ctx_t *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return -1;
  FILE *f = fmemopen((void *)text, len, "r");
  if (!f) {
    free(ctx);
    return -1;
  }
  read_rules(ctx, f, "<string>");
  fclose(f);
  int n = ctx->n_rules;
  for (int i = 0; i < n; i++) { /* what a rule may hold, whatever the text */
    const rule_t *r = &ctx->rules[i];
    if (!memchr(r->group, 0, sizeof r->group) || r->lo > r->hi || r->op >= 5 ||
        r->algo >= GCNP_NUM_ALGOS || r->proto >= GCNP_NUM_PROTOS || r->channels < 0 ||
        r->channels > 64)
      n = -2;
  }
  free(ctx);
  return n;
}

/* ---- the plugin --------------------------------------------------------- */

static tuner_ctx_t *ctx_new(uint64_t comm_id, bool has_id, gcnp_logger_t log) {
  gc_plugin_report_at_exit();
  gc_plugin_op_names();
  tuner_ctx_t *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return NULL;
  ctx->comm_id = comm_id;
  ctx->has_id = has_id;
  ctx->log = log;
  if (has_id)
    ctx->named = gc_plugin_name_get(comm_id, ctx->name, sizeof ctx->name);
  else
    snprintf(ctx->name, sizeof ctx->name, "comm");
  load_rules(ctx);
  return ctx;
}

static gcnp_result_t init_v5(void **ctx, uint64_t comm_id, size_t n_ranks, size_t n_nodes,
                             gcnp_logger_t log, gcnp_nvl_domain_info_v5_t *nvl,
                             gcnp_tuner_constants_v5_t *constants) {
  /* Never fail NCCL's init: a NULL context makes getCollInfo a no-op. */
  if (ctx) *ctx = ctx_new(comm_id, true, log);
  return GCNP_SUCCESS;
}

static gcnp_result_t init_v4(size_t n_ranks, size_t n_nodes, gcnp_logger_t log, void **ctx) {
  if (ctx) *ctx = ctx_new(0, false, log);
  return GCNP_SUCCESS;
}

/* Cheapest usable entry of row a (fixed algo) or column p (fixed proto). */
static void pick(int n_algo, int n_proto, float (*table)[n_proto], int *a, int *p) {
  float best = 0;
  int ba = -1, bp = -1;
  for (int i = 0; i < n_algo; i++) {
    if (*a >= 0 && i != *a) continue;
    for (int j = 0; j < n_proto; j++) {
      if (*p >= 0 && j != *p) continue;
      float c = table[i][j];
      if (c < 0) continue; /* NCCL_ALGO_PROTO_IGNORE */
      if (ba < 0 || c < best) best = c, ba = i, bp = j;
    }
  }
  *a = ba;
  *p = bp;
}

static gcnp_result_t get_coll_info(void *vctx, int coll, size_t bytes, int n_pipe,
                                   float **cost_table, int n_algo, int n_proto, int reg_buff,
                                   int *n_channels) {
  tuner_ctx_t *ctx = vctx;
  /* NCCL's getAlgoInfo passes its local float[n_algo][n_proto], one block,
   * cast to float **: there are no row pointers to follow. */
  float(*table)[n_proto > 0 ? n_proto : 1] = (void *)cost_table;
  if (!ctx || coll < 0 || coll >= 5) return GCNP_SUCCESS;
  if (ctx->has_id && !ctx->named)
    ctx->named = gc_plugin_name_get(ctx->comm_id, ctx->name, sizeof ctx->name);
  int kind = GC_TUNER_NO_MATCH;
  int chose_algo = -1, chose_proto = -1, chose_channels = 0;
  for (int i = 0; i < ctx->n_rules; i++) {
    const rule_t *r = &ctx->rules[i];
    if (r->op >= 0 && r->op != coll) continue;
    if (bytes < r->lo || bytes > r->hi) continue;
    if (r->group[0] && fnmatch(r->group, ctx->name, 0) != 0) continue;
    kind = GC_TUNER_APPLIED;
    if (r->algo >= 0 || r->proto >= 0) {
      int a = r->algo, p = r->proto;
      chose_algo = r->algo; /* as asked, when unusable */
      chose_proto = r->proto;
      if (!cost_table || n_proto <= 0 || a >= n_algo || p >= n_proto) {
        kind = GC_TUNER_UNUSABLE;
      } else {
        pick(n_algo, n_proto, table, &a, &p);
        if (a < 0) {
          kind = GC_TUNER_UNUSABLE;
        } else {
          table[a][p] = 0.0f;
          chose_algo = a;
          chose_proto = p;
        }
      }
    }
    if (r->channels > 0 && n_channels && kind == GC_TUNER_APPLIED) {
      *n_channels = r->channels;
      chose_channels = r->channels;
    }
    break;
  }
  /* Into the report: the group of the shim's call this runs inside, else
   * the one known for this commId (profiler, earlier calls). */
  int group = gc_stats_current;
  if (group >= 0 && ctx->has_id)
    gc_plugin_group_set(ctx->comm_id, group);
  else if (group < 0 && ctx->has_id)
    group = gc_plugin_group_get(ctx->comm_id);
  if (group >= 0) {
    static const int ids[5] = {GC_NCCL_ID_Broadcast, GC_NCCL_ID_Reduce, GC_NCCL_ID_AllGather,
                               GC_NCCL_ID_ReduceScatter, GC_NCCL_ID_AllReduce};
    gc_stats_decision_t d = {ids[coll],   gc_stats_bucket(bytes), kind, chose_algo,
                             chose_proto, chose_channels};
    gc_stats_record_decision(group, &d);
  }
  int g = dec_find(ctx->name, true);
  if (g >= 0)
    atomic_fetch_add_explicit(&dec[g].n[coll][gc_stats_bucket(bytes)][kind], 1,
                              memory_order_relaxed);
  return GCNP_SUCCESS;
}

static gcnp_result_t finalize(void *ctx) {
  free(ctx);
  return GCNP_SUCCESS;
}

__attribute__((visibility("default")))
const gcnp_tuner_v5_t ncclTunerPlugin_v5 = {"gcshim", init_v5, get_coll_info, finalize};
__attribute__((visibility("default")))
const gcnp_tuner_v4_t ncclTunerPlugin_v4 = {"gcshim", init_v4, get_coll_info, finalize};
