/*
 * adopt.c - every communicator the program makes becomes a gc_group
 * (DESIGN.md "Group names", "CPU groups").
 *
 * Before the real creation call each rank registers in a small /dev/shm
 * segment named from the communicator's rendezvous key (the unique id's
 * bytes; for a split the parent's key, the split's sequence number and the
 * colour; for a shrink the parent's key, its sequence number and the
 * excluded ranks): one slot per rank with its pid and world rank, written
 * without waiting for anyone. NCCL's creation returns only once every rank
 * has joined, so afterwards the slots hold exactly the ranks on this host.
 * All of them: the shm CPU group is made (every member does so right after
 * its creation call returns). Fewer: the group has no CPU group, which is
 * said once. The segment is unlinked by the first member past creation;
 * the others still hold it mapped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/report.h"
#include "core/seg.h"
#include "core/stats.h"
#include "cpu/cpu.h"
#include "shim/rules.h"
#include "shim/shim.h"

/* ---- the communicator map: lock-free reads ----------------------------------- */

#define MAP_SIZE GC_SHIM_MAP_SIZE
gc_shim_map_slot_t gc_shim_map[GC_SHIM_MAP_SIZE];
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

static bool map_put(ncclComm_t comm, gc_shim_comm_t *sc) {
  uintptr_t k = (uintptr_t)comm;
  bool ok = false;
  pthread_mutex_lock(&map_lock);
  for (size_t i = gc_shim_map_hash(k), n = 0; n < MAP_SIZE; i = (i + 1) & (MAP_SIZE - 1), n++) {
    uintptr_t e = atomic_load_explicit(&gc_shim_map[i].key, memory_order_relaxed);
    if (e == k || !e) {
      atomic_store_explicit(&gc_shim_map[i].val, sc, memory_order_release);
      atomic_store_explicit(&gc_shim_map[i].key, k, memory_order_release);
      gc_shim_map_changed();
      ok = true;
      break;
    }
  }
  pthread_mutex_unlock(&map_lock);
  if (!ok) GC_INFO("more than %d communicators: %p is not observed", MAP_SIZE, (void *)comm);
  return ok;
}

static void map_clear(ncclComm_t comm) {
  uintptr_t k = (uintptr_t)comm;
  pthread_mutex_lock(&map_lock);
  for (size_t i = gc_shim_map_hash(k), n = 0; n < MAP_SIZE; i = (i + 1) & (MAP_SIZE - 1), n++) {
    uintptr_t e = atomic_load_explicit(&gc_shim_map[i].key, memory_order_relaxed);
    if (e == k) {
      atomic_store_explicit(&gc_shim_map[i].val, NULL, memory_order_release);
      gc_shim_map_changed();
      break;
    }
    if (!e) break;
  }
  pthread_mutex_unlock(&map_lock);
}

gc_shim_comm_t *gc_shim_by_name(const char *name) {
  void *obj = NULL;
  if (!name || gc_registry_lookup(name, &obj) != GC_OK) return NULL;
  struct gc_group *g = obj;
  /* Only adopted communicators: their group is embedded in a gc_shim_comm_t. */
  for (size_t i = 0; i < MAP_SIZE; i++) {
    gc_shim_comm_t *sc = atomic_load_explicit(&gc_shim_map[i].val, memory_order_acquire);
    if (sc && &sc->g == g) return sc;
  }
  return NULL;
}

/* ---- the job: the first communicator ---------------------------------------- */

static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;
static int job_rank = -1, job_size = 0; /* this process in its first communicator */
static char job_key[512]; /* its rendezvous key: other ranks of it here are the job's too */
static uint64_t initall_seq;

/* ---- registration -------------------------------------------------------------- */

#define REG_MAGIC 0x31676572696d6873ull /* "shimreg1" */

typedef struct {
  _Atomic uint32_t state;                               /* 1: registered */
  int32_t pid, world_rank, parent_rank, split_key, tid; /* tid: the thread that made it */
} reg_slot_t;

typedef struct {
  gc_seg_hdr_t seg; /* creator, its start time, uid, size: core/seg.h */
  uint64_t magic;
  uint32_t nslots, pad;
} reg_hdr_t;

struct gc_shim_reg {
  char key[512];
  char name[96];
  void *base;
  size_t bytes;
  int nslots, slot;
  bool unlinked;
  gc_seg_t g;
};

