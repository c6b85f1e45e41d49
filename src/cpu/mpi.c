/*
 * mpi.c - the MPI CPU transport (Open MPI communicators, many hosts).
 *
 * The world is a duplicate of MPI_COMM_WORLD (MPI is initialised here when
 * the program has not done it), sub-groups come from MPI_Comm_create_group,
 * which only the members call. Every operation is a nonblocking MPI call
 * polled with MPI_Test against the group's deadline, so a wait is bounded
 * by the timeout. MPI cannot cancel a collective: after a timeout the
 * operation is left pending and the group answers GC_ERR_STATE from then on.
 * Communicators use MPI_ERRORS_RETURN; MPI errors become GC_ERR_SYSTEM (or
 * GC_ERR_PEER_LOST / GC_ERR_TRUNCATED) with MPI's own message.
 */
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/reduce.h"
#include "cpu/cpu.h"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

/* Largest piece handed to one MPI call: counts are ints. */
#define GC_MPI_CHUNK ((size_t)1 << 30)
/* Point-to-point traffic of gc_cpu_send/recv uses this tag. */
#define GC_MPI_P2P_TAG 7

typedef struct {
  MPI_Comm comm;
  bool broken; /* an operation timed out and is still pending inside MPI */
} mpi_impl_t;

static const gc_cpu_ops_t mpi_ops;

/* Whether gc_cpu_mpi_world called MPI_Init_thread (then finalize is ours). */
static bool we_initialised;
/* User-defined ops for float16/bfloat16 (indexed by gc_redop_t), made once. */
static MPI_Op half_ops[GC_AVG + 1];
static MPI_Datatype fp16_type = MPI_DATATYPE_NULL, bf16_type = MPI_DATATYPE_NULL;
static bool half_ready;

bool gc_cpu_mpi_available(void) { return true; }

static mpi_impl_t *impl_of(gc_cpu_group_t *g) { return g->impl; }

/* MPI status -> gc status, with MPI's message. */
static GC_NOINLINE gc_status_t mpi_fail(int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0, cls = rc;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
  MPI_Error_class(rc, &cls);
  gc_status_t s = GC_ERR_SYSTEM;
  if (cls == MPI_ERR_TRUNCATE) s = GC_ERR_TRUNCATED;
#ifdef MPIX_ERR_PROC_FAILED
  if (cls == MPIX_ERR_PROC_FAILED) s = GC_ERR_PEER_LOST;
#endif
#ifdef MPIX_ERR_REVOKED
  if (cls == MPIX_ERR_REVOKED) s = GC_ERR_PEER_LOST;
#endif
  return gc_error(s, "mpi %s failed: %s (error class %d)", what, msg, cls);
}

#define MPI_TRY(call, what)                    \
  do {                                         \
    int mpi_rc_ = (call);                      \
    if (GC_UNLIKELY(mpi_rc_ != MPI_SUCCESS)) { \
      return mpi_fail(mpi_rc_, (what));        \
    }                                          \
  } while (0)

static gc_status_t check_usable(gc_cpu_group_t *g, const char *what) {
  if (GC_UNLIKELY(impl_of(g)->broken))
    return gc_error(
        GC_ERR_STATE,
        "mpi %s: an earlier operation on this group timed out and MPI cannot cancel it; "
        "the group is unusable",
        what);
  return GC_OK;
}

static void backoff(uint64_t waited_ns) {
  if (waited_ns < 20000) return; /* spin: MPI_Test drives progress */
  if (waited_ns < 1000000000ull) {
    sched_yield();
    return;
  }
  struct timespec ts = {0, 100000};
  nanosleep(&ts, NULL);
}

/* Completes one request or gives up at the group's deadline. On timeout a
 * receive is cancelled; sends and collectives cannot be, so the group is
 * marked unusable. st may be NULL. */
