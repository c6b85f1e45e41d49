/* test_shm_fault.c - faults in shm CPU groups: a member SIGKILLed mid-barrier,
 * mid-broadcast and mid-attach (survivors get GC_ERR_PEER_LOST within 1 s),
 * a member that never arrives (GC_ERR_TIMEOUT within timeout + 1 s), a stale
 * segment left by a crashed run, and nothing left in /dev/shm after any of
 * them. */
#include <fcntl.h>
#include <sys/stat.h>

#include "test_shm_util.h"

static char TOKEN[64];

/* Sanitizer and valgrind builds run several times slower: they stretch the
 * time limits by GCSHIM_TEST_TIME_SCALE (default 1), never the behaviour. */
static double time_scale(void) {
  const char *v = getenv("GCSHIM_TEST_TIME_SCALE");
  double x = v ? atof(v) : 1.0;
  return x >= 1.0 ? x : 1.0;
}
#define WITHIN(limit) ((limit) * time_scale())
#define EARLY_SLACK (time_scale() > 1.0 ? 0.5 : 0.05)

typedef struct {
  char key[128];
  int victim;
  double timeout;
  int delay_ms; /* parent kills the victim after this long */
} fault_t;

static double since_stamp(void) {
  uint64_t t = atomic_load(&C->stamp[0]);
  return t ? (double)(now_ns() - t) / 1e9 : 99.0;
}

static void parent_kill(pid_t *pids, int n, void *arg) {
  fault_t *f = arg;
  (void)n;
  usleep((useconds_t)f->delay_ms * 1000);
  atomic_store(&C->stamp[0], now_ns());
  kill(pids[f->victim], SIGKILL);
}

static void expect_fast_repeat(gc_cpu_group_t *g, gc_status_t want) {
  uint64_t t0 = now_ns();
  gc_status_t s = gc_cpu_barrier(g);
  CHECK(s == want && now_ns() - t0 < 50000000ull, "poisoned group answers %s at once, got %s",
        gc_status_string(want), gc_status_string(s));
}

/* A: the victim kills itself between barriers. */
static int t_kill_barrier(int rank, int n, void *arg) {
  fault_t *f = arg;
  gc_cpu_group_t *g = NULL;
  CHECK(gc_cpu_shm_create(f->key, rank, n, f->timeout, &g) == GC_OK, "create");
  if (!g) return 1;
  for (int i = 0; i < 10; i++) CHECK(gc_cpu_barrier(g) == GC_OK, "barrier %d", i);
  if (rank == f->victim) {
    usleep(200000);
    atomic_store(&C->stamp[0], now_ns());
    raise(SIGKILL);
  }
  gc_status_t s = gc_cpu_barrier(g);
  double dt = since_stamp();
  CHECK(s == GC_ERR_PEER_LOST && dt < WITHIN(1.0), "barrier after a death: %s after %.3f s",
        gc_status_string(s), dt);
  printf("rank %d: peer death seen after %.3f s (barrier)\n", rank, dt);
  expect_fast_repeat(g, GC_ERR_PEER_LOST);
  gc_cpu_destroy(g);
  return 0;
}

/* B: the parent kills the victim while rank 0 broadcasts 8 MiB in a loop. */
static int t_kill_bcast(int rank, int n, void *arg) {
  fault_t *f = arg;
  gc_cpu_group_t *g = NULL;
  CHECK(gc_cpu_shm_create(f->key, rank, n, f->timeout, &g) == GC_OK, "create");
  if (!g) return 1;
  size_t len = 8u << 20;
  unsigned char *buf = malloc(len);
  fill(buf, len, 1, 0);
  gc_status_t s = GC_OK;
  for (int i = 0; i < 100000 && s == GC_OK; i++) s = gc_cpu_broadcast(g, buf, len, 0);
  double dt = since_stamp();
  CHECK(s == GC_ERR_PEER_LOST && dt < WITHIN(1.0), "broadcast during a death: %s after %.3f s",
        gc_status_string(s), dt);
  printf("rank %d: peer death seen after %.3f s (broadcast, victim %d)\n", rank, dt, f->victim);
  expect_fast_repeat(g, GC_ERR_PEER_LOST);
  gc_cpu_destroy(g);
  free(buf);
  return 0;
}

/* C: the last rank never calls create. */
static int t_never_create(int rank, int n, void *arg) {
  fault_t *f = arg;
  if (rank == n - 1) return 0;
  gc_cpu_group_t *g = NULL;
  uint64_t t0 = now_ns();
  gc_status_t s = gc_cpu_shm_create(f->key, rank, n, f->timeout, &g);
  double dt = (double)(now_ns() - t0) / 1e9;
  CHECK(s == GC_ERR_TIMEOUT && !g && dt >= f->timeout - EARLY_SLACK && dt < f->timeout + WITHIN(1.0),
        "create without a member: %s after %.3f s", gc_status_string(s), dt);
  return 0;
}

