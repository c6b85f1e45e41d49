/* registry.c - unique group names and O(1) lookup by name. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "core/group.h"

typedef struct {
  char name[GC_NAME_MAX];
  void *obj;  /* NULL once retired */
  void *gone; /* what obj was: a destroyed group's struct stays reachable (group.c) */
  uint64_t hash;
} entry_t;

typedef struct {
  char base[GC_NAME_MAX];
  int next;
} base_t;

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static entry_t **entries; /* creation order */
static size_t n_entries, cap_entries;
static entry_t **table; /* open addressing, power-of-two size */
static size_t table_cap;
static base_t *bases;
static size_t n_bases, cap_bases;

static entry_t *find_locked(const char *name, uint64_t h) {
  if (!table_cap) return NULL;
  for (size_t i = h & (table_cap - 1);; i = (i + 1) & (table_cap - 1)) {
    entry_t *e = table[i];
    if (!e) return NULL;
    if (e->hash == h && !strcmp(e->name, name)) return e;
  }
}

static gc_status_t table_insert_locked(entry_t *e) {
  if ((n_entries + 1) * 2 > table_cap) { /* keep load <= 1/2 */
    size_t ncap = table_cap ? table_cap * 2 : 64;
    entry_t **nt = calloc(ncap, sizeof *nt);
    if (!nt) return gc_error(GC_ERR_NO_MEMORY, "registry: no memory for %zu slots", ncap);
    for (size_t k = 0; k < n_entries; k++) {
      size_t i = entries[k]->hash & (ncap - 1);
      while (nt[i]) i = (i + 1) & (ncap - 1);
      nt[i] = entries[k];
    }
    free(table);
    table = nt;
    table_cap = ncap;
  }
  if (n_entries == cap_entries) {
    size_t ncap = cap_entries ? cap_entries * 2 : 32;
    entry_t **ne = realloc(entries, ncap * sizeof *ne);
    if (!ne) return gc_error(GC_ERR_NO_MEMORY, "registry: no memory for %zu entries", ncap);
    entries = ne;
    cap_entries = ncap;
  }
  size_t i = e->hash & (table_cap - 1);
  while (table[i]) i = (i + 1) & (table_cap - 1);
  table[i] = e;
  entries[n_entries++] = e;
  return GC_OK;
}

static base_t *base_locked(const char *base) {
  for (size_t i = 0; i < n_bases; i++)
    if (!strcmp(bases[i].base, base)) return &bases[i];
  if (n_bases == cap_bases) {
    size_t ncap = cap_bases ? cap_bases * 2 : 16;
    base_t *nb = realloc(bases, ncap * sizeof *nb);
    if (!nb) return NULL;
    bases = nb;
    cap_bases = ncap;
  }
  base_t *b = &bases[n_bases++];
  snprintf(b->base, sizeof b->base, "%s", base);
  b->next = 0;
  return b;
}

gc_status_t gc_registry_add(const char *base, void *obj, char *name_out) {
  if (!obj || !name_out) return gc_error(GC_ERR_INVALID_ARG, "registry: NULL object or name");
  if (!base) base = "anonymous";
  if (!*base) return gc_error(GC_ERR_INVALID_ARG, "group name is empty");
  if (strlen(base) > GC_NAME_MAX - 16)
    return gc_error(GC_ERR_INVALID_ARG, "group name '%.32s...' is longer than %d bytes", base,
                    GC_NAME_MAX - 16);
  entry_t *e = calloc(1, sizeof *e);
  if (!e) return gc_error(GC_ERR_NO_MEMORY, "registry: no memory");
  gc_status_t s = GC_OK;
  pthread_rwlock_wrlock(&lock);
  base_t *b = base_locked(base);
  if (!b) {
    s = gc_error(GC_ERR_NO_MEMORY, "registry: no memory for base names");
    goto out;
  }
  /* A name already taken (a base that itself looks like "x:0") is skipped. */
  do {
    snprintf(e->name, sizeof e->name, "%s:%d", base, b->next++);
    e->hash = gc_fnv_str(GC_FNV_INIT, e->name);
  } while (find_locked(e->name, e->hash));
  e->obj = obj;
  s = table_insert_locked(e);
  if (s == GC_OK) memcpy(name_out, e->name, GC_NAME_MAX);
out:
  pthread_rwlock_unlock(&lock);
  if (s != GC_OK) free(e);
  return s;
}

gc_status_t gc_registry_lookup(const char *name, void **out) {
  if (!name || !out) return gc_error(GC_ERR_INVALID_ARG, "group lookup: name or out is NULL");
  uint64_t h = gc_fnv_str(GC_FNV_INIT, name);
  pthread_rwlock_rdlock(&lock);
  entry_t *e = find_locked(name, h);
  void *obj = e ? e->obj : NULL;
  pthread_rwlock_unlock(&lock);
  if (!e) return gc_error(GC_ERR_NOT_FOUND, "no group is named '%s'", name);
  if (!obj) return gc_error(GC_ERR_STATE, "group '%s' was destroyed", name);
  *out = obj;
  return GC_OK;
}

gc_status_t gc_registry_retire(const char *name) {
  if (!name) return gc_error(GC_ERR_INVALID_ARG, "registry: name is NULL");
  uint64_t h = gc_fnv_str(GC_FNV_INIT, name);
  pthread_rwlock_wrlock(&lock);
  entry_t *e = find_locked(name, h);
  gc_status_t s = GC_OK;
  if (!e)
    s = gc_error(GC_ERR_NOT_FOUND, "no group is named '%s'", name);
  else if (!e->obj)
    s = gc_error(GC_ERR_STATE, "group '%s' was already destroyed", name);
  else
    e->gone = e->obj, e->obj = NULL;
  pthread_rwlock_unlock(&lock);
  return s;
}

void gc_registry_foreach(void (*fn)(void *obj, void *arg), void *arg) {
  /* Snapshot under the lock, call outside it: fn may retire groups. */
  pthread_rwlock_rdlock(&lock);
  size_t n = n_entries;
  void **objs = n ? malloc(n * sizeof *objs) : NULL;
  size_t k = 0;
  if (objs)
    for (size_t i = 0; i < n; i++)
      if (entries[i]->obj) objs[k++] = entries[i]->obj;
  pthread_rwlock_unlock(&lock);
  for (size_t i = 0; i < k; i++) fn(objs[i], arg);
  free(objs);
}

void gc_registry_reset(void (*release)(void *gone)) {
  pthread_rwlock_wrlock(&lock);
  for (size_t i = 0; i < n_entries; i++) {
    if (release && entries[i]->gone) release(entries[i]->gone);
    free(entries[i]);
  }
  free(entries);
  free(table);
  free(bases);
  entries = NULL;
  table = NULL;
  bases = NULL;
  n_entries = cap_entries = table_cap = n_bases = cap_bases = 0;
  pthread_rwlock_unlock(&lock);
}

/* Two encodings, as nccl.h's NCCL_VERSION: 2.8.4 is 2804, 2.28.9 is 22809. */
const char *gc_nccl_version_string(int code, char *buf, size_t len) {
  if (code >= 10000)
    snprintf(buf, len, "%d.%d.%d", code / 10000, code % 10000 / 100, code % 100);
  else if (code > 0)
    snprintf(buf, len, "%d.%d.%d", code / 1000, code % 1000 / 100, code % 100);
  else
    snprintf(buf, len, "unknown");
  return buf;
}

/* API.md's "source" values, by gc_group_source_t. */
const char *gc_group_source_name(gc_group_source_t s) {
  static const char *const names[] = {"api", "commName", "rule", "split", "default"};
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "default";
}
