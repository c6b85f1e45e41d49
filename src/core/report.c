/* report.c - deposit, merge and write the job's statistics (see report.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/group.h"
#include "core/outfile.h"
#include "core/params.h"
#include "core/report.h"
#include "core/seg.h"
#include "core/stats.h"

#define JOB_MAGIC 0x31626f6a6d696873ull /* "shimjob1" */
#define SLOT_BYTES (256u * 1024u)
#define MAX_JOB 4096

/* A rank's deposit: groups, each followed by its ops. */
typedef struct {
  uint64_t key;
  char name[GC_NAME_MAX];
  int32_t source, size, rank_in_group, n_ops, n_dec, pad;
  int32_t ranks[64];
} rec_group_t; /* then n_ops rec_op_t, then n_dec rec_dec_t */

typedef struct {
  int32_t op;
  char name[28];
  gc_stats_entry_t e;
} rec_op_t;

typedef struct {
  gc_stats_decision_t d;
  uint64_t count;
} rec_dec_t;

static bool entry_used(const gc_stats_entry_t *e) {
  if (e->calls || e->gpu_calls) return true;
  for (int i = 0; i < GC_STATS_ALGOS; i++)
    if (e->algo[i]) return true;
  return false;
}

typedef struct {
  gc_seg_hdr_t seg; /* creator, its start time, uid, size: core/seg.h */
  uint64_t magic;
  uint32_t size, slot_bytes;
  _Atomic uint32_t deposited;
  _Atomic uint32_t writer;
  /* In generation g + 1: generation g's report was written. A later flush
   * supersedes only a report that exists (an abort's flush with a rank
   * missing writes none, and the exit's must then). */
  _Atomic uint32_t prev_written;
} job_hdr_t;

typedef struct {
  _Atomic int32_t pid;
  _Atomic uint32_t state; /* DEP_*: 0 none yet */
  uint32_t len;
  uint32_t pad;
} job_rank_t;

typedef struct {
  char name[96];
  void *base;
  size_t bytes;
  gc_seg_t g;
} seg_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  bool open, done;
  char key[256];
  int rank, size, nccl_version, gen;
  seg_t seg; /* the current generation's segment (size > 1, merged reports) */
  /* A job whose ranks span hosts: the ranks on this host (NULL: all), of
   * which the lowest (leader) waits for the others; the report is this
   * host's, its path made per host. */
  bool *here;
  int leader;
  bool *also; /* other ranks this process holds (NULL: none) */
} job;

/* A rank's deposit: DEP_FINAL is its last (made at exit): it stands for
 * the rank in every later generation too (see job_init_hdr). */
enum { DEP_SOME = 1, DEP_FINAL = 2 };
/* A rank's pid when a report named it missing before it had one. */
#define GONE_PID (-1)

static bool deposited(job_rank_t *jr) {
  return atomic_load_explicit(&jr->state, memory_order_acquire) >= DEP_SOME;
}

static bool on_this_host(int r) { return !job.here || job.here[r]; }

static _Atomic int enabled_cached = -1;
static char report_path[1024];

bool gc_report_enabled(void) {
  int e = atomic_load_explicit(&enabled_cached, memory_order_relaxed);
  if (e >= 0) return e;
  const char *p = gc_param_GCSHIM_REPORT();
  e = p != NULL;
  if (e) snprintf(report_path, sizeof report_path, "%s", p);
  atomic_store(&enabled_cached, e);
  return e;
}

static bool per_rank(void) { return strstr(report_path, "%r") != NULL; }

static size_t seg_bytes(int n) {
  return sizeof(job_hdr_t) + (size_t)n * sizeof(job_rank_t) + (size_t)n * SLOT_BYTES;
}
static job_hdr_t *hdr(seg_t *s) { return s->base; }
static job_rank_t *ranks_of(seg_t *s) {
  return (job_rank_t *)((char *)s->base + sizeof(job_hdr_t));
}
static char *slot_of(seg_t *s, int n, int r) {
  return (char *)s->base + sizeof(job_hdr_t) + (size_t)n * sizeof(job_rank_t) +
         (size_t)r * SLOT_BYTES;
}

static void mark_also_pids(seg_t *s) {
  for (int r = 0; job.also && r < job.size; r++)
    if (job.also[r]) atomic_store(&ranks_of(s)[r].pid, (int32_t)getpid());
}

/* The header of a new generation; from: the generation before, whose
 * ranks that made their last deposit there (they exited) will deposit
 * nothing here: their deposits go on, so that this generation's report
 * has their counts instead of naming them missing (rank 0 exits first and
 * waits out its deadline while the others wait for it in a collective;
 * they flush into the next generation afterwards). Run before the segment
 * has its name: nobody sees a deposit half copied. */
static void job_init_hdr(void *base, size_t bytes, void *arg) {
  (void)bytes;
  job_hdr_t *h = base;
  h->magic = JOB_MAGIC;
  h->size = (uint32_t)job.size;
  h->slot_bytes = SLOT_BYTES;
  seg_t *from = arg;
  if (!from || !from->base) return;
  job_rank_t *a = ranks_of(from), *b = (job_rank_t *)((char *)base + sizeof(job_hdr_t));
  char *slots = (char *)base + sizeof(job_hdr_t) + (size_t)job.size * sizeof(job_rank_t);
  for (int r = 0; r < job.size; r++) {
    if (atomic_load_explicit(&a[r].state, memory_order_acquire) != DEP_FINAL) continue;
    uint32_t len = a[r].len <= SLOT_BYTES ? a[r].len : 0;
    memcpy(slots + (size_t)r * SLOT_BYTES, slot_of(from, job.size, r), len);
    b[r].len = len;
    atomic_store(&b[r].pid, atomic_load(&a[r].pid));
    atomic_store(&b[r].state, DEP_FINAL);
    atomic_fetch_add(&h->deposited, 1);
  }
}