static reg_slot_t *slots(gc_shim_reg_t *r) {
  return (reg_slot_t *)((char *)r->base + sizeof(reg_hdr_t));
}

static void reg_free(gc_shim_reg_t *r) {
  if (!r) return;
  if (r->base) {
    if (!r->unlinked) gc_seg_unlink(&r->g);
    gc_seg_close(&r->g);
  }
  free(r);
}

/* Registers slot of nslots in the segment of key; never waits. */
static gc_shim_reg_t *reg_open(const char *key, int nslots, int slot, int world_rank,
                               int parent_rank, int split_key) {
  if (nslots < 1 || slot < 0 || slot >= nslots) return NULL;
  gc_shim_reg_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  snprintf(r->key, sizeof r->key, "%s", key);
  /* GCSHIM_TEST_HOST (tests only): ranks with different values do not see
   * each other's registrations, as if they ran on different hosts. */
  const char *th = gc_param_GCSHIM_TEST_HOST();
  uint64_t kh = gc_fnv_str(GC_FNV_INIT, key);
  if (th && *th) kh = gc_fnv_str(kh, th);
  snprintf(r->name, sizeof r->name, "/gcshim-reg-%016llx-%u", (unsigned long long)kh,
           (unsigned)geteuid());
  r->nslots = nslots;
  r->slot = slot;
  r->bytes = sizeof(reg_hdr_t) + (size_t)nslots * sizeof(reg_slot_t);
  /* The slots' pids: the segment outlives its creator while a rank waits. */
  gc_seg_opts_t o = {.what = "communicator registration",
                     .bytes = r->bytes,
                     .pids_off = (uint32_t)(sizeof(reg_hdr_t) + offsetof(reg_slot_t, pid)),
                     .pids_stride = sizeof(reg_slot_t),
                     .pids_n = (uint32_t)nslots,
                     .flags = GC_SEG_KEEP_DEAD};
  if (gc_seg_open(r->name, GC_SEG_CREATE | GC_SEG_ATTACH, &o, &r->g) != GC_OK) {
    GC_INFO("communicator registration %s: %s", r->name, gc_last_error());
    free(r);
    return NULL;
  }
  gc_seg_close_fd(&r->g);
  r->base = r->g.base;
  reg_hdr_t *h = r->base;
  h->magic = REG_MAGIC;
  h->nslots = (uint32_t)nslots;
  reg_slot_t *s = &slots(r)[slot];
  s->pid = (int32_t)getpid();
  s->tid = (int32_t)gettid();
  s->world_rank = world_rank;
  s->parent_rank = parent_rank;
  s->split_key = split_key;
  atomic_store_explicit(&s->state, 1, memory_order_release);
  return r;
}

/* After creation: the segment is no longer needed by name. */
static void reg_done(gc_shim_reg_t *r) {
  if (r && !r->unlinked) {
    gc_seg_unlink(&r->g);
    r->unlinked = true;
  }
}