static gc_status_t wait_since(gc_cpu_group_t *g, MPI_Request *req, MPI_Status *st, uint64_t start,
                              const char *what) {
  uint64_t limit = (uint64_t)(g->timeout_s * 1e9);
  MPI_Status local;
  if (!st) st = &local;
  for (;;) {
    int done = 0;
    int rc = MPI_Test(req, &done, st);
    if (GC_UNLIKELY(rc != MPI_SUCCESS)) return mpi_fail(rc, what);
    if (done) return GC_OK;
    uint64_t waited = gc_now_ns() - start;
    if (GC_UNLIKELY(waited > limit)) break;
    backoff(waited);
  }
  bool cancelled = false;
  if (st != &local) { /* a receive: cancel it and complete the cancellation */
    MPI_Cancel(req);
    MPI_Wait(req, MPI_STATUS_IGNORE);
    cancelled = true;
  } else {
    impl_of(g)->broken = true;
  }
  return gc_error(GC_ERR_TIMEOUT,
                  "mpi %s: rank %d of %d waited %.1f s (GCSHIM_TIMEOUT) for its peers%s", what,
                  g->rank, g->size, g->timeout_s,
                  cancelled ? "" : "; MPI cannot cancel the operation, the group is now unusable");
}

static gc_status_t wait_one(gc_cpu_group_t *g, MPI_Request *req, MPI_Status *st, const char *what) {
  return wait_since(g, req, st, gc_now_ns(), what);
}

static gc_status_t mpi_barrier(gc_cpu_group_t *g) {
  GC_CHECK(check_usable(g, "barrier"));
  MPI_Request r;
  MPI_TRY(MPI_Ibarrier(impl_of(g)->comm, &r), "barrier");
  return wait_one(g, &r, NULL, "barrier");
}

static gc_status_t mpi_broadcast(gc_cpu_group_t *g, void *buf, size_t len, int root) {
  GC_CHECK(check_usable(g, "broadcast"));
  char *p = buf;
  for (size_t off = 0; off < len; off += GC_MPI_CHUNK) {
    size_t n = len - off < GC_MPI_CHUNK ? len - off : GC_MPI_CHUNK;
    MPI_Request r;
    MPI_TRY(MPI_Ibcast(p + off, (int)n, MPI_BYTE, root, impl_of(g)->comm, &r), "broadcast");
    GC_CHECK(wait_one(g, &r, NULL, "broadcast"));
  }
  return GC_OK;
}

static gc_status_t mpi_send(gc_cpu_group_t *g, const void *buf, size_t len, int dst) {
  GC_CHECK(check_usable(g, "send"));
  const char *p = buf;
  size_t off = 0;
  do { /* a zero-byte message still goes, so that send and recv pair up */
    size_t n = len - off < GC_MPI_CHUNK ? len - off : GC_MPI_CHUNK;
    MPI_Request r;
    MPI_TRY(MPI_Isend(p + off, (int)n, MPI_BYTE, dst, GC_MPI_P2P_TAG, impl_of(g)->comm, &r),
            "send");
    GC_CHECK(wait_one(g, &r, NULL, "send"));
    off += n;
  } while (off < len);
  return GC_OK;
}

static gc_status_t mpi_recv(gc_cpu_group_t *g, void *buf, size_t len, int src) {
  GC_CHECK(check_usable(g, "recv"));
  char *p = buf;
  size_t off = 0;
  do {
    size_t n = len - off < GC_MPI_CHUNK ? len - off : GC_MPI_CHUNK;
    MPI_Request r;
    MPI_Status st;
    int got = 0;
    MPI_TRY(MPI_Irecv(p + off, (int)n, MPI_BYTE, src, GC_MPI_P2P_TAG, impl_of(g)->comm, &r),
            "recv");
    GC_CHECK(wait_one(g, &r, &st, "recv"));
    MPI_Get_count(&st, MPI_BYTE, &got);
    if (GC_UNLIKELY((size_t)got != n))
      return gc_error(GC_ERR_TRUNCATED, "mpi recv: expected %zu bytes from rank %d, got %d", n, src,
                      got);
    off += n;
  } while (off < len);
  return GC_OK;
}

