/* nccl.c - resolution of the real NCCL and the table of its entry points. */
#include "config.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/params.h"
#include "nccl/gc_nccl.h"

_Static_assert(sizeof(((gc_nccl_table_t *)0)->fn) == sizeof(((gc_nccl_table_t *)0)->any),
               "every entry of the table is one function pointer");

const gc_nccl_api_info_t gc_nccl_api[GC_NCCL_API_COUNT] = {
#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor)         \
  [GC_NCCL_ID_##name] = {"pnccl" #name + 1, "pnccl" #name, GC_NCCL_CAT_##cat, \
                         GC_NCCL_VERSION_CODE(major, minor, 0)},
#include "nccl/nccl_api.def"
};

gc_nccl_table_t gc_nccl_real;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* Set on the thread running the resolution: a call that comes back into
 * gc_nccl_load() from there (NCCL's own start-up through a wrapper) must
 * not wait on its own pthread_once. */
static _Thread_local bool loading;
static gc_status_t load_status;
static char load_message[512];
static char lib_path[PATH_MAX];
static const char *lib_source = "";
static int lib_version;

const char *gc_nccl_cat_name(gc_nccl_cat_t c) {
  static const char *const names[GC_NCCL_CAT_COUNT] = {"init", "comm",  "query", "coll",
                                                       "p2p",  "group", "mem",   "redop"};
  return (unsigned)c < GC_NCCL_CAT_COUNT ? names[c] : "?";
}

static void load_fail(gc_status_t s, const char *fmt, ...) GC_PRINTF(2, 3);
static void load_fail(gc_status_t s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(load_message, sizeof load_message, fmt, ap);
  va_end(ap);
  load_status = s;
}

/* True when p lies in the object that holds this code: resolving to
 * ourselves (GCSHIM_NCCL_LIBRARY naming libgcshim.so, or a weak ncclX that
 * is our own wrapper) would make every wrapper call itself. */
static bool in_own_object(void *p) {
  Dl_info self, other;
  if (!dladdr((void *)&gc_nccl_load, &self) || !dladdr(p, &other)) return false;
  return self.dli_fbase == other.dli_fbase;
}

static void *lookup(void *handle, const char *name) {
  void *p = dlsym(handle, name);
  return p && !in_own_object(p) ? p : NULL;
}

/* Fills the table from handle (a dlopen handle or RTLD_NEXT). Returns the
 * number of entry points found. */
static int fill_table(void *handle) {
  int found = 0;
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) {
    void *p = lookup(handle, gc_nccl_api[i].pname);
    if (!p) p = lookup(handle, gc_nccl_api[i].name);
    /* POSIX guarantees a data pointer from dlsym converts to a function pointer. */
    memcpy(&gc_nccl_real.any[i], &p, sizeof p);
    if (p) found++;
  }
  return found;
}

static void note_library(const char *fallback) {
  Dl_info info;
  void *p = NULL;
  for (int i = 0; i < GC_NCCL_API_COUNT && !p; i++) memcpy(&p, &gc_nccl_real.any[i], sizeof p);
  if (p && dladdr(p, &info) && info.dli_fname && info.dli_fname[0])
    snprintf(lib_path, sizeof lib_path, "%s", info.dli_fname);
  else
    snprintf(lib_path, sizeof lib_path, "%s", fallback);
}

static void resolve(void) {
  const char *env = gc_param_GCSHIM_NCCL_LIBRARY();
  void *handle = NULL;
  int found = 0;
  loading = true;
  if (env) {
    handle = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      load_fail(GC_ERR_NOT_FOUND, "GCSHIM_NCCL_LIBRARY=%s cannot be opened: %s", env, dlerror());
      goto out;
    }
    lib_source = "GCSHIM_NCCL_LIBRARY";
    found = fill_table(handle);
    note_library(env);
    if (!found) {
      load_fail(GC_ERR_NOT_FOUND, "GCSHIM_NCCL_LIBRARY=%s exports no NCCL entry point", env);
      goto out;
    }
  } else if ((found = fill_table(RTLD_NEXT)) > 0) {
    lib_source = "RTLD_NEXT";
    note_library("(next object)");
  } else {
    handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD);
    lib_source = "RTLD_NOLOAD";
    if (!handle) {
      handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
      lib_source = "dlopen";
    }
    if (!handle) {
      lib_source = "";
      load_fail(GC_ERR_NOT_FOUND,
                "libnccl.so.2 not found: %s (set GCSHIM_NCCL_LIBRARY to the path of NCCL)",
                dlerror());
      goto out;
    }
    found = fill_table(handle);
    note_library("libnccl.so.2");
    if (!found) {
      load_fail(GC_ERR_NOT_FOUND, "%s exports no NCCL entry point", lib_path);
      goto out;
    }
  }
  if (gc_nccl_real.fn.GetVersion && gc_nccl_real.fn.GetVersion(&lib_version) != ncclSuccess)
    lib_version = 0;
  char v[32];
  gc_nccl_version_string(lib_version, v, sizeof v);
  GC_INFO("NCCL %s from %s (%s), %d of %d entry points", v, lib_path, lib_source, found,
          GC_NCCL_API_COUNT);
  if (found < GC_NCCL_API_COUNT)
    GC_INFO("%s (NCCL %s) lacks %d entry points; they answer unsupported", lib_path, v,
            GC_NCCL_API_COUNT - found);
  load_status = GC_OK;
out:
  loading = false;
  atomic_store_explicit(&GC_NCCL_STATE, load_status == GC_OK ? 1 : -1, memory_order_release);
}

gc_status_t gc_nccl_load(void) {
  int st = atomic_load_explicit(&GC_NCCL_STATE, memory_order_acquire);
  if (st == 1) return GC_OK;
  if (loading)
    return gc_error(GC_ERR_STATE, "the real NCCL was requested while it is being resolved");
  pthread_once(&load_once, resolve);
  if (atomic_load_explicit(&GC_NCCL_STATE, memory_order_acquire) == 1) return GC_OK;
  return gc_error(load_status, "%s", load_message);
}

gc_status_t gc_nccl_require(gc_nccl_id_t id) {
  if ((unsigned)id >= GC_NCCL_API_COUNT)
    return gc_error(GC_ERR_INVALID_ARG, "nccl entry point id %d out of range [0, %d)", (int)id,
                    GC_NCCL_API_COUNT);
  GC_CHECK(gc_nccl_ready());
  if (GC_LIKELY(gc_nccl_real.any[id] != NULL)) return GC_OK;
  char have[32], need[32];
  return gc_error(GC_ERR_UNSUPPORTED, "%s is not in %s (NCCL %s; it appeared in NCCL %s)",
                  gc_nccl_api[id].name, lib_path,
                  gc_nccl_version_string(lib_version, have, sizeof have),
                  gc_nccl_version_string(gc_nccl_api[id].version, need, sizeof need));
}

int gc_nccl_version(void) { return gc_nccl_ready() == GC_OK ? lib_version : 0; }

const char *gc_nccl_library(void) { return gc_nccl_ready() == GC_OK ? lib_path : ""; }

const char *gc_nccl_source(void) { return gc_nccl_ready() == GC_OK ? lib_source : ""; }