static void uid_key(const ncclUniqueId *id, char *out, size_t len) {
  uint64_t a = gc_fnv(GC_FNV_INIT, id->internal, sizeof id->internal);
  uint64_t b = gc_fnv(0x84222325cbf29ce4ull, id->internal, sizeof id->internal);
  snprintf(out, len, "u%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

void gc_shim_register(gc_nccl_id_t id, gc_shim_call_t *c) {
  char key[512];
  switch (id) {
    case GC_NCCL_ID_CommInitRank:
    case GC_NCCL_ID_CommInitRankConfig:
    case GC_NCCL_ID_CommInitRankScalable: {
      if (!c->uid || c->nranks < 1 || c->rank < 0 || c->rank >= c->nranks) return;
      uid_key(c->uid, key, sizeof key);
      pthread_mutex_lock(&adopt_lock);
      int wr = job_rank >= 0 ? job_rank : c->rank;
      pthread_mutex_unlock(&adopt_lock);
      c->reg = reg_open(key, c->nranks, c->rank, wr, c->rank, 0);
      return;
    }
    case GC_NCCL_ID_CommSplit:
    case GC_NCCL_ID_CommShrink: {
      gc_shim_comm_t *p = gc_shim_lookup(c->comm);
      if (!p || atomic_load(&p->state) != GC_SHIM_ADOPTED) return;
      int seq;
      if (id == GC_NCCL_ID_CommSplit) {
        seq = p->split_seq++;
        if (c->color == NCCL_SPLIT_NOCOLOR) return;
        snprintf(key, sizeof key, "%.400s/s%d.c%d", p->key, seq, c->color);
      } else {
        seq = p->shrink_seq++;
        uint64_t h = c->exclude && c->n_exclude > 0
                         ? gc_fnv(7, c->exclude, (size_t)c->n_exclude * sizeof(int))
                         : 0;
        snprintf(key, sizeof key, "%.400s/k%d.%016llx", p->key, seq, (unsigned long long)h);
      }
      c->reg = reg_open(key, p->g.size, p->g.rank_in_group, p->g.rank, p->g.rank_in_group,
                        id == GC_NCCL_ID_CommSplit ? c->key : 0);
      return;
    }
    default:
      return;
  }
}

/* ---- names ------------------------------------------------------------------ */

static gc_shim_rules_t *rules;
static pthread_once_t rules_once = PTHREAD_ONCE_INIT;

static void rules_parse(void) { rules = gc_shim_rules_parse_string(gc_param_GCSHIM_GROUPS()); }

/* The first rule whose set equals ranks (n world ranks, all known). */
static const char *rule_for(const int *ranks, int n) {
  pthread_once(&rules_once, rules_parse);
  return gc_shim_rules_match(rules, ranks, n);
}

/* config.commName where the loaded NCCL knows it (2.27+) and the struct has it. */
static const char *config_name(const ncclConfig_t *cfg) {
  if (!cfg || gc_nccl_version() < 22700) return NULL;
  if (cfg->size < offsetof(ncclConfig_t, commName) + sizeof cfg->commName) return NULL;
  const char *n = cfg->commName;
  return n && *n ? n : NULL;
}

/* ---- adoption ------------------------------------------------------------------- */

static void group_info(gc_shim_comm_t *sc, gc_stats_group_info_t *info) {
  memset(info, 0, sizeof *info);
  info->key = gc_fnv_str(GC_FNV_INIT, sc->key);
  snprintf(info->name, sizeof info->name, "%s", sc->g.name);
  info->source = sc->g.source;
  info->size = sc->g.size;
  info->rank_in_group = sc->g.rank_in_group;
  for (int i = 0; i < 64; i++) info->ranks[i] = i < sc->g.size ? sc->g.ranks[i] : -1;
}

typedef struct {
  int pr, key, wr, pid;
} member_t;

static int by_key(const void *a, const void *b) {
  const member_t *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->pr < y->pr ? -1 : x->pr > y->pr;
}

/* The adoption of sc (its comm is ready) but for its CPU group: members,
 * name, statistics, registry, job. Called with adopt_lock held. True when
 * it went through; *cpu then says whether to make the shm CPU group. When
 * it did not, *retry says whether a later attempt may succeed. */
static bool adopt_locked(gc_shim_comm_t *sc, bool *cpu, bool *retry) {
  ncclComm_t comm = sc->comm;
  gc_shim_reg_t *reg = sc->reg;
  int n = 0, me = 0;
  if (gc_nccl_real.fn.CommCount(comm, &n) != ncclSuccess || n < 1 ||
      gc_nccl_real.fn.CommUserRank(comm, &me) != ncclSuccess || me < 0 || me >= n) {
    /* Not ready after all: tried again at its next call (NCCL_FACTS C2). */
    GC_INFO("communicator %p: count or rank not known yet; adoption retried at its next call",
            (void *)comm);
    *retry = true;
    return false;
  }
  bool first = job_rank < 0;
  if (first) {
    job_rank = me;
    job_size = n;
    snprintf(job_key, sizeof job_key, "%s", sc->key);
  }
  /* Another rank of the job's communicator in this process (one thread
   * making several ranks inside one group): a rank of the job too. */
  sc->is_job = first || (job_size == n && !strcmp(job_key, sc->key));
  sc->g.size = n;
  sc->g.rank_in_group = me;
  sc->g.rank = sc->is_job ? me : job_rank;
  sc->g.local_rank = -1;
  sc->g.ranks = malloc((size_t)n * sizeof(int));
  if (!sc->g.ranks) return false;
  for (int i = 0; i < n; i++) sc->g.ranks[i] = sc->is_job ? i : -1;
  /* Members on this host, from the registration slots. */
  int local = 0, *here = NULL, n_here = 0;
  bool shared_tid = false; /* one thread made several of its ranks (inside one group) */
  if (reg) {
    reg_slot_t *sl = slots(reg);
    member_t *m = calloc((size_t)reg->nslots, sizeof *m);
    int32_t *tids = calloc((size_t)reg->nslots, sizeof *tids);
    if (m && tids) {
      for (int i = 0; i < reg->nslots; i++)
        if (atomic_load_explicit(&sl[i].state, memory_order_acquire) == 1) {
          for (int j = 0; j < local && !shared_tid; j++)
            shared_tid = tids[j] == sl[i].tid && m[j].pid == sl[i].pid;
          tids[local] = sl[i].tid;
          m[local++] = (member_t){sl[i].parent_rank, sl[i].split_key, sl[i].world_rank, sl[i].pid};
        }
      /* Creation by init: slot = rank. Split: NCCL's order (key, parent rank).
       * Shrink: parent order (key 0). */
      if (local == n) {
        qsort(m, (size_t)local, sizeof *m, by_key);
        for (int i = 0; i < n; i++) sc->g.ranks[i] = m[i].wr;
        /* Their pids, for the CPU group's liveness while it forms. */
        if ((sc->member_pids = malloc((size_t)n * sizeof *sc->member_pids)))
          for (int i = 0; i < n; i++) sc->member_pids[i] = m[i].pid;
      } else if (first && local > 0 && (here = malloc((size_t)local * sizeof *here))) {
        /* the job spans hosts: its ranks here (init: slot = rank) */
        for (int i = 0; i < local; i++) here[i] = m[i].pr;
        n_here = local;
      }
    }
    free(m);
    free(tids);
    reg_done(reg);
  }
  /* Every member reads the same slots, so all decide alike. A CPU group
   * would wait at creation for ranks this thread adopts after this one
   * (nccl-tests -g N, ncclCommInitRank of several ranks in one group). */
  if (shared_tid) {
    sc->one_process = true;
    static _Atomic int said;
    if (!atomic_exchange(&said, 1))
      GC_INFO("communicator %p: one thread made several of its ranks; it has no CPU group",
              (void *)comm);
  }
  /* The name: commName, a rule, <parent>/<colour>, "comm". */
  const char *base = NULL;
  char buf[GC_NAME_MAX];
  bool ranks_known = true;
  for (int i = 0; i < n; i++) ranks_known &= sc->g.ranks[i] >= 0;
  if (sc->name_hint[0]) {
    base = sc->name_hint;
    sc->g.source = GC_SOURCE_COMMNAME;
  } else if (ranks_known && (base = rule_for(sc->g.ranks, n))) {
    sc->g.source = GC_SOURCE_RULE;
  } else if (sc->parent_name) {
    if (sc->color >= 0)
      snprintf(buf, sizeof buf, "%.100s/%d", sc->parent_name, sc->color);
    else
      snprintf(buf, sizeof buf, "%.100s/shrink", sc->parent_name);
    base = buf;
    sc->g.source = GC_SOURCE_SPLIT;
  } else {
    base = "comm";
    sc->g.source = GC_SOURCE_DEFAULT;
  }
  snprintf(sc->g.base, sizeof sc->g.base, "%s", base);
  if (gc_registry_add(base, &sc->g, sc->g.name) != GC_OK) {
    GC_INFO("communicator %p: %s", (void *)comm, gc_last_error());
    free(here);
    return false;
  }
  /* The CPU group: complete when every member is on this host. */
  *cpu = reg && local == n && n > 1 && !sc->one_process;
  if (!*cpu && n > 1 && !sc->one_process) {
    static _Atomic int said;
    if (!atomic_exchange(&said, 1))
      GC_INFO(
          "group %s: %d of its %d ranks are on this host%s; it has no CPU group "
          "(barriers, GCSHIM_CHECK and merged reports are unavailable for it)",
          sc->g.name, local, n, reg ? "" : " or unknown");
  }
  gc_stats_group_info_t info;
  group_info(sc, &info);
  if (gc_stats_group_add(&info, &sc->stats_id) != GC_OK) sc->stats_id = -1;
  sc->g.stats = sc;
  if (first) {
    gc_log_set_rank(me);
    gc_report_job_open(sc->key, me, n, gc_nccl_version());
    if (here) gc_report_job_local(here, n_here);
  } else if (sc->is_job) {
    gc_report_job_also(me);
  }
  free(here);
  return true;
}

/* Adopts sc once (several threads may poll a non-blocking comm). The CPU
 * group is made outside adopt_lock: it waits for the other members, which
 * may be threads of this process adopting the same communicator. */
static void adopt(gc_shim_comm_t *sc) {
  int expect = GC_SHIM_PENDING;
  if (!atomic_compare_exchange_strong(&sc->state, &expect, GC_SHIM_ADOPTING)) return;
  bool cpu = false, retry = false;
  pthread_mutex_lock(&adopt_lock);
  bool ok = adopt_locked(sc, &cpu, &retry);
  pthread_mutex_unlock(&adopt_lock);
  if (retry) {
    atomic_store_explicit(&sc->state, GC_SHIM_PENDING, memory_order_release);
    return;
  }
  if (ok && cpu) {
    char ckey[560];
    snprintf(ckey, sizeof ckey, "%s/cpu", sc->key);
    gc_cpu_group_t *g = NULL;
    /* The members' registered pids: one that dies between NCCL's init and
     * its attach is seen dead at once, not at the timeout. */
    if (gc_cpu_shm_create_expect(ckey, sc->g.rank_in_group, sc->g.size, gc_env_timeout(),
                                 sc->member_pids, &g) != GC_OK) {
      GC_WARN("group %s: no CPU group: %s", sc->g.name, gc_last_error());
      g = NULL;
    }
    sc->g.cpu = g;
  } else if (ok && sc->g.size > 1 && !sc->one_process) {
    /* Ranks on other hosts (or unknown): the control operations run on the
     * communicator itself. Not for ncclCommInitAll's communicators, whose
     * ranks are all threads of this process (each call would wait for the
     * others on one thread). */
    gc_cpu_group_t *g = NULL;
    if (gc_shim_commcpu_create(sc->comm, sc->g.rank_in_group, sc->g.size, gc_env_timeout(), &g) !=
        GC_OK) {
      GC_WARN("group %s: no CPU group: %s", sc->g.name, gc_last_error());
      g = NULL;
    }
    sc->g.cpu = g;
  }
  gc_shim_reg_t *reg = sc->reg;
  sc->reg = NULL;
  reg_free(reg);
  atomic_store_explicit(&sc->state, ok ? GC_SHIM_ADOPTED : GC_SHIM_FAILED, memory_order_release);
  if (ok)
    GC_INFO("adopted communicator %p as %s (rank %d of %d, source %s, %s)", (void *)sc->comm,
            sc->g.name, sc->g.rank_in_group, sc->g.size, gc_group_source_name(sc->g.source),
            !sc->g.cpu                              ? "no CPU group"
            : !strcmp(sc->g.cpu->ops->name, "comm") ? "CPU group on the communicator"
                                                    : "shm CPU group");
}

static gc_shim_comm_t *new_comm(ncclComm_t comm, const char *key, gc_shim_reg_t *reg) {
  gc_shim_comm_t *sc = calloc(1, sizeof *sc);
  if (!sc) return NULL;
  sc->comm = comm;
  sc->stats_id = -1;
  sc->color = -3;
  snprintf(sc->key, sizeof sc->key, "%s", key);
  sc->reg = reg;
  return sc;
}

/* color: the split's colour, -2 for a shrink, else -3, or GC_SHIM_INIT_ALL.
 * name_hint: config.commName (copied at the call), or NULL. */
#define GC_SHIM_INIT_ALL (-4)
static void created_one(ncclComm_t comm, const char *key, gc_shim_reg_t *reg, int result,
                        const char *name_hint, gc_shim_comm_t *parent, int color) {
  if (!comm || (result != ncclSuccess && result != ncclInProgress)) {
    reg_free(reg);
    return;
  }
  gc_shim_comm_t *sc = new_comm(comm, key, reg);
  if (!sc) {
    reg_free(reg);
    return;
  }
  if (name_hint && *name_hint) snprintf(sc->name_hint, sizeof sc->name_hint, "%s", name_hint);
  if (parent) {
    sc->parent_name = strdup(parent->g.name);
    sc->color = color;
  }
  sc->one_process = color == GC_SHIM_INIT_ALL;
  if (!map_put(comm, sc)) {
    reg_free(reg);
    free(sc);
    return;
  }
  if (result == ncclSuccess) adopt(sc);
}

/* ---- creations NCCL has not carried out when their call returns ------------------ */

/* Inside the application's ncclGroupStart/End, NCCL only queues an init or
 * a split: the communicator exists at the outermost ncclGroupEnd (before it,
 * ncclCommCount answers 0 with ncclSuccess), and a split's *newcomm is
 * written only then. A non-blocking split writes *newcomm from NCCL's
 * thread when it is done, which its parent's ncclCommGetAsyncError tells.
 * (docs/NCCL_FACTS.md C1-C6.) Such creations wait here, with everything
 * taken from the call's arguments copied, until then. */
typedef struct later {
  struct later *next;
  ncclComm_t *newcomm; /* the application's variable, where NCCL writes the comm */
  gc_shim_comm_t *parent;
  gc_shim_reg_t *reg;
  int color;
  char key[512];
  char name[GC_NAME_MAX];
} later_t;

/* This thread's open group, in call order. */
static _Thread_local later_t *in_group, *in_group_last;
/* Non-blocking splits whose *newcomm NCCL has not written yet. */
static later_t *unwritten;
static _Atomic int n_unwritten;
static pthread_mutex_t later_lock = PTHREAD_MUTEX_INITIALIZER;

static void later_add(ncclComm_t *newcomm, const char *key, gc_shim_reg_t *reg,
                      const ncclConfig_t *cfg, gc_shim_comm_t *parent, int color) {
  later_t *l = calloc(1, sizeof *l);
  if (!l) {
    GC_INFO("no memory to follow a communicator created inside a group; not observed");
    reg_free(reg);
    return;
  }
  l->newcomm = newcomm;
  l->parent = parent;
  l->reg = reg;
  l->color = color;
  snprintf(l->key, sizeof l->key, "%s", key);
  const char *cn = config_name(cfg);
  if (cn) snprintf(l->name, sizeof l->name, "%s", cn);
  if (gc_shim_in_group()) {
    gc_shim_tls.group_pending = true;
    if (in_group_last)
      in_group_last->next = l;
    else
      in_group = l;
    in_group_last = l;
    return;
  }
  pthread_mutex_lock(&later_lock);
  l->next = unwritten;
  unwritten = l;
  atomic_fetch_add(&n_unwritten, 1);
  pthread_mutex_unlock(&later_lock);
}

/* The communicator NCCL wrote for l, or NULL. */
static ncclComm_t later_comm(const later_t *l) {
  return __atomic_load_n(l->newcomm, __ATOMIC_ACQUIRE);
}

static void later_done(later_t *l, int result) {
  bool ok = result == ncclSuccess || result == ncclInProgress;
  created_one(ok ? later_comm(l) : NULL, l->key, l->reg, result, l->name, l->parent, l->color);
  free(l);
}

void gc_shim_group_ended(int result) {
  later_t *l = in_group;
  in_group = in_group_last = NULL;
  while (l) {
    later_t *next = l->next;
    l->next = NULL;
    if (result == ncclInProgress && !later_comm(l)) { /* a non-blocking split, still running */
      pthread_mutex_lock(&later_lock);
      l->next = unwritten;
      unwritten = l;
      atomic_fetch_add(&n_unwritten, 1);
      pthread_mutex_unlock(&later_lock);
    } else {
      later_done(l, result); /* an error drops them: NCCL made no communicator */
    }
    l = next;
  }
}

void gc_shim_parent_polled(ncclComm_t parent, ncclResult_t state) {
  if (!atomic_load_explicit(&n_unwritten, memory_order_relaxed) || state == ncclInProgress) return;
  gc_shim_comm_t *p = gc_shim_lookup(parent);
  if (!p) return;
  later_t *done = NULL;
  pthread_mutex_lock(&later_lock);
  for (later_t **pl = &unwritten; *pl;) {
    later_t *l = *pl;
    if (l->parent != p) {
      pl = &l->next;
      continue;
    }
    *pl = l->next;
    atomic_fetch_sub(&n_unwritten, 1);
    l->next = done;
    done = l;
  }
  pthread_mutex_unlock(&later_lock);
  /* The parent's work is over: each child is written now, or never will be. */
  while (done) {
    later_t *next = done->next;
    later_done(done, state == ncclSuccess ? ncclInProgress : state);
    done = next;
  }
}

void gc_shim_created(gc_nccl_id_t id, gc_shim_call_t *c, int result) {
  bool ok = result == ncclSuccess || result == ncclInProgress;
  switch (id) {
    case GC_NCCL_ID_CommInitRank:
    case GC_NCCL_ID_CommInitRankConfig:
    case GC_NCCL_ID_CommInitRankScalable: {
      char key[512];
      if (!c->uid || !c->newcomm || !ok) {
        reg_free(c->reg);
        return;
      }
      uid_key(c->uid, key, sizeof key);
      if (gc_shim_in_group()) {
        later_add(c->newcomm, key, c->reg, c->config, NULL, -3);
        return;
      }
      const char *cn = config_name(c->config);
      created_one(*c->newcomm, key, c->reg, result, cn, NULL, -3);
      return;
    }
    case GC_NCCL_ID_CommSplit:
    case GC_NCCL_ID_CommShrink: {
      gc_shim_comm_t *p = gc_shim_lookup(c->comm);
      if (!c->reg || !p || !c->newcomm || !ok) {
        reg_free(c->reg);
        return;
      }
      int color = id == GC_NCCL_ID_CommSplit ? c->color : -2;
      if (gc_shim_in_group() || !*c->newcomm) {
        later_add(c->newcomm, c->reg->key, c->reg, c->config, p, color);
        return;
      }
      created_one(*c->newcomm, c->reg->key, c->reg, result, config_name(c->config), p, color);
      return;
    }
    case GC_NCCL_ID_CommInitAll: {
      if (result != ncclSuccess || !c->newcomm) return;
      pthread_mutex_lock(&adopt_lock);
      uint64_t seq = initall_seq++;
      pthread_mutex_unlock(&adopt_lock);
      char key[512];
      /* Every rank is in this process: no other process can join its CPU group. */
      snprintf(key, sizeof key, "all-%d-%llu", (int)getpid(), (unsigned long long)seq);
      for (int i = 0; i < c->nranks; i++)
        created_one(c->newcomm[i], key, NULL, result, NULL, NULL, GC_SHIM_INIT_ALL);
      return;
    }
    default:
      return;
  }
}

void gc_shim_adopt_pending(gc_shim_comm_t *sc) { adopt(sc); }

void gc_shim_release(ncclComm_t comm, gc_nccl_id_t id) {
  gc_shim_comm_t *sc = gc_shim_lookup(comm);
  if (!sc) return;
  bool final = id != GC_NCCL_ID_CommFinalize;
  if (final)
    gc_shim_parent_polled(comm, ncclInvalidUsage); /* its unwritten splits: none will come */
  /* The job's communicator goes: the report of everything so far, once (of
   * Finalize, Destroy, Abort, the first). Not the last: at exit it is written
   * again with the calls made after this one. */
  if (sc->is_job && (gc_report_enabled() || gc_trace_on()) &&
      !atomic_exchange(&sc->report_flushed, true))
    gc_report_flush(false, id != GC_NCCL_ID_CommAbort);
  if (!final) return;
  pthread_mutex_lock(&adopt_lock);
  map_clear(comm);
  if (atomic_load(&sc->state) == GC_SHIM_ADOPTED) {
    gc_registry_retire(sc->g.name);
    sc->g.destroyed = true;
    /* An abort may come from another thread (a watchdog) while this group's
     * CPU group is in use: its mapping is left behind (the segment itself
     * was unlinked once every member attached). */
    if (sc->g.cpu && id != GC_NCCL_ID_CommAbort) gc_cpu_destroy(sc->g.cpu);
    if (id != GC_NCCL_ID_CommAbort) sc->g.cpu = NULL;
  }
  gc_shim_reg_t *reg = NULL;
  if (atomic_load(&sc->state) == GC_SHIM_PENDING) { /* never adopted: its registration goes */
    reg = sc->reg;
    sc->reg = NULL;
  }
  pthread_mutex_unlock(&adopt_lock);
  reg_free(reg);
  /* sc stays allocated: gcshim_comm_group() pointers handed out stay valid. */
}