static bool fits_int(size_t v) { return v <= (size_t)INT_MAX; }

/* Unequal sizes whose total fits an int: MPI_Iallgatherv / MPI_Igatherv with
 * displacements. Larger totals go rank by rank through chunked broadcasts
 * (or sends), which have no int limits. */
static gc_status_t make_counts(gc_cpu_group_t *g, const size_t *lens, int **counts, int **displs,
                               bool *small) {
  size_t total = 0;
  for (int i = 0; i < g->size; i++) total += lens[i];
  *small = fits_int(total);
  *counts = *displs = NULL;
  if (!*small) return GC_OK;
  int *c = malloc(sizeof(int) * 2 * (size_t)g->size);
  if (!c) return gc_error(GC_ERR_NO_MEMORY, "mpi: no memory for %d counts", g->size);
  size_t off = 0;
  for (int i = 0; i < g->size; i++) {
    c[i] = (int)lens[i];
    c[g->size + i] = (int)off;
    off += lens[i];
  }
  *counts = c;
  *displs = c + g->size;
  return GC_OK;
}

static bool overlaps(const void *a, size_t an, const void *b, size_t bn) {
  uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return an && bn && x < y + bn && y < x + an;
}

static gc_status_t mpi_allgatherv(gc_cpu_group_t *g, const void *send, const size_t *lens,
                                  void *recv) {
  GC_CHECK(check_usable(g, "allgatherv"));
  size_t total = 0, mine = 0;
  for (int i = 0; i < g->size; i++) {
    if (i == g->rank) mine = total;
    total += lens[i];
  }
  char *r = recv;
  /* MPI forbids aliased buffers: move our part into place, then in place. */
  if (lens[g->rank] && r + mine != send) memmove(r + mine, send, lens[g->rank]);
  int *counts, *displs;
  bool small;
  GC_CHECK(make_counts(g, lens, &counts, &displs, &small));
  if (small) {
    MPI_Request req;
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_BYTE, recv, counts, displs, MPI_BYTE,
                             impl_of(g)->comm, &req);
    free(counts);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "allgatherv");
    return wait_one(g, &req, NULL, "allgatherv");
  }
  size_t off = 0;
  for (int i = 0; i < g->size; i++) {
    GC_CHECK(mpi_broadcast(g, r + off, lens[i], i));
    off += lens[i];
  }
  return GC_OK;
}

static gc_status_t mpi_allgather(gc_cpu_group_t *g, const void *send, size_t len, void *recv) {
  GC_CHECK(check_usable(g, "allgather"));
  char *r = recv;
  size_t mine = len * (size_t)g->rank;
  if (fits_int(len)) {
    MPI_Request req;
    if (overlaps(send, len, recv, len * (size_t)g->size)) {
      if (r + mine != send) memmove(r + mine, send, len);
      MPI_TRY(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_BYTE, recv, (int)len, MPI_BYTE, impl_of(g)->comm,
                             &req),
              "allgather");
    } else {
      MPI_TRY(MPI_Iallgather(send, (int)len, MPI_BYTE, recv, (int)len, MPI_BYTE, impl_of(g)->comm,
                             &req),
              "allgather");
    }
    return wait_one(g, &req, NULL, "allgather");
  }
  if (r + mine != send) memmove(r + mine, send, len);
  for (int i = 0; i < g->size; i++) GC_CHECK(mpi_broadcast(g, r + len * (size_t)i, len, i));
  return GC_OK;
}

