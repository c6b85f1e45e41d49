/*
 * shm.c - the shared-memory CPU transport: one /dev/shm segment per group.
 *
 * Layout of a segment (docs/CPU_GROUPS.md has the long version):
 *   header        magic, owner, creator pid, sizes, attach state, abort word,
 *                 barrier count and sense
 *   rank_ctl[n]   per rank: pid, ack (last round it finished reading), red
 *                 (last round it reduced its slice of)
 *   mbox_ctl[n*n] per (src, dst): ring head and tail
 *   slots[n]      per rank: two halves of `chunk` bytes each (collectives);
 *                 a half starts with its flag (the last round written into
 *                 it), data follows at SLOT_DATA, in the flag's cache line
 *   rings[n*n]    per (src, dst): a ring of `mbox` bytes (send/recv)
 *
 * Collectives run in rounds numbered the same on every rank: in round id a
 * writer copies its next chunk into half (id & 1) of its slot and stores id
 * in that half's flag; readers copy it out and publish ack = id. A writer
 * reuses a half only when every rank acked the round two before, so the
 * writer fills one half while readers drain the other. The flag shares its
 * cache line with the first 48 bytes of data, so a small message costs a
 * reader one line transfer. A rank writes round id only after it finished
 * round id - 1, so a reader that saw every peer's flag of round id knows
 * they all finished id - 1 without reading their acks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/params.h"
#include "core/reduce.h"
#include "core/seg.h"
#include "core/spin.h"
#include "cpu/cpu.h"

#define SHM_MAGIC 0x3130766d68736367ull /* "gcshmv01" */
#define SHM_VERSION 3u
#define LINE 64
#define SLOT_SIG 8   /* a round's signature (64 bits): after the half's flag */
#define SLOT_DATA 16 /* small data of a round: after the signature, in the flag's line */
/* Larger data starts a page after the flag: a reader polling the flag's
 * line while the writer streams data into the lines right after it made
 * 128 KiB copies 2x slower (AMD EPYC VM, all-reduce and all-gather). */
#define SLOT_BULK 4096
#define SLOT_SMALL 2048          /* rounds of at most this per writer use SLOT_DATA */
#define LIVENESS_NS 100000000ull /* peers are checked every 100 ms while waiting */
/* n*n mailboxes: keep the segment's address space sane. */
#define GC_SHM_MAX_MEMBERS 1024

enum { ST_INIT = 0, ST_READY = 1, ST_COMPLETE = 2 };

typedef struct {
  gc_seg_hdr_t seg; /* creator, its start time, uid, size: core/seg.h */
  uint64_t magic;
  uint32_t version, size;
  _Atomic int32_t creator;
  uint64_t key_hash, total, chunk, mbox, small_max; /* the creator's choice binds all */
  _Atomic uint32_t state;                           /* ST_*: READY once the header is valid */
  _Atomic uint32_t attached;
  _Atomic uint32_t abort_status; /* first failure any member saw; 0 = none */
  _Atomic uint32_t sleepers;     /* members inside FUTEX_WAIT */
  _Atomic int32_t dup_rank;      /* rank + 1 that a second process claimed too; 0 = none */
  _Alignas(LINE) _Atomic uint32_t bar_count;
  _Alignas(LINE) _Atomic uint32_t bar_sense;
} hdr_t;

typedef struct {
  _Alignas(LINE) _Atomic int32_t pid;
  _Alignas(LINE) _Atomic uint32_t ack;
  _Alignas(LINE) _Atomic uint32_t red;
} rank_ctl_t;

typedef struct {
  _Alignas(LINE) _Atomic uint32_t head; /* bytes written by src, mod 2^32 */
  _Alignas(LINE) _Atomic uint32_t tail; /* bytes read by dst, mod 2^32 */
} mbox_ctl_t;

typedef struct {
  char *key;
  char name[80];
  int n, rank;
  double timeout_s;
  gc_status_t status; /* sticky: the group is poisoned after a failure */
  uint8_t *base;
  size_t total, chunk, mbox;
  hdr_t *h;
  rank_ctl_t *ctl;
  mbox_ctl_t *mb;
  uint8_t *slots, *rings;
  uint32_t round;    /* last collective round, identical on every rank */
  uint32_t ack_seen; /* every peer's ack was >= this when last looked */
  uint32_t sense;    /* barrier sense of this rank */
  uint64_t spin_ns;
  bool yield;  /* as many members as CPUs: a spinning waiter yields its core now and then */
  pid_t *pids; /* per rank; 0 = not known yet */
  int *pidfd;  /* per rank; -1 = none (use kill + /proc) */
  struct pollfd *pfd;
  size_t *off;               /* scratch: per-rank offsets */
  size_t *seg_off, *seg_len; /* scratch: per-rank segments (elements) */
  const void **in;           /* scratch: per-rank inputs of a reduction */
  size_t small_max;          /* all-reduces up to this many bytes go direct */
} shm_t;

static const gc_cpu_ops_t shm_ops;

/* ---- names, sizes ---------------------------------------------------------- */

static uint64_t key_hash(const char *key, int size) {
  uint64_t h = gc_fnv(GC_FNV_INIT, key, strlen(key));
  return gc_fnv(h, &size, sizeof size);
}

/* "/gcs-<up to 12 safe chars of key>-<euid>-<16 hex of hash(key, size)>".
 * The uid: another user's file at a name of ours is then recognisably
 * foreign (core/seg.h refuses it, naming its owner). Only the key's first
 * 12 characters are shown: an adopted communicator's key comes from its
 * ncclUniqueId ("u" and 32 hex), and the rest of it stays unknown to other
 * users, so that they cannot compute the names of its split children
 * (docs/CPU_GROUPS.md, "Segments"). */
static void shm_name(const char *key, int size, char *out, size_t n) {
  char safe[13];
  size_t k = 0;
  for (const char *p = key; *p && k < sizeof safe - 1; p++) {
    unsigned char c = (unsigned char)*p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    safe[k++] = ok ? (char)c : '_';
  }
  safe[k] = '\0';
  snprintf(out, n, "/gcs-%s-%u-%016llx", safe, (unsigned)geteuid(),
           (unsigned long long)key_hash(key, size));
}

