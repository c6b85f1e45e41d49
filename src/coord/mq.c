/*
 * mq.c - message queues: one writer, n readers, over a ring of chunks in a
 * shared-memory segment the writer makes (vLLM's MessageQueue /
 * ShmRingBuffer, for C). docs/MQ.md has the long version.
 *
 * Segment layout (every part 64-byte aligned, the data page aligned):
 *   header       magic, version, sizes, nonce, writer pid and state,
 *                attached count, abort word, sleepers
 *   readers[n]   per reader slot: pid, state (empty, attached, left)
 *   meta[c]      per chunk: the written flag, then one read flag per
 *                reader, each on its own cache line
 *   data[c]      n_chunks chunks of chunk_bytes
 *
 * The flags hold lap numbers instead of 0/1, so that a futex wait on one
 * never misses a change (no ABA): the writer's k-th chunk goes to chunk
 * k % n_chunks in lap k / n_chunks + 1. The writer writes a chunk in lap L
 * once every reader that has not left shows read == L - 1 there, then
 * publishes written = L; reader r reads its k-th chunk once written == L
 * there, then publishes read[r] = L.
 *
 * Messages of any size: the first chunk of a message starts with a 16-byte
 * header (length, message number); what does not fit continues in the next
 * chunks, streamed through the ring while the readers drain it. No overflow
 * path, no socket: a 64 MiB message through 6 chunks of 4 MiB is 17 chunk
 * hand-offs.
 *
 * Waits spin briefly, then sleep on the flag (futex), waking every 100 ms
 * to look at the peer they wait for (gc_pid_dead), the abort word and the
 * cancel flag. timeout_s bounds the wait for a message to start; once a
 * message is under way the rest of it waits at most GCSHIM_TIMEOUT per
 * chunk, and a failure in the middle of a message (timeout, cancel, a dead
 * peer) poisons the queue for every end, since its stream is then cut.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/params.h"
#include "core/seg.h"
#include "core/spin.h"
#include "coord/coord.h"

#define MQ_MAGIC 0x31307571636d6367ull /* "gcmqu01" */
#define MQ_VERSION 2u
#define MQ_HANDLE_MAGIC 0x514d4347u /* "GCMQ" */
#define MQ_LINE 64
#define MQ_MSG_HDR 16
#define MQ_MIN_CHUNK 64
#define MQ_MAX_CHUNK (1ull << 30)
#define MQ_MAX_CHUNKS 4096
/* The default ring (GCSHIM_MQ_CHUNK_BYTES, GCSHIM_MQ_CHUNKS, in
 * core/params.def) is 16 chunks of 256 KiB. vLLM's group broadcaster has 6
 * chunks of 4 MiB, since a message must fit one; here large ones stream,
 * and smaller chunks overlap the writer's and the readers' copies
 * (docs/MQ.md). */
#define MQ_LIVENESS_NS 100000000ull
#define MQ_WARN_NS 60000000000ull
#define MQ_NAME_MAX 96

enum { W_OPEN = 1, W_CLOSED = 2 };
enum { R_EMPTY = 0, R_ATTACHED = 1, R_LEFT = 2 };

typedef struct {
  gc_seg_hdr_t seg; /* creator, its start time, uid, size: core/seg.h */
  uint64_t magic;
  uint32_t version, n_readers;
  uint64_t chunk_bytes;
  uint32_t n_chunks, uid;
  uint64_t nonce, total;
  _Atomic int32_t writer_pid;
  _Atomic uint32_t writer_state; /* W_* */
  _Atomic uint32_t attached;
  _Atomic uint32_t abort_status; /* a cut message poisons the queue: 0 = none */
  _Alignas(MQ_LINE) _Atomic uint32_t sleepers;
} mq_hdr_t;

typedef struct {
  _Alignas(MQ_LINE) _Atomic int32_t pid;
  _Atomic uint32_t state; /* R_* */
} mq_reader_t;

typedef struct {
  _Alignas(MQ_LINE) _Atomic uint32_t v;
} mq_flag_t;

/* The handle as it travels (inside gc_mq_handle_t's 256 bytes, the rest
 * zero). check: FNV-1a of all 256 bytes with check itself zero, so that
 * any flipped byte is refused. */
typedef struct {
  uint64_t check;
  uint32_t magic;
  uint16_t version, pad0;
  uint32_t n_readers, n_chunks;
  uint64_t chunk_bytes, total, nonce;
  int32_t creator;
  uint32_t uid;
  char name[MQ_NAME_MAX];
} mq_wire_t;
_Static_assert(sizeof(mq_wire_t) <= sizeof(gc_mq_handle_t), "handle too large");

struct gc_mq {
  uint8_t *base;
  size_t total;
  mq_hdr_t *h;
  mq_reader_t *readers;
  mq_flag_t *meta; /* (1 + n_readers) flags per chunk */
  uint8_t *data;
  uint32_t n_readers, n_chunks;
  size_t chunk;
  bool writer, blocking;
  int reader;   /* reader slot; -1 at the writer */
  uint64_t seq; /* chunks written (writer) or read (reader) */
  uint64_t msg; /* messages written or read */
  uint64_t spin_ns;
  _Atomic bool cancelled;
  _Atomic(_Atomic uint32_t *) waiting; /* the flag this end sleeps on */
  gc_mq_handle_t handle;
  char name[MQ_NAME_MAX];
  uint64_t nonce; /* the writer's, while it creates the segment */
  dev_t dev;
  ino_t ino;
  bool unlinked;
};

