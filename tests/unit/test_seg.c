/* test_seg.c - Check suite for src/core/seg.c: the one helper for every
 * /dev/shm segment (exclusive create, owner/mode/size checks, symlinks,
 * space reserved, the sweep). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "core/seg.h"

static char NAME[64], PATH[96];

static void setup(void) {
  static int n;
  snprintf(NAME, sizeof NAME, "/gcs-tseg%d-%d", (int)getpid(), n++);
  snprintf(PATH, sizeof PATH, "/dev/shm%s", NAME);
  unlink(PATH);
  gc_seg_set_hooks(NULL);
}
static void teardown(void) {
  unlink(PATH);
  gc_seg_set_hooks(NULL);
}

static void init_fill(void *base, size_t bytes, void *arg) {
  (void)arg;
  memset((char *)base + 64, 0x5a, bytes - 64);
}

START_TEST(exclusive_create) {
  mode_t old = umask(0777); /* the helper sets 0600 whatever the umask */
  gc_seg_t a, b;
  gc_seg_opts_t o = {.what = "t", .bytes = 8192, .init = init_fill};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &o, &a), GC_OK);
  umask(old);
  ck_assert(a.created);
  struct stat st;
  ck_assert_int_eq(stat(PATH, &st), 0);
  ck_assert_uint_eq(st.st_mode & 0777, 0600);
  ck_assert_int_eq((int)st.st_size, 8192);
  const gc_seg_hdr_t *h = a.base;
  ck_assert(h->magic == GC_SEG_MAGIC);
  ck_assert_int_eq(h->pid, (int)getpid());
  ck_assert(h->start != 0 && h->start == gc_proc_start_time(getpid()));
  ck_assert_uint_eq(h->uid, geteuid());
  ck_assert_uint_eq(((unsigned char *)a.base)[100], 0x5a);
  /* exclusive: a live segment's name is refused to a second creator */
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &o, &b), GC_ERR_STATE);
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE | GC_SEG_ATTACH, &o, &b), GC_OK);
  ck_assert(!b.created && b.ino == a.ino);
  gc_seg_close(&b);
  gc_seg_unlink(&a);
  ck_assert_int_ne(access(PATH, F_OK), 0);
  gc_seg_close(&a);
}
END_TEST

static uid_t other_uid(void) { return geteuid() + 4242; }

START_TEST(foreign_owner) {
  gc_seg_t a, b;
  gc_seg_opts_t o = {.what = "t", .bytes = 8192};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &o, &a), GC_OK);
  gc_seg_close(&a);
  char want[160];
  if (geteuid() == 0) { /* root can make a real foreign file */
    ck_assert_int_eq(chown(PATH, 4242, 4242), 0);
    snprintf(want, sizeof want, "%s belongs to uid 4242", PATH);
  } else { /* else: seen as another user sees our file */
    gc_seg_hooks_t k = {.geteuid = other_uid};
    gc_seg_set_hooks(&k);
    snprintf(want, sizeof want, "%s belongs to uid %u", PATH, (unsigned)geteuid());
  }
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE | GC_SEG_ATTACH, &o, &b), GC_ERR_SYSTEM);
  ck_assert_msg(strstr(gc_last_error(), want), "%s", gc_last_error());
  ck_assert_ptr_nonnull(strstr(gc_last_error(), "another user"));
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_ATTACH, &o, &b), GC_ERR_SYSTEM);
  gc_seg_set_hooks(NULL);
  ck_assert_int_eq(access(PATH, F_OK), 0); /* left alone */
}
END_TEST

START_TEST(symlink_refused) {
  char target[96];
  snprintf(target, sizeof target, "/dev/shm/tseg-target-%d", (int)getpid());
  int fd = open(target, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "keep", 4), 4);
  close(fd);
  ck_assert_int_eq(symlink(target, PATH), 0);
  gc_seg_t s;
  gc_seg_opts_t o = {.what = "t", .bytes = 8192};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE | GC_SEG_ATTACH, &o, &s), GC_ERR_SYSTEM);
  ck_assert_msg(strstr(gc_last_error(), "symbolic link"), "%s", gc_last_error());
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_ATTACH, &o, &s), GC_ERR_SYSTEM);
  struct stat st;
  ck_assert_int_eq(stat(target, &st), 0);
  ck_assert_int_eq((int)st.st_size, 4); /* untouched */
  ck_assert_uint_eq(st.st_mode & 0777, 0600);
  ck_assert_int_eq(gc_seg_sweep() >= 0, 1);
  ck_assert_int_eq(lstat(PATH, &st), 0); /* the sweep leaves links alone */
  unlink(target);
}
END_TEST

START_TEST(mode_and_size) {
  gc_seg_t a, b;
  gc_seg_opts_t o = {.what = "t", .bytes = 8192};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &o, &a), GC_OK);
  gc_seg_opts_t big = {.what = "t", .bytes = 16384};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_ATTACH, &big, &b), GC_ERR_SYSTEM);
  ck_assert_msg(strstr(gc_last_error(), "has 8192 bytes, expected 16384"), "%s", gc_last_error());
  ck_assert_int_eq(chmod(PATH, 0640), 0);
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_ATTACH, &o, &b), GC_ERR_SYSTEM);
  ck_assert_msg(strstr(gc_last_error(), "mode 640"), "%s", gc_last_error());
  gc_seg_close(&a);
}
END_TEST

