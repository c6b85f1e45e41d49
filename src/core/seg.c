/* seg.c - the one helper for every /dev/shm segment (seg.h has the rules). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/seg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A file at one of our names without a valid header is left by an older
 * build or by hand; the sweep leaves it this long, in case a process of an
 * older build still uses it. Openers need no grace: our segments get their
 * names only once complete. */
#define SWEEP_NO_HEADER_S 600

static int real_fallocate(int fd, off_t off, off_t len) { return posix_fallocate(fd, off, len); }
static uid_t real_geteuid(void) { return geteuid(); }
static gc_seg_hooks_t hooks = {real_fallocate, statvfs, real_geteuid};

void gc_seg_set_hooks(const gc_seg_hooks_t *h) {
  hooks.fallocate = h && h->fallocate ? h->fallocate : real_fallocate;
  hooks.statvfs = h && h->statvfs ? h->statvfs : statvfs;
  hooks.geteuid = h && h->geteuid ? h->geteuid : real_geteuid;
}

static uid_t euid(void) { return hooks.geteuid(); }

uint64_t gc_proc_start_time(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t k = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (k <= 0) return 0;
  buf[k] = '\0';
  /* The command (field 2) may hold spaces and ')': fields 3.. follow the last ')'. */
  const char *p = strrchr(buf, ')');
  if (!p) return 0;
  p++;
  for (int field = 3; field < 22; field++) {
    p = strchr(p + 1, ' ');
    if (!p) return 0;
  }
  return strtoull(p + 1, NULL, 10);
}

static uint64_t my_start(void) {
  static _Atomic uint64_t cached;
  static _Atomic pid_t cached_pid;
  pid_t me = getpid();
  if (atomic_load(&cached_pid) != me) { /* forked since */
    atomic_store(&cached, gc_proc_start_time(me));
    atomic_store(&cached_pid, me);
  }
  return atomic_load(&cached);
}

static bool pid_start_dead(pid_t pid, uint64_t start) {
  if (pid <= 0) return true;
  if (gc_pid_dead(pid)) return true;
  uint64_t now = start ? gc_proc_start_time(pid) : 0;
  return start && now && now != start; /* the pid was recycled */
}

bool gc_seg_creator_dead(const gc_seg_hdr_t *h) { return pid_start_dead(h->pid, h->start); }

static bool name_ok(const char *name) {
  size_t n = strlen(name);
  if (n < 2 || n >= GC_SEG_NAME_MAX || name[0] != '/') return false;
  for (const char *p = name + 1; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return false;
  }
  return true;
}

static void path_of(const char *name, char *out, size_t n) {
  snprintf(out, n, "%s%s", GC_SEG_DIR, name);
}

static void human(uint64_t b, char *out, size_t n) {
  if (b >= (1ull << 30))
    snprintf(out, n, "%.1f GiB", (double)b / (double)(1ull << 30));
  else if (b >= (1ull << 20))
    snprintf(out, n, "%.1f MiB", (double)b / (double)(1ull << 20));
  else
    snprintf(out, n, "%llu KiB", (unsigned long long)(b >> 10));
}

static gc_status_t space_error(gc_status_t st, const char *what, const char *name, uint64_t need,
                               const char *why) {
  struct statvfs v;
  char a[32], f[32], t[32];
  human(need, a, sizeof a);
  if (hooks.statvfs(GC_SEG_DIR, &v) == 0) {
    human((uint64_t)v.f_bavail * v.f_frsize, f, sizeof f);
    human((uint64_t)v.f_blocks * v.f_frsize, t, sizeof t);
  } else {
    snprintf(f, sizeof f, "?");
    snprintf(t, sizeof t, "?");
  }
  return gc_error(st,
                  "%s: segment %s needs %s (%llu bytes) but " GC_SEG_DIR
                  " has %s free of %s%s%s: give it more room (docker run --shm-size=1g, or a "
                  "larger tmpfs at " GC_SEG_DIR
                  "), end the jobs that hold it, or ask for less "
                  "(fewer or smaller chunks: GCSHIM_SHM_CHUNK_KB for CPU groups, "
                  "GCSHIM_MQ_CHUNK_BYTES and GCSHIM_MQ_CHUNKS for message queues)",
                  what, name, a, (unsigned long long)need, f, t, why ? ": " : "", why ? why : "");
}

