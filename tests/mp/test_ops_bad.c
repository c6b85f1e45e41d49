/* test_ops_bad.c - wrong calls fail with the right status on every rank,
 * before any data moves, and leave the group usable: wrong output shape,
 * dtype or device on one rank, dim out of range, sizes that do not sum,
 * ranks out of range, NULL data with elements, shapes that differ across
 * ranks, CUDA tensors on a group without a CUDA communicator, p2p
 * mismatches, and backends that are not built. */
#include "test_ops_util.h"

#define EXPECT(call, want)                                                  \
  do {                                                                      \
    gc_status_t s_ = (call);                                                \
    CHECK(s_ == (want), "%s: got %s, want %s", #call, gc_status_string(s_), \
          gc_status_string(want));                                          \
  } while (0)

/* A good all-reduce after each bad call: the group still works. */
static void healthy(gc_group_t *g, int n, const char *after) {
  int32_t x = 3, y = 0;
  gc_tensor_t in = host_tensor(&x, GC_INT32, 0, NULL), out = host_tensor(&y, GC_INT32, 0, NULL);
  gc_status_t s = gc_all_reduce(g, &in, &out, GC_SUM, NULL);
  CHECK(s == GC_OK && y == 3 * n, "group unusable after %s (y=%d)", after, y);
}

/* A counting allocator: outputs the library allocates come from it. */
static int allocs, frees;
static void *count_alloc(size_t bytes, gc_device_t dev, void *stream, void *ctx) {
  (void)dev;
  (void)stream;
  allocs++;
  CHECK(ctx == (void *)&allocs, "allocator ctx");
  return malloc(bytes);
}
static void count_free(void *p, gc_device_t dev, void *stream, void *ctx) {
  (void)dev;
  (void)stream;
  (void)ctx;
  frees++;
  free(p);
}

static void t_allocator(gc_group_t *g, int n) {
  gc_allocator_t half = {.alloc = count_alloc};
  EXPECT(gc_set_allocator(&half), GC_ERR_INVALID_ARG);
  gc_allocator_t a = {.alloc = count_alloc, .free = count_free, .ctx = &allocs};
  EXPECT(gc_set_allocator(&a), GC_OK);
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* room for the larger shape one rank declares below */
  int64_t s23[2] = {2, 3};
  gc_tensor_t in = host_tensor(x, GC_FLOAT32, 2, s23), out = {0};
  EXPECT(gc_all_gather(g, &in, 1, &out, NULL), GC_OK);
  CHECK(allocs == 1 && out.data && out.shape[1] == 3 * n, "allocator used (%d)", allocs);
  CHECK(((float *)out.data)[3 * n] == 4.f, "all_gather dim 1 through the allocator");
  EXPECT(gc_tensor_free(&out, NULL), GC_OK);
  CHECK(frees == 1 && out.data == NULL, "tensor_free through the allocator");
  /* a failing call gives back what it allocated */
  int64_t bad[2] = {2, 3 + (n > 1 && gc_group_rank_in_group(g) == 0)};
  gc_tensor_t in2 = host_tensor(x, GC_FLOAT32, 2, bad), out2 = {0};
  gc_status_t s = gc_all_reduce(g, &in2, &out2, GC_SUM, NULL);
  CHECK(n == 1 ? s == GC_OK : s == GC_ERR_INVALID_ARG, "mismatched all_reduce");
  if (s == GC_OK) gc_tensor_free(&out2, NULL);
  CHECK(allocs == frees, "allocations %d, frees %d", allocs, frees);
  EXPECT(gc_set_allocator(NULL), GC_OK);
  EXPECT(gc_tensor_free(NULL, NULL), GC_ERR_INVALID_ARG);
}

