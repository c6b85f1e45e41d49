/*
 * outfile.h - the files gcshim writes for the user (reports, timelines, the
 * plugins' report, the log): never through a symbolic link, never into a
 * file another user planted. A report is written to a new file beside its
 * path (created exclusively, O_NOFOLLOW) and renamed over the path when
 * complete, so a planted link is replaced, its target untouched, and a
 * reader never sees half a report. A failure is said on stderr once per
 * setting, whatever GCSHIM_DEBUG says.
 */
#ifndef GC_OUTFILE_H
#define GC_OUTFILE_H

#include <stdio.h>

#include "core/core.h"

typedef struct {
  FILE *f;
  const char *what; /* the setting, for messages: "GCSHIM_REPORT" */
  char path[1100];
  char tmp[1200];
} gc_outfile_t;

/* Opens a new file that gc_outfile_close will rename to path. False (said
 * once per what on stderr) when it cannot. */
GC_INTERNAL bool gc_outfile_open(gc_outfile_t *o, const char *path, const char *what);
/* Closes and renames it over path; false (said, the new file removed) when
 * writing or renaming failed. */
GC_INTERNAL bool gc_outfile_close(gc_outfile_t *o);
/* A log file to append to: O_NOFOLLOW, and refused unless a regular file
 * of this user. NULL (said on stderr) when refused. */
GC_INTERNAL FILE *gc_outfile_append(const char *path, const char *what);

/* Said on stderr whatever GCSHIM_DEBUG says (in the log's format). */
#define GC_NOTICE(...) gc_log_write(GC_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)

#endif /* GC_OUTFILE_H */