/* D: every rank creates; the last one stays away from the barrier. */
static int t_never_barrier(int rank, int n, void *arg) {
  fault_t *f = arg;
  gc_cpu_group_t *g = NULL;
  CHECK(gc_cpu_shm_create(f->key, rank, n, f->timeout, &g) == GC_OK, "create");
  if (!g) return 1;
  if (rank == n - 1) {
    usleep((useconds_t)((f->timeout + 1.5) * 1e6));
    gc_status_t s = gc_cpu_barrier(g);
    CHECK(s == GC_ERR_TIMEOUT, "late member sees the timeout: %s", gc_status_string(s));
  } else {
    uint64_t t0 = now_ns();
    gc_status_t s = gc_cpu_barrier(g);
    double dt = (double)(now_ns() - t0) / 1e9;
    CHECK(s == GC_ERR_TIMEOUT && dt >= f->timeout - EARLY_SLACK && dt < f->timeout + WITHIN(1.0),
          "barrier without a member: %s after %.3f s", gc_status_string(s), dt);
    expect_fast_repeat(g, GC_ERR_TIMEOUT);
  }
  gc_cpu_destroy(g);
  return 0;
}

/* E: the victim is killed while waiting in create; the last rank never comes. */
static int t_kill_attach(int rank, int n, void *arg) {
  fault_t *f = arg;
  if (rank == n - 1) return 0;
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_shm_create(f->key, rank, n, f->timeout, &g);
  double dt = since_stamp();
  CHECK(s == GC_ERR_PEER_LOST && dt < WITHIN(1.0), "create during a death: %s after %.3f s",
        gc_status_string(s), dt);
  return 0;
}

/* G: a member dies before a subgroup's creation; survivors learn it from the
 * parent's pids. */
static int t_kill_subgroup(int rank, int n, void *arg) {
  fault_t *f = arg;
  gc_cpu_group_t *g = NULL, *sub = NULL;
  CHECK(gc_cpu_shm_create(f->key, rank, n, f->timeout, &g) == GC_OK, "create");
  if (!g) return 1;
  CHECK(gc_cpu_barrier(g) == GC_OK, "barrier");
  if (rank == f->victim) {
    atomic_store(&C->stamp[0], now_ns());
    raise(SIGKILL);
  }
  int all[8];
  for (int i = 0; i < n; i++) all[i] = i;
  gc_status_t s = gc_cpu_subgroup(g, all, n, "sub", &sub);
  double dt = since_stamp();
  CHECK(s == GC_ERR_PEER_LOST && !sub && dt < WITHIN(1.0), "subgroup during a death: %s after %.3f s",
        gc_status_string(s), dt);
  gc_cpu_destroy(g);
  return 0;
}

/* F: a good run on a key whose segment a crashed run left behind. */
static int t_after_stale(int rank, int n, void *arg) {
  fault_t *f = arg;
  gc_cpu_group_t *g = NULL;
  gc_status_t s = gc_cpu_shm_create(f->key, rank, n, f->timeout, &g);
  CHECK(s == GC_OK, "create over a stale segment: %s", gc_status_string(s));
  if (!g) return 1;
  unsigned char buf[4096], want[4096];
  fill(want, sizeof want, 5, 5);
  if (rank == 0) memcpy(buf, want, sizeof buf);
  CHECK(gc_cpu_broadcast(g, buf, sizeof buf, 0) == GC_OK && !memcmp(buf, want, sizeof buf),
        "broadcast after stale");
  CHECK(gc_cpu_barrier(g) == GC_OK, "barrier after stale");
  gc_cpu_destroy(g);
  return 0;
}

static int t_crash_in_create(int rank, int n, void *arg) {
  fault_t *f = arg;
  if (rank != 0) return 0;
  gc_cpu_group_t *g = NULL;
  gc_cpu_shm_create(f->key, rank, n, f->timeout, &g); /* killed while waiting */
  return 0;
}

static void key(fault_t *f, const char *what) {
  snprintf(f->key, sizeof f->key, "%s-%s", TOKEN, what);
  atomic_store(&C->stamp[0], 0);
}

static void no_leftovers(const char *what) {
  int k = shm_leftovers(TOKEN, 1);
  CHECK(k == 0, "%s: %d file(s) left in /dev/shm", what, k);
  shm_cleanup(TOKEN);
}