/* Opens or creates generation gen's segment; waits only for a creator
 * that is writing its header (core/seg.h). */
static gc_status_t seg_open(int gen, seg_t *s, seg_t *from) {
  /* GCSHIM_TEST_HOST (tests only): ranks that pretend to be on different
   * hosts do not share their job segments either. */
  const char *th = gc_param_GCSHIM_TEST_HOST();
  uint64_t h = gc_fnv_str(GC_FNV_INIT, job.key);
  if (th && *th) h ^= gc_fnv_str(GC_FNV_INIT, th) * 31;
  snprintf(s->name, sizeof s->name, "/gcshim-job-%016llx-%u-%d", (unsigned long long)h,
           (unsigned)geteuid(), gen);
  s->bytes = seg_bytes(job.size);
  /* The ranks' pids: the segment outlives its creator while a rank lives. */
  gc_seg_opts_t o = {.what = "report",
                     .bytes = s->bytes,
                     .init = job_init_hdr,
                     .arg = from,
                     .pids_off = (uint32_t)(sizeof(job_hdr_t) + offsetof(job_rank_t, pid)),
                     .pids_stride = sizeof(job_rank_t),
                     .pids_n = (uint32_t)job.size,
                     .flags = GC_SEG_KEEP_DEAD};
  GC_CHECK(gc_seg_open(s->name, GC_SEG_CREATE | GC_SEG_ATTACH, &o, &s->g));
  gc_seg_close_fd(&s->g);
  s->base = s->g.base;
  if (hdr(s)->magic != JOB_MAGIC || hdr(s)->size != (uint32_t)job.size ||
      hdr(s)->slot_bytes != SLOT_BYTES) {
    gc_seg_close(&s->g);
    s->base = NULL;
    return gc_error(GC_ERR_INVALID_ARG, "report: %s is another job's (size %u, not %d)", s->name,
                    (unsigned)hdr(s)->size, job.size);
  }
  atomic_store(&ranks_of(s)[job.rank].pid, (int32_t)getpid());
  mark_also_pids(s);
  return GC_OK;
}

static void seg_close(seg_t *s) {
  if (s->base) gc_seg_close(&s->g);
  s->base = NULL;
}

gc_status_t gc_report_job_open(const char *key, int rank, int size, int nccl_version) {
  if (!gc_report_enabled() && !gc_trace_on()) return GC_OK;
  if (!key || size < 1 || size > MAX_JOB || rank < 0 || rank >= size)
    return gc_error(GC_ERR_INVALID_ARG, "report: job rank %d of %d (at most %d ranks)", rank, size,
                    MAX_JOB);
  gc_status_t s = GC_OK;
  pthread_mutex_lock(&lock);
  if (!job.open) {
    job.open = true;
    snprintf(job.key, sizeof job.key, "%s", key);
    job.rank = rank;
    job.size = size;
    job.nccl_version = nccl_version;
    if (size > 1 && gc_report_enabled() && !per_rank()) s = seg_open(0, &job.seg, NULL);
  }
  pthread_mutex_unlock(&lock);
  return s;
}

void gc_report_job_local(const int *ranks, int n) {
  pthread_mutex_lock(&lock);
  if (job.open && job.size > 1 && !job.here && n > 0 && n < job.size) {
    bool *here = calloc((size_t)job.size, sizeof *here);
    int leader = job.size;
    for (int i = 0; here && i < n; i++)
      if (ranks[i] >= 0 && ranks[i] < job.size) {
        here[ranks[i]] = true;
        if (ranks[i] < leader) leader = ranks[i];
      }
    if (here && leader < job.size && here[job.rank]) {
      job.here = here;
      job.leader = leader;
      if (gc_report_enabled())
        GC_INFO("report: %d of the job's %d ranks are on this host: the report is this host's%s", n,
                job.size,
                strstr(report_path, "%h") || per_rank() ? "" : " (\".<host>\" added to its path)");
    } else {
      free(here);
    }
  }
  pthread_mutex_unlock(&lock);
}

/* ---- this rank's records -------------------------------------------------- */

/* Room for n more bytes at *off in the growing buffer *buf of *cap. */
static bool room(char **buf, size_t *cap, size_t off, size_t n) {
  if (off + n <= *cap) return true;
  size_t c = *cap ? *cap : 64u << 10;
  while (c < off + n) c *= 2;
  char *nb = realloc(*buf, c);
  if (!nb) return false;
  *buf = nb;
  *cap = c;
  return true;
}

/* This process's records, every group whole (a job may hold thousands of
 * communicators): groups, each followed by its used ops and tuner
 * decisions. malloc'd (NULL: no memory), *len its size. */
