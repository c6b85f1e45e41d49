/* fuzz_report.c - libFuzzer target: the report's merge of a rank's deposit
 * (src/core/report.c merge_blob) on any bytes, as a rank of another build,
 * or a corrupt one, leaves them in the job's segment; the merged report is
 * written as JSON and as a table to /dev/null. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/report.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
  /* a deposit sits 8-byte aligned in its slot: so does the copy, and ASan
   * sees a read past its end */
  void *blob = malloc(size ? size : 1);
  if (!blob) abort();
  memcpy(blob, data, size);
  gc_report_merge_test(blob, size, devnull);
  free(blob);
  return 0;
}