/* ---- layout, names, handles -------------------------------------------------- */

typedef struct {
  size_t readers, meta, data, total;
} mq_layout_t;

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* false when the sizes overflow. */
static bool mq_layout(uint32_t n_readers, uint32_t n_chunks, size_t chunk, mq_layout_t *l) {
  size_t flags, meta_bytes, data_bytes;
  l->readers = align_up(sizeof(mq_hdr_t), MQ_LINE);
  l->meta = align_up(l->readers + sizeof(mq_reader_t) * n_readers, MQ_LINE);
  if (gc_mul_overflow_size((size_t)n_chunks, (size_t)n_readers + 1, &flags) ||
      gc_mul_overflow_size(flags, sizeof(mq_flag_t), &meta_bytes) ||
      gc_mul_overflow_size((size_t)n_chunks, chunk, &data_bytes))
    return false;
  l->data = align_up(l->meta + meta_bytes, 4096);
  if (__builtin_add_overflow(l->data, data_bytes, &l->total)) return false;
  return true;
}

static uint64_t handle_check(const gc_mq_handle_t *h) {
  gc_mq_handle_t c = *h;
  memset(c.bytes, 0, sizeof(uint64_t));
  return gc_fnv(GC_FNV_INIT, c.bytes, sizeof c.bytes);
}