/* A fixed segment: every payload size streams through it in chunks. */
static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static void seg_sizes(int n, size_t *chunk, size_t *mbox) {
  *chunk = n <= 4 ? (1u << 20) : n <= 16 ? (512u << 10) : n <= 64 ? (128u << 10) : (32u << 10);
  /* A tuning knob; the creator's value binds every member (see the header). */
  long kb = gc_param_GCSHIM_SHM_CHUNK_KB();
  if (kb != GC_PARAM_AUTO) *chunk = (size_t)kb / 4 * 4 << 10;
  /* reductions cut a chunk into n pieces of at least 256 bytes */
  if (*chunk < (size_t)n * 256) *chunk = align_up((size_t)n * 256, 4096);
  *mbox = n <= 2 ? (256u << 10) : n <= 8 ? (64u << 10) : n <= 32 ? (16u << 10) : (4u << 10);
}

/* Direct all-reduce up to this: measured on a 16-core host, n reads of the
 * vector beat a second hand-off only for tiny vectors (1 KiB at n=2). */
static size_t small_max_default(int n, size_t chunk) {
  size_t v = 2048 / (size_t)n;
  long b = gc_param_GCSHIM_SHM_SMALL_ALLREDUCE();
  if (b != GC_PARAM_AUTO) v = (size_t)b;
  return v < chunk - SLOT_DATA ? v : chunk - SLOT_DATA;
}

typedef struct {
  size_t ctl, mb, slots, rings, total;
} layout_t;

static layout_t seg_layout(int n, size_t chunk, size_t mbox) {
  layout_t l;
  size_t nn = (size_t)n * (size_t)n;
  l.ctl = align_up(sizeof(hdr_t), 4096);
  l.mb = align_up(l.ctl + sizeof(rank_ctl_t) * (size_t)n, 4096);
  l.slots = align_up(l.mb + sizeof(mbox_ctl_t) * nn, 4096);
  l.rings = l.slots + 2 * chunk * (size_t)n;
  l.total = l.rings + mbox * nn;
  return l;
}

/* ---- futex waits ----------------------------------------------------------- */

/* Stores v and wakes sleepers on w. seq_cst on both sides (here and in
 * wait_slow: sleepers++ then re-read) so that a wake is never lost. */
static inline void publish(shm_t *s, _Atomic uint32_t *w, uint32_t v) {
  atomic_store(w, v);
  if (GC_UNLIKELY(atomic_load(&s->h->sleepers))) gc_futex(w, FUTEX_WAKE, INT_MAX, NULL);
}

static GC_PRINTF(3, 4) GC_NOINLINE gc_status_t
    fail(shm_t *s, gc_status_t st, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (s->status == GC_OK) s->status = st;
  uint32_t zero = 0;
  atomic_compare_exchange_strong(&s->h->abort_status, &zero, (uint32_t)st);
  GC_WARN("shm group '%s' (rank %d of %d): %s", s->key, s->rank, s->n, msg);
  return gc_error(st, "%s", msg);
}

/* pidfds see a zombie as dead and never confuse a reused pid; older kernels
 * (and valgrind) lack them: kill(pid, 0) + /proc then. */
static _Atomic bool pidfd_usable = true;

/* Learns peers' pids as they attach; returns the first dead peer or -1. */
static int find_dead_peer(shm_t *s, const pid_t *expect) {
  int np = 0;
  for (int r = 0; r < s->n; r++) {
    if (r == s->rank) continue;
    if (!s->pids[r]) {
      pid_t p = atomic_load(&s->ctl[r].pid);
      if (!p && expect) p = expect[r];
      if (!p) continue;
      s->pids[r] = p;
      s->pidfd[r] = pidfd_usable ? (int)syscall(SYS_pidfd_open, p, 0) : -1;
      if (s->pidfd[r] < 0 && errno == ENOSYS) pidfd_usable = false;
      if (s->pidfd[r] < 0 && errno == ESRCH) return r;
    }
    if (s->pidfd[r] >= 0) {
      s->pfd[np].fd = s->pidfd[r];
      s->pfd[np].events = POLLIN;
      s->pfd[np].revents = 0;
      np++;
    } else if (gc_pid_dead(s->pids[r])) {
      return r;
    }
  }
  if (np && poll(s->pfd, (nfds_t)np, 0) > 0)
    for (int r = 0; r < s->n; r++)
      if (r != s->rank && s->pidfd[r] >= 0)
        for (int i = 0; i < np; i++)
          if (s->pfd[i].fd == s->pidfd[r] && (s->pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
            return r;
  return -1;
}

typedef enum { W_GE, W_EQ } wmode_t;

static inline bool reached(uint32_t cur, uint32_t target, wmode_t m) {
  return m == W_EQ ? cur == target : (int32_t)(cur - target) >= 0;
}

static GC_NOINLINE gc_status_t wait_slow(shm_t *s, _Atomic uint32_t *w, uint32_t target, wmode_t m,
                                         const char *what, const pid_t *expect) {
  uint64_t start = gc_now_ns();
  uint64_t deadline = start + (uint64_t)(s->timeout_s * 1e9);
  uint64_t next_live = start + LIVENESS_NS;
  for (unsigned i = 1;; i++) {
    if (reached(atomic_load_explicit(w, memory_order_acquire), target, m)) return GC_OK;
    if ((i & 63) == 0) {
      if (gc_now_ns() - start >= s->spin_ns) break;
      /* With no spare CPU the member we wait for may be the one the OS
       * took off its core: give the core back instead of spinning on it. */
      if (s->yield) sched_yield();
    }
    gc_cpu_relax();
  }
  for (;;) {
    uint32_t cur = atomic_load_explicit(w, memory_order_acquire);
    if (reached(cur, target, m)) return GC_OK;
    uint32_t ab = atomic_load(&s->h->abort_status);
    if (ab) {
      gc_status_t st = (gc_status_t)ab;
      return fail(s, st, "%s: another member failed (%s)", what, gc_status_string(st));
    }
    uint64_t now = gc_now_ns();
    if (now >= next_live) {
      int dead = find_dead_peer(s, expect);
      if (dead >= 0 && !reached(atomic_load(w), target, m))
        return fail(s, GC_ERR_PEER_LOST, "%s: rank %d (pid %d) died", what, dead,
                    (int)s->pids[dead]);
      next_live = now + LIVENESS_NS;
    }
    if (now >= deadline) {
      if (reached(atomic_load(w), target, m)) return GC_OK;
      return fail(s, GC_ERR_TIMEOUT, "%s: no progress after %.1f s (GCSHIM_TIMEOUT)", what,
                  s->timeout_s);
    }
    uint64_t until = next_live < deadline ? next_live : deadline;
    uint64_t ns = until - now;
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    atomic_fetch_add(&s->h->sleepers, 1);
    cur = atomic_load(w);
    if (!reached(cur, target, m)) gc_futex(w, FUTEX_WAIT, cur, &ts);
    atomic_fetch_sub(&s->h->sleepers, 1);
  }
}

static inline gc_status_t wait_for(shm_t *s, _Atomic uint32_t *w, uint32_t target, wmode_t m,
                                   const char *what) {
  if (GC_LIKELY(reached(atomic_load_explicit(w, memory_order_acquire), target, m))) return GC_OK;
  return wait_slow(s, w, target, m, what, NULL);
}

static inline gc_status_t check_ok(shm_t *s, const char *what) {
  if (GC_LIKELY(s->status == GC_OK)) {
    uint32_t ab = atomic_load_explicit(&s->h->abort_status, memory_order_relaxed);
    if (GC_LIKELY(!ab)) return GC_OK;
    return fail(s, (gc_status_t)ab, "%s: another member failed (%s)", what,
                gc_status_string((gc_status_t)ab));
  }
  return gc_error(s->status, "%s: shm group '%s' failed earlier (%s)", what, s->key,
                  gc_status_string(s->status));
}

/* ---- barrier ------------------------------------------------------------------ */

static gc_status_t shm_barrier(gc_cpu_group_t *g) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "barrier"));
  hdr_t *h = s->h;
  s->sense ^= 1u;
  if (atomic_fetch_add(&h->bar_count, 1) == (uint32_t)s->n - 1) {
    atomic_store(&h->bar_count, 0);
    publish(s, &h->bar_sense, s->sense);
    return GC_OK;
  }
  return wait_for(s, &h->bar_sense, s->sense, W_EQ, "barrier");
}

