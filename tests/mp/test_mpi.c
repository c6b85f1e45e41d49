/*
 * test_mpi.c - the MPI CPU transport under mpirun (run by run_mpi.sh with
 * mpirun -np 4). Every rank checks exact values of every operation on
 * seeded random payloads (0 B .. 64 MiB); data of rank r is a function of
 * (seed, r, step), so each rank computes every expected value itself.
 * Rank 0 prints one closing line "N passed, N failed" (all ranks summed).
 * Without MPI built in it exits 77 (skipped).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coord/coord.h"
#include "core/reduce.h"
#include "cpu/cpu.h"
#include "gcshim/gc.h"

#ifndef GC_HAVE_MPI
int main(void) {
  printf("mpi transport not built: skipped\n");
  return 77;
}
#else

static int passed, failed, me = -1;
static uint64_t seed;

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    if (cond) {                                                         \
      passed++;                                                         \
    } else {                                                            \
      failed++;                                                         \
      fprintf(stderr, "rank %d: FAIL %s:%d: ", me, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                     \
      fprintf(stderr, " [%s]\n", gc_last_error());                      \
    }                                                                   \
  } while (0)

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* The bytes rank r contributes at step: the same on every rank. */
static void fill(void *buf, size_t len, int r, int step) {
  uint64_t s = mix(seed ^ ((uint64_t)r << 40) ^ ((uint64_t)step << 8));
  unsigned char *b = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    s = mix(s);
    memcpy(b + i, &s, 8);
  }
  s = mix(s);
  for (; i < len; i++) b[i] = (unsigned char)(s >> (8 * (i & 7)));
}

/* A number in [0, n) the same on every rank for (step, k). */
static uint64_t shared_rand(int step, int k, uint64_t n) {
  return mix(seed * 31 + (uint64_t)step * 1000003u + (uint64_t)k) % n;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "rank %d: out of memory for %zu bytes\n", me, n);
    exit(2);
  }
  return p;
}

/* Payloads up to 64 MiB; under TSan (10x slower) up to 2 MiB, so that the
 * test stays within its alarm. */
#if defined(__SANITIZE_THREAD__)
#define MAX_PAYLOAD ((size_t)2 << 20)
#else
#define MAX_PAYLOAD ((size_t)64 << 20)
#endif
#define BIG(x) ((size_t)(x) < MAX_PAYLOAD ? (size_t)(x) : MAX_PAYLOAD)

static const size_t sizes[] = {0, 1, 7, 64, 4093, 65536 + 3, (1u << 20) + 5, 16u << 20, 64u << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_broadcast(gc_cpu_group_t *w) {
  unsigned char *buf = xmalloc(MAX_PAYLOAD), *want = xmalloc(MAX_PAYLOAD);
  for (size_t i = 0; i < NSIZES; i++) {
    size_t len = BIG(sizes[i]);
    int root = (int)(i % (size_t)w->size), step = 100 + (int)i;
    if (w->rank == root)
      fill(buf, len, root, step);
    else
      memset(buf, 0xee, len);
    gc_status_t s = gc_cpu_broadcast(w, buf, len, root);
    fill(want, len, root, step);
    CHECK(s == GC_OK && !memcmp(buf, want, len), "broadcast %zu bytes from %d: %s", len, root,
          gc_status_string(s));
  }
  free(buf);
  free(want);
}

static void test_send_recv(gc_cpu_group_t *w) {
  static const size_t lens[] = {0, 1, 4096, (8u << 20) + 1};
  int next = (w->rank + 1) % w->size, prev = (w->rank + w->size - 1) % w->size;
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    size_t len = BIG(lens[i]);
    unsigned char *out = xmalloc(len), *in = xmalloc(len), *want = xmalloc(len);
    fill(out, len, w->rank, 200 + (int)i);
    fill(want, len, prev, 200 + (int)i);
    gc_status_t s;
    /* even ranks send first, odd ranks receive first: no deadlock on a ring */
    if (w->rank % 2 == 0) {
      s = gc_cpu_send(w, out, len, next);
      if (s == GC_OK) s = gc_cpu_recv(w, in, len, prev);
    } else {
      s = gc_cpu_recv(w, in, len, prev);
      if (s == GC_OK) s = gc_cpu_send(w, out, len, next);
    }
    CHECK(s == GC_OK && !memcmp(in, want, len), "ring send/recv %zu bytes: %s", len,
          gc_status_string(s));
    free(out);
    free(in);
    free(want);
  }
}

