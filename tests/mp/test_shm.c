/* test_shm.c - the shm CPU transport with 2, 3, 4 and 8 forked processes:
 * barrier, broadcast, gather(v), all-gather(v), in-place rounds, send/recv,
 * sub-groups (TP x PP), the public gc_init/gc_group_new path, and bad input. Exact values on
 * every rank, on seeded random data. */

/* Fortified libc calls wherever the compiler optimizes, not only where it
 * enables them by default (Ubuntu's gcc: level 3): a test buffer that is one
 * byte short then aborts on every box. t_odd once broadcast 3 MiB + 1 into
 * 3 MiB buffers; only the GPU machine saw it ("buffer overflow detected" on
 * every rank, "odd n=3: 3 ranks failed"). */
#if defined(__OPTIMIZE__) && !defined(_FORTIFY_SOURCE)
#define _FORTIFY_SOURCE 3
#endif
#include "test_shm_util.h"

static char TOKEN[64]; /* in every key of this run: finds our /dev/shm files */

static gc_cpu_group_t *make(const char *what, int rank, int n) {
  char key[160];
  snprintf(key, sizeof key, "%s-%s-%d", TOKEN, what, n);
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_shm_create(key, rank, n, 30, &g);
  CHECK(s == GC_OK && g, "create %s n=%d: %s", key, n, gc_status_string(s));
  return s == GC_OK ? g : NULL;
}

/* Payload sizes: 0 B to a few MiB (over several chunks), random in between. */
static size_t pick_size(uint64_t *st, int i) {
  static const size_t fixed[] = {0, 1, 7, 64, 4096, 65537, (1u << 20) + 3, (3u << 20) + 1};
  if (i < (int)(sizeof fixed / sizeof fixed[0])) return fixed[i];
  return rnd(st) % (2u << 20);
}