static char *serialize(size_t *len) {
  char *buf = NULL;
  size_t off = 0, cap = 0;
  int n = gc_stats_group_count();
  for (int g = 0; g < n; g++) {
    const gc_stats_group_info_t *info = gc_stats_group_info(g);
    if (!room(&buf, &cap, off, sizeof(rec_group_t))) goto nomem;
    size_t at = off; /* buf may move: the group's record is found again by offset */
#define RG ((rec_group_t *)(buf + at))
    memset(RG, 0, sizeof(rec_group_t));
    RG->key = info->key;
    snprintf(RG->name, sizeof RG->name, "%s", info->name);
    RG->source = (int32_t)info->source;
    RG->size = info->size;
    RG->rank_in_group = info->rank_in_group;
    memcpy(RG->ranks, info->ranks, sizeof RG->ranks);
    off += sizeof(rec_group_t);
    for (int op = 0; op < GC_STATS_MAX_OPS; op++) {
      gc_stats_entry_t e;
      gc_stats_collect(g, op, &e);
      if (!entry_used(&e)) continue;
      if (!room(&buf, &cap, off, sizeof(rec_op_t))) goto nomem;
      rec_op_t *ro = (rec_op_t *)(buf + off);
      memset(ro, 0, sizeof *ro);
      ro->op = op;
      snprintf(ro->name, sizeof ro->name, "%s", gc_stats_op_name(op));
      ro->e = e;
      off += sizeof *ro;
      RG->n_ops++;
    }
    gc_stats_decision_t d[256];
    uint64_t c[256];
    int nd = gc_stats_decisions(g, d, c, 256);
    for (int i = 0; i < nd; i++) {
      if (!room(&buf, &cap, off, sizeof(rec_dec_t))) goto nomem;
      rec_dec_t *rd = (rec_dec_t *)(buf + off);
      memset(rd, 0, sizeof *rd);
      rd->d = d[i];
      rd->count = c[i];
      off += sizeof *rd;
      RG->n_dec++;
    }
#undef RG
  }
  if (!buf && !(buf = malloc(1))) goto nomem;
  *len = off;
  return buf;
nomem:
  GC_WARN("report: no memory for this rank's records");
  free(buf);
  return NULL;
}

/* ---- merging ----------------------------------------------------------------- */

typedef struct {
  char name[28];
  gc_stats_entry_t e;
} mop_t;

typedef struct {
  char op[28];
  gc_stats_decision_t d; /* d.op unused: op holds its name */
  uint64_t count;
} mdec_t;

typedef struct {
  uint64_t key;
  char name[GC_NAME_MAX];
  int source, size, name_rank; /* name_rank: group rank the name came from */
  int ranks[64];
  mop_t ops[GC_STATS_MAX_OPS];
  int n_ops;
  mdec_t *dec; /* tuner decisions, summed over ranks */
  int n_dec, cap_dec;
} mgroup_t;

typedef struct {
  mgroup_t *g;
  int n, cap;
} merged_t;

static mgroup_t *find_group(merged_t *m, const rec_group_t *rg) {
  for (int i = 0; i < m->n; i++)
    if (m->g[i].key == rg->key) {
      mgroup_t *g = &m->g[i];
      if (rg->rank_in_group < g->name_rank) { /* the name of the group's lowest rank */
        snprintf(g->name, sizeof g->name, "%s", rg->name);
        g->name_rank = rg->rank_in_group;
      }
      for (int k = 0; k < 64 && k < rg->size; k++)
        if (g->ranks[k] < 0) g->ranks[k] = rg->ranks[k];
      return g;
    }
  if (m->n == m->cap) {
    int ncap = m->cap ? m->cap * 2 : 16;
    mgroup_t *ng = realloc(m->g, (size_t)ncap * sizeof *ng);
    if (!ng) return NULL;
    m->g = ng;
    m->cap = ncap;
  }
  mgroup_t *g = &m->g[m->n++];
  memset(g, 0, sizeof *g);
  g->key = rg->key;
  snprintf(g->name, sizeof g->name, "%s", rg->name);
  g->source = rg->source;
  g->size = rg->size;
  g->name_rank = rg->rank_in_group;
  memcpy(g->ranks, rg->ranks, sizeof g->ranks);
  return g;
}

static void merged_free(merged_t *m) {
  for (int i = 0; i < m->n; i++) free(m->g[i].dec);
  free(m->g);
}

static void merge_dec(mgroup_t *g, const rec_dec_t *rd) {
  const char *op = gc_stats_op_name(rd->d.op);
  gc_stats_decision_t d = rd->d;
  d.op = 0;
  for (int i = 0; i < g->n_dec; i++)
    if (!strcmp(g->dec[i].op, op) && !memcmp(&g->dec[i].d, &d, sizeof d)) {
      g->dec[i].count += rd->count;
      return;
    }
  if (g->n_dec == g->cap_dec) {
    int ncap = g->cap_dec ? 2 * g->cap_dec : 16;
    mdec_t *nd = realloc(g->dec, (size_t)ncap * sizeof *nd);
    if (!nd) return;
    g->dec = nd;
    g->cap_dec = ncap;
  }
  mdec_t *m = &g->dec[g->n_dec++];
  memset(m, 0, sizeof *m);
  snprintf(m->op, sizeof m->op, "%s", op);
  m->d = d;
  m->count = rd->count;
}

/* A deposit is read as untrusted bytes (a rank of another build, or a
 * corrupt one, wrote it): each record is copied out (any alignment), its
 * names ended within their arrays, decisions whose size bucket no shift can
 * make (0..63) left out. */