/* Names the owner of a name we may not use. */
static gc_status_t foreign_error(const char *what, const char *name, const struct stat *st) {
  char path[GC_SEG_NAME_MAX + 16];
  path_of(name, path, sizeof path);
  return gc_error(GC_ERR_SYSTEM,
                  "%s: %s belongs to uid %u (mode %03o), not to this user (uid %u): another user "
                  "made it first, so this job cannot use or remove it; ask that user or root to "
                  "remove it, or use another rendezvous key",
                  what, path, (unsigned)st->st_uid, (unsigned)(st->st_mode & 0777),
                  (unsigned)euid());
}

static bool hdr_valid(const gc_seg_hdr_t *h, const struct stat *st) {
  return h->magic == GC_SEG_MAGIC && h->uid == (uint32_t)euid() &&
         h->bytes == (uint64_t)st->st_size && h->bytes >= sizeof *h;
}

/* Stale: the creator and every member recorded are gone. */
/* The creator and every recorded member are dead. *all_came: every slot of
 * the member table holds a pid (no member is still to come). */
static bool hdr_stale2(int fd, const gc_seg_hdr_t *h, bool *all_came) {
  *all_came = false;
  if (!gc_seg_creator_dead(h)) return false;
  bool full = h->pids_n > 0 && h->pids_stride >= 4;
  if (full) {
    for (uint32_t i = 0; i < h->pids_n; i++) {
      uint64_t off = (uint64_t)h->pids_off + (uint64_t)i * h->pids_stride;
      int32_t pid = 0;
      if (off + sizeof pid > h->bytes ||
          pread(fd, &pid, sizeof pid, (off_t)off) != (ssize_t)sizeof pid) {
        full = false;
        break;
      }
      if (pid <= 0) full = false;
      if (pid > 0 && !gc_pid_dead(pid)) return false;
    }
  }
  *all_came = full;
  return true;
}

static bool hdr_stale(int fd, const gc_seg_hdr_t *h) {
  bool all_came;
  return hdr_stale2(fd, h, &all_came);
}

static void remove_locked(const char *name, int fd, bool wait) {
  char path[GC_SEG_NAME_MAX + 16];
  struct stat a, b;
  path_of(name, path, sizeof path);
  int op = LOCK_EX | (wait ? 0 : LOCK_NB);
  while (flock(fd, op) != 0)
    if (errno != EINTR) return;
  if (fstat(fd, &a) == 0 && lstat(path, &b) == 0 && S_ISREG(b.st_mode) && b.st_uid == euid() &&
      a.st_ino == b.st_ino && a.st_dev == b.st_dev)
    unlink(path);
  flock(fd, LOCK_UN);
}

void gc_seg_remove_if(const char *name, int fd) {
  if (fd >= 0) remove_locked(name, fd, true);
}

/* Opens an existing name. /dev/shm names are files of a tmpfs: open(2)
 * with O_NOFOLLOW is used directly, since shm_open(3) adds O_NOFOLLOW on
 * glibc and musl but not on every libc, and a symlink planted at our name
 * must never redirect us to another file. */
static int open_existing(const char *what, const char *name, gc_status_t *st) {
  char path[GC_SEG_NAME_MAX + 16];
  path_of(name, path, sizeof path);
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return fd;
  int e = errno;
  struct stat ls;
  if (e == ENOENT) {
    *st = GC_ERR_NOT_FOUND;
    return -1;
  }
  if (lstat(path, &ls) == 0) {
    if (S_ISLNK(ls.st_mode)) {
      *st = gc_error(GC_ERR_SYSTEM,
                     "%s: %s is a symbolic link (owner uid %u): refused, a segment is never "
                     "opened through one; remove it",
                     what, path, (unsigned)ls.st_uid);
      return -1;
    }
    if (ls.st_uid != euid()) {
      *st = foreign_error(what, name, &ls);
      return -1;
    }
  }
  errno = e;
  *st = gc_error(GC_ERR_SYSTEM, "%s: open %s: %m", what, path);
  return -1;
}