/* ---- rounds: broadcast, gather, all-gather ---------------------------------- */

static inline uint8_t *slot(shm_t *s, int r, uint32_t id) {
  return s->slots + ((size_t)r * 2 + (id & 1u)) * s->chunk;
}

static inline _Atomic uint32_t *slot_flag(shm_t *s, int r, uint32_t id) {
  return (_Atomic uint32_t *)slot(s, r, id);
}

/* Every peer published round id, so every peer finished round id - 1. */
static inline void saw_all(shm_t *s, uint32_t id) {
  if ((int32_t)(id - 1 - s->ack_seen) > 0) s->ack_seen = id - 1;
}

/* Before writing round id into a half: every peer finished round id - 2. */
static gc_status_t wait_half_free(shm_t *s, uint32_t id, const char *what) {
  uint32_t need = id - 2;
  if ((int32_t)(s->ack_seen - need) >= 0) return GC_OK;
  uint32_t lo = id;
  for (int r = 0; r < s->n; r++) {
    if (r == s->rank) continue;
    GC_CHECK(wait_for(s, &s->ctl[r].ack, need, W_GE, what));
    uint32_t a = atomic_load_explicit(&s->ctl[r].ack, memory_order_relaxed);
    if ((int32_t)(a - lo) < 0) lo = a;
  }
  s->ack_seen = lo;
  return GC_OK;
}

/* ---- the first round's signature ------------------------------------------
 * Each collective's first round carries, beside its flag, a signature of
 * what the call was given (kind, byte counts, datatype, op), and each reader
 * compares the writers' with its own. Ranks whose calls differ (with
 * GCSHIM_CHECK=0 nothing compared them before) all find out in that same
 * round, and all give up after it: none returns GC_OK with data cut to
 * another rank's length, and the group's rounds stay in step for the next
 * call. */
static uint64_t sig_of(uint64_t kind, const size_t *lens, int n, size_t len, int dt, int op) {
  uint64_t h = gc_fnv(GC_FNV_INIT, &kind, sizeof kind);
  if (lens)
    h = gc_fnv(h, lens, sizeof *lens * (size_t)n);
  else
    h = gc_fnv(h, &len, sizeof len);
  h = gc_fnv(h, &dt, sizeof dt);
  return gc_fnv(h, &op, sizeof op) | 1; /* never SIG_ANY */
}

/* The in-place round's signature (shm_round_begin): its caller's records
 * carry their own agreement (coord's fused round), and a plain all-gather
 * of another rank may meet it, so any matches it. */
#define SIG_ANY 0ull

static inline void put_sig(shm_t *s, uint32_t id, uint64_t sig) {
  memcpy(slot(s, s->rank, id) + SLOT_SIG, &sig, sizeof sig);
}

/* Rank w's signature of round id (its flag seen) differs from sig: this
 * rank's round is over, and so is the call. */
static GC_NOINLINE gc_status_t sig_differs(shm_t *s, int w, uint32_t id, uint64_t sig,
                                           const char *what) {
  uint64_t theirs;
  memcpy(&theirs, slot(s, w, id) + SLOT_SIG, sizeof theirs);
  if (GC_LIKELY(theirs == sig || theirs == SIG_ANY)) return GC_OK;
  publish(s, &s->ctl[s->rank].ack, id);
  return gc_error(GC_ERR_INVALID_ARG,
                  "%s on shm group '%s': rank %d passed other sizes, datatype or op than rank %d "
                  "(GCSHIM_CHECK=1 names the difference); nothing was delivered",
                  what, s->key, w, s->rank);
}

