/* fuzz_tuner.c - libFuzzer target: the tuner plugin's rules file parser
 * (plugin/tuner.c) on any content; a parsed rule must hold only values a
 * rule may hold (gc_tuner_rules_parse_string's -2). */
#include <stdint.h>
#include <stdlib.h>

#include "plugin/plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (gc_tuner_rules_parse_string((const char *)data, size) == -2) abort();
  return 0;
}