/* Checks an open existing segment; *stale when it is ours but dead (or has
 * no header: ours appear at their names complete). */
static gc_status_t check_existing(const char *what, const char *name, int fd,
                                  const gc_seg_opts_t *o, bool creating, struct stat *st,
                                  bool *stale, bool *no_hdr) {
  char path[GC_SEG_NAME_MAX + 16];
  path_of(name, path, sizeof path);
  *stale = *no_hdr = false;
  if (fstat(fd, st) != 0) return gc_error(GC_ERR_SYSTEM, "%s: fstat %s: %m", what, path);
  if (!S_ISREG(st->st_mode))
    return gc_error(GC_ERR_SYSTEM, "%s: %s is not a regular file: refused", what, path);
  if (st->st_uid != euid()) return foreign_error(what, name, st);
  if (st->st_mode & 077)
    return gc_error(GC_ERR_SYSTEM,
                    "%s: %s has mode %03o, expected 600 (uid %u): refused, since others could "
                    "read or write it; remove it",
                    what, path, (unsigned)(st->st_mode & 0777), (unsigned)euid());
  gc_seg_hdr_t h;
  memset(&h, 0, sizeof h);
  if (st->st_size < (off_t)sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
      !hdr_valid(&h, st)) {
    *stale = *no_hdr = true;
    return GC_OK;
  }
  /* An attacher leaves a live-looking question to its caller (a queue
   * whose writer died reports that itself); a creator takes the name back. */
  if (creating && !(h.flags & GC_SEG_KEEP_DEAD) && hdr_stale(fd, &h)) {
    *stale = true;
    return GC_OK;
  }
  if (o->bytes && !o->any_size && (uint64_t)st->st_size != o->bytes)
    return gc_error(GC_ERR_SYSTEM, "%s: %s has %lld bytes, expected %zu: refused", what, path,
                    (long long)st->st_size, o->bytes);
  return GC_OK;
}

