/* group.c - gc_group_new and the group accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/coord.h"

gc_status_t gc_group_check(const gc_group_t *g, const char *what) {
  if (GC_UNLIKELY(!g)) return gc_error(GC_ERR_INVALID_ARG, "%s: group is NULL", what);
  if (GC_UNLIKELY(g->destroyed))
    return gc_error(GC_ERR_STATE, "%s: group '%s' was destroyed", what, g->name);
  return GC_OK;
}

/* Checks the layout on this rank alone; finds this rank's group. */
static gc_status_t check_layout(const gc_group_options_t *o, int *my_group, int *my_offset) {
  if (!o) return gc_error(GC_ERR_INVALID_ARG, "gc_group_new: options are NULL");
  if (!o->group_ranks || !o->group_sizes)
    return gc_error(GC_ERR_INVALID_ARG, "gc_group_new: group_ranks or group_sizes is NULL");
  if (o->num_groups <= 0)
    return gc_error(GC_ERR_INVALID_ARG, "gc_group_new: num_groups is %d", o->num_groups);
  const char *backend = o->backend ? o->backend : "host";
  if (strcmp(backend, "nccl") && strcmp(backend, "host"))
    return gc_error(GC_ERR_INVALID_ARG,
                    "gc_group_new: backend '%s' is neither \"nccl\" nor \"host\"", backend);
  int W = gc_world.size;
  char *seen = calloc((size_t)W, 1);
  if (!seen) return gc_error(GC_ERR_NO_MEMORY, "gc_group_new: no memory");
  gc_status_t s = GC_OK;
  *my_group = -1;
  int off = 0;
  for (int gi = 0; gi < o->num_groups && s == GC_OK; gi++) {
    int n = o->group_sizes[gi];
    if (n <= 0) {
      s = gc_error(GC_ERR_INVALID_ARG, "gc_group_new: group %d has size %d", gi, n);
      break;
    }
    for (int k = 0; k < n; k++) {
      int r = o->group_ranks[off + k];
      if (r < 0 || r >= W) {
        s = gc_error(GC_ERR_INVALID_ARG, "gc_group_new: group %d names rank %d, outside 0..%d", gi,
                     r, W - 1);
        break;
      }
      if (seen[r]) {
        s = gc_error(GC_ERR_INVALID_ARG, "gc_group_new: rank %d is in two groups (or twice in one)",
                     r);
        break;
      }
      seen[r] = 1;
      if (r == gc_world.rank) {
        *my_group = gi;
        *my_offset = off;
      }
    }
    off += n;
  }
  free(seen);
  if (s == GC_OK && *my_group < 0)
    s = gc_error(GC_ERR_INVALID_ARG, "gc_group_new: rank %d is in no group of the layout",
                 gc_world.rank);
  /* The device communicator's backend is found here, so that one that is
   * not built fails on every rank through the vote below. */
  const gc_device_ops_t *dev;
  if (s == GC_OK && o->use_device_communicator) s = gc_device_by_name(backend, &dev);
  return s;
}

static uint64_t layout_hash(const gc_group_options_t *o) {
  uint64_t h = 1469598103934665603ull;
  if (!o || !o->group_sizes || !o->group_ranks || o->num_groups <= 0) return h;
  int total = 0;
  for (int i = 0; i < o->num_groups; i++) total += o->group_sizes[i] > 0 ? o->group_sizes[i] : 0;
  h = gc_fnv(h, &o->num_groups, sizeof o->num_groups);
  h = gc_fnv(h, o->group_sizes, sizeof(int) * (size_t)o->num_groups);
  h = gc_fnv(h, o->group_ranks, sizeof(int) * (size_t)total);
  const char *name = o->group_name ? o->group_name : "anonymous";
  h = gc_fnv(h, name, strlen(name));
  const char *backend = o->backend ? o->backend : "host";
  h = gc_fnv(h, backend, strlen(backend));
  bool flags[2] = {o->use_device_communicator, o->use_message_queue_broadcaster};
  return gc_fnv(h, flags, sizeof flags);
}

typedef struct {
  uint64_t hash;
  int32_t status;
  int32_t pad;
} vote_t;