static int fail_fallocate(int fd, off_t off, off_t len) {
  (void)fd, (void)off, (void)len;
  return ENOSPC;
}

START_TEST(no_space) {
  gc_seg_t s;
  gc_seg_hooks_t k = {.fallocate = fail_fallocate};
  gc_seg_set_hooks(&k);
  gc_seg_opts_t o = {.what = "t", .bytes = 3 << 20};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &o, &s), GC_ERR_NO_MEMORY);
  const char *e = gc_last_error();
  ck_assert_msg(strstr(e, "needs 3.0 MiB (3145728 bytes)") && strstr(e, "free of") &&
                    strstr(e, "--shm-size") && strstr(e, "GCSHIM_SHM_CHUNK_KB") &&
                    strstr(e, "No space left"),
                "%s", e);
  ck_assert_int_ne(access(PATH, F_OK), 0); /* nothing left behind */
  gc_seg_set_hooks(NULL);
  /* larger than /dev/shm can hold: refused before anything is made */
  gc_seg_opts_t huge = {.what = "t", .bytes = (size_t)1 << 50};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &huge, &s), GC_ERR_NO_MEMORY);
  ck_assert_msg(strstr(gc_last_error(), "needs 1048576.0 GiB"), "%s", gc_last_error());
  ck_assert_int_ne(access(PATH, F_OK), 0);
}
END_TEST

START_TEST(stale_taken_back) {
  /* zero-filled: a creator that died before writing its header */
  int fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, 8192), 0);
  close(fd);
  gc_seg_t s;
  gc_seg_opts_t o = {.what = "t", .bytes = 8192, .timeout_s = 10};
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE | GC_SEG_ATTACH, &o, &s), GC_OK);
  ck_assert(s.created);
  gc_seg_close(&s);
  unlink(PATH);
  /* a dead creator's segment */
  pid_t c = fork();
  if (c == 0) {
    gc_seg_t t;
    _exit(gc_seg_open(NAME, GC_SEG_CREATE, &o, &t) == GC_OK ? 0 : 1);
  }
  int ws;
  ck_assert_int_eq(waitpid(c, &ws, 0), c);
  ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  ck_assert_int_eq(access(PATH, F_OK), 0);
  ck_assert_int_eq(gc_seg_open(NAME, GC_SEG_CREATE, &o, &s), GC_OK);
  ck_assert(s.created);
  gc_seg_close(&s);
}
END_TEST

START_TEST(sweep) {
  gc_seg_opts_t o = {.what = "t", .bytes = 8192};
  /* a live creator's segment stays (made first: a process sweeps once, at
   * its first creation) */
  char live[64], live_path[96];
  snprintf(live, sizeof live, "/gcs-tseglive%d", (int)getpid());
  snprintf(live_path, sizeof live_path, "/dev/shm%s", live);
  unlink(live_path);
  gc_seg_t l;
  ck_assert_int_eq(gc_seg_open(live, GC_SEG_CREATE, &o, &l), GC_OK);
  pid_t c = fork();
  if (c == 0) {
    gc_seg_t t;
    _exit(gc_seg_open(NAME, GC_SEG_CREATE, &o, &t) == GC_OK ? 0 : 1);
  }
  int ws;
  ck_assert_int_eq(waitpid(c, &ws, 0), c);
  ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  ck_assert_int_eq(access(PATH, F_OK), 0);
  ck_assert_int_ge(gc_seg_sweep(), 1);
  ck_assert_int_ne(access(PATH, F_OK), 0);
  ck_assert_int_eq(access(live_path, F_OK), 0);
  gc_seg_unlink(&l);
  gc_seg_close(&l);
}
END_TEST

START_TEST(start_time) {
  ck_assert(gc_proc_start_time(getpid()) > 0);
  ck_assert(gc_proc_start_time(1) > 0);
  ck_assert(gc_proc_start_time(getpid()) >= gc_proc_start_time(1));
  gc_seg_hdr_t h = {.pid = (int32_t)getpid(), .start = gc_proc_start_time(getpid())};
  ck_assert(!gc_seg_creator_dead(&h));
  h.start += 1; /* same pid, another process: a recycled pid */
  ck_assert(gc_seg_creator_dead(&h));
}
END_TEST

int main(void) {
  Suite *s = suite_create("seg");
  TCase *tc = tcase_create("seg");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, exclusive_create);
  tcase_add_test(tc, foreign_owner);
  tcase_add_test(tc, symlink_refused);
  tcase_add_test(tc, mode_and_size);
  tcase_add_test(tc, no_space);
  tcase_add_test(tc, stale_taken_back);
  tcase_add_test(tc, sweep);
  tcase_add_test(tc, start_time);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