static bool name_ok(const char *name) {
  if (strncmp(name, "/gcmq-", 6) != 0) return false;
  for (const char *p = name + 1; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

static gc_status_t wire_parse(const gc_mq_handle_t *h, mq_wire_t *w, const char *what) {
  memcpy(w, h->bytes, sizeof *w);
  if (w->magic != MQ_HANDLE_MAGIC || w->version != MQ_VERSION)
    return gc_error(GC_ERR_INVALID_ARG, "%s: the handle is not a gcshim message-queue handle",
                    what);
  if (w->check != handle_check(h))
    return gc_error(GC_ERR_INVALID_ARG, "%s: the handle is corrupt (checksum mismatch)", what);
  if (!memchr(w->name, '\0', sizeof w->name) || !name_ok(w->name))
    return gc_error(GC_ERR_INVALID_ARG, "%s: the handle names no message-queue segment", what);
  mq_layout_t l;
  if (w->n_readers > GC_MQ_MAX_READERS || w->n_chunks < 1 || w->n_chunks > MQ_MAX_CHUNKS ||
      w->chunk_bytes < MQ_MIN_CHUNK || w->chunk_bytes > MQ_MAX_CHUNK || w->chunk_bytes % 64 ||
      !mq_layout(w->n_readers, w->n_chunks, (size_t)w->chunk_bytes, &l) || l.total != w->total)
    return gc_error(GC_ERR_INVALID_ARG, "%s: the handle's sizes are inconsistent", what);
  return GC_OK;
}

static void mq_map_parts(gc_mq_t *q) {
  mq_layout_t l = {0};
  (void)mq_layout(q->n_readers, q->n_chunks, q->chunk, &l);
  q->h = (mq_hdr_t *)q->base;
  q->readers = (mq_reader_t *)(q->base + l.readers);
  q->meta = (mq_flag_t *)(q->base + l.meta);
  q->data = q->base + l.data;
}

static inline _Atomic uint32_t *written_flag(const gc_mq_t *q, uint32_t c) {
  return &q->meta[(size_t)c * (q->n_readers + 1)].v;
}
static inline _Atomic uint32_t *read_flag(const gc_mq_t *q, uint32_t c, uint32_t r) {
  return &q->meta[(size_t)c * (q->n_readers + 1) + 1 + r].v;
}
static inline uint8_t *chunk_data(const gc_mq_t *q, uint32_t c) {
  return q->data + (size_t)c * q->chunk;
}

/* Unlinks the name only while it is still the segment this end mapped. */
static void mq_unlink(gc_mq_t *q) {
  if (q->unlinked) return;
  char path[MQ_NAME_MAX + 16];
  struct stat st;
  snprintf(path, sizeof path, "/dev/shm%s", q->name);
  if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == q->ino && st.st_dev == q->dev)
    unlink(path);
  q->unlinked = true;
}

/* ---- futex waits ----------------------------------------------------------- */

/* Store, then wake sleepers: seq_cst on both sides (here and in mq_wait:
 * sleepers++ then re-read) so that a wake is never lost. */
static inline void publish(gc_mq_t *q, _Atomic uint32_t *w, uint32_t v) {
  atomic_store(w, v);
  if (GC_UNLIKELY(atomic_load(&q->h->sleepers))) gc_futex(w, FUTEX_WAKE, INT_MAX, NULL);
}

static inline bool reached(uint32_t cur, uint32_t target) { return (int32_t)(cur - target) >= 0; }

/* Wakes everyone asleep on any flag (close, leave, abort). */
static void wake_all(gc_mq_t *q) {
  if (!atomic_load(&q->h->sleepers)) return;
  size_t n = (size_t)q->n_chunks * (q->n_readers + 1);
  for (size_t i = 0; i < n; i++) gc_futex(&q->meta[i].v, FUTEX_WAKE, INT_MAX, NULL);
}

static void poison(gc_mq_t *q, gc_status_t s) {
  uint32_t zero = 0;
  if (atomic_compare_exchange_strong(&q->h->abort_status, &zero, (uint32_t)s)) {
    GC_WARN("message queue %s: a message was cut (%s); the queue is unusable from now on", q->name,
            gc_status_string(s));
    wake_all(q);
  }
}

typedef struct {
  bool poll;      /* return at once when not reached */
  bool forever;   /* no deadline; a warning every 60 s */
  uint64_t limit; /* ns a wait may take */
} mq_wait_t;

static mq_wait_t wait_start(const gc_mq_t *q, double timeout_s) {
  mq_wait_t w = {.poll = !q->blocking || timeout_s == 0, .forever = timeout_s < 0};
  if (!w.forever && !w.poll)
    w.limit = timeout_s > 1e8 ? (uint64_t)1e17 : (uint64_t)(timeout_s * 1e9);
  return w;
}

/* Inside a message: at least GCSHIM_TIMEOUT per chunk. */
static mq_wait_t wait_inside(const gc_mq_t *q, double timeout_s) {
  double t = gc_env_timeout();
  if (q->blocking && timeout_s > t) t = timeout_s;
  mq_wait_t w = {.forever = q->blocking && timeout_s < 0};
  w.limit = t > 1e8 ? (uint64_t)1e17 : (uint64_t)(t * 1e9);
  return w;
}

static inline gc_status_t check_usable(gc_mq_t *q, const char *what) {
  if (GC_UNLIKELY(atomic_load_explicit(&q->cancelled, memory_order_relaxed)))
    return gc_error(GC_ERR_CANCELLED, "%s: the queue was cancelled (gc_mq_cancel)", what);
  uint32_t ab = atomic_load_explicit(&q->h->abort_status, memory_order_relaxed);
  if (GC_UNLIKELY(ab))
    return gc_error((gc_status_t)ab, "%s: queue %s is unusable: a message was cut earlier (%s)",
                    what, q->name, gc_status_string((gc_status_t)ab));
  return GC_OK;
}

/* Waits until *w reaches target. reader >= 0: the writer waits for that
 * reader (a reader that left counts as done); reader < 0: a reader waits
 * for the writer (a closed writer ends the wait with GC_ERR_STATE). */
static GC_NOINLINE gc_status_t mq_wait_slow(gc_mq_t *q, _Atomic uint32_t *w, uint32_t target,
                                            int reader, mq_wait_t wt, const char *what) {
  if (wt.poll)
    return gc_error(GC_ERR_TIMEOUT, "%s: would block (%s)", what,
                    reader >= 0 ? "no free chunk" : "no message");
  uint64_t start = gc_now_ns();
  uint64_t deadline = start + wt.limit, next_live = start + MQ_LIVENESS_NS;
  uint64_t next_warn = start + MQ_WARN_NS;
  for (unsigned i = 1;; i++) {
    if (reached(atomic_load_explicit(w, memory_order_acquire), target)) return GC_OK;
    if ((i & 63) == 0 && gc_now_ns() - start >= q->spin_ns) break;
    gc_cpu_relax();
  }
  for (;;) {
    uint32_t cur = atomic_load_explicit(w, memory_order_acquire);
    if (reached(cur, target)) return GC_OK;
    GC_CHECK(check_usable(q, what));
    if (reader >= 0 && atomic_load(&q->readers[reader].state) == R_LEFT) return GC_OK;
    if (reader < 0 && atomic_load(&q->h->writer_state) == W_CLOSED) {
      if (reached(atomic_load(w), target)) return GC_OK;
      return gc_error(GC_ERR_STATE, "%s: the writer (pid %d) closed queue %s", what,
                      (int)atomic_load(&q->h->writer_pid), q->name);
    }
    uint64_t now = gc_now_ns();
    if (now >= next_live) {
      pid_t pid =
          reader >= 0 ? atomic_load(&q->readers[reader].pid) : atomic_load(&q->h->writer_pid);
      if (pid > 0 && gc_pid_dead(pid) && !reached(atomic_load(w), target)) {
        if (reader < 0) mq_unlink(q); /* the creator cannot any more */
        return gc_error(GC_ERR_PEER_LOST, "%s: the %s of queue %s (pid %d) died", what,
                        reader >= 0 ? "reader" : "writer", q->name, (int)pid);
      }
      next_live = now + MQ_LIVENESS_NS;
    }
    if (wt.forever && now >= next_warn) {
      GC_WARN("message queue %s: %s has waited %.0f s for the %s (timeout_s < 0: waiting on)",
              q->name, what, (double)(now - start) / 1e9, reader >= 0 ? "readers" : "writer");
      next_warn = now + MQ_WARN_NS;
    }
    if (!wt.forever && now >= deadline) {
      if (reached(atomic_load(w), target)) return GC_OK;
      return gc_error(GC_ERR_TIMEOUT, "%s: nothing after %.3f s on queue %s", what,
                      (double)wt.limit / 1e9, q->name);
    }
    uint64_t until = next_live;
    if (!wt.forever && deadline < until) until = deadline;
    if (wt.forever && next_warn < until) until = next_warn;
    uint64_t ns = until > now ? until - now : 1000;
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    atomic_fetch_add(&q->h->sleepers, 1);
    atomic_store(&q->waiting, w);
    cur = atomic_load(w);
    /* Re-read after sleepers++: a close, leave, abort or cancel that saw no
     * sleeper is seen here instead of after the slice. */
    bool stop = reached(cur, target) || atomic_load(&q->cancelled) ||
                atomic_load(&q->h->abort_status) ||
                (reader >= 0 ? atomic_load(&q->readers[reader].state) == R_LEFT
                             : atomic_load(&q->h->writer_state) == W_CLOSED);
    if (!stop) gc_futex(w, FUTEX_WAIT, cur, &ts);
    atomic_store(&q->waiting, NULL);
    atomic_fetch_sub(&q->h->sleepers, 1);
  }
}

static inline gc_status_t mq_wait(gc_mq_t *q, _Atomic uint32_t *w, uint32_t target, int reader,
                                  mq_wait_t wt, const char *what) {
  if (GC_LIKELY(reached(atomic_load_explicit(w, memory_order_acquire), target))) return GC_OK;
  return mq_wait_slow(q, w, target, reader, wt, what);
}

/* The writer may fill chunk c in lap L once every reader still there read lap L - 1. */
static gc_status_t wait_free(gc_mq_t *q, uint32_t c, uint32_t lap, mq_wait_t wt, const char *what) {
  for (uint32_t r = 0; r < q->n_readers; r++) {
    if (atomic_load_explicit(&q->readers[r].state, memory_order_relaxed) == R_LEFT) continue;
    GC_CHECK(mq_wait(q, read_flag(q, c, r), lap - 1, (int)r, wt, what));
  }
  return GC_OK;
}

/* ---- creation and attach ---------------------------------------------------- */

static gc_mq_t *mq_alloc(void) {
  gc_mq_t *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->reader = -1;
  return q;
}

/* With a core for every end, a waiter spins about as long as the other
 * side takes to copy a chunk (the usual wait inside a message) before it
 * sleeps: a futex wake costs tens of us on a busy host. Otherwise it
 * yields the core almost at once. */
static void mq_set_spin(gc_mq_t *q) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t copy_ns = (uint64_t)q->chunk; /* ~1 GB/s: a busy host's memcpy into fresh pages */
  q->spin_ns = (long)q->n_readers + 1 <= ncpu ? (copy_ns > 50000 ? copy_ns : 50000) : 5000;
  if (q->spin_ns > 2000000) q->spin_ns = 2000000;
}