gc_status_t gc_group_new(const gc_group_options_t *opts, gc_group_t **out) {
  if (!gc_world.initialized) return gc_error(GC_ERR_STATE, "gc_group_new: call gc_init first");
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "gc_group_new: out is NULL");
  int my_group = -1, my_offset = 0;
  gc_status_t local = check_layout(opts, &my_group, &my_offset);
  char local_msg[256];
  snprintf(local_msg, sizeof local_msg, "%s", local == GC_OK ? "" : gc_last_error());

  /* Every rank learns every rank's verdict and layout, so that a wrong call
   * fails everywhere instead of hanging some ranks. */
  int W = gc_world.size;
  vote_t mine = {.hash = layout_hash(opts), .status = (int32_t)local};
  vote_t *all = calloc((size_t)W, sizeof *all);
  if (!all) return gc_error(GC_ERR_NO_MEMORY, "gc_group_new: no memory");
  gc_status_t s = gc_cpu_allgather(gc_world.cpu, &mine, sizeof mine, all);
  if (s != GC_OK) {
    free(all);
    return s;
  }
  gc_world.groups_made++;
  for (int r = 0; r < W; r++) {
    if (all[r].status != GC_OK) {
      gc_status_t rs = (gc_status_t)all[r].status;
      free(all);
      if (local != GC_OK) return gc_error(local, "%s", local_msg);
      return gc_error(rs, "gc_group_new: rank %d rejected the call (%s)", r, gc_status_string(rs));
    }
  }
  for (int r = 1; r < W; r++) {
    if (all[r].hash != all[0].hash) {
      free(all);
      return gc_error(GC_ERR_INVALID_ARG,
                      "gc_group_new: rank %d passed a different layout, name or backend than "
                      "rank 0",
                      r);
    }
  }
  free(all);

  int n = opts->group_sizes[my_group];
  const int *ranks = opts->group_ranks + my_offset;
  gc_group_t *g = calloc(1, sizeof *g);
  int *rk = malloc(sizeof(int) * (size_t)n);
  if (!g || !rk) {
    free(g);
    free(rk);
    return gc_error(GC_ERR_NO_MEMORY, "gc_group_new: no memory");
  }
  memcpy(rk, ranks, sizeof(int) * (size_t)n);
  g->ranks = rk;
  g->size = n;
  g->rank = gc_world.rank;
  for (int i = 0; i < n; i++)
    if (rk[i] == gc_world.rank) g->rank_in_group = i;
  g->local_rank = opts->local_rank;
  g->source = GC_SOURCE_API;
  snprintf(g->base, sizeof g->base, "%s", opts->group_name ? opts->group_name : "anonymous");

  char tag[64];
  snprintf(tag, sizeof tag, "g%llu.%d", (unsigned long long)gc_world.groups_made, my_group);
  gc_status_t st = gc_cpu_subgroup(gc_world.cpu, rk, n, tag, &g->cpu);
  if (st == GC_OK) st = gc_registry_add(g->base, g, g->name);
  /* Host tensors move over the CPU group with or without a device
   * communicator; use_device_communicator picks the backend CUDA tensors
   * (nccl) or the group's own device ops (host) go through. */
  if (st == GC_OK && opts->use_device_communicator) {
    const gc_device_ops_t *dev;
    st = gc_device_by_name(opts->backend, &dev);
    if (st == GC_OK) st = dev->create(g, &g->dev_state);
    if (st == GC_OK)
      g->dev = dev;
    else
      gc_registry_retire(g->name);
  }
  /* vLLM's mq_broadcaster: rank 0 writes, for gc_broadcast_object. */
  if (st == GC_OK && opts->use_message_queue_broadcaster && n > 1) {
    gc_mq_t *mq = NULL;
    st = gc_group_create_mq_broadcaster(g, 0, NULL, true, &mq);
    if (st == GC_OK) {
      g->mq = mq;
    } else {
      if (g->dev) g->dev->destroy(g, g->dev_state);
      gc_registry_retire(g->name);
    }
  }
  if (st != GC_OK) {
    if (g->cpu) gc_cpu_destroy(g->cpu);
    g->cpu = NULL;
    /* Once named, the registry keeps it as a destroyed group's (freed by
     * gc_finalize through gc_group_release); else it goes now. */
    if (!g->name[0]) {
      free(rk);
      free(g);
    } else {
      g->destroyed = true;
    }
    return st;
  }
  GC_INFO("group %s: rank %d of %d", g->name, g->rank_in_group, g->size);
  *out = g;
  return GC_OK;
}

/* The group's resources go; the struct and its ranks stay (a few hundred
 * bytes), so that a pointer the program still holds is refused with
 * GC_ERR_STATE by gc_group_check and answered by the accessors, never
 * followed into freed memory. */
gc_status_t gc_group_destroy(gc_group_t *g) {
  GC_CHECK(gc_group_check(g, "gc_group_destroy"));
  gc_status_t s = gc_registry_retire(g->name);
  g->destroyed = true;
  if (g->mq) gc_mq_destroy(g->mq);
  g->mq = NULL;
  if (g->dev) g->dev->destroy(g, g->dev_state);
  g->dev = NULL;
  g->dev_state = NULL;
  gc_cpu_destroy(g->cpu);
  g->cpu = NULL;
  return s;
}

void gc_group_release(void *gone) {
  gc_group_t *g = gone;
  free(g->ranks);
  free(g);
}

gc_status_t gc_group_lookup(const char *unique_name, gc_group_t **out) {
  if (!out) return gc_error(GC_ERR_INVALID_ARG, "gc_group_lookup: out is NULL");
  void *obj;
  GC_CHECK(gc_registry_lookup(unique_name, &obj));
  *out = obj;
  return GC_OK;
}

const char *gc_group_name(const gc_group_t *g) { return g ? g->name : NULL; }
int gc_group_rank(const gc_group_t *g) { return g ? g->rank : -1; }
int gc_group_rank_in_group(const gc_group_t *g) { return g ? g->rank_in_group : -1; }
int gc_group_world_size(const gc_group_t *g) { return g ? g->size : -1; }
const int *gc_group_ranks(const gc_group_t *g) { return g ? g->ranks : NULL; }
int gc_group_first_rank(const gc_group_t *g) { return g ? g->ranks[0] : -1; }
int gc_group_last_rank(const gc_group_t *g) { return g ? g->ranks[g->size - 1] : -1; }
bool gc_group_is_first_rank(const gc_group_t *g) { return g && g->rank == g->ranks[0]; }
bool gc_group_is_last_rank(const gc_group_t *g) { return g && g->rank == g->ranks[g->size - 1]; }
int gc_group_next_rank(const gc_group_t *g) {
  return g ? g->ranks[(g->rank_in_group + 1) % g->size] : -1;
}
int gc_group_prev_rank(const gc_group_t *g) {
  return g ? g->ranks[(g->rank_in_group + g->size - 1) % g->size] : -1;
}

gc_status_t gc_barrier(gc_group_t *g) {
  GC_CHECK(gc_group_check(g, "gc_barrier"));
  return gc_cpu_barrier(g->cpu);
}