static void merge_blob(merged_t *m, const char *buf, size_t len) {
  size_t off = 0;
  while (off + sizeof(rec_group_t) <= len) {
    rec_group_t rg;
    memcpy(&rg, buf + off, sizeof rg);
    rg.name[sizeof rg.name - 1] = 0;
    off += sizeof rg;
    mgroup_t *g = find_group(m, &rg);
    for (int i = 0; i < rg.n_ops && off + sizeof(rec_op_t) <= len; i++) {
      rec_op_t ro;
      memcpy(&ro, buf + off, sizeof ro);
      ro.name[sizeof ro.name - 1] = 0;
      off += sizeof ro;
      if (!g) continue;
      int k = 0;
      while (k < g->n_ops && strcmp(g->ops[k].name, ro.name)) k++;
      if (k == g->n_ops) {
        if (k == GC_STATS_MAX_OPS) continue;
        g->n_ops++;
        snprintf(g->ops[k].name, sizeof g->ops[k].name, "%s", ro.name);
        g->ops[k].e.t_min_ns = UINT64_MAX;
      }
      gc_stats_merge(&g->ops[k].e, &ro.e);
    }
    for (int i = 0; i < rg.n_dec && off + sizeof(rec_dec_t) <= len; i++) {
      rec_dec_t rd;
      memcpy(&rd, buf + off, sizeof rd);
      off += sizeof rd;
      if (g && rd.d.bucket >= 0 && rd.d.bucket < 64) merge_dec(g, &rd);
    }
  }
}

/* ---- output -------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

/* Host times are of the timed calls (every call, or a sample of them:
 * GCSHIM_TIME_EVERY); the mean stands for every call. */
static double tmin_s(const gc_stats_entry_t *e) {
  return e->timed_calls && e->t_min_ns != UINT64_MAX ? (double)e->t_min_ns * 1e-9 : 0.0;
}
static double tmean_s(const gc_stats_entry_t *e) {
  return e->timed_calls ? (double)e->t_sum_ns * 1e-9 / (double)e->timed_calls : 0.0;
}
/* Host time of all calls (ns): the timed calls' mean times the calls. */
static double ttotal_ns(const gc_stats_entry_t *e) {
  return e->timed_calls ? (double)e->t_sum_ns * (double)e->calls / (double)e->timed_calls : 0.0;
}

/* The profiler's fields of an op (API.md allows added fields). */
static void json_profiler(FILE *f, const gc_stats_entry_t *e) {
  if (e->gpu_calls)
    fprintf(f, ", \"gpu_time_s\": {\"calls\": %llu, \"min\": %.9g, \"mean\": %.9g, \"max\": %.9g}",
            (unsigned long long)e->gpu_calls, (double)e->gpu_min_ns * 1e-9,
            (double)e->gpu_sum_ns * 1e-9 / (double)e->gpu_calls, (double)e->gpu_max_ns * 1e-9);
  const uint64_t *v[2] = {e->algo, e->proto};
  const int n[2] = {GC_STATS_ALGOS, GC_STATS_PROTOS};
  for (int t = 0; t < 2; t++) {
    bool first = true;
    for (int i = 0; i < n[t]; i++)
      if (v[t][i]) {
        fprintf(f, "%s\"%s\": %llu", first ? (t ? ", \"protos\": {" : ", \"algos\": {") : ", ",
                t ? gc_stats_proto_name(i) : gc_stats_algo_name(i), (unsigned long long)v[t][i]);
        first = false;
      }
    if (!first) fputc('}', f);
  }
}

static int by_decision(const void *a, const void *b) {
  const mdec_t *x = a, *y = b;
  int c = strcmp(x->op, y->op);
  if (c) return c;
  if (x->d.bucket != y->d.bucket) return x->d.bucket - y->d.bucket;
  return memcmp(&x->d, &y->d, sizeof x->d);
}

/* The tuner's decisions of a group: "tuner": [{op, size, decision, algo, proto,
 * channels, count}] (size: the bucket's upper bound in bytes; null: not set). */
static void json_tuner(FILE *f, mgroup_t *g) {
  if (!g->n_dec) return;
  qsort(g->dec, (size_t)g->n_dec, sizeof *g->dec, by_decision);
  fprintf(f, ", \"tuner\": [");
  for (int i = 0; i < g->n_dec; i++) {
    const mdec_t *d = &g->dec[i];
    fprintf(f, "%s\n    {\"op\": \"%s\", \"size\": %llu, \"decision\": \"%s\", \"algo\": ",
            i ? "," : "", d->op, 1ull << d->d.bucket, gc_stats_decision_name(d->d.kind));
    if (d->d.algo >= 0)
      fprintf(f, "\"%s\"", gc_stats_algo_name(d->d.algo));
    else
      fputs("null", f);
    fputs(", \"proto\": ", f);
    if (d->d.proto >= 0)
      fprintf(f, "\"%s\"", gc_stats_proto_name(d->d.proto));
    else
      fputs("null", f);
    if (d->d.channels)
      fprintf(f, ", \"channels\": %d", d->d.channels);
    else
      fputs(", \"channels\": null", f);
    fprintf(f, ", \"count\": %llu}", (unsigned long long)d->count);
  }
  fputc(']', f);
}