static void mq_free(gc_mq_t *q) {
  if (q->base) munmap(q->base, q->total);
  free(q);
}

static uint64_t random_u64(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
    v = gc_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&v;
  return v ? v : 1;
}

static _Atomic uint32_t mq_counter;

/* The writer's header, written before any reader can map the segment. */
static void mq_init_hdr(void *base, size_t bytes, void *arg) {
  const gc_mq_t *q = arg;
  mq_hdr_t *h = base;
  atomic_store(&h->writer_pid, (int32_t)getpid());
  h->version = MQ_VERSION;
  h->n_readers = q->n_readers;
  h->chunk_bytes = q->chunk;
  h->n_chunks = q->n_chunks;
  h->uid = (uint32_t)geteuid();
  h->nonce = q->nonce;
  h->total = bytes;
  atomic_store(&h->writer_state, W_OPEN);
  h->magic = MQ_MAGIC;
}

/* Creates the segment through core/seg.h (exclusive, 0600, space
 * reserved); a name in use is left alone and another one drawn. A stale
 * one (its writer and readers dead) is removed by seg.h. */
static gc_status_t mq_create_segment(gc_mq_t *q, gc_seg_t *seg) {
  mq_layout_t l = {0};
  (void)mq_layout(q->n_readers, q->n_chunks, q->chunk, &l);
  for (int attempt = 0;; attempt++) {
    snprintf(q->name, sizeof q->name, "/gcmq-%d-%u-%08x", (int)getpid(),
             (unsigned)atomic_fetch_add(&mq_counter, 1), (unsigned)(q->nonce >> 32));
    gc_seg_opts_t o = {.what = "gc_mq_create",
                       .bytes = l.total,
                       .init = mq_init_hdr,
                       .arg = q,
                       .pids_off = (uint32_t)(l.readers + offsetof(mq_reader_t, pid)),
                       .pids_stride = sizeof(mq_reader_t),
                       .pids_n = q->n_readers};
    gc_status_t s = gc_seg_open(q->name, GC_SEG_CREATE, &o, seg);
    if (s != GC_ERR_STATE || attempt >= 8) return s;
    q->nonce = random_u64();
  }
}

