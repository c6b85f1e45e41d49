/*
 * test_nccl_api.c - src/nccl: the entry points of nccl_api.def against the
 * real NCCL (GC_REAL_NCCL, /usr/local/cuda/lib/libnccl.so.2 by default), a
 * fake NCCL that lacks most of them, the resolution order, and the CUDA
 * driver layer on whatever machine runs it (no driver: GC_ERR_CUDA).
 *
 * Every test runs in its own process (CK_FORK): the resolution happens once
 * per process. When the real NCCL is absent its tests are left out and,
 * if everything else passed, the program exits 77 (skipped).
 */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nccl/gc_cuda.h"
#include "nccl/gc_nccl.h"

#ifndef GC_FAKE_NCCL_PATH
#error "GC_FAKE_NCCL_PATH must name the fake NCCL built by tests/unit/nccl.am"
#endif

static const char *real_nccl(void) {
  const char *p = getenv("GC_REAL_NCCL");
  return p && p[0] ? p : "/usr/local/cuda/lib/libnccl.so.2";
}

static void use_library(const char *path) {
  if (path)
    ck_assert_int_eq(setenv("GCSHIM_NCCL_LIBRARY", path, 1), 0);
  else
    ck_assert_int_eq(unsetenv("GCSHIM_NCCL_LIBRARY"), 0);
}

static const char *symbol_of(void (*fn)(void), Dl_info *info) {
  void *p;
  memcpy(&p, &fn, sizeof p);
  ck_assert_msg(dladdr(p, info) != 0, "dladdr failed");
  return info->dli_sname ? info->dli_sname : "";
}

/* ---- the table itself (no library needed) ------------------------------ */

START_TEST(test_ids_names_consistent) {
  ck_assert_int_ge(GC_NCCL_API_COUNT, 41);
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) {
    const gc_nccl_api_info_t *a = &gc_nccl_api[i];
    ck_assert_ptr_nonnull(a->name);
    ck_assert_str_eq(a->name, a->pname + 1);
    ck_assert_int_eq(strncmp(a->pname, "pnccl", 5), 0);
    ck_assert_int_gt((int)strlen(a->name), 4);
    ck_assert_int_lt((int)a->cat, GC_NCCL_CAT_COUNT);
    ck_assert_str_ne(gc_nccl_cat_name(a->cat), "?");
    ck_assert_int_ge(a->version, GC_NCCL_VERSION_CODE(2, 0, 0));
    ck_assert_int_le(a->version, GC_NCCL_VERSION_CODE(2, 28, 9));
    for (int j = 0; j < i; j++) ck_assert_str_ne(gc_nccl_api[j].name, a->name);
  }
  /* The enum and the table come from the same line. */
  ck_assert_str_eq(gc_nccl_api[GC_NCCL_ID_AllReduce].name, "ncclAllReduce");
  ck_assert_str_eq(gc_nccl_api[GC_NCCL_ID_CommShrink].name, "ncclCommShrink");
  ck_assert_int_eq(gc_nccl_api[GC_NCCL_ID_AlltoAll].cat, GC_NCCL_CAT_coll);
  ck_assert_int_eq(gc_nccl_api[GC_NCCL_ID_Send].cat, GC_NCCL_CAT_p2p);
  ck_assert_int_eq(gc_nccl_api[GC_NCCL_ID_CommRevoke].version, GC_NCCL_VERSION_CODE(2, 28, 0));
  ck_assert_str_eq(gc_nccl_cat_name(GC_NCCL_CAT_COUNT), "?");
  char v[32];
  ck_assert_str_eq(gc_nccl_version_string(22809, v, sizeof v), "2.28.9");
  ck_assert_str_eq(gc_nccl_version_string(2804, v, sizeof v), "2.8.4");
  ck_assert_int_eq(GC_NCCL_VERSION_CODE(2, 8, 4), 2804);
  ck_assert_int_eq(gc_nccl_require((gc_nccl_id_t)GC_NCCL_API_COUNT), GC_ERR_INVALID_ARG);
}
END_TEST

