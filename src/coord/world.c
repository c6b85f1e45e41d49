/* world.c - gc_init / gc_finalize: the world and its CPU group. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord/coord.h"

gc_world_t gc_world = {.rank = -1, .size = -1, .local_rank = -1};

int gc_world_rank(void) { return gc_world.initialized ? gc_world.rank : -1; }
int gc_world_size(void) { return gc_world.initialized ? gc_world.size : -1; }

/* The shm namespace when none is given: GCSHIM_RENDEZVOUS, else the job
 * identity the launcher gives every rank of one job and no other job
 * (docs/CPU_GROUPS.md): Open MPI / PMIx, Slurm, MPICH's Hydra, torchrun.
 * A job of one rank needs none. Without one, GC_ERR_INVALID_ARG: two jobs
 * started by one parent (a driver script, a test runner) would otherwise
 * share a key and mix their data. Keys too long for a name are hashed,
 * never cut (keys that differ late must stay apart). */
static gc_status_t default_rendezvous(int world_size, char *buf, size_t n) {
  const char *v, *w;
  char id[1024];
  unsigned uid = (unsigned)geteuid();
  if ((v = getenv("GCSHIM_RENDEZVOUS")) && *v)
    snprintf(id, sizeof id, "%s", v);
  else if ((v = getenv("PMIX_NAMESPACE")) && *v)
    snprintf(id, sizeof id, "u%u-pmix-%s", uid, v);
  else if ((v = getenv("OMPI_MCA_ess_base_jobid")) && *v)
    snprintf(id, sizeof id, "u%u-ompi-%s", uid, v);
  else if ((v = getenv("SLURM_JOB_ID")) && *v)
    snprintf(id, sizeof id, "u%u-slurm-%s.%s", uid, v,
             (w = getenv("SLURM_STEP_ID")) && *w ? w : "x");
  else if ((v = getenv("PMI_PORT")) && *v) /* MPICH's Hydra: one port a job */
    snprintf(id, sizeof id, "u%u-hydra-%s", uid, v);
  else if ((v = getenv("TORCHELASTIC_RUN_ID")) && getenv("MASTER_PORT"))
    snprintf(id, sizeof id, "u%u-torch-%s-%s-%s-%s", uid, v,
             getenv("MASTER_ADDR") ? getenv("MASTER_ADDR") : "", getenv("MASTER_PORT"),
             (w = getenv("TORCHELASTIC_RESTART_COUNT")) ? w : "0");
  else if (world_size == 1)
    snprintf(id, sizeof id, "u%u-solo-%d", uid, (int)getpid());
  else
    return gc_error(GC_ERR_INVALID_ARG,
                    "gc_init: no job identity for the shm rendezvous of %d ranks: set "
                    "GCSHIM_RENDEZVOUS to a name unique to this job (the same on its ranks), or "
                    "start it with a launcher that gives one (gcshim-launch, mpirun, srun, "
                    "torchrun; docs/CPU_GROUPS.md)",
                    world_size);
  size_t len = strlen(id);
  if (len < n) {
    memcpy(buf, id, len + 1);
  } else {
    uint64_t h = gc_fnv_str(GC_FNV_INIT, id), h2 = gc_fnv_str(0x84222325cbf29ce4ull, id);
    snprintf(buf, n, "%.*s#%016llx%016llx", (int)(n - 34 > 64 ? 64 : n - 34), id,
             (unsigned long long)h, (unsigned long long)h2);
  }
  return GC_OK;
}

