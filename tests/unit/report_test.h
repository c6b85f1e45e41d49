/*
 * report_test.h - for the plugin unit tests: read the per-rank JSON report
 * (GCSHIM_REPORT=<report_dir>/r%r.json, set by the test's main) as it is
 * now, from one group on.
 */
#ifndef GC_REPORT_TEST_H
#define GC_REPORT_TEST_H

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "core/report.h"

static char report_dir[128];
static char report_buf[1 << 18];

/* The per-rank report of now, from the group named name on (NULL: none). */
static const char *report_group(const char *name) {
  gc_report_flush(false, false);
  char path[256];
  snprintf(path, sizeof path, "%s/r0.json", report_dir);
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "no report %s", path);
  size_t n = fread(report_buf, 1, sizeof report_buf - 1, f);
  report_buf[n] = 0;
  fclose(f);
  char key[GC_NAME_MAX + 16];
  snprintf(key, sizeof key, "{\"name\": \"%s\"", name);
  return strstr(report_buf, key);
}

#endif /* GC_REPORT_TEST_H */