static void write_json(FILE *f, merged_t *m, int world, const int *missing, int n_missing) {
  fprintf(f, "{\"gcshim_report\": 1, \"nccl_version\": %d, \"world_size\": %d,\n", job.nccl_version,
          world);
  fprintf(f, " \"missing_ranks\": [");
  for (int i = 0; i < n_missing; i++) fprintf(f, "%s%d", i ? ", " : "", missing[i]);
  fprintf(f, "],\n \"groups\": [");
  for (int i = 0; i < m->n; i++) {
    mgroup_t *g = &m->g[i];
    fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
    json_string(f, g->name);
    fprintf(f, ", \"ranks\": [");
    for (int k = 0; k < g->size && k < 64; k++) fprintf(f, "%s%d", k ? ", " : "", g->ranks[k]);
    fprintf(f, "], \"source\": \"%s\", \"ops\": [",
            gc_group_source_name((gc_group_source_t)g->source));
    for (int k = 0; k < g->n_ops; k++) {
      gc_stats_entry_t *e = &g->ops[k].e;
      fprintf(
          f,
          "%s\n    {\"op\": \"%s\", \"calls\": %llu, \"captured_calls\": %llu, \"bytes\": %llu, "
          "\"time_s\": {\"min\": %.9g, \"mean\": %.9g, \"max\": %.9g}, \"timed_calls\": %llu, "
          "\"sizes\": {",
          k ? "," : "", g->ops[k].name, (unsigned long long)e->calls,
          (unsigned long long)e->captured, (unsigned long long)e->bytes, tmin_s(e), tmean_s(e),
          (double)e->t_max_ns * 1e-9, (unsigned long long)e->timed_calls);
      bool first = true;
      for (int b = 0; b < GC_STATS_BUCKETS; b++)
        if (e->hist[b]) {
          fprintf(f, "%s\"%llu\": %llu", first ? "" : ", ", 1ull << b,
                  (unsigned long long)e->hist[b]);
          first = false;
        }
      fputc('}', f);
      json_profiler(f, e);
      fputc('}', f);
    }
    fputc(']', f);
    json_tuner(f, g);
    fputc('}', f);
  }
  fprintf(f, "]}\n");
}

/* nccl-tests' bus bandwidth factor and "size" of a call (bytes as passed x). */
static void bw_factors(const char *op, int n, double *size_mult, double *bus) {
  *size_mult = 1;
  *bus = 1;
  if (!strcmp(op, "AllReduce")) {
    *bus = n > 0 ? 2.0 * (n - 1) / n : 1;
  } else if (!strcmp(op, "AllGather") || !strcmp(op, "ReduceScatter")) {
    *size_mult = n;
    *bus = n > 0 ? (double)(n - 1) / n : 1;
  } else if (!strcmp(op, "AlltoAll")) {
    *size_mult = n;
    *bus = n > 0 ? (double)(n - 1) / n : 1;
  }
}

static void human_size(char *buf, size_t len, uint64_t b) {
  const char *u[] = {"B", "K", "M", "G", "T"};
  int i = 0;
  while (b >= 1024 && b % 1024 == 0 && i < 4) {
    b /= 1024;
    i++;
  }
  snprintf(buf, len, "%llu%s", (unsigned long long)b, u[i]);
}

typedef struct {
  mgroup_t *g;
  mop_t *op;
} row_t;

static int by_time(const void *a, const void *b) {
  const row_t *x = a, *y = b;
  double tx = ttotal_ns(&x->op->e), ty = ttotal_ns(&y->op->e);
  return tx < ty ? 1 : tx > ty ? -1 : 0;
}

static void write_table(FILE *f, merged_t *m, int world, const int *missing, int n_missing) {
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  char ver[32] = "unknown";
  if (job.nccl_version) gc_nccl_version_string(job.nccl_version, ver, sizeof ver);
  fprintf(f, "# gcshim report: %d rank%s on %s, NCCL %s\n", world, world == 1 ? "" : "s", host,
          ver);
  if (n_missing) {
    fprintf(f, "# missing ranks (never reported):");
    for (int i = 0; i < n_missing; i++) fprintf(f, " %d", missing[i]);
    fputc('\n', f);
  }
  int n = 0;
  for (int i = 0; i < m->n; i++) n += m->g[i].n_ops;
  row_t *rows = calloc((size_t)n + 1, sizeof *rows);
  if (!rows) return;
  n = 0;
  for (int i = 0; i < m->n; i++)
    for (int k = 0; k < m->g[i].n_ops; k++) rows[n++] = (row_t){&m->g[i], &m->g[i].ops[k]};
  qsort(rows, (size_t)n, sizeof *rows, by_time);
  uint64_t calls = 0, timed = 0;
  for (int i = 0; i < n; i++) calls += rows[i].op->e.calls, timed += rows[i].op->e.timed_calls;
  if (timed < calls)
    fprintf(f,
            "# host times of a sample: %llu of %llu calls timed (GCSHIM_TIME_EVERY; the first "
            "calls of each op always); calls, bytes and sizes count every call\n",
            (unsigned long long)timed, (unsigned long long)calls);
  fprintf(f, "# %-24s %5s %-8s %-14s %10s %14s %10s %10s %10s %9s %9s %8s %10s %10s %10s\n",
          "group", "size", "source", "op", "calls", "bytes", "min(us)", "mean(us)", "max(us)",
          "algbw", "busbw", "captured", "gpumin(us)", "gpumean", "gpumax");
  for (int i = 0; i < n; i++) {
    mgroup_t *g = rows[i].g;
    gc_stats_entry_t *e = &rows[i].op->e;
    double mult, bus;
    bw_factors(rows[i].op->name, g->size, &mult, &bus);
    /* Per rank and call, as nccl-tests: size / time (GB/s). */
    double per_call = e->timed_calls ? (double)e->timed_bytes / (double)e->timed_calls * mult : 0;
    double t = tmean_s(e);
    double algbw = t > 0 ? per_call / t * 1e-9 : 0;
    fprintf(f, "  %-24s %5d %-8s %-14s %10llu %14llu %10.2f %10.2f %10.2f %9.3f %9.3f %8llu",
            g->name, g->size, gc_group_source_name((gc_group_source_t)g->source), rows[i].op->name,
            (unsigned long long)e->calls, (unsigned long long)e->bytes, tmin_s(e) * 1e6, t * 1e6,
            (double)e->t_max_ns * 1e-3, algbw, algbw * bus, (unsigned long long)e->captured);
    if (e->gpu_calls)
      fprintf(f, " %10.2f %10.2f %10.2f\n", (double)e->gpu_min_ns * 1e-3,
              (double)e->gpu_sum_ns * 1e-3 / (double)e->gpu_calls, (double)e->gpu_max_ns * 1e-3);
    else
      fprintf(f, " %10s %10s %10s\n", "-", "-", "-");
    fprintf(f, "  %-24s sizes:", "");
    for (int b = 0; b < GC_STATS_BUCKETS; b++)
      if (e->hist[b]) {
        char s[32];
        human_size(s, sizeof s, 1ull << b);
        fprintf(f, " <=%s:%llu", s, (unsigned long long)e->hist[b]);
      }
    for (int a = 0; a < GC_STATS_ALGOS; a++)
      if (e->algo[a]) fprintf(f, " %s:%llu", gc_stats_algo_name(a), (unsigned long long)e->algo[a]);
    for (int p = 0; p < GC_STATS_PROTOS; p++)
      if (e->proto[p])
        fprintf(f, " %s:%llu", gc_stats_proto_name(p), (unsigned long long)e->proto[p]);
    fputc('\n', f);
  }
  if (!n) fprintf(f, "  (no calls)\n");
  free(rows);
  bool head = false;
  for (int i = 0; i < m->n; i++) {
    mgroup_t *g = &m->g[i];
    if (g->n_dec) qsort(g->dec, (size_t)g->n_dec, sizeof *g->dec, by_decision);
    for (int k = 0; k < g->n_dec; k++) {
      const mdec_t *d = &g->dec[k];
      if (!head) {
        fprintf(f, "# tuner decisions\n# %-24s %-14s %8s %-9s %-14s %-7s %8s %10s\n", "group", "op",
                "size<=", "decision", "algo", "proto", "channels", "count");
        head = true;
      }
      char sz[32], ch[16] = "-";
      human_size(sz, sizeof sz, 1ull << d->d.bucket);
      if (d->d.channels) snprintf(ch, sizeof ch, "%d", d->d.channels);
      fprintf(f, "  %-24s %-14s %8s %-9s %-14s %-7s %8s %10llu\n", g->name, d->op, sz,
              gc_stats_decision_name(d->d.kind),
              d->d.algo >= 0 ? gc_stats_algo_name(d->d.algo) : "-",
              d->d.proto >= 0 ? gc_stats_proto_name(d->d.proto) : "-", ch,
              (unsigned long long)d->count);
    }
  }
}

