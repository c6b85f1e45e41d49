/* log.c - NCCL-style logging: "host:pid:tid [rank] GCSHIM LEVEL message". */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core.h"
#include "core/outfile.h"
#include "core/params.h"

_Atomic int gc_log_level_cached = -1;
static _Atomic int log_rank = -1;
static FILE *log_file;
static char log_host[64];
static pthread_once_t log_once = PTHREAD_ONCE_INIT, ready_once = PTHREAD_ONCE_INIT;

static void log_setup(void) {
  /* params.def's words: NONE VERSION WARN INFO TRACE */
  static const int levels[] = {GC_LOG_NONE, GC_LOG_NONE, GC_LOG_WARN, GC_LOG_INFO, GC_LOG_TRACE};
  int level = levels[gc_param_GCSHIM_DEBUG()];
  log_file = stderr;
  const char *path = gc_param_GCSHIM_DEBUG_FILE();
  if (level > GC_LOG_NONE && path) {
    /* %h host, %p pid, like NCCL_DEBUG_FILE */
    char buf[4096];
    size_t o = 0;
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    for (const char *p = path; *p && o + 64 < sizeof buf; p++) {
      if (p[0] == '%' && p[1] == 'h') {
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s", host);
        p++;
      } else if (p[0] == '%' && p[1] == 'p') {
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%d", (int)getpid());
        p++;
      } else {
        buf[o++] = *p;
      }
    }
    buf[o] = '\0';
    FILE *f = gc_outfile_append(buf, "GCSHIM_DEBUG_FILE");
    if (f) {
      setvbuf(f, NULL, _IOLBF, 0);
      log_file = f;
    }
  }
  gethostname(log_host, sizeof log_host - 1);
  char *dot = strchr(log_host, '.');
  if (dot) *dot = '\0';
  atomic_store(&gc_log_level_cached, level);
}

int gc_log_level_init(void) {
  pthread_once(&log_once, log_setup);
  pthread_once(&ready_once, gc_params_log_ready);
  return atomic_load(&gc_log_level_cached);
}

void gc_log_set_rank(int rank) { atomic_store(&log_rank, rank); }

void gc_log_write(int level, const char *file, int line, const char *fmt, ...) {
  static const char *names[] = {"NONE", "WARN", "INFO", "TRACE"};
  int saved = errno;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  errno = saved; /* so that %m in fmt names the caller's errno */
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int rank = atomic_load(&log_rank);
  char rank_s[24] = "";
  if (rank >= 0) snprintf(rank_s, sizeof rank_s, " [%d]", rank);
  /* One write per line: ranks sharing a terminal or file (stderr of an
   * mpirun, a test's log) must not cut into each other's lines, which
   * stdio's unbuffered stderr may write in pieces. */
  char out[1400];
  int n;
  if (level >= GC_LOG_TRACE)
    n = snprintf(out, sizeof out, "%s:%d:%ld%s GCSHIM %s %s:%d %s\n", log_host, (int)getpid(),
                 (long)syscall(SYS_gettid), rank_s, names[level], file, line, msg);
  else
    n = snprintf(out, sizeof out, "%s:%d:%ld%s GCSHIM %s %s\n", log_host, (int)getpid(),
                 (long)syscall(SYS_gettid), rank_s, names[level], msg);
  if (n > (int)sizeof out - 1) { /* cut: still one whole line */
    n = (int)sizeof out - 1;
    out[n - 1] = '\n';
  }
  if (n > 0) {
    fflush(log_file);
    size_t off = 0;
    while (off < (size_t)n) {
      ssize_t w = write(fileno(log_file), out + off, (size_t)n - off);
      if (w <= 0 && errno != EINTR) break;
      if (w > 0) off += (size_t)w;
    }
  }
  errno = saved;
}