static void test_allgather(gc_cpu_group_t *w) {
  static const size_t lens[] = {0, 1, 1000, (1u << 20) + 3, 16u << 20};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    size_t len = BIG(lens[i]) / (lens[i] > MAX_PAYLOAD / 4 ? (size_t)w->size : 1),
           all = len * (size_t)w->size;
    unsigned char *send = xmalloc(len), *recv = xmalloc(all), *want = xmalloc(all);
    fill(send, len, w->rank, 300 + (int)i);
    for (int r = 0; r < w->size; r++) fill(want + len * (size_t)r, len, r, 300 + (int)i);
    memset(recv, 0xee, all);
    gc_status_t s = gc_cpu_allgather(w, send, len, recv);
    CHECK(s == GC_OK && !memcmp(recv, want, all), "allgather %zu bytes: %s", len,
          gc_status_string(s));
    /* in place: this rank's part already in its slot */
    memset(recv, 0xee, all);
    fill(recv + len * (size_t)w->rank, len, w->rank, 300 + (int)i);
    s = gc_cpu_allgather(w, recv + len * (size_t)w->rank, len, recv);
    CHECK(s == GC_OK && !memcmp(recv, want, all), "allgather in place %zu bytes: %s", len,
          gc_status_string(s));
    free(send);
    free(recv);
    free(want);
  }
}

static void test_allgatherv(gc_cpu_group_t *w) {
  for (int t = 0; t < 6; t++) {
    size_t lens[64], total = 0;
    /* unequal sizes, some zero; the last round reaches 64 MiB in all */
    for (int r = 0; r < w->size; r++) {
      uint64_t cap = t == 5 ? BIG(64u << 20) / (size_t)w->size : (t == 4 ? (2u << 20) : 5000);
      lens[r] = shared_rand(400 + t, r, 3) == 0 && t < 5 ? 0 : shared_rand(450 + t, r, cap + 1);
      if (t == 5) lens[r] = cap - (size_t)r * 4099;
      total += lens[r];
    }
    unsigned char *send = xmalloc(lens[w->rank]), *recv = xmalloc(total), *want = xmalloc(total);
    fill(send, lens[w->rank], w->rank, 400 + t);
    size_t off = 0;
    for (int r = 0; r < w->size; r++) {
      fill(want + off, lens[r], r, 400 + t);
      off += lens[r];
    }
    memset(recv, 0xee, total);
    gc_status_t s = gc_cpu_allgatherv(w, send, lens, recv);
    CHECK(s == GC_OK && !memcmp(recv, want, total), "allgatherv round %d (%zu bytes): %s", t, total,
          gc_status_string(s));
    int root = t % w->size;
    memset(recv, 0xee, total);
    s = gc_cpu_gatherv(w, send, lens, w->rank == root ? recv : NULL, root);
    CHECK(s == GC_OK && (w->rank != root || !memcmp(recv, want, total)),
          "gatherv round %d to %d: %s", t, root, gc_status_string(s));
    free(send);
    free(recv);
    free(want);
  }
}