static int t_collectives(int rank, int n, void *arg) {
  size_t big = *(size_t *)arg; /* one extra large broadcast/all-gather */
  gc_cpu_group_t *g = make("coll", rank, n);
  if (!g) return 1;
  CHECK(g->rank == rank && g->size == n, "rank/size %d/%d", g->rank, g->size);
  /* every member attached: the name is gone from /dev/shm already */
  CHECK(shm_leftovers(TOKEN, 1) == 0, "segment still in /dev/shm after creation");
  for (int i = 0; i < 50; i++) CHECK(gc_cpu_barrier(g) == GC_OK, "barrier %d", i);

  uint64_t st = SEED + 1;
  size_t maxsz = 4u << 20;
  if (big > maxsz) maxsz = big;
  unsigned char *buf = malloc(maxsz), *want = malloc(maxsz);
  unsigned char *all = malloc((size_t)n * (4u << 20)), *allw = malloc((size_t)n * (4u << 20));
  /* broadcast from every root, many sizes */
  for (int i = 0; i < 10; i++) {
    size_t len = pick_size(&st, i);
    int root = i % n;
    fill(want, len, 100 + (uint64_t)i, (uint64_t)root);
    if (rank == root)
      memcpy(buf, want, len);
    else
      memset(buf, 0xab, len);
    gc_status_t s = gc_cpu_broadcast(g, buf, len, root);
    CHECK(s == GC_OK && !memcmp(buf, want, len), "broadcast %zu bytes from %d: %s", len, root,
          gc_status_string(s));
  }
  if (big) {
    fill(want, big, 999, 0);
    if (rank == 0)
      memcpy(buf, want, big);
    else
      memset(buf, 0, big);
    uint64_t t0 = now_ns();
    gc_status_t s = gc_cpu_broadcast(g, buf, big, 0);
    double dt = (double)(now_ns() - t0) / 1e9;
    CHECK(s == GC_OK && !memcmp(buf, want, big), "broadcast %zu bytes", big);
    if (rank == 1) printf("n=%d: broadcast of %zu MiB took %.3f s\n", n, big >> 20, dt);
  }
  /* all-gather, equal sizes */
  for (int i = 0; i < 6; i++) {
    size_t len = pick_size(&st, i + 2) / (size_t)n;
    for (int r = 0; r < n; r++) fill(allw + (size_t)r * len, len, 200 + (uint64_t)i, (uint64_t)r);
    memcpy(buf, allw + (size_t)rank * len, len);
    memset(all, 0xcd, (size_t)n * len);
    gc_status_t s = gc_cpu_allgather(g, buf, len, all);
    CHECK(s == GC_OK && !memcmp(all, allw, (size_t)n * len), "allgather %zu bytes x %d", len, n);
  }
  /* all-gather in place */
  {
    size_t len = 100003;
    for (int r = 0; r < n; r++) fill(allw + (size_t)r * len, len, 250, (uint64_t)r);
    memset(all, 0, (size_t)n * len);
    memcpy(all + (size_t)rank * len, allw + (size_t)rank * len, len);
    gc_status_t s = gc_cpu_allgather(g, all + (size_t)rank * len, len, all);
    CHECK(s == GC_OK && !memcmp(all, allw, (size_t)n * len), "allgather in place");
  }
  /* all-gatherv and gatherv with unequal sizes (zeros included) */
  size_t lens[8];
  for (int i = 0; i < 6; i++) {
    size_t total = 0, off = 0;
    for (int r = 0; r < n; r++) {
      uint64_t x = SEED ^ (uint64_t)(i * 31 + r);
      lens[r] = (r + i) % 3 == 0 ? 0 : rnd(&x) % ((3u << 20) / (size_t)n);
      total += lens[r];
    }
    for (int r = 0; r < n; r++) {
      fill(allw + off, lens[r], 300 + (uint64_t)i, (uint64_t)r);
      if (r == rank) memcpy(buf, allw + off, lens[r]);
      off += lens[r];
    }
    memset(all, 0xee, total);
    gc_status_t s = gc_cpu_allgatherv(g, buf, lens, all);
    CHECK(s == GC_OK && !memcmp(all, allw, total), "allgatherv round %d (%zu bytes)", i, total);
    int root = (i + 1) % n;
    memset(all, 0xee, total);
    s = gc_cpu_gatherv(g, buf, lens, rank == root ? all : NULL, root);
    CHECK(s == GC_OK && (rank != root || !memcmp(all, allw, total)), "gatherv to %d round %d", root,
          i);
  }
  /* send/recv: a ring of several messages in order, some larger than a mailbox */
  {
    int next = (rank + 1) % n, prev = (rank + n - 1) % n;
    static const size_t sz[] = {0, 5, 70000, 1u << 20, 12, (1u << 20) + 17};
    for (int k = 0; k < 6; k++) {
      fill(want, sz[k], 400 + (uint64_t)k, (uint64_t)rank);
      gc_status_t s1, s2;
      if (rank % 2 == 0) {
        s1 = gc_cpu_send(g, want, sz[k], next);
        s2 = gc_cpu_recv(g, buf, sz[k], prev);
      } else {
        s2 = gc_cpu_recv(g, buf, sz[k], prev);
        s1 = gc_cpu_send(g, want, sz[k], next);
      }
      fill(want, sz[k], 400 + (uint64_t)k, (uint64_t)prev);
      CHECK(s1 == GC_OK && s2 == GC_OK && !memcmp(buf, want, sz[k]), "ring msg %d (%zu B)", k,
            sz[k]);
    }
    /* all pairs: small messages buffered both ways, matched in order per pair */
    for (int k = 0; k < 3; k++)
      for (int d = 0; d < n; d++) {
        if (d == rank) continue;
        unsigned v[4] = {(unsigned)rank, (unsigned)d, (unsigned)k, 0xfeed};
        CHECK(gc_cpu_send(g, v, sizeof v, d) == GC_OK, "send to %d", d);
      }
    for (int k = 0; k < 3; k++)
      for (int src = 0; src < n; src++) {
        if (src == rank) continue;
        unsigned v[4] = {0};
        gc_status_t s = gc_cpu_recv(g, v, sizeof v, src);
        CHECK(s == GC_OK && v[0] == (unsigned)src && v[1] == (unsigned)rank &&
                  v[2] == (unsigned)k && v[3] == 0xfeed,
              "pair message %d from %d: %u %u %u", k, src, v[0], v[1], v[2]);
      }
  }
  CHECK(gc_cpu_barrier(g) == GC_OK, "final barrier");
  gc_cpu_destroy(g);
  free(buf);
  free(want);
  free(all);
  free(allw);
  return 0;
}

/* Odd group sizes: broadcast from changing roots, unequal all-gatherv, and a
 * chain of sends larger than a mailbox. */
static int t_odd(int rank, int n, void *arg) {
  (void)arg;
  gc_cpu_group_t *g = make("odd", rank, n);
  if (!g) return 1;
  unsigned char *buf = malloc(4u << 20), *want = malloc(4u << 20);
  for (int i = 0; i < 8; i++) {
    uint64_t st = SEED + 7;
    size_t len = pick_size(&st, i);
    int root = (i + 1) % n;
    fill(want, len, 500 + (uint64_t)i, (uint64_t)root);
    if (rank == root)
      memcpy(buf, want, len);
    else
      memset(buf, 0, len);
    gc_status_t s = gc_cpu_broadcast(g, buf, len, root);
    CHECK(s == GC_OK && !memcmp(buf, want, len), "odd broadcast %zu from %d", len, root);
  }
  size_t lens[8], total = 0, off = 0;
  for (int r = 0; r < n; r++) total += lens[r] = (size_t)(r * 777777 + 1);
  unsigned char *all = malloc(total), *allw = malloc(total);
  for (int r = 0; r < n; r++) {
    fill(allw + off, lens[r], 600, (uint64_t)r);
    if (r == rank) memcpy(buf, allw + off, lens[r]);
    off += lens[r];
  }
  gc_status_t s = gc_cpu_allgatherv(g, buf, lens, all);
  CHECK(s == GC_OK && !memcmp(all, allw, total), "odd allgatherv");
  /* pipeline of sends down a chain 0 -> 1 -> ... -> n-1, larger than mailboxes */
  size_t len = (2u << 20) + 5;
  fill(want, len, 700, 0);
  if (rank == 0) {
    s = gc_cpu_send(g, want, len, 1);
  } else {
    s = gc_cpu_recv(g, buf, len, rank - 1);
    CHECK(s == GC_OK && !memcmp(buf, want, len), "chain recv");
    if (rank + 1 < n) s = gc_cpu_send(g, buf, len, rank + 1);
  }
  CHECK(s == GC_OK, "chain send");
  CHECK(gc_cpu_barrier(g) == GC_OK, "barrier");
  gc_cpu_destroy(g);
  free(buf);
  free(want);
  free(all);
  free(allw);
  return 0;
}