/* Expands %h %p %r of the report path. A job that spans hosts writes one
 * report per host: without %h or %r in the path, ".<host>" goes before its
 * extension (before ".json" stays JSON). */
static void expand_path(char *out, size_t len, int rank) {
  char host[256], pattern[1100];
  gc_param_host(host, sizeof host);
  snprintf(pattern, sizeof pattern, "%s", report_path);
  if (job.here && strcmp(report_path, "-") && !strstr(report_path, "%h") && !per_rank()) {
    const char *slash = strrchr(report_path, '/'), *dot = strrchr(report_path, '.');
    size_t at = dot && (!slash || dot > slash) ? (size_t)(dot - report_path) : strlen(report_path);
    snprintf(pattern, sizeof pattern, "%.*s.%%h%s", (int)at, report_path, report_path + at);
  }
  size_t o = 0;
  for (const char *p = pattern; *p && o + 1 < len; p++) {
    if (p[0] == '%' && p[1]) {
      char tmp[300];
      tmp[0] = 0;
      if (p[1] == 'h') snprintf(tmp, sizeof tmp, "%s", host);
      if (p[1] == 'p') snprintf(tmp, sizeof tmp, "%d", (int)getpid());
      if (p[1] == 'r') snprintf(tmp, sizeof tmp, "%d", rank);
      if (p[1] == '%') snprintf(tmp, sizeof tmp, "%%");
      if (tmp[0] || strchr("hpr%", p[1])) {
        o += (size_t)snprintf(out + o, len - o, "%s", tmp);
        p++;
        if (o >= len) o = len - 1;
        continue;
      }
    }
    out[o++] = *p;
  }
  out[o] = 0;
}

static void write_report(merged_t *m, int world, const int *missing, int n_missing) {
  char path[1100];
  expand_path(path, sizeof path, job.open ? job.rank : 0);
  bool json = strlen(path) > 5 && !strcmp(path + strlen(path) - 5, ".json");
  gc_outfile_t o = {.f = stderr};
  if (strcmp(path, "-") && !gc_outfile_open(&o, path, "GCSHIM_REPORT")) return;
  if (json)
    write_json(o.f, m, world, missing, n_missing);
  else
    write_table(o.f, m, world, missing, n_missing);
  if (o.f == stderr)
    fflush(stderr);
  else if (gc_outfile_close(&o))
    GC_INFO("report written to %s", path);
}

static void write_local(void) {
  size_t len;
  char *buf = serialize(&len);
  if (!buf) return;
  merged_t m = {0};
  merge_blob(&m, buf, len);
  write_report(&m, job.open ? job.size : 1, NULL, 0);
  merged_free(&m);
  free(buf);
}

void gc_report_job_also(int rank) {
  pthread_mutex_lock(&lock);
  if (job.open && rank >= 0 && rank < job.size && rank != job.rank) {
    if (!job.also) job.also = calloc((size_t)job.size, sizeof *job.also);
    if (job.also) {
      job.also[rank] = true;
      if (job.seg.base) mark_also_pids(&job.seg);
    }
  }
  pthread_mutex_unlock(&lock);
}

/* ---- the deposit protocol ---------------------------------------------------- */