/* Small integer values, so every order of summation gives the same bits. */
static void fill_values(gc_dtype_t dt, gc_redop_t op, void *buf, size_t n, int r, int step) {
  for (size_t i = 0; i < n; i++) {
    uint64_t x = mix(seed ^ ((uint64_t)r << 48) ^ ((uint64_t)step << 24) ^ i);
    int v;
    if (op == GC_PROD)
      v = (int)(x % 4) - 2 + (x % 4 >= 2); /* -2, -1, 1, 2 */
    else if (op == GC_MAX || op == GC_MIN)
      v = (int)(x % 201) - 100;
    else
      v = (int)(x % 17) - 8;
    if (dt == GC_UINT8 && v < 0) v = -v;
    switch (dt) {
      case GC_INT8:
        ((int8_t *)buf)[i] = (int8_t)v;
        break;
      case GC_UINT8:
        ((uint8_t *)buf)[i] = (uint8_t)v;
        break;
      case GC_INT32:
        ((int32_t *)buf)[i] = v;
        break;
      case GC_INT64:
        ((int64_t *)buf)[i] = v;
        break;
      case GC_FLOAT16:
        ((uint16_t *)buf)[i] = gc_float_to_half((float)v);
        break;
      case GC_BFLOAT16:
        ((uint16_t *)buf)[i] = gc_float_to_bf16((float)v);
        break;
      case GC_FLOAT32:
        ((float *)buf)[i] = (float)v;
        break;
      case GC_FLOAT64:
        ((double *)buf)[i] = v;
        break;
    }
  }
}

static void reference(gc_dtype_t dt, gc_redop_t op, void *out, size_t n, int size, int step) {
  size_t es = gc_dtype_size(dt);
  void *tmp = xmalloc(n * es);
  fill_values(dt, op, out, n, 0, step);
  for (int r = 1; r < size; r++) {
    fill_values(dt, op, tmp, n, r, step);
    gc_reduce_into(dt, op, out, tmp, n);
  }
  gc_reduce_finish(dt, op, out, n, size);
  free(tmp);
}

static void test_reductions(gc_cpu_group_t *w) {
  static const gc_dtype_t dts[] = {GC_INT8,    GC_UINT8,    GC_INT32,   GC_INT64,
                                   GC_FLOAT16, GC_BFLOAT16, GC_FLOAT32, GC_FLOAT64};
  static const gc_redop_t ops[] = {GC_SUM, GC_PROD, GC_MAX, GC_MIN, GC_AVG};
  static const size_t counts[] = {0, 1, 1000, 1u << 18};
  int step = 500;
  for (size_t d = 0; d < 8; d++)
    for (size_t o = 0; o < 5; o++)
      for (size_t c = 0; c < 4; c++, step++) {
        gc_dtype_t dt = dts[d];
        gc_redop_t op = ops[o];
        size_t n = counts[c], es = gc_dtype_size(dt);
        if (n > 1000 && dt != GC_FLOAT32 && dt != GC_BFLOAT16 && dt != GC_INT32) continue;
        void *send = xmalloc(n * es), *recv = xmalloc(n * es), *want = xmalloc(n * es);
        fill_values(dt, op, send, n, w->rank, step);
        reference(dt, op, want, n, w->size, step);
        gc_status_t s = gc_cpu_allreduce(w, send, recv, n, dt, op);
        CHECK(s == GC_OK && !memcmp(recv, want, n * es), "allreduce %s op %d n %zu: %s",
              gc_dtype_name(dt), (int)op, n, gc_status_string(s));
        /* in place */
        s = gc_cpu_allreduce(w, send, send, n, dt, op);
        CHECK(s == GC_OK && !memcmp(send, want, n * es), "allreduce in place %s op %d n %zu: %s",
              gc_dtype_name(dt), (int)op, n, gc_status_string(s));
        free(send);
        free(recv);
        free(want);
      }
  /* reduce-scatter: unequal counts (some zero) */
  static const gc_dtype_t rdts[] = {GC_INT32, GC_FLOAT32, GC_BFLOAT16, GC_FLOAT16, GC_INT64};
  for (size_t d = 0; d < sizeof rdts / sizeof rdts[0]; d++)
    for (int t = 0; t < 3; t++, step++) {
      gc_dtype_t dt = rdts[d];
      gc_redop_t op = t == 2 ? GC_AVG : (t == 1 ? GC_MAX : GC_SUM);
      size_t cnt[64], total = 0, off = 0, es = gc_dtype_size(dt);
      for (int r = 0; r < w->size; r++) {
        cnt[r] = shared_rand(step, r, t == 0 ? 70000 : 300);
        if (r == 1 && t == 1) cnt[r] = 0;
        if (r < w->rank) off += cnt[r];
        total += cnt[r];
      }
      void *send = xmalloc(total * es), *recv = xmalloc(cnt[w->rank] * es),
           *want = xmalloc(total * es);
      fill_values(dt, op, send, total, w->rank, step);
      reference(dt, op, want, total, w->size, step);
      gc_status_t s = gc_cpu_reduce_scatter(w, send, recv, cnt, dt, op);
      CHECK(s == GC_OK && !memcmp(recv, (char *)want + off * es, cnt[w->rank] * es),
            "reduce_scatter %s op %d (%zu of %zu): %s", gc_dtype_name(dt), (int)op, cnt[w->rank],
            total, gc_status_string(s));
      free(send);
      free(recv);
      free(want);
    }
}