typedef enum { K_BCAST, K_GATHER, K_ALLGATHER } kind_t;

static inline bool reads(kind_t k, int root, int r, int w) {
  switch (k) {
    case K_BCAST:
      return w == root && r != root;
    case K_GATHER:
      return r == root && w != root;
    default:
      return r != w;
  }
}

/* lens[w] bytes of rank w (lens NULL: len for every rank; K_BCAST: the
 * root's only) stream through w's slot to the ranks that read w, landing at
 * recv + off[w] (off computed here). */
static gc_status_t run_rounds(shm_t *s, kind_t k, int root, const void *send, const size_t *lens,
                              size_t len, void *recv, const char *what) {
  int n = s->n, me = s->rank;
  size_t nchunks = 0, o = 0, maxlen = 0;
  for (int w = 0; w < n; w++) {
    size_t l = lens ? lens[w] : (k == K_BCAST && w != root) ? 0 : len;
    s->off[w] = k == K_BCAST ? 0 : o;
    o += l;
    if (l > maxlen) maxlen = l;
  }
  /* Small rounds share the flag's line (as the in-place rounds do, which
   * they may meet); larger ones are line-aligned for the copies. */
  size_t D = maxlen <= SLOT_SMALL ? SLOT_DATA : SLOT_BULK, C = s->chunk - D;
  nchunks = (maxlen + C - 1) / C;
  if (!nchunks) nchunks = 1; /* the signature's round */
  uint64_t sig = sig_of(k, lens, n, lens ? 0 : len, k == K_BCAST ? root : -1, 0);
#define LEN_OF(w) (lens ? lens[w] : (k == K_BCAST && (w) != root) ? 0 : len)
  size_t mylen = LEN_OF(me);
  bool i_write = k == K_GATHER ? me != root : k == K_BCAST ? me == root : true;
  uint8_t *out = recv;
  const uint8_t *in = send;
  if (k != K_BCAST && (k == K_ALLGATHER || me == root) && mylen && out + s->off[me] != in)
    memmove(out + s->off[me], in, mylen);
  uint32_t base = s->round;
  s->round = base + (uint32_t)nchunks;
  for (size_t j = 0; j < nchunks; j++) {
    uint32_t id = base + 1 + (uint32_t)j;
    size_t pos = j * C;
    if (i_write && (pos < mylen || j == 0)) {
      GC_CHECK(wait_half_free(s, id, what));
      size_t b = pos >= mylen ? 0 : mylen - pos < C ? mylen - pos : C;
      if (b) memcpy(slot(s, me, id) + D, in + pos, b);
      if (j == 0) put_sig(s, id, sig);
      publish(s, slot_flag(s, me, id), id);
    }
    int seen = 0;
    /* from the next rank on: the ranks do not all read the same slot first */
    for (int i = 1, w = me + 1 < n ? me + 1 : 0; i <= n; i++, w = w + 1 < n ? w + 1 : 0) {
      size_t lw = LEN_OF(w);
      if ((pos >= lw && j > 0) || !reads(k, root, me, w)) continue;
      GC_CHECK(wait_for(s, slot_flag(s, w, id), id, W_GE, what));
      if (j == 0) {
        gc_status_t st = sig_differs(s, w, id, sig, what);
        if (GC_UNLIKELY(st != GC_OK)) {
          s->round = id;
          return st;
        }
      }
      seen++;
      if (pos >= lw) continue;
      size_t b = lw - pos < C ? lw - pos : C;
      memcpy(out + s->off[w] + pos, slot(s, w, id) + D, b);
    }
    if (seen == n - 1) saw_all(s, id);
    publish(s, &s->ctl[me].ack, id);
  }
#undef LEN_OF
  return GC_OK;
}

static gc_status_t shm_broadcast(gc_cpu_group_t *g, void *buf, size_t len, int root) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "broadcast"));
  return run_rounds(s, K_BCAST, root, buf, NULL, len, buf, "broadcast");
}

static gc_status_t shm_gatherv(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv,
                               int root) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "gatherv"));
  return run_rounds(s, K_GATHER, root, send, lens, 0, recv, "gatherv");
}

static gc_status_t shm_allgatherv(gc_cpu_group_t *g, const void *send, const size_t *lens,
                                  void *recv) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "allgatherv"));
  return run_rounds(s, K_ALLGATHER, 0, send, lens, 0, recv, "allgatherv");
}

static gc_status_t shm_allgather(gc_cpu_group_t *g, const void *send, size_t len, void *recv) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "allgather"));
  return run_rounds(s, K_ALLGATHER, 0, send, NULL, len, recv, "allgather");
}

/* One allgather round of at most chunk - SLOT_DATA bytes, read in place:
 * run_rounds' round of small records without its copies. A record is at
 * SLOT_DATA, like a small run_rounds round's data, so that ranks may mix
 * the two: each reader sees the start of every record. */
static gc_status_t shm_round_begin(gc_cpu_group_t *g, void **mine) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "allgather"));
  uint32_t id = s->round + 1;
  GC_CHECK(wait_half_free(s, id, "allgather"));
  s->round = id;
  put_sig(s, id, SIG_ANY);
  *mine = slot(s, s->rank, id) + SLOT_DATA;
  return GC_OK;
}

static gc_status_t shm_round_exchange(gc_cpu_group_t *g, const void **all) {
  shm_t *s = g->impl;
  uint32_t id = s->round;
  publish(s, slot_flag(s, s->rank, id), id);
  for (int w = 0; w < s->n; w++) {
    if (w != s->rank) GC_CHECK(wait_for(s, slot_flag(s, w, id), id, W_GE, "allgather"));
    all[w] = slot(s, w, id) + SLOT_DATA;
  }
  saw_all(s, id);
  return GC_OK;
}

static void shm_round_end(gc_cpu_group_t *g) {
  shm_t *s = g->impl;
  publish(s, &s->ctl[s->rank].ack, s->round);
}