/* Edge sizes of groups: 1 member, and more members than CPUs (16). */
static int t_sizes(int rank, int n, void *arg) {
  (void)arg;
  gc_cpu_group_t *g = make("sizes", rank, n);
  if (!g) return 1;
  for (int i = 0; i < 20; i++) CHECK(gc_cpu_barrier(g) == GC_OK, "barrier %d", i);
  int all[16] = {0};
  CHECK(gc_cpu_allgather(g, &rank, sizeof rank, all) == GC_OK, "allgather");
  for (int r = 0; r < n; r++) CHECK(all[r] == r, "allgather[%d] = %d", r, all[r]);
  size_t len = 300000;
  unsigned char *buf = malloc(len), *want = malloc(len);
  fill(want, len, 1000, (uint64_t)n);
  if (rank == n - 1)
    memcpy(buf, want, len);
  else
    memset(buf, 0, len);
  CHECK(gc_cpu_broadcast(g, buf, len, n - 1) == GC_OK && !memcmp(buf, want, len), "broadcast");
  int64_t v = rank + 1, sum = 0;
  CHECK(gc_cpu_allreduce(g, &v, &sum, 1, GC_INT64, GC_SUM) == GC_OK &&
            sum == (int64_t)n * (n + 1) / 2,
        "allreduce sum %lld", (long long)sum);
  int me[1] = {rank};
  gc_cpu_group_t *solo = NULL;
  CHECK(gc_cpu_subgroup(g, me, 1, "solo", &solo) == GC_OK && solo && solo->size == 1,
        "subgroup of one");
  if (solo) {
    CHECK(gc_cpu_barrier(solo) == GC_OK, "barrier of one");
    gc_cpu_destroy(solo);
  }
  gc_cpu_destroy(g);
  free(buf);
  free(want);
  return 0;
}

/* vLLM-style TP x PP: 8 ranks, tp {0..3},{4..7}, pp {0,4},{1,5},{2,6},{3,7}. */
static int t_subgroups(int rank, int n, void *arg) {
  (void)arg;
  gc_cpu_group_t *w = make("world", rank, n);
  if (!w) return 1;
  int tp = 4, pp = n / tp;
  int tp_ranks[8], pp_ranks[8];
  int ti = rank / tp, pi = rank % tp;
  for (int i = 0; i < tp; i++) tp_ranks[i] = ti * tp + i;
  for (int i = 0; i < pp; i++) pp_ranks[i] = i * tp + pi;
  char tag[32];
  gc_cpu_group_t *gt = NULL, *gp = NULL;
  snprintf(tag, sizeof tag, "tp%d", ti);
  gc_status_t s = gc_cpu_subgroup(w, tp_ranks, tp, tag, &gt);
  CHECK(s == GC_OK && gt && gt->rank == pi && gt->size == tp, "tp subgroup: %s",
        gc_status_string(s));
  snprintf(tag, sizeof tag, "pp%d", pi);
  s = gc_cpu_subgroup(w, pp_ranks, pp, tag, &gp);
  CHECK(s == GC_OK && gp && gp->rank == ti && gp->size == pp, "pp subgroup: %s",
        gc_status_string(s));
  if (!gt || !gp) return 1;
  int got[8] = {0};
  s = gc_cpu_allgather(gt, &rank, sizeof rank, got);
  CHECK(s == GC_OK, "tp allgather");
  for (int i = 0; i < tp; i++) CHECK(got[i] == tp_ranks[i], "tp member %d is %d", i, got[i]);
  s = gc_cpu_allgather(gp, &rank, sizeof rank, got);
  for (int i = 0; i < pp; i++) CHECK(got[i] == pp_ranks[i], "pp member %d is %d", i, got[i]);
  /* broadcast in each tp group from its last member, 1.5 MiB */
  size_t len = (3u << 19);
  unsigned char *buf = malloc(len), *want = malloc(len);
  fill(want, len, 800, (uint64_t)ti);
  if (pi == tp - 1)
    memcpy(buf, want, len);
  else
    memset(buf, 0, len);
  s = gc_cpu_broadcast(gt, buf, len, tp - 1);
  CHECK(s == GC_OK && !memcmp(buf, want, len), "tp broadcast");
  /* pp: send activations stage to stage */
  if (ti == 0) {
    fill(want, len, 900, (uint64_t)pi);
    s = gc_cpu_send(gp, want, len, 1);
  } else {
    s = gc_cpu_recv(gp, buf, len, ti - 1);
    fill(want, len, 900, (uint64_t)pi);
    CHECK(!memcmp(buf, want, len), "pp activations");
  }
  CHECK(s == GC_OK, "pp send/recv");
  /* a nested subgroup: pairs inside each tp group */
  int pair[2] = {pi / 2 * 2, pi / 2 * 2 + 1};
  gc_cpu_group_t *g2 = NULL;
  s = gc_cpu_subgroup(gt, pair, 2, "pair", &g2);
  CHECK(s == GC_OK && g2 && g2->rank == pi % 2, "nested subgroup");
  if (g2) {
    int v[2] = {0};
    CHECK(gc_cpu_allgather(g2, &rank, sizeof rank, v) == GC_OK && v[0] == tp_ranks[pair[0]] &&
              v[1] == tp_ranks[pair[1]],
          "nested allgather %d %d", v[0], v[1]);
    gc_cpu_destroy(g2);
  }
  CHECK(gc_cpu_barrier(w) == GC_OK, "world barrier");
  gc_cpu_destroy(gt);
  gc_cpu_destroy(gp);
  gc_cpu_destroy(w);
  free(buf);
  free(want);
  return 0;
}