static gc_status_t map_fd(const char *what, const char *name, int fd, const struct stat *st,
                          gc_seg_t *out) {
  void *p = mmap(NULL, (size_t)st->st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return gc_error(GC_ERR_SYSTEM, "%s: mmap %lld bytes of %s: %m", what, (long long)st->st_size,
                    name);
  out->base = p;
  out->bytes = (size_t)st->st_size;
  out->dev = st->st_dev;
  out->ino = st->st_ino;
  out->fd = fd;
  return GC_OK;
}

static pthread_once_t sweep_once = PTHREAD_ONCE_INIT;
static void sweep_once_fn(void) { (void)gc_seg_sweep(); }

/* Fills the segment just made at fd (ours, locked): space, caller's part,
 * then our header, magic last. */
static gc_status_t build(const char *what, const char *name, int fd, const gc_seg_opts_t *o,
                         gc_seg_t *out) {
  char path[GC_SEG_NAME_MAX + 16];
  size_t bytes = o->bytes;
  path_of(name, path, sizeof path);
  struct statvfs v;
  if (hooks.statvfs(GC_SEG_DIR, &v) == 0 && bytes > (uint64_t)v.f_bavail * v.f_frsize)
    return space_error(GC_ERR_NO_MEMORY, what, name, bytes, NULL);
  if (fchmod(fd, 0600) != 0) /* the umask may have taken bits */
    return gc_error(GC_ERR_SYSTEM, "%s: fchmod %s: %m", what, path);
  /* Reserve the pages now: a sparse segment on a full /dev/shm kills its
   * first toucher with SIGBUS instead of failing here. */
  int e;
  while ((e = hooks.fallocate(fd, 0, (off_t)bytes)) == EINTR) {
  }
  if (e) {
    char why[96];
    snprintf(why, sizeof why, "posix_fallocate: %s", strerror(e));
    return space_error(e == ENOSPC || e == ENOMEM || e == EFBIG ? GC_ERR_NO_MEMORY : GC_ERR_SYSTEM,
                       what, name, bytes, why);
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != bytes)
    return gc_error(GC_ERR_SYSTEM, "%s: %s has the wrong size after posix_fallocate", what, path);
  GC_CHECK(map_fd(what, name, fd, &sb, out));
  if (o->init) o->init(out->base, bytes, o->arg);
  gc_seg_hdr_t *h = out->base;
  h->bytes = bytes;
  h->start = my_start();
  h->pid = (int32_t)getpid();
  h->uid = (uint32_t)euid();
  h->pids_off = o->pids_off;
  h->pids_stride = o->pids_stride;
  h->pids_n = o->pids_n;
  h->flags = o->flags;
  atomic_store_explicit((_Atomic uint64_t *)&h->magic, GC_SEG_MAGIC, memory_order_release);
  return GC_OK;
}

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* Exclusive create: O_EXCL at the name, then the file's lock (flock) held
 * until the header is written, so an opener waits on the lock and never
 * reads a half-made segment. An opener that gets the lock and finds no
 * header sees a creator that died before writing it (or, for a few
 * microseconds, one between open and flock: hence the grace on the file's
 * age). */
gc_status_t gc_seg_open(const char *name, int how, const gc_seg_opts_t *o, gc_seg_t *out) {
  const char *what = o && o->what ? o->what : "segment";
  if (!name || !o || !out || !(how & (GC_SEG_CREATE | GC_SEG_ATTACH)))
    return gc_error(GC_ERR_INVALID_ARG, "%s: bad arguments to gc_seg_open", what);
  if (!name_ok(name))
    return gc_error(GC_ERR_INVALID_ARG, "%s: '%s' is not a segment name", what, name);
  if ((how & GC_SEG_CREATE) &&
      (o->bytes < sizeof(gc_seg_hdr_t) || o->bytes > (uint64_t)INT64_MAX / 2))
    return gc_error(GC_ERR_INVALID_ARG, "%s: segment %s of %zu bytes: size out of range", what,
                    name, o->bytes);
  double timeout_s = o->timeout_s > 0 ? o->timeout_s : gc_env_timeout();
  uint64_t deadline = gc_now_ns() + (uint64_t)(timeout_s * 1e9);
  gc_seg_t s;
  memset(&s, 0, sizeof s);
  s.fd = -1;
  snprintf(s.name, sizeof s.name, "%s", name);
  char path[GC_SEG_NAME_MAX + 16];
  path_of(name, path, sizeof path);
  bool creating = how & GC_SEG_CREATE;
  if (creating) pthread_once(&sweep_once, sweep_once_fn);
  for (;;) {
    if (gc_now_ns() >= deadline)
      return gc_error(GC_ERR_TIMEOUT, "%s: %s not ready after %.1f s (its creator is stopped?)",
                      what, path, timeout_s);
    gc_status_t st = GC_OK;
    if (creating) {
      int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd >= 0) {
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
        }
        st = build(what, name, fd, o, &s);
        if (st != GC_OK) {
          if (s.base) munmap(s.base, s.bytes);
          unlink(path); /* ours: made just now */
          close(fd);
          return st;
        }
        flock(fd, LOCK_UN);
        s.created = true;
        *out = s;
        return GC_OK;
      }
      if (errno != EEXIST) {
        if (errno == ENOSPC)
          return space_error(GC_ERR_NO_MEMORY, what, name, o->bytes, "no inode left");
        struct stat ls;
        if (lstat(path, &ls) == 0 && ls.st_uid != euid()) {
          st = foreign_error(what, name, &ls);
          return st;
        }
        return gc_error(GC_ERR_SYSTEM, "%s: create %s: %m", what, path);
      }
    }
    int fd = open_existing(what, name, &st);
    if (fd < 0) {
      if (st == GC_ERR_NOT_FOUND && creating) continue; /* removed meanwhile */
      if (st == GC_ERR_NOT_FOUND)
        return gc_error(GC_ERR_NOT_FOUND, "%s: no segment %s", what, path);
      return st;
    }
    /* The creator holds the lock until its header is written. */
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
      close(fd);
      sleep_ms(1);
      continue;
    }
    struct stat sb, ls;
    bool stale, no_hdr;
    st = check_existing(what, name, fd, o, creating, &sb, &stale, &no_hdr);
    if (st == GC_OK &&
        (lstat(path, &ls) != 0 || ls.st_ino != sb.st_ino || ls.st_dev != sb.st_dev)) {
      close(fd); /* replaced meanwhile */
      continue;
    }
    flock(fd, LOCK_UN);
    if (st != GC_OK) {
      close(fd);
      return st;
    }
    if (stale && no_hdr && time(NULL) - sb.st_ctime < 2) {
      close(fd); /* a creator between open and flock: give it a moment */
      sleep_ms(1);
      continue;
    }
    if (stale) {
      if (!creating) {
        close(fd);
        return gc_error(GC_ERR_NOT_FOUND, "%s: %s is a stale segment (no valid header)", what,
                        path);
      }
      GC_INFO("%s: removing %s, a stale segment left by a crashed run", what, path);
      remove_locked(name, fd, true);
      close(fd);
      continue;
    }
    if (!(how & GC_SEG_ATTACH)) {
      close(fd);
      return gc_error(GC_ERR_STATE, "%s: %s is in use", what, path);
    }
    st = map_fd(what, name, fd, &sb, &s);
    if (st != GC_OK) {
      close(fd);
      return st;
    }
    s.created = false;
    *out = s;
    return GC_OK;
  }
}