/* vLLM's layout: TP groups of consecutive ranks, PP groups across them. */
static void test_tp_pp(void) {
  int W = gc_world_size(), tp = W >= 4 ? 2 : 1, pp = W / tp;
  int tp_ranks[64], tp_sizes[32], pp_ranks[64], pp_sizes[32];
  for (int i = 0; i < pp; i++) {
    tp_sizes[i] = tp;
    for (int k = 0; k < tp; k++) tp_ranks[i * tp + k] = i * tp + k;
  }
  for (int k = 0; k < tp; k++) {
    pp_sizes[k] = pp;
    for (int i = 0; i < pp; i++) pp_ranks[k * pp + i] = i * tp + k;
  }
  gc_group_options_t to = {
      .group_ranks = tp_ranks, .group_sizes = tp_sizes, .num_groups = pp, .group_name = "tp"};
  gc_group_options_t po = {
      .group_ranks = pp_ranks, .group_sizes = pp_sizes, .num_groups = tp, .group_name = "pp"};
  gc_group_t *tg = NULL, *pg = NULL;
  gc_status_t s = gc_group_new(&to, &tg);
  CHECK(s == GC_OK, "gc_group_new tp: %s", gc_status_string(s));
  s = gc_group_new(&po, &pg);
  CHECK(s == GC_OK, "gc_group_new pp: %s", gc_status_string(s));
  if (!tg || !pg) return;
  int r = gc_world_rank();
  CHECK(gc_group_world_size(tg) == tp && gc_group_rank_in_group(tg) == r % tp, "tp size %d rank %d",
        gc_group_world_size(tg), gc_group_rank_in_group(tg));
  CHECK(gc_group_world_size(pg) == pp && gc_group_rank_in_group(pg) == r / tp, "pp size %d rank %d",
        gc_group_world_size(pg), gc_group_rank_in_group(pg));
  CHECK(!strcmp(gc_group_name(tg), "tp:0") && !strcmp(gc_group_name(pg), "pp:0"), "names %s %s",
        gc_group_name(tg), gc_group_name(pg));
  for (int i = 0; i < 20; i++) {
    s = gc_barrier(tg);
    if (s == GC_OK) s = gc_barrier(pg);
    if (s != GC_OK) break;
  }
  CHECK(s == GC_OK, "barriers on tp and pp: %s", gc_status_string(s));
  /* membership is exact: the sum of world ranks over each group */
  int64_t v = r, sum = -1, want = 0;
  s = gc_cpu_allreduce(tg->cpu, &v, &sum, 1, GC_INT64, GC_SUM);
  for (int k = 0; k < tp; k++) want += (r / tp) * tp + k;
  CHECK(s == GC_OK && sum == want, "tp rank sum %lld, want %lld", (long long)sum, (long long)want);
  s = gc_cpu_allreduce(pg->cpu, &v, &sum, 1, GC_INT64, GC_SUM);
  want = 0;
  for (int i = 0; i < pp; i++) want += i * tp + r % tp;
  CHECK(s == GC_OK && sum == want, "pp rank sum %lld, want %lld", (long long)sum, (long long)want);
  /* a broadcast from the group's last rank reaches only its members */
  uint64_t b = r == gc_group_last_rank(pg) ? mix(seed + (uint64_t)r) : 0;
  s = gc_cpu_broadcast(pg->cpu, &b, sizeof b, pp - 1);
  CHECK(s == GC_OK && b == mix(seed + (uint64_t)gc_group_last_rank(pg)), "pp broadcast");
  CHECK(gc_group_destroy(tg) == GC_OK && gc_group_destroy(pg) == GC_OK, "destroy");
}