/* Every pnccl entry point declared by nccl.h is in the list, and no more. */
START_TEST(test_header_complete) {
  const char *path = "/usr/local/cuda/include/nccl.h";
  FILE *f = fopen(path, "r");
  if (!f) {
    printf("test_header_complete: %s absent, not compared\n", path);
    return;
  }
  static char text[1 << 20];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  int declared = 0;
  for (char *p = strstr(text, "pnccl"); p; p = strstr(p + 1, "pnccl")) {
    char name[128];
    int len = 0;
    while (len < 127 && (p[len] == '_' || (p[len] >= 'a' && p[len] <= 'z') ||
                         (p[len] >= 'A' && p[len] <= 'Z') || (p[len] >= '0' && p[len] <= '9')))
      len++;
    memcpy(name, p, len);
    name[len] = '\0';
    const char *q = p + len;
    while (*q == ' ') q++;
    if (*q != '(') continue;
    declared++;
    bool listed = false;
    for (int i = 0; i < GC_NCCL_API_COUNT && !listed; i++)
      listed = strcmp(gc_nccl_api[i].pname, name) == 0;
    ck_assert_msg(listed, "%s declared in %s is missing from nccl_api.def", name, path);
  }
  ck_assert_int_eq(declared, GC_NCCL_API_COUNT);
}
END_TEST

/* ---- the real NCCL ------------------------------------------------------ */

START_TEST(test_real_every_entry_resolves) {
  use_library(real_nccl());
  ck_assert_int_eq(gc_nccl_load(), GC_OK);
  ck_assert_str_eq(gc_nccl_source(), "GCSHIM_NCCL_LIBRARY");
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) {
    ck_assert_msg(gc_nccl_real.any[i] != NULL, "%s unresolved in %s", gc_nccl_api[i].name,
                  real_nccl());
    ck_assert_int_eq(gc_nccl_require((gc_nccl_id_t)i), GC_OK);
    /* The strong alias is preferred, and it comes from the named library
     * (NCCL's ncclX and pncclX share an address, so compare with dlsym). */
    void *p, *h = dlopen(real_nccl(), RTLD_NOW | RTLD_NOLOAD);
    ck_assert_ptr_nonnull(h);
    memcpy(&p, &gc_nccl_real.any[i], sizeof p);
    ck_assert_ptr_eq(p, dlsym(h, gc_nccl_api[i].pname));
    Dl_info info;
    symbol_of(gc_nccl_real.any[i], &info);
    ck_assert_ptr_nonnull(strstr(info.dli_fname, "libnccl"));
  }
  ck_assert_ptr_nonnull(strstr(gc_nccl_library(), "libnccl"));
}
END_TEST

START_TEST(test_real_version) {
  use_library(real_nccl());
  int v = gc_nccl_version();
  ck_assert_int_ge(v, GC_NCCL_VERSION_CODE(2, 28, 0));
  /* The same answer as asking the library directly. */
  void *h = dlopen(real_nccl(), RTLD_NOW | RTLD_NOLOAD);
  ck_assert_ptr_nonnull(h);
  ncclResult_t (*get)(int *);
  void *p = dlsym(h, gc_nccl_api[GC_NCCL_ID_GetVersion].name);
  ck_assert_ptr_nonnull(p);
  memcpy(&get, &p, sizeof p);
  int direct = 0;
  ck_assert_int_eq(get(&direct), ncclSuccess);
  ck_assert_int_eq(v, direct);
#ifdef NCCL_VERSION_CODE
  if (strcmp(real_nccl(), "/usr/local/cuda/lib/libnccl.so.2") == 0)
    ck_assert_int_eq(v, NCCL_VERSION_CODE);
#endif
  printf("test_real_version: %s is NCCL %d\n", real_nccl(), v);
}
END_TEST

START_TEST(test_real_calls) {
  use_library(real_nccl());
  ck_assert_int_eq(gc_nccl_load(), GC_OK);
  const char *s = gc_nccl_real.fn.GetErrorString(ncclInvalidUsage);
  ck_assert_ptr_nonnull(s);
  ck_assert_int_gt((int)strlen(s), 0);
  int v = 0;
  ck_assert_int_eq(gc_nccl_real.fn.GetVersion(&v), ncclSuccess);
  ck_assert_int_eq(v, gc_nccl_version());
}
END_TEST