static gc_status_t mpi_gatherv(gc_cpu_group_t *g, const void *send, const size_t *lens, void *recv,
                               int root) {
  GC_CHECK(check_usable(g, "gatherv"));
  int *counts, *displs;
  bool small;
  GC_CHECK(make_counts(g, lens, &counts, &displs, &small));
  size_t mine = 0;
  for (int i = 0; i < g->rank; i++) mine += lens[i];
  char *r = recv;
  if (small) {
    MPI_Request req;
    int rc;
    if (g->rank == root) {
      if (lens[root] && r + mine != send) memmove(r + mine, send, lens[root]);
      rc = MPI_Igatherv(MPI_IN_PLACE, 0, MPI_BYTE, recv, counts, displs, MPI_BYTE, root,
                        impl_of(g)->comm, &req);
    } else {
      rc = MPI_Igatherv(send, (int)lens[g->rank], MPI_BYTE, NULL, NULL, NULL, MPI_BYTE, root,
                        impl_of(g)->comm, &req);
    }
    free(counts);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "gatherv");
    return wait_one(g, &req, NULL, "gatherv");
  }
  if (g->rank != root) return mpi_send(g, send, lens[g->rank], root);
  if (lens[root] && r + mine != send) memmove(r + mine, send, lens[root]);
  size_t off = 0;
  for (int i = 0; i < g->size; i++) {
    if (i != root) GC_CHECK(mpi_recv(g, r + off, lens[i], i));
    off += lens[i];
  }
  return GC_OK;
}

/* ---- reductions ---------------------------------------------------------- */

static void half_op(void *in, void *inout, int *len, MPI_Datatype *dt, gc_redop_t op) {
  gc_dtype_t t = *dt == bf16_type ? GC_BFLOAT16 : GC_FLOAT16;
  gc_reduce_into(t, op, inout, in, (size_t)*len);
}
#define GC_HALF_OP(name, op)                                            \
  static void name(void *in, void *inout, int *len, MPI_Datatype *dt) { \
    half_op(in, inout, len, dt, op);                                    \
  }
GC_HALF_OP(half_sum, GC_SUM)
GC_HALF_OP(half_prod, GC_PROD)
GC_HALF_OP(half_max, GC_MAX)
GC_HALF_OP(half_min, GC_MIN)

/* Called once, from gc_cpu_mpi_world (MPI is then initialised). */
static gc_status_t half_init(void) {
  if (half_ready) return GC_OK;
  MPI_TRY(MPI_Type_contiguous(2, MPI_BYTE, &fp16_type), "type create");
  MPI_TRY(MPI_Type_commit(&fp16_type), "type commit");
  MPI_TRY(MPI_Type_contiguous(2, MPI_BYTE, &bf16_type), "type create");
  MPI_TRY(MPI_Type_commit(&bf16_type), "type commit");
  MPI_TRY(MPI_Op_create(half_sum, 1, &half_ops[GC_SUM]), "op create");
  MPI_TRY(MPI_Op_create(half_prod, 1, &half_ops[GC_PROD]), "op create");
  MPI_TRY(MPI_Op_create(half_max, 1, &half_ops[GC_MAX]), "op create");
  MPI_TRY(MPI_Op_create(half_min, 1, &half_ops[GC_MIN]), "op create");
  half_ops[GC_AVG] = half_ops[GC_SUM];
  half_ready = true;
  return GC_OK;
}

static void half_free(void) {
  if (!half_ready) return;
  for (int i = GC_SUM; i <= GC_MIN; i++) MPI_Op_free(&half_ops[i]);
  MPI_Type_free(&fp16_type);
  MPI_Type_free(&bf16_type);
  half_ready = false;
}

