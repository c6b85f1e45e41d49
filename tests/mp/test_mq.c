/* test_mq.c - message queues (src/coord/mq.c): the group broadcaster with
 * 1, 2, 3 and 7 readers (messages of 0 B, 1 B, around the chunk size,
 * 64 MiB, then 10k small ones, random content checked exactly on every
 * reader), gc_broadcast_object through a group's use_message_queue_broadcaster,
 * an external writer's handle, single-reader broadcasters polled
 * without blocking, timeouts, would-block, cancel, a writer and a reader
 * killed with SIGKILL, bad input, and nothing left in /dev/shm. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include "core/report.h"
#include "test_ops_util.h"

#define CH 65536 /* GCSHIM_MQ_CHUNK_BYTES for the group queues */
#define MAXPIDS 256

typedef struct {
  _Atomic int npids;
  pid_t pids[MAXPIDS];
  gc_mq_handle_t handle;
  _Atomic int ready, consumed;
  _Atomic double kill_time;
} shared_t;
static shared_t *SH;

static void reg_pid(void) {
  int i = atomic_fetch_add(&SH->npids, 1);
  if (i < MAXPIDS) SH->pids[i] = getpid();
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* Message bytes from the seeded generator of (a, b). */
static void gen_bytes(uint8_t *p, size_t n, uint64_t a, uint64_t b) {
  rng_t r = rng_make(a, b, 99);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng_next(&r);
    memcpy(p + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = rng_next(&r);
    memcpy(p + i, &v, n - i);
  }
}

static bool same_bytes(const uint8_t *p, size_t n, uint64_t a, uint64_t b) {
  uint8_t buf[4096];
  rng_t r = rng_make(a, b, 99);
  for (size_t off = 0; off < n; off += sizeof buf) {
    size_t k = n - off < sizeof buf ? n - off : sizeof buf;
    for (size_t i = 0; i < k; i += 8) {
      uint64_t v = rng_next(&r);
      memcpy(buf + i, &v, k - i < 8 ? k - i : 8);
    }
    if (memcmp(p + off, buf, k)) return false;
  }
  return true;
}

static int world_group(int n, gc_group_t **g) {
  int ranks[64], sizes[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  *g = group_make(ranks, sizes, 1, "mq", false);
  return *g ? 0 : 1;
}

/* ---- the group broadcaster ----------------------------------------------------- */

static const size_t MSG_SIZES[] = {0,      1,  CH - 17, CH - 16,    CH - 15,
                                   CH - 1, CH, CH + 1,  3 * CH + 5, 64u << 20};
#define NSIZES (sizeof MSG_SIZES / sizeof MSG_SIZES[0])
#define NSMALL 10000

static int rank_broadcaster(int rank, int n) {
  reg_pid();
  gc_group_t *g;
  if (world_group(n, &g)) return 1;
  int wr = n == 3 ? 0 : n - 1 - (n > 4 ? 2 : 0); /* 1, 0, 3, 5 */
  bool writer = rank == wr;

  /* Wrong calls fail on every rank. */
  gc_mq_t *bad = NULL;
  gc_status_t s = gc_group_create_mq_broadcaster(g, n, NULL, true, &bad);
  CHECK(s == GC_ERR_INVALID_ARG && !bad, "writer_rank out of range: %s", gc_status_string(s));
  if (n > 1) {
    s = gc_group_create_mq_broadcaster(g, rank == 0 ? 1 : 0, NULL, true, &bad);
    CHECK(s == GC_ERR_INVALID_ARG && !bad, "writer_rank differing across ranks: %s",
          gc_status_string(s));
    s = gc_group_create_mq_broadcaster(g, 0, NULL, true, rank == n - 1 ? NULL : &bad);
    CHECK(s == GC_ERR_INVALID_ARG && !bad, "out NULL on one rank: %s", gc_status_string(s));
  }

  gc_mq_t *q = NULL;
  s = gc_group_create_mq_broadcaster(g, wr, NULL, true, &q);
  CHECK(s == GC_OK && q, "create_mq_broadcaster n=%d writer %d", n, wr);
  if (s != GC_OK) return 1;
  for (size_t k = 0; k < NSIZES; k++) {
    size_t len = MSG_SIZES[k];
    if (writer) {
      uint8_t *b = malloc(len + 1);
      gen_bytes(b, len, 1, k);
      s = gc_mq_enqueue(q, b, len, 30);
      CHECK(s == GC_OK, "enqueue %zu bytes", len);
      free(b);
    } else {
      void *m = NULL;
      size_t l = 7;
      s = gc_mq_dequeue(q, &m, &l, 30);
      CHECK(s == GC_OK && m && l == len && same_bytes(m, len, 1, k),
            "dequeue %zu bytes (got %zu, %s)", len, l, gc_status_string(s));
      free(m);
    }
  }
  /* 10k small messages, in order, random lengths and bytes. */
  long bad_msgs = 0;
  uint8_t buf[256];
  for (int i = 0; i < NSMALL; i++) {
    rng_t r = rng_make(2, (uint64_t)i, 0);
    size_t len = (size_t)rng_range(&r, 0, 200);
    if (writer) {
      gen_bytes(buf, len, 3, (uint64_t)i);
      if (gc_mq_enqueue(q, buf, len, 30) != GC_OK) bad_msgs++;
    } else {
      void *m = NULL;
      size_t l = 0;
      if (gc_mq_dequeue(q, &m, &l, 30) != GC_OK || l != len || !same_bytes(m, len, 3, (uint64_t)i))
        bad_msgs++;
      free(m);
    }
    if (bad_msgs > 3) break;
  }
  CHECK(bad_msgs == 0, "%ld of %d small messages wrong", bad_msgs, NSMALL);
  /* A closed writer: readers get GC_ERR_STATE once they read everything. */
  CHECK(gc_barrier(g) == GC_OK, "barrier");
  if (writer) CHECK(gc_mq_destroy(q) == GC_OK, "writer destroy");
  CHECK(gc_barrier(g) == GC_OK, "barrier");
  if (!writer) {
    void *m = NULL;
    size_t l = 0;
    double t0 = now_s();
    s = gc_mq_dequeue(q, &m, &l, 10);
    CHECK(s == GC_ERR_STATE && now_s() - t0 < 1.0, "dequeue after the writer closed: %s",
          gc_status_string(s));
    CHECK(gc_mq_destroy(q) == GC_OK, "reader destroy");
  }
  return 0;
}

/* ---- use_message_queue_broadcaster: gc_broadcast_object through the queue -------- */

static int rank_group_option(int rank, int n) {
  reg_pid();
  int ranks[64], sizes[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_options_t o = {.group_ranks = ranks,
                          .group_sizes = sizes,
                          .num_groups = 1,
                          .local_rank = rank,
                          .backend = "host",
                          .use_message_queue_broadcaster = true,
                          .group_name = "mqopt"};
  gc_group_t *g = NULL;
  gc_status_t s = gc_group_new(&o, &g);
  CHECK(s == GC_OK && g, "gc_group_new with use_message_queue_broadcaster");
  if (!g) return 1;
  long bad = 0;
  for (int i = 0; i < 200; i++) {
    rng_t r = rng_make(6, (uint64_t)i, 0);
    size_t len = (size_t)rng_range(&r, 0, i % 20 ? 3000 : 300000);
    if (rank == 0) {
      uint8_t *b = malloc(len + 1);
      gen_bytes(b, len, 7, (uint64_t)i);
      if (gc_broadcast_object(g, b, len, 0, NULL, NULL) != GC_OK) bad++;
      free(b);
    } else {
      void *m = NULL;
      size_t l = 0;
      if (gc_broadcast_object(g, NULL, 0, 0, &m, &l) != GC_OK || l != len ||
          !same_bytes(m, len, 7, (uint64_t)i))
        bad++;
      free(m);
    }
  }
  CHECK(bad == 0, "%ld of 200 objects through the queue wrong", bad);
  void *m = NULL;
  size_t l = 0;
  s = gc_broadcast_object(g, "x", 1, n - 1, &m, &l);
  CHECK(s == GC_ERR_INVALID_ARG, "src %d with a broadcaster: %s", n - 1, gc_status_string(s));
  CHECK(gc_barrier(g) == GC_OK, "barrier");
  CHECK(gc_group_destroy(g) == GC_OK, "destroy the group and its queue");
  return 0;
}

/* ---- an external writer ---------------------------------------------------------- */

static int rank_external(int rank, int n) {
  reg_pid();
  (void)n;
  gc_group_t *gw = NULL, *gs = NULL;
  if (world_group(3, &gw)) return 1;
  int ranks[3] = {0, 1, 2}, sizes[2] = {1, 2};
  gs = group_make(ranks, sizes, 2, "sub", false);
  if (!gs) return 1;
  for (int round = 0; round < 2; round++) {
    /* Round 0: a queue for both group ranks; round 1: one reader too few. */
    gc_mq_t *q = NULL;
    gc_mq_handle_t h;
    memset(&h, 0, sizeof h);
    if (rank == 0) {
      CHECK(gc_mq_create(round == 0 ? 2 : 1, 4096, 3, true, &q) == GC_OK, "gc_mq_create");
      CHECK(gc_mq_get_handle(q, &h) == GC_OK, "get_handle");
      CHECK(gc_broadcast_object(gw, &h, sizeof h, 0, NULL, NULL) == GC_OK, "bcast handle");
    } else {
      void *p = NULL;
      size_t l = 0;
      CHECK(gc_broadcast_object(gw, NULL, 0, 0, &p, &l) == GC_OK && l == sizeof h, "recv handle");
      if (p) memcpy(&h, p, sizeof h);
      free(p);
      gc_status_t s = gc_group_create_mq_broadcaster(gs, 0, rank == 1 ? &h : NULL, true, &q);
      if (round == 1) {
        CHECK(s == GC_ERR_INVALID_ARG && !q, "external queue with too few readers: %s",
              gc_status_string(s));
      } else {
        CHECK(s == GC_OK && q, "attach to the external writer");
      }
    }
    if (round == 0 && q) {
      for (int i = 0; i < 60; i++) {
        rng_t r = rng_make(4, (uint64_t)i, 0);
        size_t len = (size_t)rng_range(&r, 0, 20000);
        if (rank == 0) {
          uint8_t *b = malloc(len + 1);
          gen_bytes(b, len, 5, (uint64_t)i);
          CHECK(gc_mq_enqueue(q, b, len, 30) == GC_OK, "external enqueue %d", i);
          free(b);
        } else {
          void *m = NULL;
          size_t l = 0;
          gc_status_t s = gc_mq_dequeue(q, &m, &l, 30);
          CHECK(s == GC_OK && l == len && same_bytes(m, len, 5, (uint64_t)i),
                "external message %d on rank %d", i, rank);
          free(m);
        }
      }
    }
    CHECK(gc_barrier(gw) == GC_OK, "barrier");
    if (q) CHECK(gc_mq_destroy(q) == GC_OK, "destroy");
  }
  return 0;
}

/* ---- single-reader broadcasters, polled without blocking -------------------------- */

#define NSINGLE 300

static int rank_single(int rank, int n) {
  reg_pid();
  gc_group_t *g;
  if (world_group(n, &g)) return 1;
  int rd = n > 2 ? 2 : n - 1;
  gc_mq_t *qs[8] = {0};
  gc_mq_handle_t *hs = (gc_mq_handle_t *)&qs; /* must be overwritten */
  gc_status_t s = gc_group_create_single_reader_mq_broadcasters(g, rd, false, qs, &hs);
  CHECK(s == GC_OK, "create_single_reader_mq_broadcasters n=%d reader %d", n, rd);
  if (s != GC_OK) return 1;
  double t0 = now_s();
  if (rank != rd) {
    CHECK(qs[0] && hs == NULL, "writer: one queue, handles NULL");
    long would_block = 0;
    for (int i = 0; i < NSINGLE && now_s() - t0 < 30;) {
      uint8_t b[512];
      size_t len = (size_t)(rng_next(&(rng_t){(uint64_t)i * 7 + 1}) % 500);
      gen_bytes(b, len, 10 + (uint64_t)rank, (uint64_t)i);
      s = gc_mq_enqueue(qs[0], b, len, 5);
      if (s == GC_ERR_TIMEOUT) {
        would_block++;
        sched_yield();
        continue;
      }
      CHECK(s == GC_OK, "single-reader enqueue %d", i);
      if (s != GC_OK) break;
      i++;
    }
    printf("rank %d: %ld would-block retries\n", rank, would_block);
  } else {
    bool ok = qs[rd] == NULL && hs != NULL;
    for (int r = 0; r < n; r++)
      if (r != rd) {
        gc_mq_handle_t h;
        ok = ok && qs[r] && gc_mq_get_handle(qs[r], &h) == GC_OK && !memcmp(&h, &hs[r], sizeof h);
      }
    gc_mq_handle_t zero;
    memset(&zero, 0, sizeof zero);
    ok = ok && !memcmp(&hs[rd], &zero, sizeof zero);
    CHECK(ok, "reader: queues and handles of every writer");
    int next[8] = {0}, left = (n - 1) * NSINGLE;
    long bad = 0;
    while (left > 0 && now_s() - t0 < 30 && ok) {
      for (int r = 0; r < n; r++) {
        if (r == rd || next[r] == NSINGLE) continue;
        void *m = NULL;
        size_t l = 0;
        s = gc_mq_dequeue(qs[r], &m, &l, 5);
        if (s == GC_ERR_TIMEOUT) continue;
        int i = next[r]++;
        left--;
        size_t len = (size_t)(rng_next(&(rng_t){(uint64_t)i * 7 + 1}) % 500);
        if (s != GC_OK || l != len || !same_bytes(m, len, 10 + (uint64_t)r, (uint64_t)i)) bad++;
        free(m);
      }
      sched_yield();
    }
    CHECK(left == 0 && bad == 0, "reader got %d messages too few, %ld wrong", left, bad);
    free(hs);
  }
  CHECK(gc_barrier(g) == GC_OK, "barrier");
  for (int r = 0; r < n; r++)
    if (qs[r]) CHECK(gc_mq_destroy(qs[r]) == GC_OK, "destroy");
  /* A wrong call fails on every rank. */
  gc_mq_t *qb[8] = {0};
  s = gc_group_create_single_reader_mq_broadcasters(g, -1, true, qb, NULL);
  CHECK(s == GC_ERR_INVALID_ARG, "reader -1: %s", gc_status_string(s));
  s = gc_group_create_single_reader_mq_broadcasters(g, rd, true, rank == 0 ? NULL : qb, NULL);
  CHECK(s == GC_ERR_INVALID_ARG && !qb[0] && !qb[1], "out NULL on rank 0: %s", gc_status_string(s));
  return 0;
}

/* ---- one process: timeouts, would-block, cancel, bad input ------------------------ */

typedef struct {
  gc_mq_t *q;
  gc_status_t s;
  double t;
} waiter_t;

static void *wait_thread(void *arg) {
  waiter_t *w = arg;
  void *m = NULL;
  size_t l = 0;
  w->s = gc_mq_dequeue(w->q, &m, &l, -1);
  w->t = now_s();
  free(m);
  return NULL;
}

static void t_local(void) {
  T_RANK = 0;
  T_N = 1;
  reg_pid();
  gc_mq_t *w = NULL, *r = NULL;
  gc_mq_handle_t h;
  CHECK(gc_mq_create(1, 4096, 4, true, &w) == GC_OK, "create");
  CHECK(gc_mq_get_handle(w, &h) == GC_OK, "handle");
  CHECK(gc_mq_attach(&h, 0, true, &r) == GC_OK, "attach");
  void *m = NULL;
  size_t l = 0;

  /* Timeouts: bounded, within timeout + 0.5 s. */
  double t0 = now_s();
  gc_status_t s = gc_mq_dequeue(r, &m, &l, 0.3);
  double dt = now_s() - t0;
  CHECK(s == GC_ERR_TIMEOUT && dt >= 0.29 && dt < 0.8, "empty dequeue, 0.3 s: %s after %.3f s",
        gc_status_string(s), dt);
  t0 = now_s();
  s = gc_mq_dequeue(r, &m, &l, 0);
  CHECK(s == GC_ERR_TIMEOUT && now_s() - t0 < 0.1, "dequeue with timeout 0");
  for (int i = 0; i < 4; i++) CHECK(gc_mq_enqueue(w, &i, sizeof i, 1) == GC_OK, "fill %d", i);
  t0 = now_s();
  s = gc_mq_enqueue(w, "x", 1, 0.2);
  dt = now_s() - t0;
  CHECK(s == GC_ERR_TIMEOUT && dt >= 0.19 && dt < 0.7, "full ring, 0.2 s: %s after %.3f s",
        gc_status_string(s), dt);
  for (int i = 0; i < 4; i++) {
    s = gc_mq_dequeue(r, &m, &l, 1);
    CHECK(s == GC_OK && l == sizeof i && !memcmp(m, &i, sizeof i), "drain %d", i);
    free(m);
  }
  /* Zero bytes: a real (freeable) pointer. */
  CHECK(gc_mq_enqueue(w, NULL, 0, 1) == GC_OK, "enqueue NULL, 0");
  m = NULL;
  s = gc_mq_dequeue(r, &m, &l, 1);
  CHECK(s == GC_OK && m && l == 0, "0-byte message");
  free(m);

  /* Non-blocking ends: would block at once, whatever timeout_s says. */
  gc_mq_t *nw = NULL, *nr = NULL;
  gc_mq_handle_t nh;
  CHECK(gc_mq_create(1, 4096, 2, false, &nw) == GC_OK, "create non-blocking");
  gc_mq_get_handle(nw, &nh);
  CHECK(gc_mq_attach(&nh, 0, false, &nr) == GC_OK, "attach non-blocking");
  t0 = now_s();
  s = gc_mq_dequeue(nr, &m, &l, 5);
  CHECK(s == GC_ERR_TIMEOUT && now_s() - t0 < 0.1, "non-blocking empty dequeue: %s",
        gc_status_string(s));
  CHECK(strstr(gc_last_error(), "would block") != NULL, "message says would block: %s",
        gc_last_error());
  CHECK(gc_mq_enqueue(nw, "a", 1, 5) == GC_OK && gc_mq_enqueue(nw, "b", 1, 5) == GC_OK,
        "non-blocking enqueue x2");
  t0 = now_s();
  s = gc_mq_enqueue(nw, "c", 1, 5);
  CHECK(s == GC_ERR_TIMEOUT && now_s() - t0 < 0.1, "non-blocking enqueue on a full ring: %s",
        gc_status_string(s));
  for (int i = 0; i < 2; i++) {
    s = gc_mq_dequeue(nr, &m, &l, 5);
    CHECK(s == GC_OK && l == 1 && *(char *)m == "ab"[i], "non-blocking dequeue %d", i);
    free(m);
  }
  CHECK(gc_mq_enqueue(nw, "c", 1, 5) == GC_OK, "room again");
  CHECK(gc_mq_destroy(nr) == GC_OK && gc_mq_destroy(nw) == GC_OK, "destroy non-blocking");

  /* Cancel wakes a waiter (timeout_s < 0) in another thread, and sticks. */
  waiter_t wt = {.q = r};
  pthread_t th;
  pthread_create(&th, NULL, wait_thread, &wt);
  sleep_s(0.2);
  t0 = now_s();
  CHECK(gc_mq_cancel(r) == GC_OK, "cancel");
  pthread_join(th, NULL);
  CHECK(wt.s == GC_ERR_CANCELLED && wt.t - t0 < 0.5, "cancelled waiter: %s after %.3f s",
        gc_status_string(wt.s), wt.t - t0);
  CHECK(gc_mq_dequeue(r, &m, &l, 1) == GC_ERR_CANCELLED, "cancel sticks");

  /* Bad input: an error, never a crash. */
  CHECK(gc_mq_enqueue(NULL, "x", 1, 1) == GC_ERR_INVALID_ARG, "enqueue NULL queue");
  CHECK(gc_mq_dequeue(NULL, &m, &l, 1) == GC_ERR_INVALID_ARG, "dequeue NULL queue");
  CHECK(gc_mq_get_handle(NULL, &h) == GC_ERR_INVALID_ARG, "get_handle NULL");
  CHECK(gc_mq_get_handle(w, NULL) == GC_ERR_INVALID_ARG, "get_handle out NULL");
  CHECK(gc_mq_cancel(NULL) == GC_ERR_INVALID_ARG, "cancel NULL");
  CHECK(gc_mq_destroy(NULL) == GC_ERR_INVALID_ARG, "destroy NULL");
  s = gc_mq_enqueue(r, "x", 1, 1);
  CHECK(s == GC_ERR_INVALID_ARG && strstr(gc_last_error(), "writer"), "a reader enqueues: %s (%s)",
        gc_status_string(s), gc_last_error());
  CHECK(gc_mq_dequeue(w, &m, &l, 1) == GC_ERR_INVALID_ARG, "the writer dequeues");
  CHECK(gc_mq_enqueue(w, NULL, 5, 1) == GC_ERR_INVALID_ARG, "enqueue NULL buf, 5 bytes");
  CHECK(gc_mq_enqueue(w, "x", 1, __builtin_nan("")) == GC_ERR_INVALID_ARG, "enqueue, timeout NaN");
  CHECK(gc_mq_dequeue(r, &m, NULL, 1) == GC_ERR_INVALID_ARG, "dequeue out_len NULL");
  CHECK(gc_mq_create(-1, 0, 0, true, &nw) == GC_ERR_INVALID_ARG, "n_readers -1");
  CHECK(gc_mq_create(GC_MQ_MAX_READERS + 1, 0, 0, true, &nw) == GC_ERR_INVALID_ARG,
        "too many readers");
  CHECK(gc_mq_create(1, 10, 2, true, &nw) == GC_ERR_INVALID_ARG, "chunk of 10 bytes");
  CHECK(gc_mq_create(1, 4096, -1, true, &nw) == GC_ERR_INVALID_ARG, "-1 chunks");
  CHECK(gc_mq_create(1, 4096, 2, true, NULL) == GC_ERR_INVALID_ARG, "out NULL");
  /* 4096 chunks of 1 GiB: 4 TiB, more than /dev/shm holds (was GC_OK, sparse) */
  nw = NULL;
  s = gc_mq_create(1, (size_t)1 << 30, 4096, true, &nw);
  CHECK(s == GC_ERR_NO_MEMORY && !nw && strstr(gc_last_error(), "needs 4096.0 GiB") &&
            strstr(gc_last_error(), "free of") && strstr(gc_last_error(), "GCSHIM_MQ_CHUNKS"),
        "a 4 TiB queue is refused: %s (%s)", gc_status_string(s), gc_last_error());
  if (nw) gc_mq_destroy(nw);
  CHECK(gc_mq_attach(NULL, 0, true, &nr) == GC_ERR_INVALID_ARG, "attach NULL handle");
  CHECK(gc_mq_attach(&h, 1, true, &nr) == GC_ERR_INVALID_ARG, "attach reader 1 of 1");
  /* Every reader of w attached: its name is gone. Two slots, one taken: */
  CHECK(gc_mq_attach(&h, 0, true, &nr) == GC_ERR_NOT_FOUND, "attach when all attached");
  gc_mq_t *w2 = NULL, *r2 = NULL;
  gc_mq_handle_t h2;
  CHECK(gc_mq_create(2, 4096, 2, true, &w2) == GC_OK, "create 2 readers");
  gc_mq_get_handle(w2, &h2);
  CHECK(gc_mq_attach(&h2, 1, true, &r2) == GC_OK, "attach slot 1");
  nr = NULL;
  CHECK(gc_mq_attach(&h2, 1, true, &nr) == GC_ERR_INVALID_ARG && !nr, "attach a taken slot");
  gc_mq_destroy(r2);
  nr = NULL;
  CHECK(gc_mq_attach(&h2, 1, true, &nr) == GC_ERR_INVALID_ARG && !nr, "attach a slot left");
  gc_mq_destroy(w2);
  long bad = 0;
  for (size_t i = 0; i < sizeof h.bytes; i++) {
    gc_mq_handle_t c = h;
    c.bytes[i] ^= (unsigned char)(1u << (i % 8));
    nr = NULL;
    if (gc_mq_attach(&c, 0, true, &nr) != GC_ERR_INVALID_ARG || nr) bad++;
  }
  rng_t rg = rng_make(77, 0, 0);
  for (int i = 0; i < 1000; i++) {
    gc_mq_handle_t c;
    gen_bytes(c.bytes, sizeof c.bytes, 78, (uint64_t)i);
    if (i % 2) memcpy(&c, &h, (size_t)rng_range(&rg, 0, sizeof c.bytes));
    nr = NULL;
    gc_status_t a = gc_mq_attach(&c, 0, true, &nr);
    if ((a != GC_ERR_INVALID_ARG && a != GC_ERR_NOT_FOUND) || nr) bad++;
  }
  memset(&nh, 0, sizeof nh);
  if (gc_mq_attach(&nh, 0, true, &nr) != GC_ERR_INVALID_ARG) bad++;
  CHECK(bad == 0, "%ld corrupt handles accepted", bad);

  /* No readers: the writer never waits; nothing to attach to. */
  gc_mq_t *w0 = NULL;
  gc_mq_handle_t h0;
  CHECK(gc_mq_create(0, 4096, 2, true, &w0) == GC_OK, "create without readers");
  for (int i = 0; w0 && i < 10; i++)
    CHECK(gc_mq_enqueue(w0, &i, sizeof i, 0) == GC_OK, "enqueue %d", i);
  gc_mq_get_handle(w0, &h0);
  nr = NULL;
  CHECK(gc_mq_attach(&h0, 0, true, &nr) == GC_ERR_INVALID_ARG && !nr, "attach reader 0 of 0");
  CHECK(gc_mq_destroy(w0) == GC_OK, "destroy without readers");

  /* A destroyed queue's handle names nothing. */
  CHECK(gc_mq_destroy(r) == GC_OK && gc_mq_destroy(w) == GC_OK, "destroy");
  CHECK(gc_mq_create(2, 4096, 2, true, &w) == GC_OK, "create again");
  gc_mq_get_handle(w, &h);
  gc_mq_destroy(w);
  CHECK(gc_mq_attach(&h, 0, true, &nr) == GC_ERR_NOT_FOUND, "attach after destroy: %s",
        gc_last_error());
}

/* ---- SIGKILL: a dead writer, a dead reader ------------------------------------------ */

static void t_kill_writer(void) {
  atomic_store(&SH->kill_time, 1e18);
  atomic_store(&SH->ready, 0);
  atomic_store(&SH->consumed, 0);
  pid_t wp = fork();
  if (wp == 0) {
    reg_pid();
    gc_mq_t *q;
    /* Three reader slots, two used: the name stays until someone sees the writer dead. */
    if (gc_mq_create(3, 4096, 4, true, &q) != GC_OK) _exit(1);
    gc_mq_get_handle(q, &SH->handle);
    atomic_store(&SH->ready, 1);
    for (int i = 0; i < 3; i++) gc_mq_enqueue(q, &i, sizeof i, 10);
    for (;;) pause();
  }
  pid_t rp[2];
  for (int k = 0; k < 2; k++) {
    rp[k] = fork();
    if (rp[k] == 0) {
      T_RANK = k + 1;
      double t0 = now_s();
      while (!atomic_load(&SH->ready) && now_s() - t0 < 10) sleep_s(0.001);
      gc_mq_t *q = NULL;
      CHECK(gc_mq_attach(&SH->handle, k, true, &q) == GC_OK, "attach reader %d", k);
      if (!q) _exit(1);
      for (int i = 0; i < 3; i++) {
        void *m = NULL;
        size_t l = 0;
        gc_status_t s = gc_mq_dequeue(q, &m, &l, 10);
        CHECK(s == GC_OK && l == sizeof i && !memcmp(m, &i, sizeof i), "message %d", i);
        free(m);
      }
      atomic_fetch_add(&SH->consumed, 1);
      void *m = NULL;
      size_t l = 0;
      gc_status_t s = gc_mq_dequeue(q, &m, &l, -1);
      double dt = now_s() - atomic_load(&SH->kill_time);
      CHECK(s == GC_ERR_PEER_LOST && dt >= 0 && dt < 1.0, "dead writer: %s after %.3f s",
            gc_status_string(s), dt);
      gc_mq_destroy(q);
      fflush(NULL);
      _exit(0);
    }
  }
  double t0 = now_s();
  while (atomic_load(&SH->consumed) < 2 && now_s() - t0 < 20) sleep_s(0.001);
  sleep_s(0.1); /* the readers are asleep in their dequeue */
  atomic_store(&SH->kill_time, now_s());
  kill(wp, SIGKILL);
  int st;
  waitpid(wp, &st, 0);
  for (int k = 0; k < 2; k++) {
    waitpid(rp[k], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader %d exit", k);
  }
}

static void t_kill_reader(void) {
  atomic_store(&SH->ready, 0);
  atomic_store(&SH->consumed, 0);
  atomic_store(&SH->kill_time, 1e18);
  pid_t wp = fork();
  if (wp == 0) {
    reg_pid();
    T_RANK = 0;
    gc_mq_t *q;
    if (gc_mq_create(1, 4096, 2, true, &q) != GC_OK) _exit(1);
    gc_mq_get_handle(q, &SH->handle);
    atomic_store(&SH->ready, 1);
    gc_status_t s = GC_OK;
    int i = 0;
    for (; i < 100 && s == GC_OK; i++) s = gc_mq_enqueue(q, &i, sizeof i, -1);
    double dt = now_s() - atomic_load(&SH->kill_time);
    CHECK(s == GC_ERR_PEER_LOST && dt >= 0 && dt < 1.0 && i == 4,
          "dead reader: %s after %.3f s, message %d", gc_status_string(s), dt, i - 1);
    gc_mq_destroy(q);
    fflush(NULL);
    _exit(0);
  }
  pid_t rp = fork();
  if (rp == 0) {
    double t0 = now_s();
    while (!atomic_load(&SH->ready) && now_s() - t0 < 10) sleep_s(0.001);
    gc_mq_t *q = NULL;
    if (gc_mq_attach(&SH->handle, 0, true, &q) != GC_OK) _exit(1);
    void *m = NULL;
    size_t l = 0;
    if (gc_mq_dequeue(q, &m, &l, 10) != GC_OK) _exit(1);
    free(m);
    atomic_store(&SH->consumed, 1);
    for (;;) pause();
  }
  double t0 = now_s();
  while (atomic_load(&SH->consumed) < 1 && now_s() - t0 < 20) sleep_s(0.001);
  sleep_s(0.1); /* the writer is asleep on a full ring */
  atomic_store(&SH->kill_time, now_s());
  kill(rp, SIGKILL);
  int st;
  waitpid(rp, &st, 0);
  waitpid(wp, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer exit");
}

/* /dev/shm entries of queues made by any process of this run. */
static int mq_leftovers(void) {
  DIR *d = opendir("/dev/shm");
  int n = 0;
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    for (int i = 0; i < atomic_load(&SH->npids) && i < MAXPIDS; i++) {
      char pre[32];
      snprintf(pre, sizeof pre, "gcmq-%d-", (int)SH->pids[i]);
      if (!strncmp(e->d_name, pre, strlen(pre))) {
        fprintf(stderr, "left in /dev/shm: %s\n", e->d_name);
        n++;
      }
    }
  closedir(d);
  return n;
}

static int shm_count(const char *pre) {
  DIR *d = opendir("/dev/shm");
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (!strncmp(e->d_name, pre, strlen(pre))) n++;
  if (d) closedir(d);
  return n;
}

static int wait_child(pid_t p) {
  int st = 0;
  waitpid(p, &st, 0);
  return st;
}

/* Leaks swept by the next job's first segment (core/seg.h): a queue whose
 * writer exited before its reader attached, and the job segment of a job
 * whose every rank was SIGKILLed. Runs before this process makes any
 * segment: a process sweeps once, at its first creation. */
static void t_sweep(void) {
  char pre[64], job_key[64];
  pid_t w = fork();
  if (w == 0) {
    gc_mq_t *q;
    _exit(gc_mq_create(1, 4096, 2, true, &q) == GC_OK ? 0 : 1);
  }
  CHECK(wait_child(w) == 0, "writer made its queue");
  snprintf(pre, sizeof pre, "gcmq-%d-", (int)w);
  CHECK(shm_count(pre) == 1, "the writer's queue is left: %d", shm_count(pre));
  snprintf(job_key, sizeof job_key, "tsweep-%d", (int)getpid());
  for (int r = 0; r < 2; r++) {
    pid_t k = fork();
    if (k == 0) {
      setenv("GCSHIM_REPORT", "/dev/null", 1);
      if (gc_report_job_open(job_key, r, 2, 0) != GC_OK) _exit(1);
      kill(getpid(), SIGKILL);
      _exit(1);
    }
    int st = wait_child(k);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "rank %d of the job killed", r);
  }
  CHECK(shm_count("gcshim-job-") >= 1, "the killed job's segment is left");
  /* job segments are swept once older than GCSHIM_TIMEOUT (1 s below; the
   * age is counted in whole seconds) */
  struct timespec ts = {2, 200000000};
  nanosleep(&ts, NULL);
  pid_t n = fork();
  if (n == 0) {
    setenv("GCSHIM_TIMEOUT", "1", 1);
    gc_mq_t *q;
    if (gc_mq_create(0, 4096, 2, true, &q) != GC_OK) _exit(1);
    gc_mq_destroy(q);
    _exit(0);
  }
  CHECK(wait_child(n) == 0, "the next job made its queue");
  CHECK(shm_count(pre) == 0, "the dead writer's queue was swept: %d left", shm_count(pre));
  uint64_t h = 1469598103934665603ull;
  for (const char *c = job_key; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
  char job[96];
  snprintf(job, sizeof job, "/dev/shm/gcshim-job-%016llx-%u-0", (unsigned long long)h,
           (unsigned)geteuid());
  CHECK(access(job, F_OK) != 0, "the killed job's segment %s was swept", job);
  unlink(job);
}

int main(void) {
  alarm(240);
  setvbuf(stdout, NULL, _IOLBF, 0);
  counters_init("gcmqt");
  SH = mmap(NULL, sizeof *SH, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (SH == MAP_FAILED) return 2;
  setenv("GCSHIM_MQ_CHUNK_BYTES", "65536", 1);
  setenv("GCSHIM_MQ_CHUNKS", "4", 1);
  t_sweep();
  static const int NS[] = {2, 3, 4, 8};
  for (int i = 0; i < 4; i++) {
    double t0 = now_s();
    int bad = run_ranks(NS[i], rank_broadcaster);
    CHECK(bad == 0, "broadcaster with %d readers: %d ranks failed", NS[i] - 1, bad);
    printf("broadcaster, %d readers: %.2f s\n", NS[i] - 1, now_s() - t0);
  }
  CHECK(run_ranks(4, rank_group_option) == 0, "use_message_queue_broadcaster, 4 ranks");
  CHECK(run_ranks(3, rank_external) == 0, "external writer");
  CHECK(run_ranks(4, rank_single) == 0, "single-reader broadcasters, 4 ranks");
  CHECK(run_ranks(2, rank_single) == 0, "single-reader broadcasters, 2 ranks");
  t_local();
  t_kill_writer();
  t_kill_reader();
  CHECK(mq_leftovers() == 0, "message-queue segments left in /dev/shm");
  return finish();
}