static int run(int me, int n) {
  int ranks[64], one[1] = {n};
  for (int i = 0; i < n; i++) ranks[i] = i;
  gc_group_t *g = group_make(ranks, one, 1, "bad", false);
  if (!g) return 1;
  int last = n - 1;
  float a[64] = {0}, b[512] = {0};
  int64_t s23[2] = {2, 3};

  /* wrong output shape on the last rank only */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23);
    int64_t os[2] = {2 * n + (me == last), 3};
    gc_tensor_t out = host_tensor(b, GC_FLOAT32, 2, os);
    EXPECT(gc_all_gather(g, &in, 0, &out, NULL), GC_ERR_INVALID_ARG);
    healthy(g, n, "wrong output shape");
  }
  /* wrong output dtype, then wrong device, on rank 0 only */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23);
    gc_tensor_t out = host_tensor(b, me == 0 ? GC_FLOAT64 : GC_FLOAT32, 2, s23);
    EXPECT(gc_all_reduce(g, &in, &out, GC_SUM, NULL), GC_ERR_INVALID_ARG);
    out.dtype = GC_FLOAT32;
    if (me == 0) out.device = (gc_device_t){GC_DEVICE_CUDA, 0};
    EXPECT(gc_all_reduce(g, &in, &out, GC_SUM, NULL), GC_ERR_INVALID_ARG);
    healthy(g, n, "wrong output dtype/device");
  }
  /* an output to allocate stays untouched when the call fails */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23), out = {0};
    out.ndim = 5;
    EXPECT(gc_all_gather(g, &in, 2, &out, NULL), GC_ERR_INVALID_ARG);
    CHECK(out.data == NULL && out.ndim == 5, "failed call changed its output");
  }
  /* dim out of range, both ends */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23), out = {0};
    EXPECT(gc_all_gather(g, &in, 2, &out, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_all_gather(g, &in, -3, &out, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_reduce_scatter(g, &in, 5, &out, NULL), GC_ERR_INVALID_ARG);
    gc_tensor_t sc = host_tensor(a, GC_FLOAT32, 0, NULL);
    EXPECT(gc_all_gather(g, &sc, 0, &out, NULL), GC_ERR_INVALID_ARG);
    healthy(g, n, "dim out of range");
  }
  /* sizes that do not sum; sizes[me] that is not this rank's rows */
  {
    int64_t rows[2] = {(int64_t)n * 2, 3};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, rows), out = {0};
    int64_t sizes[64];
    for (int i = 0; i < n; i++) sizes[i] = 2;
    sizes[0] = 3;
    EXPECT(gc_reduce_scatterv(g, &in, 0, sizes, &out, NULL), GC_ERR_INVALID_ARG);
    sizes[0] = -2;
    if (n > 1) sizes[last] += 4;
    EXPECT(gc_reduce_scatterv(g, &in, 0, sizes, &out, NULL), GC_ERR_INVALID_ARG);
    for (int i = 0; i < n; i++) sizes[i] = 2;
    int64_t mine[2] = {me == last ? 1 : 2, 3};
    gc_tensor_t inv = host_tensor(a, GC_FLOAT32, 2, mine);
    EXPECT(gc_all_gatherv(g, &inv, 0, sizes, &out, NULL), GC_ERR_INVALID_ARG);
    if (n > 1) {
      int64_t odd[2] = {(int64_t)n + 1, 3};
      gc_tensor_t ino = host_tensor(a, GC_FLOAT32, 2, odd);
      EXPECT(gc_reduce_scatter(g, &ino, 0, &out, NULL), GC_ERR_INVALID_ARG);
    }
    healthy(g, n, "bad sizes");
  }
  /* ranks out of range */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23), out = {0};
    EXPECT(gc_gather(g, &in, n, 0, &out, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_gather(g, &in, -1, 0, &out, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_broadcast(g, &in, n, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_send(g, &in, n, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_recv(g, &in, -2, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_send(g, &in, me, NULL), GC_ERR_INVALID_ARG);
    EXPECT(gc_send_object(g, "x", 1, me), GC_ERR_INVALID_ARG);
    void *o;
    size_t ol;
    EXPECT(gc_recv_object(g, n + 3, &o, &ol), GC_ERR_INVALID_ARG);
    EXPECT(gc_broadcast_object(g, "x", 1, -1, &o, &ol), GC_ERR_INVALID_ARG);
    healthy(g, n, "ranks out of range");
  }
  /* a broadcast whose src differs on one rank */
  if (n > 1) {
    gc_tensor_t t = host_tensor(a, GC_FLOAT32, 2, s23);
    EXPECT(gc_broadcast(g, &t, me == last ? 1 : 0, NULL), GC_ERR_INVALID_ARG);
    healthy(g, n, "src differing across ranks");
  }
  /* NULL data with elements, on one rank */
  {
    gc_tensor_t in = host_tensor(me == last ? NULL : a, GC_FLOAT32, 2, s23);
    gc_tensor_t out = host_tensor(b, GC_FLOAT32, 2, s23);
    EXPECT(gc_all_reduce(g, &in, &out, GC_SUM, NULL), GC_ERR_INVALID_ARG);
    healthy(g, n, "NULL data");
  }
  /* shapes that differ across ranks */
  if (n > 1) {
    int64_t s32[2] = {3, 2};
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, me == 0 ? s32 : s23), out = {0};
    EXPECT(gc_all_reduce(g, &in, &out, GC_SUM, NULL), GC_ERR_INVALID_ARG);
    CHECK(strstr(gc_last_error(), "differ") != NULL, "mismatch message: %s", gc_last_error());
    gc_tensor_t in2 = host_tensor(a, me == 0 ? GC_INT32 : GC_FLOAT32, 2, s23);
    EXPECT(gc_all_gather(g, &in2, 0, &out, NULL), GC_ERR_INVALID_ARG);
    healthy(g, n, "differing shapes");
  }
  /* invalid redop; CUDA tensors on a group without a CUDA communicator */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23), out = {0};
    EXPECT(gc_all_reduce(g, &in, &out, (gc_redop_t)9, NULL), GC_ERR_INVALID_ARG);
    gc_tensor_t cu = in;
    cu.device = (gc_device_t){GC_DEVICE_CUDA, 0};
    EXPECT(gc_all_reduce(g, &cu, &out, GC_SUM, NULL), GC_ERR_UNSUPPORTED);
    EXPECT(gc_all_reduce(g, me == 0 ? &cu : &in, &out, GC_SUM, NULL), GC_ERR_UNSUPPORTED);
    healthy(g, n, "CUDA tensors");
  }
  /* object lists whose length differs across ranks */
  if (n > 1) {
    const char *items[2] = {"a", "b"};
    size_t lens[2] = {1, 1};
    void **o = NULL;
    size_t *ol = NULL;
    EXPECT(gc_broadcast_object_list(g, (const void *const *)items, lens, me == last ? 1 : 2, 0, &o,
                                    &ol),
           GC_ERR_INVALID_ARG);
    healthy(g, n, "object lists");
  }
  /* p2p: shapes that do not match, NULL data at the sender; then a good one */
  if (n > 1) {
    int64_t s4[1] = {4}, s5[1] = {5};
    for (int c = 0; c < 3; c++) {
      if (me == 0) {
        gc_tensor_t t = host_tensor(c == 1 ? NULL : a, GC_FLOAT32, 1, s4);
        for (int i = 0; i < 4; i++) a[i] = (float)(i + c);
        EXPECT(gc_send(g, &t, 1, NULL), c == 2 ? GC_OK : GC_ERR_INVALID_ARG);
      } else if (me == 1) {
        gc_tensor_t t = host_tensor(b, GC_FLOAT32, 1, c == 0 ? s5 : s4);
        EXPECT(gc_recv(g, &t, 0, NULL), c == 2 ? GC_OK : GC_ERR_INVALID_ARG);
        if (c == 2) CHECK(b[0] == 2.f && b[3] == 5.f, "recv after refusals");
      }
    }
    /* the receiver refuses (no tensor; a device it has not): the sender
     * hears of it, and the pair stays in step */
    for (int c = 0; c < 2; c++) {
      if (me == 0) {
        gc_tensor_t t = host_tensor(a, GC_FLOAT32, 1, s4);
        gc_status_t st = gc_send(g, &t, 1, NULL);
        CHECK(st != GC_OK, "send to a receiver that refused (case %d) returned GC_OK", c);
      } else if (me == 1) {
        gc_tensor_t t = host_tensor(b, GC_FLOAT32, 1, s4);
        t.device = (gc_device_t){GC_DEVICE_CUDA, 0};
        EXPECT(gc_recv(g, c == 0 ? NULL : &t, 0, NULL),
               c == 0 ? GC_ERR_INVALID_ARG : GC_ERR_UNSUPPORTED);
      }
    }
    if (me == 0) {
      gc_tensor_t t = host_tensor(a, GC_FLOAT32, 1, s4);
      for (int i = 0; i < 4; i++) a[i] = (float)(10 + i);
      EXPECT(gc_send(g, &t, 1, NULL), GC_OK);
    } else if (me == 1) {
      gc_tensor_t t = host_tensor(b, GC_FLOAT32, 1, s4);
      EXPECT(gc_recv(g, &t, 0, NULL), GC_OK);
      CHECK(b[0] == 10.f && b[3] == 13.f, "recv after the receiver's refusals");
    }
    healthy(g, n, "receiver refusals");
    /* a refused object send */
    if (me == 0) EXPECT(gc_send_object(g, NULL, 5, 1), GC_ERR_INVALID_ARG);
    if (me == 1) {
      void *o = NULL;
      size_t ol;
      EXPECT(gc_recv_object(g, 0, &o, &ol), GC_ERR_INVALID_ARG);
    }
    healthy(g, n, "p2p refusals");
  }
  /* by name: unknown, and a destroyed group */
  {
    gc_tensor_t in = host_tensor(a, GC_FLOAT32, 2, s23), out = {0};
    EXPECT(gc_all_reduce_by_name("no-such-group:0", &in, &out, GC_SUM, NULL), GC_ERR_NOT_FOUND);
    gc_group_t *tmp = group_make(ranks, one, 1, "tmp", true);
    char name[128];
    snprintf(name, sizeof name, "%s", gc_group_name(tmp));
    int tmp_size = gc_group_world_size(tmp);
    gc_group_destroy(tmp);
    EXPECT(gc_all_reduce_by_name(name, &in, &out, GC_SUM, NULL), GC_ERR_STATE);
    /* ... and the stale pointer itself: refused, not followed (ASan saw a
     * use after free here) */
    EXPECT(gc_all_reduce(tmp, &in, &out, GC_SUM, NULL), GC_ERR_STATE);
    EXPECT(gc_barrier(tmp), GC_ERR_STATE);
    EXPECT(gc_group_destroy(tmp), GC_ERR_STATE);
    CHECK(!strcmp(gc_group_name(tmp), name) && gc_group_world_size(tmp) == tmp_size,
          "a destroyed group's accessors");
  }
  /* backends: an nccl group on a device that does not exist fails on every
   * rank (GC_ERR_UNSUPPORTED without NCCL or a GPU, a CUDA or NCCL error
   * with them); a message-queue broadcaster for objects */
  {
    gc_group_options_t o = {.group_ranks = ranks,
                            .group_sizes = one,
                            .num_groups = 1,
                            .local_rank = 1 << 20,
                            .backend = "nccl",
                            .use_device_communicator = true,
                            .group_name = "gpu"};
    gc_group_t *x = NULL;
    gc_status_t st = gc_group_new(&o, &x);
    CHECK(st != GC_OK && x == NULL, "nccl group on device %d: %s", o.local_rank,
          gc_status_string(st));
    o.local_rank = me;
    o.backend = "host";
    o.use_message_queue_broadcaster = true;
    EXPECT(gc_group_new(&o, &x), GC_OK);
    if (x) { /* objects go through the queue: src 0 only */
      void *p = NULL;
      size_t l = 0;
      EXPECT(gc_broadcast_object(x, "mq", 3, 0, me ? &p : NULL, me ? &l : NULL), GC_OK);
      CHECK(me == 0 || (l == 3 && p && !memcmp(p, "mq", 3)), "object through the queue");
      free(p);
      EXPECT(gc_broadcast_object(x, "mq", 3, n - 1, &p, &l), n > 1 ? GC_ERR_INVALID_ARG : GC_OK);
      gc_group_destroy(x);
    }
    o.use_message_queue_broadcaster = false;
    EXPECT(gc_group_new(&o, &x), GC_OK);
    if (x) {
      healthy(x, n, "a host device communicator");
      gc_group_destroy(x);
    }
  }
  t_allocator(g, n);
  healthy(g, n, "everything");
  return 0;
}

int main(int argc, char **argv) {
  alarm(170);
  counters_init("tbad");
  int ns[] = {1, 2, 3, 4}, count = 4;
  if (argc > 1) {
    count = 0;
    for (int i = 1; i < argc && count < 4; i++) ns[count++] = atoi(argv[i]);
  }
  for (int i = 0; i < count; i++) {
    int bad = run_ranks(ns[i], run);
    CHECK(bad == 0, "n=%d: %d ranks exited with failures", ns[i], bad);
    printf("bad input n=%d done\n", ns[i]);
    fflush(stdout);
  }
  return finish();
}