gc_status_t gc_mq_create(int n_readers, size_t chunk_bytes, int n_chunks, bool blocking,
                         gc_mq_t **out) {
  const char *what = "gc_mq_create";
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "%s: out is NULL", what);
  if (n_readers < 0 || n_readers > GC_MQ_MAX_READERS)
    return gc_error(GC_ERR_INVALID_ARG, "%s: n_readers %d is outside 0..%d", what, n_readers,
                    GC_MQ_MAX_READERS);
  if (!chunk_bytes) chunk_bytes = (size_t)gc_param_GCSHIM_MQ_CHUNK_BYTES();
  if (!n_chunks) n_chunks = (int)gc_param_GCSHIM_MQ_CHUNKS();
  if (chunk_bytes < MQ_MIN_CHUNK || chunk_bytes > MQ_MAX_CHUNK)
    return gc_error(GC_ERR_INVALID_ARG, "%s: chunk_bytes %zu is outside %d..%llu", what,
                    chunk_bytes, MQ_MIN_CHUNK, (unsigned long long)MQ_MAX_CHUNK);
  if (n_chunks < 1 || n_chunks > MQ_MAX_CHUNKS)
    return gc_error(GC_ERR_INVALID_ARG, "%s: n_chunks %d is outside 1..%d", what, n_chunks,
                    MQ_MAX_CHUNKS);
  chunk_bytes = align_up(chunk_bytes, 64);
  mq_layout_t l;
  if (!mq_layout((uint32_t)n_readers, (uint32_t)n_chunks, chunk_bytes, &l))
    return gc_error(GC_ERR_INVALID_ARG, "%s: %d chunks of %zu bytes overflow", what, n_chunks,
                    chunk_bytes);
  gc_mq_t *q = mq_alloc();
  if (!q) return gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  q->writer = true;
  q->blocking = blocking;
  q->n_readers = (uint32_t)n_readers;
  q->n_chunks = (uint32_t)n_chunks;
  q->chunk = chunk_bytes;
  q->total = l.total;
  mq_set_spin(q);
  q->nonce = random_u64();
  uint64_t nonce = q->nonce;
  gc_seg_t seg;
  gc_status_t s = mq_create_segment(q, &seg);
  if (s != GC_OK) {
    mq_free(q);
    return s;
  }
  nonce = q->nonce;
  gc_seg_close_fd(&seg);
  q->dev = seg.dev;
  q->ino = seg.ino;
  q->base = seg.base;
  mq_map_parts(q);
  atomic_thread_fence(memory_order_seq_cst);

  mq_wire_t w = {.magic = MQ_HANDLE_MAGIC,
                 .version = MQ_VERSION,
                 .n_readers = q->n_readers,
                 .n_chunks = q->n_chunks,
                 .chunk_bytes = chunk_bytes,
                 .total = l.total,
                 .nonce = nonce,
                 .creator = (int32_t)getpid(),
                 .uid = (uint32_t)geteuid()};
  snprintf(w.name, sizeof w.name, "%s", q->name);
  memset(&q->handle, 0, sizeof q->handle);
  memcpy(q->handle.bytes, &w, sizeof w);
  w.check = handle_check(&q->handle);
  memcpy(q->handle.bytes, &w.check, sizeof w.check);
  /* Nobody will attach: nothing to keep the name for. */
  if (n_readers == 0) mq_unlink(q);
  GC_INFO("message queue %s: writer, %d readers, %d chunks of %zu bytes", q->name, n_readers,
          n_chunks, chunk_bytes);
  *out = q;
  return GC_OK;
}

gc_status_t gc_mq_attach(const gc_mq_handle_t *handle, int reader, bool blocking, gc_mq_t **out) {
  const char *what = "gc_mq_attach";
  if (!handle || !out) return gc_error(GC_ERR_INVALID_ARG, "%s: handle or out is NULL", what);
  mq_wire_t w;
  GC_CHECK(wire_parse(handle, &w, what));
  if (reader < 0 || (uint32_t)reader >= w.n_readers)
    return gc_error(GC_ERR_INVALID_ARG, "%s: reader %d is outside 0..%d of queue %s", what, reader,
                    (int)w.n_readers - 1, w.name);
  /* core/seg.h checks owner, mode 600, size (the handle's) and header. */
  gc_seg_t seg;
  gc_seg_opts_t o = {.what = what, .bytes = (size_t)w.total, .timeout_s = 1};
  gc_status_t as = gc_seg_open(w.name, GC_SEG_ATTACH, &o, &seg);
  if (as == GC_ERR_NOT_FOUND)
    return gc_error(GC_ERR_NOT_FOUND,
                    "%s: queue %s: no such segment (its writer destroyed it, or every reader "
                    "attached)",
                    what, w.name);
  if (as != GC_OK) { /* refused: the segment is not the handle's */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", gc_last_error());
    return gc_error(GC_ERR_INVALID_ARG, "%s", msg);
  }
  gc_seg_close_fd(&seg);
  void *p = seg.base;
  gc_mq_t *q = mq_alloc();
  if (!q) {
    munmap(p, (size_t)w.total);
    return gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  }
  q->base = p;
  q->total = (size_t)w.total;
  q->n_readers = w.n_readers;
  q->n_chunks = w.n_chunks;
  q->chunk = (size_t)w.chunk_bytes;
  q->blocking = blocking;
  q->reader = reader;
  q->dev = seg.dev;
  q->ino = seg.ino;
  q->handle = *handle;
  snprintf(q->name, sizeof q->name, "%s", w.name);
  mq_set_spin(q);
  mq_map_parts(q);
  mq_hdr_t *h = q->h;
  gc_status_t s = GC_OK;
  if (h->magic != MQ_MAGIC || h->version != MQ_VERSION || h->nonce != w.nonce ||
      h->n_readers != w.n_readers || h->n_chunks != w.n_chunks || h->chunk_bytes != w.chunk_bytes ||
      h->total != w.total) {
    s = gc_error(GC_ERR_INVALID_ARG, "%s: segment %s is not the queue the handle describes", what,
                 w.name);
    goto fail;
  }
  int32_t zero = 0, me = (int32_t)getpid();
  if (atomic_load(&q->readers[reader].state) != R_EMPTY ||
      !atomic_compare_exchange_strong(&q->readers[reader].pid, &zero, me)) {
    s = gc_error(GC_ERR_INVALID_ARG, "%s: reader slot %d of queue %s is taken (pid %d)", what,
                 reader, w.name, (int)zero);
    goto fail;
  }
  atomic_store(&q->readers[reader].state, R_ATTACHED);
  /* The last reader in removes the name: nothing is left in /dev/shm. */
  if (atomic_fetch_add(&h->attached, 1) + 1 == h->n_readers) mq_unlink(q);
  GC_INFO("message queue %s: reader %d of %u attached", q->name, reader, q->n_readers);
  *out = q;
  return GC_OK;
fail:
  mq_free(q);
  return s;
}

