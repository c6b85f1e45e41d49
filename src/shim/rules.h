/* rules.h - GCSHIM_GROUPS, the naming rules of adopted communicators
 * (DESIGN.md "Group names"), parsed from a string so that tests and
 * tests/fuzz reach the parser without the environment. */
#ifndef GC_SHIM_RULES_H
#define GC_SHIM_RULES_H

#include "core/core.h"

typedef struct gc_shim_rules gc_shim_rules_t;

/* Parses s ("tp=0-3,4-7;pp=0,4;dp=*"): a range a-b is one set; single ranks
 * listed next to each other form one set together; * is any. A rule that
 * does not parse is warned about and left out. NULL for NULL, "" or no
 * memory (then no rules). Free with gc_shim_rules_free. */
GC_INTERNAL gc_shim_rules_t *gc_shim_rules_parse_string(const char *s);
/* The name of the first rule whose set equals ranks (n world ranks, in any
 * order), or NULL; rules may be NULL. */
GC_INTERNAL const char *gc_shim_rules_match(const gc_shim_rules_t *rules, const int *ranks, int n);
/* The number of rules kept. */
GC_INTERNAL int gc_shim_rules_count(const gc_shim_rules_t *rules);
GC_INTERNAL void gc_shim_rules_free(gc_shim_rules_t *rules);

#endif