/* True when every rank deposited or is dead (the dead are listed). */
static bool all_in(seg_t *s, int *missing, int *n_missing, bool count_unknown) {
  job_rank_t *jr = ranks_of(s);
  *n_missing = 0;
  bool ok = true;
  for (int r = 0; r < job.size; r++) {
    if (!on_this_host(r) || deposited(&jr[r])) continue;
    pid_t pid = atomic_load(&jr[r].pid);
    /* A stopped rank (SIGSTOP) deposits nothing while it stays stopped. */
    if ((pid > 0 && (gc_pid_dead(pid) || gc_pid_stopped(pid))) || pid == GONE_PID ||
        (count_unknown && pid == 0)) {
      missing[(*n_missing)++] = r;
      continue;
    }
    if (count_unknown) { /* the deadline passed: alive but silent */
      missing[(*n_missing)++] = r;
      continue;
    }
    ok = false;
  }
  return ok;
}

/* A deposit larger than its slot goes to a segment of its own beside the
 * job's (its records after the segment header and the length), which the
 * writer reads and removes; kept for a dead depositor like the job's. */
#define OVERFLOW 1u /* job_rank_t.pad */

static void overflow_name(const seg_t *s, int r, char *out, size_t n) {
  snprintf(out, n, "%.80s-r%d", s->name, r);
}

typedef struct {
  const char *blob;
  size_t len;
} blob_t;

static void overflow_init(void *base, size_t bytes, void *arg) {
  (void)bytes;
  const blob_t *b = arg;
  uint64_t len = b->len;
  memcpy((char *)base + sizeof(gc_seg_hdr_t), &len, sizeof len);
  memcpy((char *)base + sizeof(gc_seg_hdr_t) + sizeof len, b->blob, b->len);
}

static gc_status_t overflow_put(seg_t *s, int r, const char *blob, size_t len) {
  char name[GC_SEG_NAME_MAX];
  overflow_name(s, r, name, sizeof name);
  blob_t b = {blob, len};
  gc_seg_opts_t o = {.what = "report",
                     .bytes = sizeof(gc_seg_hdr_t) + sizeof(uint64_t) + len,
                     .init = overflow_init,
                     .arg = &b,
                     .flags = GC_SEG_KEEP_DEAD};
  gc_seg_t g;
  GC_CHECK(gc_seg_open(name, GC_SEG_CREATE, &o, &g));
  gc_seg_close(&g);
  return GC_OK;
}

/* Merges rank r's overflow deposit into m (m NULL: only removes it). */
static void overflow_take(seg_t *s, int r, merged_t *m) {
  char name[GC_SEG_NAME_MAX];
  overflow_name(s, r, name, sizeof name);
  gc_seg_opts_t o = {.what = "report", .any_size = true, .flags = GC_SEG_KEEP_DEAD};
  gc_seg_t g;
  if (gc_seg_open(name, GC_SEG_ATTACH, &o, &g) != GC_OK) {
    GC_WARN("report: rank %d's records are gone: %s", r, gc_last_error());
    return;
  }
  uint64_t len = 0;
  const char *at = (const char *)g.base + sizeof(gc_seg_hdr_t);
  if (g.bytes >= sizeof(gc_seg_hdr_t) + sizeof len) memcpy(&len, at, sizeof len);
  if (m && len <= g.bytes - sizeof(gc_seg_hdr_t) - sizeof len)
    merge_blob(m, at + sizeof len, (size_t)len);
  gc_seg_unlink(&g);
  gc_seg_close(&g);
}

/* The overflow deposits of a generation nobody will write: removed. */
static void overflow_drop(seg_t *s) {
  job_rank_t *jr = ranks_of(s);
  for (int r = 0; r < job.size; r++)
    if (deposited(&jr[r]) && jr[r].pad == OVERFLOW) overflow_take(s, r, NULL);
}

static void write_merged(seg_t *s, const int *missing, int n_missing) {
  merged_t m = {0};
  job_rank_t *jr = ranks_of(s);
  for (int r = 0; r < job.size; r++) {
    if (!deposited(&jr[r])) continue;
    if (jr[r].pad == OVERFLOW)
      overflow_take(s, r, &m);
    else
      merge_blob(&m, slot_of(s, job.size, r), jr[r].len);
  }
  if (n_missing) {
    char list[512];
    size_t o = 0;
    for (int i = 0; i < n_missing && o < sizeof list - 16; i++)
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%d", i ? ", " : "", missing[i]);
    GC_WARN("report: rank%s %s of the job never reported; written without them",
            n_missing > 1 ? "s" : "", list);
  }
  write_report(&m, job.size, missing, n_missing);
  merged_free(&m);
}

/* True when every rank deposited; *gone: those that did not are all dead
 * or stopped. */
static bool all_deposited(seg_t *s, bool *gone) {
  job_rank_t *jr = ranks_of(s);
  bool all = true;
  *gone = true;
  for (int r = 0; r < job.size; r++) {
    if (!on_this_host(r) || deposited(&jr[r])) continue;
    all = false;
    pid_t pid = atomic_load(&jr[r].pid);
    if (!(pid == GONE_PID || (pid > 0 && (gc_pid_dead(pid) || gc_pid_stopped(pid))))) *gone = false;
  }
  return all;
}

/* Deposits into s. wait: rank 0 may wait (bounded) for the others.
 * superseding: an earlier report of this job exists (the exit after a
 * flush): nobody waits, and the report is rewritten only when every rank
 * deposited; otherwise the earlier one stays. next: the next generation's
 * segment, which every depositor opened before depositing here: a writer
 * that saw every rank unlinks its name at once (all have it mapped), so a
 * rank that dies before it deposits there leaves nothing in /dev/shm. */