gc_status_t gc_init(const gc_init_options_t *opts) {
  if (gc_world.initialized) return gc_error(GC_ERR_STATE, "gc_init: already initialised");
  gc_init_options_t o = {.rank = -1, .world_size = -1, .local_rank = -1};
  if (opts) o = *opts;
  const char *transport = o.cpu_transport ? o.cpu_transport : "shm";
  bool mpi = !strcmp(transport, "mpi");
  if (!mpi && strcmp(transport, "shm"))
    return gc_error(GC_ERR_INVALID_ARG,
                    "gc_init: cpu_transport '%s' is neither \"shm\" nor \"mpi\"", transport);
  double timeout = o.timeout_s > 0 ? o.timeout_s : gc_env_timeout();

  if (o.rank < -1 || o.world_size < -1 || o.world_size == 0 || o.local_rank < -1)
    return gc_error(GC_ERR_INVALID_ARG, "gc_init: rank %d, world_size %d, local_rank %d invalid",
                    o.rank, o.world_size, o.local_rank);
  if (o.rank < 0 || o.world_size < 0 || o.local_rank < 0) {
    gc_env_ranks_t env;
    gc_status_t s = gc_env_ranks(&env);
    if (s != GC_OK && !(mpi && s == GC_ERR_NOT_FOUND)) return s;
    if (s == GC_OK) {
      if (o.rank < 0) o.rank = env.rank;
      if (o.world_size < 0) o.world_size = env.world_size;
      if (o.local_rank < 0) o.local_rank = env.local_rank;
    }
  }

  gc_cpu_group_t *cpu = NULL;
  if (mpi) {
    GC_CHECK(gc_cpu_mpi_world(timeout, &cpu));
    if ((o.rank >= 0 && o.rank != cpu->rank) || (o.world_size > 0 && o.world_size != cpu->size)) {
      gc_status_t s =
          gc_error(GC_ERR_INVALID_ARG, "gc_init: rank %d of %d given, but MPI says rank %d of %d",
                   o.rank, o.world_size, cpu->rank, cpu->size);
      gc_cpu_destroy(cpu);
      return s;
    }
    o.rank = cpu->rank;
    o.world_size = cpu->size;
    if (o.local_rank < 0) o.local_rank = o.rank;
  } else {
    if (o.rank < 0 || o.world_size < 0)
      return gc_error(GC_ERR_INVALID_ARG,
                      "gc_init: rank and world size are not known: pass them "
                      "or set GCSHIM_RANK/GCSHIM_WORLD_SIZE");
    if (o.rank >= o.world_size)
      return gc_error(GC_ERR_INVALID_ARG, "gc_init: rank %d is outside 0..%d", o.rank,
                      o.world_size - 1);
    if (o.local_rank < 0) o.local_rank = o.rank;
    char key[GC_NAME_MAX];
    if (o.rendezvous && *o.rendezvous) {
      if (strlen(o.rendezvous) >= sizeof key)
        return gc_error(GC_ERR_INVALID_ARG, "gc_init: rendezvous is longer than %zu characters",
                        sizeof key - 1);
      snprintf(key, sizeof key, "%s", o.rendezvous);
    } else {
      GC_CHECK(default_rendezvous(o.world_size, key, sizeof key));
    }
    snprintf(gc_world.rendezvous, sizeof gc_world.rendezvous, "%s", key);
    GC_CHECK(gc_cpu_shm_create(key, o.rank, o.world_size, timeout, &cpu));
  }
  gc_world.rank = o.rank;
  gc_world.size = o.world_size;
  gc_world.local_rank = o.local_rank;
  gc_world.timeout_s = timeout;
  snprintf(gc_world.transport, sizeof gc_world.transport, "%s", transport);
  gc_world.cpu = cpu;
  gc_world.groups_made = 0;
  gc_world.initialized = true;
  gc_log_set_rank(o.rank);
  GC_INFO("joined world: rank %d of %d over %s", o.rank, o.world_size, transport);
  return GC_OK;
}

static void destroy_one(void *obj, void *arg) {
  (void)arg;
  gc_group_destroy(obj);
}

gc_status_t gc_finalize(void) {
  if (!gc_world.initialized) return gc_error(GC_ERR_STATE, "gc_finalize: gc_init was not called");
  gc_registry_foreach(destroy_one, NULL);
  gc_registry_reset(gc_group_release);
  bool mpi = !strcmp(gc_world.transport, "mpi");
  gc_cpu_destroy(gc_world.cpu);
  if (mpi) gc_cpu_mpi_finalize();
  gc_world = (gc_world_t){.rank = -1, .size = -1, .local_rank = -1};
  gc_log_set_rank(-1);
  return GC_OK;
}