void gc_seg_close_fd(gc_seg_t *s) {
  if (s && s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

void gc_seg_unlink(gc_seg_t *s) {
  char path[GC_SEG_NAME_MAX + 16];
  struct stat b;
  if (!s || !s->name[0]) return;
  path_of(s->name, path, sizeof path);
  if (lstat(path, &b) == 0 && S_ISREG(b.st_mode) && b.st_ino == s->ino && b.st_dev == s->dev)
    unlink(path);
}

void gc_seg_close(gc_seg_t *s) {
  if (!s) return;
  if (s->base) munmap(s->base, s->bytes);
  s->base = NULL;
  gc_seg_close_fd(s);
}

/* ---- sweep ------------------------------------------------------------------ */

static const char *const prefixes[] = {"gcs-", "gcshim-", "gcmq-"};

static bool ours_by_prefix(const char *n) {
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
    if (!strncmp(n, prefixes[i], strlen(prefixes[i]))) return true;
  return false;
}

int gc_seg_sweep(void) {
  DIR *d = opendir(GC_SEG_DIR);
  if (!d) return 0;
  int removed = 0, dfd = dirfd(d);
  uid_t me = euid();
  struct dirent *e;
  time_t now = time(NULL);
  while ((e = readdir(d))) {
    if (!ours_by_prefix(e->d_name)) continue;
    struct stat sb;
    /* Only segments exactly as we make them: one with other modes was
     * changed by hand, and its opener says so. */
    if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
        sb.st_uid != me || (sb.st_mode & 0777) != 0600)
      continue;
    int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    bool stale;
    gc_seg_hdr_t h;
    if (fstat(fd, &sb) == 0 && sb.st_size >= (off_t)sizeof h &&
        pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && hdr_valid(&h, &sb)) {
      /* A dead member's data counts while a member may still come to read
       * it (a job report's rank yet to deposit): such a segment goes once
       * every member came and is gone, or once it is older than the
       * longest wait for a member. */
      bool all_came;
      stale = hdr_stale2(fd, &h, &all_came) &&
              (!(h.flags & GC_SEG_KEEP_DEAD) || all_came ||
               (double)(now - sb.st_ctime) > gc_env_timeout());
    } else {
      stale = now - sb.st_ctime > SWEEP_NO_HEADER_S && now - sb.st_mtime > SWEEP_NO_HEADER_S;
    }
    if (stale && flock(fd, LOCK_SH | LOCK_NB) != 0) stale = false; /* being made */
    flock(fd, LOCK_UN);
    if (stale) {
      char name[300];
      snprintf(name, sizeof name, "/%s", e->d_name);
      if (strlen(name) < GC_SEG_NAME_MAX) {
        struct stat before;
        char path[GC_SEG_NAME_MAX + 16];
        path_of(name, path, sizeof path);
        remove_locked(name, fd, false);
        if (lstat(path, &before) != 0) {
          removed++;
          GC_INFO("segment sweep: removed %s (its processes are gone)", path);
        }
      }
    }
    close(fd);
  }
  closedir(d);
  return removed;
}