/* The public path: gc_init with a rendezvous, gc_group_new, gc_barrier. */
static int t_api(int rank, int n, void *arg) {
  (void)arg;
  char rv[96];
  snprintf(rv, sizeof rv, "%s-api", TOKEN);
  gc_init_options_t o = {
      .rank = rank, .world_size = n, .local_rank = rank, .rendezvous = rv, .timeout_s = 30};
  gc_status_t s = gc_init(&o);
  CHECK(s == GC_OK, "gc_init: %s", gc_status_string(s));
  if (s != GC_OK) return 1;
  CHECK(gc_world_rank() == rank && gc_world_size() == n, "world rank/size");
  int half = n / 2;
  int ranks[8], sizes[2] = {half, n - half};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_options_t go = {.group_ranks = ranks,
                           .group_sizes = sizes,
                           .num_groups = 2,
                           .local_rank = rank,
                           .backend = "host",
                           .group_name = "tp"};
  gc_group_t *g = NULL;
  s = gc_group_new(&go, &g);
  CHECK(s == GC_OK && g, "gc_group_new: %s", gc_status_string(s));
  if (g) {
    CHECK(gc_group_world_size(g) == (rank < half ? half : n - half), "group size");
    CHECK(gc_group_rank_in_group(g) == (rank < half ? rank : rank - half), "rank in group");
    for (int i = 0; i < 5; i++) CHECK(gc_barrier(g) == GC_OK, "gc_barrier %d", i);
  }
  /* a layout that differs on rank 1 -> GC_ERR_INVALID_ARG on every rank */
  int sizes2[2] = {half, n - half};
  int ranks2[8];
  for (int i = 0; i < n; i++) ranks2[i] = i;
  if (rank == 1) {
    ranks2[0] = n - 1;
    ranks2[n - 1] = 0;
  }
  go.group_ranks = ranks2;
  go.group_sizes = sizes2;
  gc_group_t *bad = NULL;
  s = gc_group_new(&go, &bad);
  CHECK(s == GC_ERR_INVALID_ARG && !bad, "differing layout: %s", gc_status_string(s));
  /* a rank in two groups on every rank -> INVALID_ARG everywhere */
  int dup[8];
  for (int i = 0; i < n; i++) dup[i] = i;
  dup[n - 1] = 0;
  go.group_ranks = dup;
  s = gc_group_new(&go, &bad);
  CHECK(s == GC_ERR_INVALID_ARG && !bad, "rank in two groups: %s", gc_status_string(s));
  /* the world is still usable afterwards */
  go.group_ranks = ranks;
  go.group_sizes = sizes;
  gc_group_t *g3 = NULL;
  s = gc_group_new(&go, &g3);
  CHECK(s == GC_OK && g3 && gc_barrier(g3) == GC_OK, "group after a rejected call");
  CHECK(gc_finalize() == GC_OK, "gc_finalize");
  return 0;
}

/* Two 2-rank jobs started by one parent (ranks 0-1 job 0, 2-3 job 1): with
 * no job identity gc_init refuses; with one (a launcher's, or
 * GCSHIM_RENDEZVOUS values that differ only past 127 characters) each job
 * sums only its own ranks' values. */
static const char *const id_vars[] = {
    "GCSHIM_RENDEZVOUS", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_JOB_ID",
    "SLURM_STEP_ID",     "PMI_PORT",       "TORCHELASTIC_RUN_ID",     "MASTER_PORT"};