/* ---- the data path ------------------------------------------------------------ */

gc_status_t gc_mq_enqueue(gc_mq_t *q, const void *buf, size_t len, double timeout_s) {
  const char *what = "gc_mq_enqueue";
  if (GC_UNLIKELY(!q)) return gc_error(GC_ERR_INVALID_ARG, "%s: queue is NULL", what);
  if (GC_UNLIKELY(!q->writer))
    return gc_error(GC_ERR_INVALID_ARG,
                    "%s: this end of queue %s is reader %d; only the writer "
                    "enqueues",
                    what, q->name, q->reader);
  if (GC_UNLIKELY(!buf && len))
    return gc_error(GC_ERR_INVALID_ARG, "%s: buf is NULL for %zu bytes", what, len);
  if (GC_UNLIKELY(timeout_s != timeout_s))
    return gc_error(GC_ERR_INVALID_ARG, "%s: timeout_s is NaN", what);
  GC_CHECK(check_usable(q, what));
  uint32_t N = q->n_chunks;
  uint32_t c = (uint32_t)(q->seq % N), lap = (uint32_t)(q->seq / N + 1);
  GC_CHECK(wait_free(q, c, lap, wait_start(q, timeout_s), what));
  uint8_t *d = chunk_data(q, c);
  uint64_t hdr[2] = {len, q->msg};
  memcpy(d, hdr, sizeof hdr);
  size_t first = q->chunk - MQ_MSG_HDR, pos = len < first ? len : first;
  if (pos) memcpy(d + MQ_MSG_HDR, buf, pos);
  publish(q, written_flag(q, c), lap);
  q->seq++;
  if (pos < len) {
    mq_wait_t wt = wait_inside(q, timeout_s);
    const uint8_t *src = buf;
    while (pos < len) {
      c = (uint32_t)(q->seq % N);
      lap = (uint32_t)(q->seq / N + 1);
      gc_status_t s = wait_free(q, c, lap, wt, what);
      if (s != GC_OK) {
        poison(q, s);
        return s;
      }
      size_t b = len - pos < q->chunk ? len - pos : q->chunk;
      memcpy(chunk_data(q, c), src + pos, b);
      publish(q, written_flag(q, c), lap);
      q->seq++;
      pos += b;
    }
  }
  q->msg++;
  return GC_OK;
}