/* A sub-group in reversed order at the CPU level, and bad input. */
static void test_subgroup_and_errors(gc_cpu_group_t *w) {
  int rev[64];
  for (int i = 0; i < w->size; i++) rev[i] = w->size - 1 - i;
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_subgroup(w, rev, w->size, "rev", &g);
  CHECK(s == GC_OK && g && g->rank == w->size - 1 - w->rank && g->size == w->size,
        "reversed subgroup: %s", gc_status_string(s));
  if (g) {
    int32_t x = g->rank == 0 ? 4242 + w->rank : 0;
    s = gc_cpu_broadcast(g, &x, sizeof x, 0);
    CHECK(s == GC_OK && x == 4242 + w->size - 1, "reversed broadcast %d", x);
    gc_cpu_destroy(g);
  }
  char b[16] = {0};
  CHECK(gc_cpu_broadcast(w, b, sizeof b, w->size) == GC_ERR_INVALID_ARG, "root out of range");
  CHECK(gc_cpu_broadcast(w, NULL, 4, 0) == GC_ERR_INVALID_ARG, "NULL buffer");
  CHECK(gc_cpu_allreduce(w, b, b, 1, (gc_dtype_t)99, GC_SUM) == GC_ERR_INVALID_ARG, "bad dtype");
  CHECK(gc_cpu_send(w, b, 1, w->rank) == GC_ERR_INVALID_ARG, "send to self");
  int bad[2] = {0, 0};
  CHECK(gc_cpu_subgroup(w, bad, 2, "dup", &g) == GC_ERR_INVALID_ARG, "rank listed twice");

  /* size mismatch between send and recv: GC_ERR_TRUNCATED */
  if (w->size >= 2 && w->rank < 2) {
    char m[16];
    memset(m, 7, sizeof m);
    if (w->rank == 0) {
      s = gc_cpu_send(w, m, 10, 1);
      gc_status_t s2 = gc_cpu_send(w, m, 10, 1);
      CHECK(s == GC_OK && s2 == GC_OK, "sends of 10 bytes: %s", gc_status_string(s));
    } else {
      s = gc_cpu_recv(w, m, 8, 0);
      CHECK(s == GC_ERR_TRUNCATED, "recv of 8 bytes from a 10-byte send: %s", gc_status_string(s));
      s = gc_cpu_recv(w, m, 12, 0);
      CHECK(s == GC_ERR_TRUNCATED, "recv of 12 bytes from a 10-byte send: %s", gc_status_string(s));
    }
  }
  gc_cpu_barrier(w);
}

