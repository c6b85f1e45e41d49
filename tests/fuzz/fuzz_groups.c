/* fuzz_groups.c - libFuzzer target: the GCSHIM_GROUPS parser
 * (src/shim/rules.c) on any string, then the matcher on a few rank sets
 * (the input's last bytes among them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) abort();
  memcpy(s, data, size);
  s[size] = 0;
  gc_shim_rules_t *r = gc_shim_rules_parse_string(s);
  if (gc_shim_rules_count(r) < 0) abort();
  static const int sets[][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {0, 4, 8, 12}, {7, 6, 5, 4}};
  for (int i = 0; i < 4; i++)
    for (int n = 1; n <= 4; n++) {
      const char *name = gc_shim_rules_match(r, sets[i], n);
      if (name && strlen(name) >= GC_NAME_MAX) abort();
    }
  int tail[8], n = 0;
  for (size_t i = size > 8 ? size - 8 : 0; i < size; i++) tail[n++] = data[i];
  gc_shim_rules_match(r, tail, n);
  gc_shim_rules_free(r);
  free(s);
  return 0;
}
