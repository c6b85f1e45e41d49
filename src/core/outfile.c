/* outfile.c - see outfile.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One message per setting: a report flushed twice fails twice. */
static pthread_mutex_t said_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *said[16];

static bool first_time(const char *what) {
  bool first = true;
  pthread_mutex_lock(&said_lock);
  size_t i = 0;
  while (i < sizeof said / sizeof *said && said[i] && strcmp(said[i], what)) i++;
  if (i < sizeof said / sizeof *said) {
    first = !said[i];
    said[i] = what;
  }
  pthread_mutex_unlock(&said_lock);
  return first;
}

#define SAY(what, ...)                            \
  do {                                            \
    if (first_time(what)) GC_NOTICE(__VA_ARGS__); \
  } while (0)

bool gc_outfile_open(gc_outfile_t *o, const char *path, const char *what) {
  memset(o, 0, sizeof *o);
  o->what = what;
  if (!path || !*path) {
    SAY(what, "%s is empty: nothing written", what);
    return false;
  }
  size_t n = strlen(path);
  if (n >= sizeof o->path || path[n - 1] == '/') {
    SAY(what, "%s=%.200s%s: %s; nothing written", what, path, n > 200 ? "..." : "",
        n >= sizeof o->path ? "the path is too long" : "the path names a directory");
    return false;
  }
  memcpy(o->path, path, n + 1);
  /* A name no other process picks: the pid and a counter. */
  static _Atomic unsigned seq;
  snprintf(o->tmp, sizeof o->tmp, "%s.%d.%u.tmp", path, (int)getpid(), atomic_fetch_add(&seq, 1));
  int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
    SAY(what, "%s: cannot create %s: %s; nothing written", what, o->tmp, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(o->tmp);
    }
    return false;
  }
  return true;
}

bool gc_outfile_close(gc_outfile_t *o) {
  if (!o->f) return false;
  bool bad = ferror(o->f) != 0;
  if (fclose(o->f)) bad = true;
  o->f = NULL;
  if (bad) {
    SAY(o->what, "%s: writing %s failed: %s", o->what, o->tmp, strerror(errno));
    unlink(o->tmp);
    return false;
  }
  /* rename replaces a link at path itself, never its target; over another
   * user's file in a sticky directory it fails (EPERM), as it should. */
  if (rename(o->tmp, o->path)) {
    SAY(o->what, "%s: cannot put the file at %s: %s; nothing written", o->what, o->path,
        strerror(errno));
    unlink(o->tmp);
    return false;
  }
  return true;
}

FILE *gc_outfile_append(const char *path, const char *what) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  struct stat st;
  const char *why = NULL;
  if (fd < 0)
    why = errno == ELOOP ? "it is a symbolic link" : strerror(errno);
  else if (fstat(fd, &st))
    why = strerror(errno);
  else if (!S_ISREG(st.st_mode))
    why = "it is not a regular file";
  else if (st.st_uid != geteuid())
    why = "it belongs to another user";
  FILE *f = why ? NULL : fdopen(fd, "a");
  if (!f) {
    if (!why) why = strerror(errno);
    if (fd >= 0) close(fd);
    SAY(what, "%s: cannot append to %s: %s", what, path, why);
  }
  return f;
}