static MPI_Datatype mpi_type(gc_dtype_t dt) {
  switch (dt) {
    case GC_INT8:
      return MPI_INT8_T;
    case GC_UINT8:
      return MPI_UINT8_T;
    case GC_INT32:
      return MPI_INT32_T;
    case GC_INT64:
      return MPI_INT64_T;
    case GC_FLOAT16:
      return fp16_type;
    case GC_BFLOAT16:
      return bf16_type;
    case GC_FLOAT32:
      return MPI_FLOAT;
    case GC_FLOAT64:
      return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

/* AVG reduces as SUM; the caller divides once at the end. */
static MPI_Op mpi_op(gc_dtype_t dt, gc_redop_t op) {
  if (dt == GC_FLOAT16 || dt == GC_BFLOAT16) return half_ops[op];
  switch (op) {
    case GC_SUM:
    case GC_AVG:
      return MPI_SUM;
    case GC_PROD:
      return MPI_PROD;
    case GC_MAX:
      return MPI_MAX;
    case GC_MIN:
      return MPI_MIN;
  }
  return MPI_OP_NULL;
}

static gc_status_t mpi_allreduce(gc_cpu_group_t *g, const void *send, void *recv, size_t count,
                                 gc_dtype_t dt, gc_redop_t op) {
  GC_CHECK(check_usable(g, "allreduce"));
  size_t es = gc_dtype_size(dt), per = GC_MPI_CHUNK / es;
  MPI_Datatype t = mpi_type(dt);
  MPI_Op o = mpi_op(dt, op);
  const char *s = send;
  char *r = recv;
  bool in_place = send == recv;
  if (!in_place && overlaps(send, count * es, recv, count * es)) {
    memmove(recv, send, count * es);
    in_place = true;
  }
  for (size_t off = 0; off < count; off += per) {
    size_t n = count - off < per ? count - off : per;
    MPI_Request req;
    MPI_TRY(MPI_Iallreduce(in_place ? MPI_IN_PLACE : s + off * es, r + off * es, (int)n, t, o,
                           impl_of(g)->comm, &req),
            "allreduce");
    GC_CHECK(wait_one(g, &req, NULL, "allreduce"));
  }
  gc_reduce_finish(dt, op, recv, count, g->size);
  return GC_OK;
}

static gc_status_t mpi_reduce_scatter(gc_cpu_group_t *g, const void *send, void *recv,
                                      const size_t *counts, gc_dtype_t dt, gc_redop_t op) {
  GC_CHECK(check_usable(g, "reduce_scatter"));
  size_t total = 0, es = gc_dtype_size(dt), mine = 0;
  bool small = true;
  for (int i = 0; i < g->size; i++) {
    if (i == g->rank) mine = total;
    total += counts[i];
    small = small && fits_int(counts[i]);
  }
  small = small && fits_int(total);
  if (small) {
    int *c = malloc(sizeof(int) * (size_t)g->size);
    if (!c) return gc_error(GC_ERR_NO_MEMORY, "mpi reduce_scatter: no memory");
    for (int i = 0; i < g->size; i++) c[i] = (int)counts[i];
    bool in_place = send == recv;
    const void *src = send;
    void *tmp = NULL;
    if (!in_place && overlaps(send, total * es, recv, counts[g->rank] * es)) {
      tmp = malloc(total * es);
      if (!tmp) {
        free(c);
        return gc_error(GC_ERR_NO_MEMORY, "mpi reduce_scatter: no memory for %zu bytes",
                        total * es);
      }
      memcpy(tmp, send, total * es);
      src = tmp;
    }
    MPI_Request req;
    int rc = MPI_Ireduce_scatter(in_place ? MPI_IN_PLACE : src, recv, c, mpi_type(dt),
                                 mpi_op(dt, op), impl_of(g)->comm, &req);
    free(c);
    gc_status_t s = rc == MPI_SUCCESS ? wait_one(g, &req, NULL, "reduce_scatter")
                                      : mpi_fail(rc, "reduce_scatter");
    free(tmp);
    if (s == GC_OK) gc_reduce_finish(dt, op, recv, counts[g->rank], g->size);
    return s;
  }
  /* Past int counts: all-reduce in chunks, keep this rank's part. */
  char *tmp = malloc(total * es);
  if (!tmp)
    return gc_error(GC_ERR_NO_MEMORY, "mpi reduce_scatter: no memory for %zu bytes", total * es);
  gc_status_t s = mpi_allreduce(g, send, tmp, total, dt, op);
  if (s == GC_OK) memcpy(recv, tmp + mine * es, counts[g->rank] * es);
  free(tmp);
  return s;
}

/* ---- groups -------------------------------------------------------------- */

static gc_status_t wrap(MPI_Comm comm, double timeout_s, gc_cpu_group_t **out) {
  gc_cpu_group_t *g = calloc(1, sizeof *g);
  mpi_impl_t *m = calloc(1, sizeof *m);
  if (!g || !m) {
    free(g);
    free(m);
    MPI_Comm_free(&comm);
    return gc_error(GC_ERR_NO_MEMORY, "mpi: no memory for a group");
  }
  int rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(comm, &g->rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(comm, &g->size);
  if (rc != MPI_SUCCESS) {
    free(g);
    free(m);
    MPI_Comm_free(&comm);
    return mpi_fail(rc, "communicator set-up");
  }
  m->comm = comm;
  g->ops = &mpi_ops;
  g->timeout_s = timeout_s;
  g->impl = m;
  *out = g;
  return GC_OK;
}

static int tag_ub(MPI_Comm comm) {
  int *ub = NULL, flag = 0;
  if (MPI_Comm_get_attr(comm, MPI_TAG_UB, &ub, &flag) != MPI_SUCCESS || !flag || !ub || *ub <= 0)
    return 32767; /* the least the standard allows */
  return *ub;
}

/* Every member tells the first member it has come; the first answers each
 * once all have. One byte each way, on the parent with the subgroup's tag.
 * Receives that time out are cancelled, so the parent stays usable. */
static gc_status_t arrive(gc_cpu_group_t *parent, const int *ranks, int n, int mtag,
                          const char *tag) {
  MPI_Comm pc = impl_of(parent)->comm;
  uint64_t start = gc_now_ns();
  char b = 1, in = 0;
  MPI_Request r;
  if (ranks[0] == parent->rank) {
    for (int i = 1; i < n; i++) {
      MPI_TRY(MPI_Irecv(&in, 1, MPI_BYTE, ranks[i], mtag, pc, &r), "subgroup arrival");
      MPI_Status st;
      gc_status_t s = wait_since(parent, &r, &st, start, "subgroup arrival");
      if (s != GC_OK)
        return gc_error(s, "mpi subgroup '%s': parent rank %d never arrived within %.1f s", tag,
                        ranks[i], parent->timeout_s);
    }
    for (int i = 1; i < n; i++) {
      MPI_TRY(MPI_Isend(&b, 1, MPI_BYTE, ranks[i], mtag, pc, &r), "subgroup release");
      GC_CHECK(wait_since(parent, &r, NULL, start, "subgroup release"));
    }
    return GC_OK;
  }
  MPI_TRY(MPI_Isend(&b, 1, MPI_BYTE, ranks[0], mtag, pc, &r), "subgroup arrival");
  GC_CHECK(wait_since(parent, &r, NULL, start, "subgroup arrival"));
  MPI_Status st;
  MPI_TRY(MPI_Irecv(&in, 1, MPI_BYTE, ranks[0], mtag, pc, &r), "subgroup release");
  gc_status_t s = wait_since(parent, &r, &st, start, "subgroup release");
  if (s != GC_OK)
    return gc_error(s, "mpi subgroup '%s': not released by parent rank %d within %.1f s", tag,
                    ranks[0], parent->timeout_s);
  return GC_OK;
}

static gc_status_t mpi_subgroup(gc_cpu_group_t *parent, const int *ranks, int n, const char *tag,
                                gc_cpu_group_t **out) {
  GC_CHECK(check_usable(parent, "subgroup"));
  MPI_Comm pc = impl_of(parent)->comm;
  uint32_t h = 2166136261u;
  for (const char *p = tag; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  int mtag = (int)(h % ((uint32_t)tag_ub(pc) + 1u));
  if (mtag == GC_MPI_P2P_TAG) mtag++; /* never matched by gc_cpu_recv */
  MPI_Group pg, ng;
  MPI_TRY(MPI_Comm_group(pc, &pg), "comm group");
  int rc = MPI_Group_incl(pg, n, ranks, &ng);
  MPI_Group_free(&pg);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "group incl");
  /* MPI_Comm_create_group has no nonblocking form and waits for every
   * member unbounded; a bounded arrival round first makes a member that
   * never comes a GC_ERR_TIMEOUT instead of a hang. */
  gc_status_t s = arrive(parent, ranks, n, mtag, tag);
  if (s != GC_OK) {
    MPI_Group_free(&ng);
    return s;
  }
  MPI_Comm nc = MPI_COMM_NULL;
  rc = MPI_Comm_create_group(pc, ng, mtag, &nc);
  MPI_Group_free(&ng);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "comm create group");
  if (nc == MPI_COMM_NULL)
    return gc_error(GC_ERR_INTERNAL, "mpi subgroup '%s': rank %d got no communicator", tag,
                    parent->rank);
  return wrap(nc, parent->timeout_s, out);
}

static void mpi_destroy(gc_cpu_group_t *g) {
  mpi_impl_t *m = impl_of(g);
  int fin = 0;
  MPI_Finalized(&fin);
  /* A communicator with a timed-out operation still pending is left alone. */
  if (!fin && m->comm != MPI_COMM_NULL && !m->broken) MPI_Comm_free(&m->comm);
  free(m);
  free(g);
}

static const gc_cpu_ops_t mpi_ops = {
    .name = "mpi",
    .barrier = mpi_barrier,
    .broadcast = mpi_broadcast,
    .send = mpi_send,
    .recv = mpi_recv,
    .gatherv = mpi_gatherv,
    .allgatherv = mpi_allgatherv,
    .allgather = mpi_allgather,
    .allreduce = mpi_allreduce,
    .reduce_scatter = mpi_reduce_scatter,
    .subgroup = mpi_subgroup,
    .destroy = mpi_destroy,
};

gc_status_t gc_cpu_mpi_world(double timeout_s, gc_cpu_group_t **out) {
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "gc_cpu_mpi_world: out is NULL");
  if (!(timeout_s > 0))
    return gc_error(GC_ERR_INVALID_ARG, "gc_cpu_mpi_world: timeout %g s is not positive",
                    timeout_s);
  int inited = 0, fin = 0;
  MPI_Finalized(&fin);
  if (fin) return gc_error(GC_ERR_STATE, "gc_cpu_mpi_world: MPI was already finalised");
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = MPI_THREAD_SINGLE;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "init");
    we_initialised = true;
    if (provided < MPI_THREAD_MULTIPLE)
      GC_INFO(
          "mpi: thread level %d provided (MPI_THREAD_MULTIPLE not available): use groups "
          "from one thread at a time",
          provided);
  }
  GC_CHECK(half_init());
  MPI_Comm c;
  MPI_Request r;
  MPI_TRY(MPI_Comm_idup(MPI_COMM_WORLD, &c, &r), "comm idup");
  gc_cpu_group_t tmp = {.rank = -1, .size = -1, .timeout_s = timeout_s};
  mpi_impl_t tm = {.comm = MPI_COMM_NULL};
  tmp.impl = &tm;
  MPI_Comm_rank(MPI_COMM_WORLD, &tmp.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &tmp.size);
  GC_CHECK(wait_one(&tmp, &r, NULL, "world communicator duplicate"));
  return wrap(c, timeout_s, out);
}

void gc_cpu_mpi_finalize(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  half_free();
  if (we_initialised) {
    MPI_Finalize();
    we_initialised = false;
  }
}