/* ---- all-reduce and reduce-scatter ------------------------------------------- *
 * Small all-reduces: every rank copies its vector into its slot and reduces
 * all n slots in rank order itself (one round, no second hand-off). Larger
 * ones: the vector is cut into n segments (reduce-scatter: counts[r] elements
 * for rank r); round j carries piece j of every segment, piece r in sub-slot
 * r of each slot. Rank r reduces sub-slot r of all slots in rank order into
 * its own sub-slot (published as red = id) and everyone copies the reduced
 * pieces out: a reduce-scatter in parallel, then an all-gather, the next
 * round's copy-in overlapping the current round's copy-out. One rank
 * reduces each element, so every rank gets the same bits. */

static gc_status_t allreduce_small(shm_t *s, const void *send, void *recv, size_t count,
                                   gc_dtype_t dt, gc_redop_t op) {
  size_t bytes = count * gc_dtype_size(dt);
  uint32_t id = ++s->round;
  uint64_t sig = sig_of(3, NULL, 0, bytes, (int)dt, (int)op);
  GC_CHECK(wait_half_free(s, id, "allreduce"));
  if (bytes) memcpy(slot(s, s->rank, id) + SLOT_DATA, send, bytes);
  put_sig(s, id, sig);
  publish(s, slot_flag(s, s->rank, id), id);
  for (int w = 0; w < s->n; w++) {
    if (w != s->rank) {
      GC_CHECK(wait_for(s, slot_flag(s, w, id), id, W_GE, "allreduce"));
      GC_CHECK(sig_differs(s, w, id, sig, "allreduce"));
    }
    s->in[w] = slot(s, w, id) + SLOT_DATA;
  }
  saw_all(s, id);
  gc_reduce_multi(dt, op, recv, s->in, s->n, count);
  gc_reduce_finish(dt, op, recv, count, s->n);
  publish(s, &s->ctl[s->rank].ack, id);
  return GC_OK;
}

/* seg_off/seg_len (elements) per rank; gather: all-reduce (else reduce-scatter). */
static gc_status_t reduce_rounds(shm_t *s, const void *send, void *recv, gc_dtype_t dt,
                                 gc_redop_t op, bool gather, uint64_t sig, const char *what) {
  int n = s->n, me = s->rank;
  size_t es = gc_dtype_size(dt);
  size_t P = (s->chunk - SLOT_BULK) / (size_t)n / 64 * 64; /* bytes per piece */
  size_t pe = P / es, nrounds = 0;
  for (int r = 0; r < n; r++) {
    size_t c = (s->seg_len[r] + pe - 1) / pe;
    if (c > nrounds) nrounds = c;
  }
  if (!nrounds) nrounds = 1; /* the signature's round */
  const char *in = send;
  char *out = recv;
  uint32_t base = s->round;
  s->round = base + (uint32_t)nrounds;
  for (size_t j = 0; j < nrounds; j++) {
    uint32_t id = base + 1 + (uint32_t)j;
    size_t e0 = j * pe;
    GC_CHECK(wait_half_free(s, id, what));
    uint8_t *mine = slot(s, me, id) + SLOT_BULK;
    for (int r = 0; r < n; r++)
      if (r != me && e0 < s->seg_len[r]) {
        size_t m = s->seg_len[r] - e0 < pe ? s->seg_len[r] - e0 : pe;
        memcpy(mine + (size_t)r * P, in + (s->seg_off[r] + e0) * es, m * es);
      }
    if (j == 0) put_sig(s, id, sig);
    publish(s, slot_flag(s, me, id), id);
    if (j == 0)
      for (int w = 0; w < n; w++)
        if (w != me) {
          GC_CHECK(wait_for(s, slot_flag(s, w, id), id, W_GE, what));
          gc_status_t st = sig_differs(s, w, id, sig, what);
          if (GC_UNLIKELY(st != GC_OK)) {
            s->round = id;
            return st;
          }
        }
    if (e0 < s->seg_len[me]) {
      size_t m = s->seg_len[me] - e0 < pe ? s->seg_len[me] - e0 : pe;
      /* my own piece is read from send: only I would read it from my slot */
      for (int w = 0; w < n; w++)
        if (w != me) GC_CHECK(wait_for(s, slot_flag(s, w, id), id, W_GE, what));
      saw_all(s, id);
      char *dst = gather ? (char *)(mine + (size_t)me * P) : out + e0 * es;
      /* blocks that stay in L1 between the reduction and the copy out */
      size_t B = 16384 / es;
      for (size_t k = 0; k < m; k += B) {
        size_t bk = m - k < B ? m - k : B;
        for (int w = 0; w < n; w++)
          s->in[w] = w == me ? (const void *)(in + (s->seg_off[me] + e0 + k) * es)
                             : (const void *)(slot(s, w, id) + SLOT_BULK + (size_t)me * P + k * es);
        gc_reduce_multi(dt, op, dst + k * es, s->in, n, bk);
        gc_reduce_finish(dt, op, dst + k * es, bk, n);
        if (gather) memcpy(out + (s->seg_off[me] + e0 + k) * es, dst + k * es, bk * es);
      }
      if (gather) publish(s, &s->ctl[me].red, id);
    }
    if (gather)
      for (int i = 1, w = me + 1 < n ? me + 1 : 0; i < n; i++, w = w + 1 < n ? w + 1 : 0) {
        if (e0 >= s->seg_len[w]) continue;
        size_t m = s->seg_len[w] - e0 < pe ? s->seg_len[w] - e0 : pe;
        GC_CHECK(wait_for(s, &s->ctl[w].red, id, W_GE, what));
        memcpy(out + (s->seg_off[w] + e0) * es, slot(s, w, id) + SLOT_BULK + (size_t)w * P, m * es);
      }
    publish(s, &s->ctl[me].ack, id);
  }
  return GC_OK;
}