static void deposit(seg_t *s, bool final, bool wait, bool superseding, seg_t *next) {
  job_rank_t *jr = ranks_of(s);
  size_t len = 0;
  char *blob = serialize(&len);
  jr[job.rank].pad = 0;
  jr[job.rank].len = 0;
  if (blob && len <= SLOT_BYTES) {
    memcpy(slot_of(s, job.size, job.rank), blob, len);
    jr[job.rank].len = (uint32_t)len;
  } else if (blob && overflow_put(s, job.rank, blob, len) == GC_OK) {
    jr[job.rank].pad = OVERFLOW;
    jr[job.rank].len = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
  } else if (blob) {
    GC_WARN("report: this rank's %zu bytes of records could not be deposited: %s", len,
            gc_last_error());
  }
  free(blob);
  atomic_store(&jr[job.rank].pid, (int32_t)getpid());
  uint32_t kind = final ? DEP_FINAL : DEP_SOME;
  atomic_store_explicit(&jr[job.rank].state, kind, memory_order_release);
  atomic_fetch_add(&hdr(s)->deposited, 1);
  for (int r = 0; job.also && r < job.size; r++) /* in the deposit above already */
    if (job.also[r] && !deposited(&jr[r])) {
      jr[r].len = 0;
      atomic_store(&jr[r].pid, (int32_t)getpid());
      atomic_store_explicit(&jr[r].state, kind, memory_order_release);
      atomic_fetch_add(&hdr(s)->deposited, 1);
    }
  uint32_t zero = 0;
  if (superseding) {
    bool gone, all = all_deposited(s, &gone);
    if ((all || gone) && atomic_compare_exchange_strong(&hdr(s)->writer, &zero, 1)) {
      gc_seg_unlink(&s->g);
      if (all)
        write_merged(s, NULL, 0);
      else {
        overflow_drop(s);
        GC_INFO("report: a rank of the job died before exit; the earlier report stays");
      }
    }
    return;
  }
  int *missing = calloc((size_t)job.size, sizeof *missing);
  if (!missing) return;
  int n_missing = 0;
  bool ready = all_in(s, missing, &n_missing, false);
  if (!ready && job.rank == (job.here ? job.leader : 0) && wait) {
    double t = gc_env_timeout();
    uint64_t deadline = gc_now_ns() + (uint64_t)(t * 1e9);
    while (!(ready = all_in(s, missing, &n_missing, false)) && gc_now_ns() < deadline) {
      struct timespec ts = {0, 5000000};
      nanosleep(&ts, NULL);
    }
    if (!ready) ready = all_in(s, missing, &n_missing, true);
  }
  if (ready && atomic_compare_exchange_strong(&hdr(s)->writer, &zero, 1)) {
    gc_seg_unlink(&s->g); /* first: writing may kill us (SIGPIPE on stderr) */
    if (next && next->base) {
      atomic_store(&hdr(next)->prev_written, 1);
      /* A rank written off here before it ever opened the job's segment
       * (pid 0: it died on its way) is gone in next too, so that next's
       * last depositor does not wait on it forever and leave next behind.
       * Should it come after all, its own pid replaces the mark. */
      for (int i = 0; i < n_missing; i++) {
        int32_t none = 0;
        atomic_compare_exchange_strong(&ranks_of(next)[missing[i]].pid, &none, GONE_PID);
      }
      if (!n_missing) gc_seg_unlink(&next->g);
    }
    write_merged(s, missing, n_missing);
  }
  free(missing);
}

void gc_report_flush(bool final, bool wait) {
  if (!gc_report_enabled() && !gc_trace_on()) return;
  pthread_mutex_lock(&lock);
  if (job.done || !job.open) goto out; /* a process that joined no job reports nothing */
  if (final) job.done = true;
  gc_trace_write(job.rank); /* every time: the last one covers the calls to the end */
  if (!gc_report_enabled()) goto out;
  if (job.size == 1 || per_rank() || !job.seg.base) {
    write_local();
    goto out;
  }
  seg_t cur = job.seg, next = {0};
  bool superseding = final && job.gen > 0 && atomic_load(&hdr(&cur)->prev_written);
  if (!final) { /* the next flush's segment exists before this one can be unlinked */
    if (seg_open(job.gen + 1, &next, &cur) == GC_OK) {
      /* The pids known here go on, so that a rank that dies before it opens
       * the next generation is seen dead there too. */
      for (int r = 0; r < job.size; r++) {
        int32_t pid = atomic_load(&ranks_of(&cur)[r].pid), zero = 0;
        if (pid > 0) atomic_compare_exchange_strong(&ranks_of(&next)[r].pid, &zero, pid);
      }
      job.gen++;
      job.seg = next;
    } else {
      job.seg.base = NULL;
    }
  } else {
    job.seg.base = NULL;
  }
  deposit(&cur, final, wait && !superseding, superseding, next.base ? &next : NULL);
  seg_close(&cur);
out:
  pthread_mutex_unlock(&lock);
}

/* ---- for tests and tests/fuzz ------------------------------------------------ */

void *gc_report_deposit_test(size_t *len) { return serialize(len); }

void gc_report_merge_test(const void *blob, size_t len, FILE *f) {
  merged_t m = {0};
  merge_blob(&m, blob, len);
  if (f) {
    write_json(f, &m, 1, NULL, 0);
    write_table(f, &m, 1, NULL, 0);
  }
  merged_free(&m);
}