static void job_sums(int job, int r, const char *what) {
  gc_init_options_t o = {.rank = r, .world_size = 2, .local_rank = r, .timeout_s = 30};
  gc_status_t s = gc_init(&o);
  CHECK(s == GC_OK, "%s: gc_init: %s", what, gc_status_string(s));
  if (s != GC_OK) return;
  int ranks[2] = {0, 1}, sizes[1] = {2};
  gc_group_options_t go = {.group_ranks = ranks,
                           .group_sizes = sizes,
                           .num_groups = 1,
                           .local_rank = r,
                           .backend = "host",
                           .group_name = "job"};
  gc_group_t *g = NULL;
  CHECK(gc_group_new(&go, &g) == GC_OK, "%s: group", what);
  int bad = 0;
  for (int i = 0; g && i < 20; i++) {
    int64_t x = job * 1000 + r * 10 + i, y = -1;
    gc_tensor_t in = {.data = &x, .dtype = GC_INT64}, out = {.data = &y, .dtype = GC_INT64};
    if (gc_all_reduce(g, &in, &out, GC_SUM, NULL) != GC_OK || y != job * 2000 + 10 + 2 * i) bad++;
  }
  CHECK(bad == 0, "%s: %d all-reduces mixed jobs or failed", what, bad);
  CHECK(gc_finalize() == GC_OK, "%s: finalize", what);
}

static int t_jobs(int rank, int n, void *arg) {
  (void)n, (void)arg;
  int job = rank / 2, r = rank % 2;
  for (size_t i = 0; i < sizeof id_vars / sizeof *id_vars; i++) unsetenv(id_vars[i]);
  gc_init_options_t o = {.rank = r, .world_size = 2, .local_rank = r, .timeout_s = 5};
  gc_status_t s = gc_init(&o);
  CHECK(s == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "GCSHIM_RENDEZVOUS"),
        "no job identity: %s", gc_status_string(s));
  if (s == GC_OK) gc_finalize();
  char v[300];
  snprintf(v, sizeof v, "%s-job%d", TOKEN, job);
  setenv("SLURM_JOB_ID", v, 1);
  job_sums(job, r, "slurm job ids");
  unsetenv("SLURM_JOB_ID");
  /* 150 characters alike, then the job: too long for a name, hashed whole. */
  snprintf(v, sizeof v, "%s-%0150d-%d", TOKEN, 0, job);
  setenv("GCSHIM_RENDEZVOUS", v, 1);
  job_sums(job, r, "long GCSHIM_RENDEZVOUS");
  return 0;
}

/* Two processes claim rank 0 of one key: both fail at once with
 * GC_ERR_STATE (a shared rendezvous), neither waits for the timeout. */
static int t_dup(int rank, int n, void *arg) {
  (void)n, (void)arg;
  char key[96];
  snprintf(key, sizeof key, "%s-dup", TOKEN);
  if (rank == 1) usleep(300000); /* rank 0 claims first and waits */
  gc_cpu_group_t *g = NULL;
  uint64_t t0 = now_ns();
  gc_status_t s = gc_cpu_shm_create(key, 0, 2, 20, &g);
  double dt = (double)(now_ns() - t0) / 1e9;
  CHECK(s == GC_ERR_STATE && strstr(gc_last_error(), "rendezvous") && dt < 5,
        "a rank claimed twice (%s): %s after %.1f s", rank ? "second" : "first",
        gc_status_string(s), dt);
  if (g) gc_cpu_destroy(g);
  return 0;
}

/* Calls whose sizes differ across ranks (nothing compared them first, as
 * with GCSHIM_CHECK=0): every rank gets GC_ERR_INVALID_ARG from the round
 * itself, none GC_OK, and the next, matching call is exact (before: GC_OK
 * with data cut to another rank's length, and at 4 MiB the next call's
 * result wrong too). Last, the same through gc_all_reduce with
 * GCSHIM_CHECK=0. */
static void exact_allreduce(gc_cpu_group_t *g, int rank, int n, size_t count, const char *after) {
  float *x = malloc(count * sizeof *x), *y = malloc(count * sizeof *y);
  for (size_t i = 0; i < count; i++) x[i] = (float)((rank + 1) * (int)(i % 97));
  gc_status_t st = gc_cpu_allreduce(g, x, y, count, GC_FLOAT32, GC_SUM);
  size_t bad = 0;
  for (size_t i = 0; st == GC_OK && i < count; i++)
    bad += y[i] != (float)(n * (n + 1) / 2 * (int)(i % 97));
  CHECK(st == GC_OK && bad == 0, "all-reduce of %zu after %s: %s, %zu wrong", count, after,
        gc_status_string(st), bad);
  free(x);
  free(y);
}