gc_status_t gc_mq_dequeue(gc_mq_t *q, void **out, size_t *out_len, double timeout_s) {
  const char *what = "gc_mq_dequeue";
  if (GC_UNLIKELY(!q)) return gc_error(GC_ERR_INVALID_ARG, "%s: queue is NULL", what);
  if (GC_UNLIKELY(q->writer))
    return gc_error(GC_ERR_INVALID_ARG,
                    "%s: this end of queue %s is its writer; only readers dequeue", what, q->name);
  if (GC_UNLIKELY(!out || !out_len))
    return gc_error(GC_ERR_INVALID_ARG, "%s: out or out_len is NULL", what);
  if (GC_UNLIKELY(timeout_s != timeout_s))
    return gc_error(GC_ERR_INVALID_ARG, "%s: timeout_s is NaN", what);
  GC_CHECK(check_usable(q, what));
  uint32_t N = q->n_chunks, r = (uint32_t)q->reader;
  uint32_t c = (uint32_t)(q->seq % N), lap = (uint32_t)(q->seq / N + 1);
  GC_CHECK(mq_wait(q, written_flag(q, c), lap, -1, wait_start(q, timeout_s), what));
  const uint8_t *d = chunk_data(q, c);
  uint64_t hdr[2];
  memcpy(hdr, d, sizeof hdr);
  gc_status_t s = GC_OK;
  if (hdr[1] != q->msg) {
    s = gc_error(GC_ERR_INTERNAL, "%s: queue %s: message %llu where %llu was expected", what,
                 q->name, (unsigned long long)hdr[1], (unsigned long long)q->msg);
    poison(q, s);
    return s;
  }
  size_t len = hdr[0] > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)hdr[0];
  /* Without memory the message is still taken off the ring (and dropped),
   * so that the stream stays whole for this reader and the writer. */
  uint8_t *m = malloc(len ? len : 1);
  if (!m) s = gc_error(GC_ERR_NO_MEMORY, "%s: no memory for a %zu-byte message", what, len);
  size_t first = q->chunk - MQ_MSG_HDR, pos = len < first ? len : first;
  if (m && pos) memcpy(m, d + MQ_MSG_HDR, pos);
  publish(q, read_flag(q, c, r), lap);
  q->seq++;
  if (pos < len) {
    mq_wait_t wt = wait_inside(q, timeout_s);
    while (pos < len) {
      c = (uint32_t)(q->seq % N);
      lap = (uint32_t)(q->seq / N + 1);
      gc_status_t ws = mq_wait(q, written_flag(q, c), lap, -1, wt, what);
      if (ws != GC_OK) {
        poison(q, ws);
        free(m);
        return ws;
      }
      size_t b = len - pos < q->chunk ? len - pos : q->chunk;
      if (m) memcpy(m + pos, chunk_data(q, c), b);
      publish(q, read_flag(q, c, r), lap);
      q->seq++;
      pos += b;
    }
  }
  q->msg++;
  if (s != GC_OK) return s;
  *out = m;
  *out_len = len;
  return GC_OK;
}

gc_status_t gc_mq_get_handle(const gc_mq_t *q, gc_mq_handle_t *out) {
  if (!q || !out) return gc_error(GC_ERR_INVALID_ARG, "gc_mq_get_handle: queue or out is NULL");
  *out = q->handle;
  return GC_OK;
}

gc_status_t gc_mq_cancel(gc_mq_t *q) {
  if (!q) return gc_error(GC_ERR_INVALID_ARG, "gc_mq_cancel: queue is NULL");
  atomic_store(&q->cancelled, true);
  _Atomic uint32_t *w = atomic_load(&q->waiting);
  if (w) gc_futex(w, FUTEX_WAKE, INT_MAX, NULL);
  return GC_OK;
}

gc_status_t gc_mq_destroy(gc_mq_t *q) {
  if (!q) return gc_error(GC_ERR_INVALID_ARG, "gc_mq_destroy: queue is NULL");
  if (q->writer) {
    atomic_store(&q->h->writer_state, W_CLOSED);
    mq_unlink(q);
  } else {
    atomic_store(&q->readers[q->reader].state, R_LEFT);
    pid_t w = atomic_load(&q->h->writer_pid);
    if (atomic_load(&q->h->writer_state) == W_CLOSED || (w > 0 && gc_pid_dead(w))) mq_unlink(q);
  }
  wake_all(q);
  mq_free(q);
  return GC_OK;
}

/* ---- made over a group ----------------------------------------------------------- */

enum { OP_MQ_BROADCASTER = 201, OP_MQ_SINGLE_READER };

typedef struct {
  int32_t status;
  int32_t external; /* the handle is the caller's: every rank reads */
  gc_mq_handle_t handle;
} mq_offer_t;

/* Every rank learns whether any rank failed; the first failure names the rank. */
static gc_status_t all_ok(gc_group_t *g, gc_status_t local, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s", local == GC_OK ? "" : gc_last_error());
  int32_t mine = (int32_t)local, stack[64], *all = stack;
  if (g->size > 64 && !(all = malloc(sizeof *all * (size_t)g->size)))
    return gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  gc_status_t s = gc_cpu_allgather(g->cpu, &mine, sizeof mine, all);
  for (int r = 0; s == GC_OK && r < g->size; r++)
    if (all[r] != GC_OK) {
      s = r == g->rank_in_group
              ? gc_error(local, "%s", msg)
              : gc_error((gc_status_t)all[r], "%s: rank %d of group '%s' failed (%s)", what, r,
                         g->name, gc_status_string((gc_status_t)all[r]));
    }
  if (all != stack) free(all);
  return s;
}

