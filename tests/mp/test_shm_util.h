/* test_shm_util.h - fork harness shared by the shm multi-process tests:
 * counters in shared memory, CHECK, seeded data, /dev/shm leftovers. */
#ifndef TEST_SHM_UTIL_H
#define TEST_SHM_UTIL_H

#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu.h"

typedef struct {
  _Atomic long pass, fail;
  _Atomic uint64_t stamp[16]; /* scratch for timing tests */
} counters_t;

static counters_t *C;
static int T_RANK = -1;
static unsigned long long SEED;

#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    if (cond) {                                                              \
      atomic_fetch_add(&C->pass, 1);                                         \
    } else {                                                                 \
      atomic_fetch_add(&C->fail, 1);                                         \
      fprintf(stderr, "[rank %d] FAIL %s:%d: ", T_RANK, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                          \
      fprintf(stderr, " (last error: %s)\n", gc_last_error());               \
    }                                                                        \
  } while (0)

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void counters_init(void) {
  C = mmap(NULL, sizeof *C, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (C == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  const char *e = getenv("GCSHIM_TEST_SEED");
  SEED = e ? strtoull(e, NULL, 0) : (unsigned long long)time(NULL) ^ (unsigned long long)getpid();
  printf("seed %llu (GCSHIM_TEST_SEED to repeat)\n", SEED);
  fflush(stdout);
}

/* Deterministic bytes from (seed, a, b, offset): every rank can compute what
 * any other rank sent. */
static inline void fill(void *buf, size_t n, uint64_t a, uint64_t b) {
  uint64_t x = SEED * 0x9e3779b97f4a7c15ull ^ (a + 1) * 0xbf58476d1ce4e5b9ull ^
               (b + 7) * 0x94d049bb133111ebull;
  unsigned char *p = buf;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(p + i, &x, 8);
  }
  for (; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (unsigned char)x;
  }
}

static inline uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Runs body(rank, n, arg) in n forked processes; waits at most limit_s.
 * Returns the number of children that did not exit 0. pids_out (optional)
 * receives the children's pids as soon as they are forked. */
typedef int (*body_fn)(int rank, int n, void *arg);

static inline int run_ranks(int n, body_fn body, void *arg, double limit_s, pid_t *pids_out,
                            void (*parent_hook)(pid_t *pids, int n, void *arg)) {
  pid_t pids[64];
  for (int r = 0; r < n; r++) {
    pid_t p = fork();
    if (p < 0) {
      perror("fork");
      exit(2);
    }
    if (p == 0) {
      T_RANK = r;
      alarm((unsigned)limit_s + 5);
      int rc = body(r, n, arg);
      fflush(stdout);
      fflush(stderr);
      _exit(rc ? 1 : 0);
    }
    pids[r] = p;
    if (pids_out) pids_out[r] = p;
  }
  if (parent_hook) parent_hook(pids, n, arg);
  int bad = 0, left = n;
  uint64_t deadline = now_ns() + (uint64_t)(limit_s * 1e9);
  while (left) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p > 0) {
      left--;
      if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
      continue;
    }
    if (now_ns() > deadline) {
      fprintf(stderr, "children still running after %.0f s: killing them\n", limit_s);
      for (int r = 0; r < n; r++) kill(pids[r], SIGKILL);
      limit_s = 1e9;
      deadline = UINT64_MAX;
    }
    usleep(2000);
  }
  return bad;
}

/* Entries of /dev/shm whose name contains token. */
static inline int shm_leftovers(const char *token, int print) {
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  int k = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strstr(e->d_name, token)) {
      k++;
      if (print) fprintf(stderr, "left in /dev/shm: %s\n", e->d_name);
    }
  }
  closedir(d);
  return k;
}

static inline void shm_cleanup(const char *token) {
  DIR *d = opendir("/dev/shm");
  if (!d) return;
  struct dirent *e;
  char path[512];
  while ((e = readdir(d))) {
    if (strstr(e->d_name, token)) {
      snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
      unlink(path);
    }
  }
  closedir(d);
}

static inline int finish(const char *token) {
  int left = shm_leftovers(token, 1);
  CHECK(left == 0, "%d segment(s) left in /dev/shm", left);
  shm_cleanup(token);
  long p = atomic_load(&C->pass), f = atomic_load(&C->fail);
  printf("%ld passed, %ld failed\n", p, f);
  return f ? 1 : 0;
}

#endif