static int t_mismatch(int rank, int n, void *arg) {
  (void)arg;
  gc_cpu_group_t *g = make("mismatch", rank, n);
  if (!g) return 1;
  size_t M = 1u << 20; /* floats: 4 MiB */
  float *a = calloc(M, sizeof *a), *b = calloc(M * (size_t)n, sizeof *b);
  struct {
    const char *what;
    size_t mine, other; /* rank 0 passes mine, the others other */
  } cases[] = {{"16 vs 8 floats", 16, 8},
               {"4 MiB vs 2 MiB", M, M / 2},
               {"8 floats vs 4 MiB", 8, M},
               {"none vs 8 floats", 0, 8},
               {"4 MiB vs 4 MiB - 4 bytes", M, M - 1}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    size_t count = rank == 0 ? cases[c].mine : cases[c].other;
    gc_status_t st = gc_cpu_allreduce(g, a, b, count, GC_FLOAT32, GC_SUM);
    CHECK(st == GC_ERR_INVALID_ARG, "all-reduce %s: %s", cases[c].what, gc_status_string(st));
    exact_allreduce(g, rank, n, c == 1 ? M : 64, cases[c].what);
  }
  /* datatype and op count too */
  gc_status_t st = gc_cpu_allreduce(g, a, b, 16, rank ? GC_INT32 : GC_FLOAT32, GC_SUM);
  CHECK(st == GC_ERR_INVALID_ARG, "all-reduce float vs int: %s", gc_status_string(st));
  st = gc_cpu_allreduce(g, a, b, 16, GC_FLOAT32, rank ? GC_MAX : GC_SUM);
  CHECK(st == GC_ERR_INVALID_ARG, "all-reduce sum vs max: %s", gc_status_string(st));
  exact_allreduce(g, rank, n, 100, "datatype and op");
  st = gc_cpu_allgather(g, a, rank ? 32 : 48, b);
  CHECK(st == GC_ERR_INVALID_ARG, "all-gather 48 vs 32 bytes: %s", gc_status_string(st));
  size_t *counts = calloc((size_t)n, sizeof *counts);
  for (int r = 0; r < n; r++) counts[r] = rank == 0 && r == 0 ? 64 : 32;
  st = gc_cpu_reduce_scatter(g, a, b, counts, GC_FLOAT32, GC_SUM);
  CHECK(st == GC_ERR_INVALID_ARG, "reduce-scatter counts: %s", gc_status_string(st));
  exact_allreduce(g, rank, n, M, "all-gather and reduce-scatter");
  free(counts);
  gc_cpu_destroy(g);
  /* The API with GCSHIM_CHECK=0. */
  setenv("GCSHIM_CHECK", "0", 1);
  char rv[96];
  snprintf(rv, sizeof rv, "%s-nocheck", TOKEN);
  gc_init_options_t o = {
      .rank = rank, .world_size = n, .local_rank = rank, .rendezvous = rv, .timeout_s = 30};
  int ranks[64], sizes[1] = {n};
  for (int r = 0; r < n; r++) ranks[r] = r;
  gc_group_options_t go = {.group_ranks = ranks,
                           .group_sizes = sizes,
                           .num_groups = 1,
                           .local_rank = rank,
                           .backend = "host",
                           .group_name = "nocheck"};
  gc_group_t *gg = NULL;
  if (gc_init(&o) == GC_OK && gc_group_new(&go, &gg) == GC_OK) {
    int64_t shp[1] = {rank ? 8 : 16}, one[1] = {64};
    gc_tensor_t in = {.data = a, .dtype = GC_FLOAT32, .ndim = 1, .shape = {shp[0]}};
    gc_tensor_t out = {.data = b, .dtype = GC_FLOAT32, .ndim = 1, .shape = {shp[0]}};
    CHECK(gc_all_reduce(gg, &in, &out, GC_SUM, NULL) == GC_ERR_INVALID_ARG,
          "gc_all_reduce 16 vs 8 with GCSHIM_CHECK=0");
    for (int i = 0; i < 64; i++) a[i] = (float)(rank + i);
    in.shape[0] = out.shape[0] = one[0];
    CHECK(gc_all_reduce(gg, &in, &out, GC_SUM, NULL) == GC_OK &&
              b[5] == (float)(n * (n - 1) / 2 + 5 * n),
          "gc_all_reduce after the mismatch");
  } else {
    CHECK(0, "gc_init/gc_group_new with GCSHIM_CHECK=0");
  }
  gc_finalize();
  free(a);
  free(b);
  return 0;
}