gc_status_t gc_group_create_mq_broadcaster(gc_group_t *g, int writer_rank,
                                           const gc_mq_handle_t *external_writer_handle,
                                           bool blocking, gc_mq_t **out) {
  const char *what = "gc_group_create_mq_broadcaster";
  GC_CHECK(gc_group_check(g, what));
  gc_status_t local = GC_OK;
  if (!out) local = gc_error(GC_ERR_INVALID_ARG, "%s: out is NULL", what);
  if (local == GC_OK && (writer_rank < 0 || writer_rank >= g->size))
    local = gc_error(GC_ERR_INVALID_ARG, "%s: writer_rank %d is outside 0..%d", what, writer_rank,
                     g->size - 1);
  uint64_t sig = gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_MQ_BROADCASTER), writer_rank);
  GC_CHECK(gc_coord_agree(g, NULL, local, sig, what, NULL));

  /* The writer rank makes the queue (or checks the caller's handle) and
   * tells every rank what to attach to; a failure there travels instead. */
  bool me_writer = g->rank_in_group == writer_rank;
  mq_offer_t offer = {0};
  gc_mq_t *q = NULL;
  char msg[256] = "";
  if (me_writer) {
    gc_status_t s;
    if (external_writer_handle) {
      mq_wire_t w;
      s = wire_parse(external_writer_handle, &w, what);
      if (s == GC_OK && w.n_readers < (uint32_t)g->size)
        s = gc_error(GC_ERR_INVALID_ARG,
                     "%s: the external queue has %u readers, group '%s' has %d ranks", what,
                     w.n_readers, g->name, g->size);
      offer.external = 1;
      if (s == GC_OK) offer.handle = *external_writer_handle;
    } else {
      s = gc_mq_create(g->size - 1, 0, 0, blocking, &q);
      if (s == GC_OK) offer.handle = q->handle;
    }
    offer.status = (int32_t)s;
    if (s != GC_OK) snprintf(msg, sizeof msg, "%s", gc_last_error());
  }
  gc_status_t s = gc_cpu_broadcast(g->cpu, &offer, sizeof offer, writer_rank);
  if (s == GC_OK && offer.status != GC_OK)
    s = me_writer
            ? gc_error((gc_status_t)offer.status, "%s", msg)
            : gc_error((gc_status_t)offer.status, "%s: writer rank %d of group '%s' failed (%s)",
                       what, writer_rank, g->name, gc_status_string((gc_status_t)offer.status));
  if (s != GC_OK) {
    if (q) gc_mq_destroy(q);
    return s;
  }
  /* Readers: every other rank in group order (vLLM's local reader ranks),
   * or every rank by its rank in the group for an external writer. */
  gc_status_t mine = GC_OK;
  if (offer.external || !me_writer) {
    int slot =
        offer.external || g->rank_in_group < writer_rank ? g->rank_in_group : g->rank_in_group - 1;
    mine = gc_mq_attach(&offer.handle, slot, blocking, &q);
  }
  s = all_ok(g, mine, what);
  if (s != GC_OK) {
    if (q) gc_mq_destroy(q);
    return s;
  }
  *out = q;
  return GC_OK;
}

gc_status_t gc_group_create_single_reader_mq_broadcasters(gc_group_t *g, int reader_rank_in_group,
                                                          bool blocking, gc_mq_t **out,
                                                          gc_mq_handle_t **handles) {
  const char *what = "gc_group_create_single_reader_mq_broadcasters";
  GC_CHECK(gc_group_check(g, what));
  int n = g->size, me = g->rank_in_group, rd = reader_rank_in_group;
  gc_status_t local = GC_OK;
  if (!out) local = gc_error(GC_ERR_INVALID_ARG, "%s: out is NULL", what);
  if (local == GC_OK && (rd < 0 || rd >= n))
    local = gc_error(GC_ERR_INVALID_ARG, "%s: reader_rank_in_group %d is outside 0..%d", what, rd,
                     n - 1);
  uint64_t sig = gc_sig_i64(gc_sig_i64(GC_SIG_INIT, OP_MQ_SINGLE_READER), rd);
  GC_CHECK(gc_coord_agree(g, NULL, local, sig, what, NULL));

  bool reader = me == rd;
  mq_offer_t *all = calloc((size_t)n, sizeof *all);
  gc_mq_t **qs = reader ? calloc((size_t)n, sizeof *qs) : NULL;
  gc_mq_handle_t *hs = reader && handles ? calloc((size_t)n, sizeof *hs) : NULL;
  gc_mq_t *wq = NULL;
  mq_offer_t offer = {0};
  if (!all || (reader && !qs) || (reader && handles && !hs))
    offer.status = (int32_t)gc_error(GC_ERR_NO_MEMORY, "%s: no memory", what);
  else if (!reader) {
    offer.status = (int32_t)gc_mq_create(1, 0, 0, blocking, &wq);
    if (offer.status == GC_OK) offer.handle = wq->handle;
  }
  /* Every rank learns every offer, so that a failure anywhere ends the
   * call everywhere; the reader then attaches to each queue. */
  gc_status_t s = all_ok(g, (gc_status_t)offer.status, what);
  if (s == GC_OK) s = gc_cpu_allgather(g->cpu, &offer, sizeof offer, all);
  gc_status_t mine = GC_OK;
  for (int r = 0; s == GC_OK && reader && r < n && mine == GC_OK; r++) {
    if (r == rd) continue;
    mine = gc_mq_attach(&all[r].handle, 0, blocking, &qs[r]);
    if (hs) hs[r] = all[r].handle;
  }
  if (s == GC_OK) s = all_ok(g, mine, what);
  if (s != GC_OK) {
    if (wq) gc_mq_destroy(wq);
    for (int r = 0; qs && r < n; r++)
      if (qs[r]) gc_mq_destroy(qs[r]);
    free(qs);
    free(hs);
    free(all);
    return s;
  }
  if (reader) {
    for (int r = 0; r < n; r++) out[r] = qs[r];
    if (handles) *handles = hs;
  } else {
    out[0] = wq;
    if (handles) *handles = NULL;
  }
  free(qs);
  free(all);
  return GC_OK;
}