static gc_status_t shm_allreduce(gc_cpu_group_t *g, const void *send, void *recv, size_t count,
                                 gc_dtype_t dt, gc_redop_t op) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "allreduce"));
  size_t es = gc_dtype_size(dt), bytes = count * es;
  /* Even an empty call takes its round: a peer's non-empty one must fail. */
  if (bytes <= s->small_max) return allreduce_small(s, send, recv, count, dt, op);
  /* n segments, multiples of 16 elements except the last ones */
  size_t per = (count + (size_t)s->n - 1) / (size_t)s->n;
  per = (per + 15) / 16 * 16;
  for (int r = 0; r < s->n; r++) {
    size_t lo = (size_t)r * per < count ? (size_t)r * per : count;
    size_t hi = lo + per < count ? lo + per : count;
    s->seg_off[r] = lo;
    s->seg_len[r] = hi - lo;
  }
  return reduce_rounds(s, send, recv, dt, op, true, sig_of(3, NULL, 0, bytes, (int)dt, (int)op),
                       "allreduce");
}

static gc_status_t shm_reduce_scatter(gc_cpu_group_t *g, const void *send, void *recv,
                                      const size_t *counts, gc_dtype_t dt, gc_redop_t op) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "reduce_scatter"));
  size_t o = 0;
  for (int r = 0; r < s->n; r++) {
    s->seg_off[r] = o;
    s->seg_len[r] = counts[r];
    o += counts[r];
  }
  return reduce_rounds(s, send, recv, dt, op, false, sig_of(4, counts, s->n, 0, (int)dt, (int)op),
                       "reduce_scatter");
}

/* ---- send / recv: a byte ring per (src, dst) ------------------------------------ */

static gc_status_t ring_write(shm_t *s, int dst, const void *data, size_t len, const char *what) {
  mbox_ctl_t *m = &s->mb[(size_t)s->rank * (size_t)s->n + (size_t)dst];
  uint8_t *ring = s->rings + ((size_t)s->rank * (size_t)s->n + (size_t)dst) * s->mbox;
  uint32_t M = (uint32_t)s->mbox, piece = M / 4;
  uint32_t head = atomic_load_explicit(&m->head, memory_order_relaxed);
  const uint8_t *p = data;
  while (len) {
    uint32_t want = len < piece ? (uint32_t)len : piece;
    GC_CHECK(wait_for(s, &m->tail, head - M + want, W_GE, what));
    uint32_t space = M - (head - atomic_load_explicit(&m->tail, memory_order_acquire));
    uint32_t b = len < space ? (uint32_t)len : space;
    if (b > piece) b = piece;
    uint32_t at = head & (M - 1), first = M - at < b ? M - at : b;
    memcpy(ring + at, p, first);
    memcpy(ring, p + first, b - first);
    head += b;
    p += b;
    len -= b;
    publish(s, &m->head, head);
  }
  return GC_OK;
}

static gc_status_t ring_read(shm_t *s, int src, void *data, size_t len, const char *what) {
  mbox_ctl_t *m = &s->mb[(size_t)src * (size_t)s->n + (size_t)s->rank];
  uint8_t *ring = s->rings + ((size_t)src * (size_t)s->n + (size_t)s->rank) * s->mbox;
  uint32_t M = (uint32_t)s->mbox, piece = M / 4;
  uint32_t tail = atomic_load_explicit(&m->tail, memory_order_relaxed);
  uint8_t *p = data;
  while (len) {
    uint32_t want = len < piece ? (uint32_t)len : piece;
    GC_CHECK(wait_for(s, &m->head, tail + want, W_GE, what));
    uint32_t avail = atomic_load_explicit(&m->head, memory_order_acquire) - tail;
    uint32_t b = len < avail ? (uint32_t)len : avail;
    uint32_t at = tail & (M - 1), first = M - at < b ? M - at : b;
    memcpy(p, ring + at, first);
    memcpy(p + first, ring, b - first);
    tail += b;
    p += b;
    len -= b;
    publish(s, &m->tail, tail);
  }
  return GC_OK;
}

static gc_status_t shm_send(gc_cpu_group_t *g, const void *buf, size_t len, int dst) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "send"));
  uint64_t hdr = len;
  if (len <= 1024) { /* one hand-off for small messages */
    unsigned char one[sizeof hdr + 1024];
    memcpy(one, &hdr, sizeof hdr);
    if (len) memcpy(one + sizeof hdr, buf, len);
    return ring_write(s, dst, one, sizeof hdr + len, "send");
  }
  GC_CHECK(ring_write(s, dst, &hdr, sizeof hdr, "send"));
  return ring_write(s, dst, buf, len, "send");
}

static gc_status_t shm_recv(gc_cpu_group_t *g, void *buf, size_t len, int src) {
  shm_t *s = g->impl;
  GC_CHECK(check_ok(s, "recv"));
  uint64_t hdr = 0;
  GC_CHECK(ring_read(s, src, &hdr, sizeof hdr, "recv"));
  if (hdr != len)
    return fail(s, GC_ERR_INVALID_ARG, "recv: expected %zu bytes from rank %d, it sent %llu", len,
                src, (unsigned long long)hdr);
  return ring_read(s, src, buf, len, "recv");
}

/* ---- creation, attach, cleanup ------------------------------------------------ */

static void shm_free(shm_t *s) {
  if (!s) return;
  if (s->base) munmap(s->base, s->total);
  if (s->pidfd)
    for (int r = 0; r < s->n; r++)
      if (s->pidfd[r] >= 0) close(s->pidfd[r]);
  free(s->pidfd);
  free(s->pids);
  free(s->pfd);
  free(s->off);
  free(s->seg_off);
  free(s->seg_len);
  free(s->in);
  free(s->key);
  free(s);
}

static void shm_destroy(gc_cpu_group_t *g) {
  if (!g) return;
  shm_free(g->impl);
  free(g);
}

typedef struct {
  shm_t *s;
  uint64_t hash;
} init_arg_t;

/* The creator's header, written before anyone can map the segment. */
static void init_hdr(void *base, size_t bytes, void *arg) {
  const init_arg_t *a = arg;
  hdr_t *h = base;
  atomic_store(&h->creator, (int32_t)getpid());
  h->magic = SHM_MAGIC;
  h->version = SHM_VERSION;
  h->size = (uint32_t)a->s->n;
  h->key_hash = a->hash;
  h->total = bytes;
  h->chunk = a->s->chunk;
  h->mbox = a->s->mbox;
  h->small_max = a->s->small_max;
  atomic_store(&h->state, ST_READY);
}