/* Bad input through gc_cpu_*: a clear status and a message naming it. */
static int t_bad(int rank, int n, void *arg) {
  (void)arg;
  gc_cpu_group_t *g = make("bad", rank, n);
  if (!g) return 1;
  char b[16] = {0};
  size_t lens[2] = {4, 4};
  CHECK(gc_cpu_send(g, b, 4, rank) == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "itself"),
        "send to self");
  CHECK(gc_cpu_recv(g, b, 4, rank) == GC_ERR_INVALID_ARG, "recv from self");
  CHECK(gc_cpu_send(g, b, 4, 2) == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "rank 2"),
        "send to rank 2 of 2");
  CHECK(gc_cpu_recv(g, b, 4, -1) == GC_ERR_INVALID_ARG, "recv from -1");
  CHECK(gc_cpu_broadcast(g, NULL, 4, 0) == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "NULL"),
        "broadcast NULL");
  CHECK(gc_cpu_broadcast(g, b, 4, 5) == GC_ERR_INVALID_ARG, "broadcast root 5");
  CHECK(gc_cpu_gatherv(g, b, NULL, b, 0) == GC_ERR_INVALID_ARG, "gatherv lens NULL");
  CHECK(gc_cpu_allgatherv(g, NULL, lens, b) == GC_ERR_INVALID_ARG, "allgatherv send NULL");
  CHECK(gc_cpu_allgather(g, b, 4, NULL) == GC_ERR_INVALID_ARG, "allgather recv NULL");
  gc_cpu_group_t *sub = NULL;
  int r2[2] = {0, 0};
  CHECK(gc_cpu_subgroup(g, r2, 0, "x", &sub) == GC_ERR_INVALID_ARG, "subgroup of 0");
  CHECK(gc_cpu_subgroup(g, r2, 2, "x", &sub) == GC_ERR_INVALID_ARG, "subgroup with a rank twice");
  int r3[1] = {1 - rank};
  CHECK(gc_cpu_subgroup(g, r3, 1, "x", &sub) == GC_ERR_INVALID_ARG, "subgroup without me");
  CHECK(gc_cpu_barrier(NULL) == GC_ERR_INVALID_ARG, "barrier NULL");
  /* a recv whose size differs from the matching send: INVALID_ARG, then
   * the group is poisoned with that status */
  gc_status_t s;
  if (rank == 0) {
    s = gc_cpu_send(g, b, 8, 1);
    CHECK(s == GC_OK, "send 8");
  } else {
    s = gc_cpu_recv(g, b, 4, 0);
    CHECK(s == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "8"), "recv 4 of 8: %s",
          gc_status_string(s));
    s = gc_cpu_barrier(g);
    CHECK(s == GC_ERR_INVALID_ARG, "poisoned barrier: %s", gc_status_string(s));
  }
  gc_cpu_destroy(g);
  /* creation arguments */
  gc_cpu_group_t *x = NULL;
  CHECK(gc_cpu_shm_create(NULL, 0, 1, 1, &x) == GC_ERR_INVALID_ARG, "NULL key");
  CHECK(gc_cpu_shm_create("k", 0, 0, 1, &x) == GC_ERR_INVALID_ARG, "size 0");
  CHECK(gc_cpu_shm_create("k", -1, 2, 1, &x) == GC_ERR_INVALID_ARG, "rank -1");
  CHECK(gc_cpu_shm_create("k", 2, 2, 1, &x) == GC_ERR_INVALID_ARG &&
            strstr(gc_last_error(), "rank 2"),
        "rank 2 of 2");
  CHECK(gc_cpu_shm_create("k", 0, 1, 1, NULL) == GC_ERR_INVALID_ARG, "out NULL");
  /* any key string works: odd characters, very long */
  char key[1200];
  snprintf(key, sizeof key, "%s-odd key/with*chars?\n%d-", TOKEN, rank);
  size_t k = strlen(key);
  memset(key + k, 'z', 1000);
  key[k + 1000] = '\0';
  s = gc_cpu_shm_create(key, 0, 1, 5, &x);
  CHECK(s == GC_OK && gc_cpu_barrier(x) == GC_OK, "odd long key: %s", gc_status_string(s));
  gc_cpu_destroy(x);
  return 0;
}

/* In-place rounds (round_begin/exchange/end): records of 16 bytes up to
 * round_cap, one rank per round running a plain 16-byte allgather in the
 * same round (it must read every record's first 16 bytes, the others its
 * 16 bytes), mixed with other rounds that use the same halves. */