int main(void) {
  alarm(120);
  counters_init();
  snprintf(TOKEN, sizeof TOKEN, "tshmf%d", (int)getpid());
  fault_t f = {.timeout = 20};
  int bad;

  key(&f, "killbar");
  f.victim = 2;
  bad = run_ranks(3, t_kill_barrier, &f, 30, NULL, NULL);
  CHECK(bad == 1, "kill mid-barrier: %d ranks failed (the victim only expected)", bad);
  no_leftovers("kill mid-barrier");

  key(&f, "killbc-reader");
  f.victim = 1;
  f.delay_ms = 400;
  bad = run_ranks(3, t_kill_bcast, &f, 30, NULL, parent_kill);
  CHECK(bad == 1, "kill a reader mid-broadcast: %d ranks failed", bad);
  no_leftovers("kill a reader mid-broadcast");

  key(&f, "killbc-root");
  f.victim = 0;
  bad = run_ranks(4, t_kill_bcast, &f, 30, NULL, parent_kill);
  CHECK(bad == 1, "kill the root mid-broadcast: %d ranks failed", bad);
  no_leftovers("kill the root mid-broadcast");

  key(&f, "killattach");
  f.victim = 1;
  f.delay_ms = 300;
  bad = run_ranks(3, t_kill_attach, &f, 30, NULL, parent_kill);
  CHECK(bad == 1, "kill during attach: %d ranks failed", bad);
  no_leftovers("kill during attach");

  key(&f, "killsub");
  f.victim = 3;
  bad = run_ranks(4, t_kill_subgroup, &f, 30, NULL, NULL);
  CHECK(bad == 1, "kill before a subgroup: %d ranks failed", bad);
  no_leftovers("kill before a subgroup");

  f.timeout = 2;
  key(&f, "nevercreate");
  bad = run_ranks(3, t_never_create, &f, 30, NULL, NULL);
  CHECK(bad == 0, "never arrives at create: %d ranks failed", bad);
  no_leftovers("never arrives at create");

  key(&f, "neverbarrier");
  bad = run_ranks(3, t_never_barrier, &f, 30, NULL, NULL);
  CHECK(bad == 0, "never arrives at barrier: %d ranks failed", bad);
  no_leftovers("never arrives at barrier");

  /* a crashed run leaves a segment; the next run with the key still works */
  f.timeout = 20;
  key(&f, "stale");
  f.victim = 0;
  f.delay_ms = 300;
  run_ranks(2, t_crash_in_create, &f, 30, NULL, parent_kill);
  CHECK(shm_leftovers(TOKEN, 0) == 1, "the crashed run left its segment (%d)",
        shm_leftovers(TOKEN, 0));
  bad = run_ranks(2, t_after_stale, &f, 30, NULL, NULL);
  CHECK(bad == 0, "run after a stale segment: %d ranks failed", bad);
  no_leftovers("run after a stale segment");

  /* a creator that died between shm_open and ftruncate: an empty file,
   * removed after 2 s; and a file with group/other permissions: refused */
  key(&f, "stale0");
  run_ranks(2, t_crash_in_create, &f, 30, NULL, parent_kill);
  char path[512] = "";
  DIR *d = opendir("/dev/shm");
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, TOKEN)) snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
  if (d) closedir(d);
  CHECK(path[0] && truncate(path, 0) == 0, "made the leftover empty: %s", path);
  uint64_t t0 = now_ns();
  bad = run_ranks(2, t_after_stale, &f, 30, NULL, NULL);
  double dt = (double)(now_ns() - t0) / 1e9;
  CHECK(bad == 0 && dt < 10, "run after an empty stale segment: %d failed, %.1f s", bad, dt);
  no_leftovers("run after an empty stale segment");

  /* zero-filled at full size: a creator that died before writing its
   * header (was: every later run waited for it until the timeout) */
  key(&f, "stalez");
  run_ranks(2, t_crash_in_create, &f, 30, NULL, parent_kill);
  path[0] = '\0';
  d = opendir("/dev/shm");
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, TOKEN)) snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
  if (d) closedir(d);
  bool zeroed = false;
  int zfd = path[0] ? open(path, O_RDWR) : -1;
  if (zfd >= 0) {
    static char zero[1 << 16];
    off_t size = lseek(zfd, 0, SEEK_END), off = 0;
    while (off < size && pwrite(zfd, zero, sizeof zero, off) > 0) off += (off_t)sizeof zero;
    zeroed = ftruncate(zfd, size) == 0;
    close(zfd);
  }
  CHECK(zeroed, "zero-filled the leftover: %s", path);
  t0 = now_ns();
  bad = run_ranks(2, t_after_stale, &f, 30, NULL, NULL);
  dt = (double)(now_ns() - t0) / 1e9;
  CHECK(bad == 0 && dt < 10, "run after a zero-filled stale segment: %d failed, %.1f s", bad, dt);
  no_leftovers("run after a zero-filled stale segment");

  key(&f, "mode");
  run_ranks(2, t_crash_in_create, &f, 30, NULL, parent_kill);
  path[0] = '\0';
  d = opendir("/dev/shm");
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, TOKEN)) snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
  if (d) closedir(d);
  CHECK(path[0] && chmod(path, 0644) == 0, "made the leftover 0644: %s", path);
  gc_cpu_group_t *g = NULL;
  gc_status_t st = gc_cpu_shm_create(f.key, 1, 2, 5, &g);
  CHECK(st == GC_ERR_SYSTEM && !g && strstr(gc_last_error(), "mode"),
        "a segment with mode 644 is refused: %s", gc_status_string(st));
  shm_cleanup(TOKEN);

  return finish(TOKEN);
}