/* Opens (creating or joining) the segment through core/seg.h, handling a
 * stale one left by a crashed run: a segment whose creator is dead before
 * every member attached, or one every member attached but nobody removed.
 * Returns the mapping in s and the open segment in seg. */
static gc_status_t open_segment(shm_t *s, uint64_t hash, uint64_t deadline, gc_seg_t *seg) {
  layout_t l = seg_layout(s->n, s->chunk, s->mbox);
  s->total = l.total;
  init_arg_t arg = {s, hash};
  for (;;) {
    uint64_t now = gc_now_ns();
    if (now >= deadline)
      return gc_error(GC_ERR_TIMEOUT, "shm create '%s': segment %s not ready after %.1f s", s->key,
                      s->name, s->timeout_s);
    gc_seg_opts_t o = {.what = "shm create",
                       .bytes = l.total,
                       .init = init_hdr,
                       .arg = &arg,
                       .pids_off = (uint32_t)(l.ctl + offsetof(rank_ctl_t, pid)),
                       .pids_stride = sizeof(rank_ctl_t),
                       .pids_n = (uint32_t)s->n,
                       .any_size = true,
                       .timeout_s = (double)(deadline - now) / 1e9};
    GC_CHECK(gc_seg_open(s->name, GC_SEG_CREATE | GC_SEG_ATTACH, &o, seg));
    if (seg->created) {
      s->base = seg->base;
      return GC_OK;
    }
    hdr_t *h = seg->base;
    pid_t creator = atomic_load(&h->creator);
    uint32_t state = atomic_load(&h->state);
    /* Sizes come from the creator's header, so that every member uses
     * the same chunk, mailbox and all-reduce threshold. */
    size_t hc = h->chunk, hm = h->mbox;
    bool sane = hc >= (size_t)s->n * 256 && hc >= 4096 && hc <= (64u << 20) && hc % 4096 == 0 &&
                hm >= 4096 && hm <= (64u << 20) && (hm & (hm - 1)) == 0;
    layout_t hl = sane ? seg_layout(s->n, hc, hm) : l;
    bool match = state != ST_INIT && h->magic == SHM_MAGIC && h->version == SHM_VERSION &&
                 h->size == (uint32_t)s->n && h->key_hash == hash && sane && h->total == hl.total &&
                 seg->bytes == hl.total;
    bool creator_dead = creator <= 0 || gc_seg_creator_dead(&h->seg);
    /* A live creator's finished header that does not match: a real clash. */
    if (!creator_dead && !match) {
      gc_seg_close(seg);
      return gc_error(GC_ERR_INVALID_ARG,
                      "shm attach %s: key '%s' is in use with another group size or version",
                      s->name, s->key);
    }
    if (creator_dead || state == ST_COMPLETE) {
      GC_INFO("shm %s: removing a stale segment left by a crashed run", s->name);
      gc_seg_remove_if(s->name, seg->fd);
      gc_seg_close(seg);
      continue;
    }
    s->chunk = hc;
    s->mbox = hm;
    s->small_max = h->small_max < hc - SLOT_DATA ? h->small_max : hc - SLOT_DATA;
    s->total = hl.total;
    s->base = seg->base;
    return GC_OK;
  }
}