/* NCCL already in the global scope (the program linked it): found through
 * RTLD_NEXT before any dlopen of our own. */
START_TEST(test_order_rtld_next) {
  use_library(NULL);
  void *h = dlopen(real_nccl(), RTLD_NOW | RTLD_GLOBAL);
  ck_assert_ptr_nonnull(h);
  ck_assert_int_eq(gc_nccl_load(), GC_OK);
  ck_assert_str_eq(gc_nccl_source(), "RTLD_NEXT");
  ck_assert_ptr_nonnull(gc_nccl_real.fn.AllReduce);
}
END_TEST

/* Loaded RTLD_LOCAL by someone else: invisible to RTLD_NEXT, found by
 * RTLD_NOLOAD (when that file is what "libnccl.so.2" names here). */
START_TEST(test_order_noload) {
  use_library(NULL);
  void *h = dlopen(real_nccl(), RTLD_NOW | RTLD_LOCAL);
  ck_assert_ptr_nonnull(h);
  gc_status_t s = gc_nccl_load();
  void *by_soname = dlopen("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD);
  if (by_soname) {
    ck_assert_int_eq(s, GC_OK);
    ck_assert_str_eq(gc_nccl_source(), "RTLD_NOLOAD");
  } else {
    printf("test_order_noload: libnccl.so.2 does not name %s here\n", real_nccl());
  }
}
END_TEST

/* ---- a fake, older NCCL ------------------------------------------------- */

START_TEST(test_fake_missing_unsupported) {
  use_library(GC_FAKE_NCCL_PATH);
  ck_assert_int_eq(gc_nccl_load(), GC_OK);
  ck_assert_int_eq(gc_nccl_version(), GC_NCCL_VERSION_CODE(2, 19, 5));
  int present = 0;
  for (int i = 0; i < GC_NCCL_API_COUNT; i++) present += gc_nccl_real.any[i] != NULL;
  ck_assert_int_eq(present, 4);
  Dl_info info;
  ck_assert_str_eq(symbol_of(gc_nccl_real.any[GC_NCCL_ID_AllReduce], &info),
                   gc_nccl_api[GC_NCCL_ID_AllReduce].pname);
  ck_assert_str_eq(info.dli_fname, GC_FAKE_NCCL_PATH);
  /* No strong alias exported: the weak name is taken. */
  ck_assert_str_eq(symbol_of(gc_nccl_real.any[GC_NCCL_ID_GetUniqueId], &info),
                   gc_nccl_api[GC_NCCL_ID_GetUniqueId].name);
  ck_assert_int_eq(gc_nccl_require(GC_NCCL_ID_AllReduce), GC_OK);
  ck_assert_int_eq(gc_nccl_real.fn.AllReduce(NULL, NULL, 0, ncclFloat, ncclSum, NULL, NULL),
                   ncclInvalidUsage);

  ck_assert_int_eq(gc_nccl_require(GC_NCCL_ID_CommShrink), GC_ERR_UNSUPPORTED);
  const char *msg = gc_last_error();
  ck_assert_msg(strstr(msg, "ncclCommShrink") && strstr(msg, GC_FAKE_NCCL_PATH) &&
                    strstr(msg, "2.19.5") && strstr(msg, "2.27.0"),
                "message: %s", msg);
  ck_assert_int_eq(gc_nccl_require(GC_NCCL_ID_AlltoAll), GC_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(gc_last_error(), "ncclAlltoAll"));
  ck_assert_ptr_null(gc_nccl_real.fn.CommRevoke);
}
END_TEST

START_TEST(test_library_missing) {
  char path[256];
  snprintf(path, sizeof path, "/nonexistent/gcshim-%d/libnccl.so.2", (int)getpid());
  use_library(path);
  for (int round = 0; round < 2; round++) {
    gc_error_clear();
    ck_assert_int_eq(gc_nccl_load(), GC_ERR_NOT_FOUND);
    ck_assert_msg(strstr(gc_last_error(), path) != NULL, "message: %s", gc_last_error());
    ck_assert_int_eq(gc_nccl_require(GC_NCCL_ID_AllReduce), GC_ERR_NOT_FOUND);
  }
  ck_assert_int_eq(gc_nccl_version(), 0);
  ck_assert_str_eq(gc_nccl_library(), "");
}
END_TEST

START_TEST(test_library_not_nccl) {
  use_library("libc.so.6");
  ck_assert_int_eq(gc_nccl_load(), GC_ERR_NOT_FOUND);
  ck_assert_msg(strstr(gc_last_error(), "exports no NCCL entry point") != NULL, "message: %s",
                gc_last_error());
}
END_TEST

/* ---- the CUDA driver layer ------------------------------------------------ */

START_TEST(test_cuda_without_or_with_driver) {
  void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  gc_status_t s = gc_cuda_load();
  if (!drv) {
    ck_assert_int_eq(s, GC_ERR_CUDA);
    ck_assert_msg(strncmp(gc_last_error(), "libcuda.so.1 not found: ", 24) == 0, "message: %s",
                  gc_last_error());
    /* Everything answers the same error and leaves its outputs alone. */
    void *ev = (void *)0x1;
    ck_assert_int_eq(gc_cuda_event_create(true, &ev), GC_ERR_CUDA);
    ck_assert_ptr_eq(ev, (void *)0x1);
    gc_cuda_capture_t st = (gc_cuda_capture_t)7;
    ck_assert_int_eq(gc_cuda_capture_info(NULL, &st, NULL), GC_ERR_CUDA);
    ck_assert_int_eq((int)st, 7);
    bool cap = true;
    ck_assert_int_eq(gc_cuda_is_capturing(NULL, &cap), GC_ERR_CUDA);
    char buf[8];
    ck_assert_int_eq(gc_cuda_memcpy_async(buf, buf + 4, 4, NULL), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_memcpy2d_async(buf, 4, buf + 4, 4, 2, 1, NULL), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_memset_d8_async(buf, 0, 8, NULL), GC_ERR_CUDA);
    void *m = NULL;
    ck_assert_int_eq(gc_cuda_malloc_async(64, NULL, &m), GC_ERR_CUDA);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(gc_cuda_free_async(buf, NULL), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_stream_synchronize(NULL), GC_ERR_CUDA);
    int n = -5;
    ck_assert_int_eq(gc_cuda_device_count(&n), GC_ERR_CUDA);
    ck_assert_int_eq(n, -5);
    ck_assert_int_eq(gc_cuda_current_device(&n), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_set_device(0), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_driver_version(&n), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_event_record(NULL, NULL), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_event_synchronize(NULL), GC_ERR_CUDA);
    float ms;
    ck_assert_int_eq(gc_cuda_event_elapsed_ms(NULL, NULL, &ms), GC_ERR_CUDA);
    ck_assert_int_eq(gc_cuda_event_destroy(NULL), GC_ERR_CUDA);
    ck_assert_ptr_nonnull(strstr(gc_last_error(), "libcuda.so.1"));
    printf("test_cuda: no driver here: %s\n", gc_last_error());
    return;
  }
  if (s != GC_OK) {
    ck_assert_int_eq(s, GC_ERR_CUDA);
    ck_assert_ptr_nonnull(strstr(gc_last_error(), "cu"));
    printf("test_cuda: driver without a usable device: %s\n", gc_last_error());
    return;
  }
  int n = 0, v = 0;
  ck_assert_int_eq(gc_cuda_driver_version(&v), GC_OK);
  ck_assert_int_gt(v, 0);
  ck_assert_int_eq(gc_cuda_device_count(&n), GC_OK);
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(gc_cuda_set_device(0), GC_OK);
  int d = -1;
  ck_assert_int_eq(gc_cuda_current_device(&d), GC_OK);
  ck_assert_int_eq(d, 0);
  ck_assert_int_eq(gc_cuda_set_device(-1), GC_ERR_INVALID_ARG);
  gc_cuda_capture_t st = GC_CUDA_CAPTURE_ACTIVE;
  unsigned long long id = 99;
  ck_assert_int_eq(gc_cuda_capture_info(NULL, &st, &id), GC_OK);
  ck_assert_int_eq(st, GC_CUDA_CAPTURE_NONE);
  ck_assert_int_eq((int)id, 0);
  void *a = NULL, *b = NULL;
  ck_assert_int_eq(gc_cuda_malloc_async(4096, NULL, &a), GC_OK);
  ck_assert_int_eq(gc_cuda_malloc_async(4096, NULL, &b), GC_OK);
  ck_assert_int_eq(gc_cuda_memset_d8_async(a, 0x5a, 4096, NULL), GC_OK);
  ck_assert_int_eq(gc_cuda_memcpy2d_async(b, 64, a, 128, 32, 16, NULL), GC_OK);
  unsigned char host[4096];
  memset(host, 0, sizeof host);
  ck_assert_int_eq(gc_cuda_memcpy_async(host, b, 64, NULL), GC_OK);
  ck_assert_int_eq(gc_cuda_stream_synchronize(NULL), GC_OK);
  for (int i = 0; i < 32; i++) ck_assert_int_eq(host[i], 0x5a);
  void *e0, *e1;
  float ms = -1;
  ck_assert_int_eq(gc_cuda_event_create(true, &e0), GC_OK);
  ck_assert_int_eq(gc_cuda_event_create(true, &e1), GC_OK);
  ck_assert_int_eq(gc_cuda_event_record(e0, NULL), GC_OK);
  ck_assert_int_eq(gc_cuda_event_record(e1, NULL), GC_OK);
  ck_assert_int_eq(gc_cuda_event_synchronize(e1), GC_OK);
  ck_assert_int_eq(gc_cuda_event_elapsed_ms(e0, e1, &ms), GC_OK);
  ck_assert(ms >= 0);
  ck_assert_int_eq(gc_cuda_event_destroy(e0), GC_OK);
  ck_assert_int_eq(gc_cuda_event_destroy(e1), GC_OK);
  ck_assert_int_eq(gc_cuda_free_async(a, NULL), GC_OK);
  ck_assert_int_eq(gc_cuda_free_async(b, NULL), GC_OK);
  ck_assert_int_eq(gc_cuda_stream_synchronize(NULL), GC_OK);
}
END_TEST

int main(void) {
  alarm(120);
  bool have_real = access(real_nccl(), R_OK) == 0;
  Suite *nccl = suite_create("nccl");
  TCase *tc = tcase_create("table");
  tcase_add_test(tc, test_ids_names_consistent);
  tcase_add_test(tc, test_header_complete);
  tcase_add_test(tc, test_fake_missing_unsupported);
  tcase_add_test(tc, test_library_missing);
  tcase_add_test(tc, test_library_not_nccl);
  suite_add_tcase(nccl, tc);
  if (have_real) {
    TCase *real = tcase_create("real");
    tcase_set_timeout(real, 60);
    tcase_add_test(real, test_real_every_entry_resolves);
    tcase_add_test(real, test_real_version);
    tcase_add_test(real, test_real_calls);
    tcase_add_test(real, test_order_rtld_next);
    tcase_add_test(real, test_order_noload);
    suite_add_tcase(nccl, real);
  }
  Suite *cuda = suite_create("cuda");
  TCase *tcu = tcase_create("driver");
  tcase_set_timeout(tcu, 60);
  tcase_add_test(tcu, test_cuda_without_or_with_driver);
  suite_add_tcase(cuda, tcu);

  SRunner *sr = srunner_create(nccl);
  srunner_add_suite(sr, cuda);
  srunner_set_fork_status(sr, CK_FORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (failed) return EXIT_FAILURE;
  if (!have_real) {
    printf("skipped: %s absent (set GC_REAL_NCCL); the other tests passed\n", real_nccl());
    return 77;
  }
  return EXIT_SUCCESS;
}