static int t_inplace(int rank, int n, void *arg) {
  (void)arg;
  gc_cpu_group_t *g = make("inplace", rank, n);
  if (!g) return 1;
  size_t cap = g->round_cap;
  CHECK(cap >= 4096 && g->ops->round_begin, "in-place rounds offered (cap %zu)", cap);
  unsigned char *want = malloc(cap), *got = malloc((size_t)n * 70000), *w2 = malloc(70000);
  float *fin = malloc(3000 * sizeof(float)), *fout = malloc(3000 * sizeof(float));
  uint64_t st = 99;
  for (int it = 0; it < 300; it++) {
    int plain = it % (n + 1); /* n: nobody plain */
    size_t len[64];
    for (int r = 0; r < n; r++) {
      uint64_t x = rnd(&st) % 4;
      len[r] = x == 0 ? 16 : x == 1 ? cap : x == 2 ? cap - 1 - rnd(&st) % 64 : 16 + rnd(&st) % 4096;
    }
    if (rank == plain) {
      unsigned char mine[16];
      fill(mine, 16, (uint64_t)it, (uint64_t)rank);
      CHECK(gc_cpu_allgather(g, mine, 16, got) == GC_OK, "plain allgather it %d", it);
      for (int r = 0; r < n; r++) {
        fill(want, r == plain ? 16 : len[r], (uint64_t)it, (uint64_t)r);
        CHECK(!memcmp(got + (size_t)r * 16, want, 16), "plain reader it %d: rank %d's bytes", it,
              r);
      }
    } else {
      void *mine = NULL;
      const void *all[64];
      CHECK(g->ops->round_begin(g, &mine) == GC_OK && mine, "round_begin it %d", it);
      if (!mine) break;
      CHECK(((uintptr_t)mine & 4095) == 16, "record 16 bytes into a page");
      fill(mine, len[rank], (uint64_t)it, (uint64_t)rank);
      CHECK(g->ops->round_exchange(g, all) == GC_OK, "round_exchange it %d", it);
      for (int r = 0; r < n; r++) {
        size_t l = r == plain ? 16 : len[r];
        fill(want, l, (uint64_t)it, (uint64_t)r);
        CHECK(!memcmp(all[r], want, l), "in-place reader it %d: rank %d's %zu bytes", it, r, l);
      }
      g->ops->round_end(g);
    }
    if (it % 7 == 3) { /* other rounds on the same halves */
      for (int i = 0; i < 3000; i++) fin[i] = (float)(rank + i % 5);
      CHECK(gc_cpu_allreduce(g, fin, fout, 3000, GC_FLOAT32, GC_SUM) == GC_OK, "allreduce");
      bool ok = true;
      for (int i = 0; i < 3000; i++) ok = ok && fout[i] == (float)(n * (n - 1) / 2 + n * (i % 5));
      CHECK(ok, "allreduce between in-place rounds, it %d", it);
      fill(w2, 70000, (uint64_t)it, (uint64_t)rank + 100);
      CHECK(gc_cpu_allgather(g, w2, 70000, got) == GC_OK, "allgather 70000");
      for (int r = 0; r < n; r++) {
        fill(w2, 70000, (uint64_t)it, (uint64_t)r + 100);
        CHECK(!memcmp(got + (size_t)r * 70000, w2, 70000), "allgather between in-place rounds");
      }
    }
  }
  free(want);
  free(got);
  free(w2);
  free(fin);
  free(fout);
  gc_cpu_destroy(g);
  return 0;
}

int main(void) {
  alarm(getenv("GCSHIM_TEST_QUICK") ? 280 : 150);
  counters_init();
  snprintf(TOKEN, sizeof TOKEN, "tshm%d", (int)getpid());
  /* GCSHIM_TEST_QUICK=1 (for valgrind): two processes, no large payloads. */
  if (getenv("GCSHIM_TEST_QUICK")) {
    size_t none = 0;
    CHECK(run_ranks(2, t_collectives, &none, 100, NULL, NULL) == 0, "collectives n=2");
    CHECK(run_ranks(2, t_api, NULL, 100, NULL, NULL) == 0, "api n=2");
    CHECK(run_ranks(2, t_bad, NULL, 100, NULL, NULL) == 0, "bad input n=2");
    return finish(TOKEN);
  }
  size_t big64 = 64u << 20, big16 = 16u << 20;
  int ns[] = {2, 4, 8};
  for (int i = 0; i < 3; i++) {
    size_t big = ns[i] == 2 ? big64 : ns[i] == 4 ? big16 : 0;
    uint64_t t0 = now_ns();
    int bad = run_ranks(ns[i], t_collectives, &big, 60, NULL, NULL);
    CHECK(bad == 0, "collectives n=%d: %d ranks failed", ns[i], bad);
    printf("collectives n=%d: %.2f s\n", ns[i], (double)(now_ns() - t0) / 1e9);
    fflush(stdout);
  }
  for (int n = 3; n <= 5; n += 2) {
    int bad = run_ranks(n, t_odd, NULL, 60, NULL, NULL);
    CHECK(bad == 0, "odd n=%d: %d ranks failed", n, bad);
  }
  for (int n = 2; n <= 4; n++)
    CHECK(run_ranks(n, t_inplace, NULL, 60, NULL, NULL) == 0, "in-place rounds n=%d", n);
  CHECK(run_ranks(8, t_subgroups, NULL, 60, NULL, NULL) == 0, "subgroups n=8");
  CHECK(run_ranks(1, t_sizes, NULL, 60, NULL, NULL) == 0, "group of 1");
  CHECK(run_ranks(16, t_sizes, NULL, 60, NULL, NULL) == 0, "group of 16");
  CHECK(run_ranks(4, t_api, NULL, 60, NULL, NULL) == 0, "api n=4");
  CHECK(run_ranks(3, t_api, NULL, 60, NULL, NULL) == 0, "api n=3");
  CHECK(run_ranks(2, t_bad, NULL, 60, NULL, NULL) == 0, "bad input n=2");
  CHECK(run_ranks(4, t_jobs, NULL, 60, NULL, NULL) == 0, "sibling jobs");
  CHECK(run_ranks(2, t_dup, NULL, 60, NULL, NULL) == 0, "a rank claimed twice");
  for (int n = 2; n <= 4; n += 2)
    CHECK(run_ranks(n, t_mismatch, NULL, 60, NULL, NULL) == 0, "calls that differ n=%d", n);
  return finish(TOKEN);
}