static gc_status_t shm_create(const char *key, int rank, int size, double timeout_s,
                              const pid_t *expect, gc_cpu_group_t **out) {
  if (!key || !out) return gc_error(GC_ERR_INVALID_ARG, "shm create: key or out is NULL");
  if (size <= 0 || size > GC_SHM_MAX_MEMBERS)
    return gc_error(GC_ERR_INVALID_ARG, "shm create: size %d is outside 1..%d", size,
                    GC_SHM_MAX_MEMBERS);
  if (rank < 0 || rank >= size)
    return gc_error(GC_ERR_INVALID_ARG, "shm create: rank %d is outside 0..%d", rank, size - 1);
  if (!(timeout_s > 0)) timeout_s = gc_env_timeout();
  if (timeout_s > 1e8) timeout_s = 1e8;
  uint64_t deadline = gc_now_ns() + (uint64_t)(timeout_s * 1e9);

  gc_status_t st = GC_OK;
  gc_seg_t seg = {.fd = -1};
  shm_t *s = calloc(1, sizeof *s);
  gc_cpu_group_t *g = calloc(1, sizeof *g);
  if (!s || !g) goto nomem;
  s->n = size;
  s->rank = rank;
  s->timeout_s = timeout_s;
  s->key = strdup(key);
  s->pids = calloc((size_t)size, sizeof *s->pids);
  s->pidfd = malloc(sizeof *s->pidfd * (size_t)size);
  s->pfd = calloc((size_t)size, sizeof *s->pfd);
  s->off = calloc((size_t)size, sizeof *s->off);
  s->seg_off = calloc((size_t)size, sizeof *s->seg_off);
  s->seg_len = calloc((size_t)size, sizeof *s->seg_len);
  s->in = calloc((size_t)size, sizeof *s->in);
  if (!s->key || !s->pids || !s->pidfd || !s->pfd || !s->off || !s->seg_off || !s->seg_len ||
      !s->in)
    goto nomem;
  for (int r = 0; r < size; r++) s->pidfd[r] = -1;
  seg_sizes(size, &s->chunk, &s->mbox);
  s->small_max = small_max_default(size, s->chunk);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  s->spin_ns = size <= ncpu ? 50000 : 2000;
  s->yield = size >= ncpu;
  uint64_t hash = key_hash(key, size);
  shm_name(key, size, s->name, sizeof s->name);

  GC_CHECK_GOTO(open_segment(s, hash, deadline, &seg), st, err);
  layout_t l = seg_layout(size, s->chunk, s->mbox);
  s->h = (hdr_t *)s->base;
  s->ctl = (rank_ctl_t *)(s->base + l.ctl);
  s->mb = (mbox_ctl_t *)(s->base + l.mb);
  s->slots = s->base + l.slots;
  s->rings = s->base + l.rings;

  int32_t zero = 0, me = (int32_t)getpid();
  if (!atomic_compare_exchange_strong(&s->ctl[rank].pid, &zero, me)) {
    /* Two processes claim one rank of one key: two jobs share a rendezvous
     * (or a launcher numbered two ranks alike). Neither may go on: the
     * member that claimed it first is told too, unless the group is
     * complete (then this one came too late to matter to it). */
    if (atomic_load(&s->h->state) != ST_COMPLETE && !gc_pid_dead(zero)) {
      int32_t none = 0;
      uint32_t ok = 0;
      atomic_compare_exchange_strong(&s->h->dup_rank, &none, rank + 1);
      atomic_compare_exchange_strong(&s->h->abort_status, &ok, (uint32_t)GC_ERR_STATE);
      gc_futex(&s->h->state, FUTEX_WAKE, INT_MAX, NULL);
    }
    st = gc_error(GC_ERR_STATE,
                  "shm create '%s': rank %d is claimed by another process too (pid %d): two jobs "
                  "share this rendezvous key; give each its own (GCSHIM_RENDEZVOUS, or a launcher "
                  "that sets a job identity: docs/CPU_GROUPS.md)",
                  key, rank, (int)zero);
    goto err;
  }
  if (atomic_fetch_add(&s->h->attached, 1) + 1 == (uint32_t)size) {
    gc_seg_unlink(&seg);
    publish(s, &s->h->state, ST_COMPLETE);
  } else {
    /* Bound the attach wait by what is left of the deadline. */
    uint64_t now = gc_now_ns();
    double saved = s->timeout_s;
    s->timeout_s = now < deadline ? (double)(deadline - now) / 1e9 : 1e-9;
    st = wait_slow(s, &s->h->state, ST_COMPLETE, W_EQ, "shm create (waiting for members)", expect);
    s->timeout_s = saved;
    if (st != GC_OK) {
      int missing = 0, first = -1;
      for (int r = 0; r < size; r++)
        if (atomic_load(&s->ctl[r].pid) == 0) {
          missing++;
          if (first < 0) first = r;
        }
      gc_seg_remove_if(s->name, seg.fd);
      int dup = atomic_load(&s->h->dup_rank);
      if (dup)
        st = gc_error(GC_ERR_STATE,
                      "shm create '%s': rank %d was claimed by a second process: two jobs share "
                      "this rendezvous key; give each its own (GCSHIM_RENDEZVOUS, or a launcher "
                      "that sets a job identity: docs/CPU_GROUPS.md)",
                      key, dup - 1);
      else if (st == GC_ERR_TIMEOUT && missing)
        st = gc_error(st,
                      "shm create '%s': %d of %d members (first: rank %d) did not attach "
                      "within %.1f s",
                      key, missing, size, first, timeout_s);
      goto err;
    }
  }
  gc_seg_close_fd(&seg);
  /* pids of every member, for the liveness checks. */
  find_dead_peer(s, NULL);
  s->ack_seen = 0;
  g->ops = &shm_ops;
  g->rank = rank;
  g->size = size;
  g->timeout_s = timeout_s;
  g->impl = s;
  g->round_cap = s->chunk - SLOT_DATA;
  *out = g;
  GC_INFO("shm group '%s' (%s): rank %d of %d, %zu bytes", key, s->name, rank, size, s->total);
  return GC_OK;

nomem:
  st = gc_error(GC_ERR_NO_MEMORY, "shm create '%s': no memory", key);
err:
  gc_seg_close_fd(&seg);
  shm_free(s);
  free(g);
  return st;
}

gc_status_t gc_cpu_shm_create(const char *key, int rank, int size, double timeout_s,
                              gc_cpu_group_t **out) {
  return shm_create(key, rank, size, timeout_s, NULL, out);
}

gc_status_t gc_cpu_shm_create_expect(const char *key, int rank, int size, double timeout_s,
                                     const pid_t *expect, gc_cpu_group_t **out) {
  return shm_create(key, rank, size, timeout_s, expect, out);
}

static gc_status_t shm_subgroup(gc_cpu_group_t *parent, const int *ranks, int n, const char *tag,
                                gc_cpu_group_t **out) {
  shm_t *p = parent->impl;
  GC_CHECK(check_ok(p, "subgroup"));
  int me = -1;
  for (int i = 0; i < n; i++)
    if (ranks[i] == p->rank) me = i;
  uint64_t h = gc_fnv(GC_FNV_INIT, ranks, sizeof(int) * (size_t)n);
  size_t klen = strlen(p->key) + strlen(tag) + 32;
  char *key = malloc(klen);
  pid_t *expect = calloc((size_t)n, sizeof *expect);
  if (!key || !expect) {
    free(key);
    free(expect);
    return gc_error(GC_ERR_NO_MEMORY, "subgroup: no memory");
  }
  snprintf(key, klen, "%s/%s.%016llx", p->key, tag, (unsigned long long)h);
  for (int i = 0; i < n; i++) expect[i] = p->pids[ranks[i]];
  gc_status_t st = shm_create(key, me, n, p->timeout_s, expect, out);
  free(key);
  free(expect);
  if (st == GC_ERR_PEER_LOST) p->status = st;
  return st;
}

static const gc_cpu_ops_t shm_ops = {
    .name = "shm",
    .reduce_multi = true,
    .barrier = shm_barrier,
    .broadcast = shm_broadcast,
    .send = shm_send,
    .recv = shm_recv,
    .gatherv = shm_gatherv,
    .allgatherv = shm_allgatherv,
    .allgather = shm_allgather,
    .allreduce = shm_allreduce,
    .reduce_scatter = shm_reduce_scatter,
    .subgroup = shm_subgroup,
    .destroy = shm_destroy,
    .round_begin = shm_round_begin,
    .round_exchange = shm_round_exchange,
    .round_end = shm_round_end,
};