/* A peer that never arrives: GC_ERR_TIMEOUT within timeout + 1 s. */
static void test_timeouts(gc_cpu_group_t *w) {
  if (w->size < 4) return;
  int pair[2] = {(w->rank / 2) * 2, (w->rank / 2) * 2 + 1};
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_subgroup(w, pair, 2, "pair", &g);
  CHECK(s == GC_OK, "pair subgroup: %s", gc_status_string(s));
  if (!g) return;
  g->timeout_s = 0.5;
  if (w->rank == 0) { /* collective: times out, then the group is unusable */
    uint64_t t0 = gc_now_ns();
    s = gc_cpu_barrier(g);
    double dt = (double)(gc_now_ns() - t0) / 1e9;
    CHECK(s == GC_ERR_TIMEOUT && dt >= 0.5 && dt < 1.5, "barrier alone: %s after %.2f s",
          gc_status_string(s), dt);
    CHECK(gc_cpu_barrier(g) == GC_ERR_STATE, "barrier after a timeout answers GC_ERR_STATE");
  }
  if (w->rank == 2) { /* a receive can be cancelled: the group stays usable */
    char m[8];
    uint64_t t0 = gc_now_ns();
    s = gc_cpu_recv(g, m, sizeof m, 1);
    double dt = (double)(gc_now_ns() - t0) / 1e9;
    CHECK(s == GC_ERR_TIMEOUT && dt >= 0.5 && dt < 1.5, "recv alone: %s after %.2f s",
          gc_status_string(s), dt);
  }
  /* a member that never comes to a sub-group's creation */
  int everyone[64];
  for (int i = 0; i < w->size; i++) everyone[i] = i;
  gc_cpu_group_t *all = NULL, *lonely = NULL;
  s = gc_cpu_subgroup(w, everyone, w->size, "everyone", &all);
  CHECK(s == GC_OK, "everyone subgroup: %s", gc_status_string(s));
  if (all) {
    all->timeout_s = 0.5;
    if (w->rank == 0) {
      int two[2] = {0, 1};
      uint64_t t0 = gc_now_ns();
      s = gc_cpu_subgroup(all, two, 2, "lonely", &lonely);
      double dt = (double)(gc_now_ns() - t0) / 1e9;
      CHECK(s == GC_ERR_TIMEOUT && !lonely && dt >= 0.5 && dt < 1.5,
            "subgroup without its second member: %s after %.2f s", gc_status_string(s), dt);
    }
    all->timeout_s = 60;
    s = gc_cpu_barrier(all);
    CHECK(s == GC_OK, "parent usable after a subgroup timeout: %s", gc_status_string(s));
    gc_cpu_destroy(all);
  }
  s = gc_cpu_barrier(w);
  CHECK(s == GC_OK, "world barrier after timeouts: %s", gc_status_string(s));
  if (w->rank == 1) gc_cpu_barrier(g); /* completes rank 0's pending barrier */
  if (w->rank == 2 || w->rank == 3) {
    s = gc_cpu_barrier(g);
    CHECK(s == GC_OK, "pair barrier after a cancelled recv: %s", gc_status_string(s));
  }
  gc_cpu_destroy(g);
  s = gc_cpu_barrier(w);
  CHECK(s == GC_OK, "world barrier at the end: %s", gc_status_string(s));
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--probe")) return 0; /* run_mpi.sh: MPI is built in */
  alarm(120);
  gc_init_options_t io = {.rank = -1, .world_size = -1, .local_rank = -1, .cpu_transport = "mpi"};
  gc_status_t s = gc_init(&io);
  if (s != GC_OK) {
    fprintf(stderr, "gc_init(mpi): %s: %s\n", gc_status_string(s), gc_last_error());
    printf("0 passed, 1 failed\n");
    return 1;
  }
  gc_cpu_group_t *w = gc_world.cpu;
  me = w->rank;
  CHECK(w->size == gc_world_size() && w->rank == gc_world_rank(), "world %d of %d", w->rank,
        w->size);
  CHECK(!strcmp(w->ops->name, "mpi"), "transport %s", w->ops->name);

  uint64_t sd = 0;
  if (me == 0) {
    const char *e = getenv("GCSHIM_SEED");
    sd = e ? strtoull(e, NULL, 0) : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16));
    printf("test_mpi: %d ranks, seed %llu (set GCSHIM_SEED to repeat)\n", w->size,
           (unsigned long long)sd);
    fflush(stdout);
  }
  s = gc_cpu_broadcast(w, &sd, sizeof sd, 0);
  CHECK(s == GC_OK, "seed broadcast: %s", gc_status_string(s));
  seed = sd;

  for (int i = 0; i < 100; i++)
    if ((s = gc_cpu_barrier(w)) != GC_OK) break;
  CHECK(s == GC_OK, "100 barriers: %s", gc_status_string(s));
  test_broadcast(w);
  test_send_recv(w);
  test_allgather(w);
  test_allgatherv(w);
  test_reductions(w);
  test_tp_pp();
  test_subgroup_and_errors(w);
  test_timeouts(w);

  int64_t counts[2] = {passed, failed}, tot[2] = {0, 0};
  s = gc_cpu_allreduce(w, counts, tot, 2, GC_INT64, GC_SUM);
  if (s != GC_OK) {
    tot[0] = passed;
    tot[1] = failed + 1;
  }
  CHECK(gc_finalize() == GC_OK, "gc_finalize");
  if (me == 0) printf("%lld passed, %lld failed\n", (long long)tot[0], (long long)tot[1]);
  return failed || tot[1] ? 1 : 0;
}
#endif
