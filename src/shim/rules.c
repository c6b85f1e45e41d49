/* rules.c - GCSHIM_GROUPS parsed and matched (rules.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/rules.h"

typedef struct {
  char name[GC_NAME_MAX];
  bool any;
  int n_sets;
  int *set_start, *set_len, *ranks; /* sets of ranks, sorted */
} rule_t;

struct gc_shim_rules {
  rule_t *rules;
  int n_rules;
};

static void rule_clear(rule_t *ru) {
  free(ru->ranks);
  free(ru->set_start);
  free(ru->set_len);
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return x < y ? -1 : x > y;
}

gc_shim_rules_t *gc_shim_rules_parse_string(const char *env) {
  if (!env || !*env) return NULL;
  gc_shim_rules_t *set = calloc(1, sizeof *set);
  char *copy = strdup(env);
  if (!set || !copy) {
    free(set);
    free(copy);
    return NULL;
  }
  rule_t *rules = NULL;
  int n_rules = 0, cap = 0;
  for (char *save = NULL, *r = strtok_r(copy, ";", &save); r; r = strtok_r(NULL, ";", &save)) {
    char *eq = strchr(r, '=');
    if (!eq || eq == r) {
      GC_WARN("GCSHIM_GROUPS: '%s' is not name=ranks; ignored", r);
      continue;
    }
    *eq = 0;
    if (n_rules == cap) {
      cap = cap ? cap * 2 : 8;
      rule_t *nr = realloc(rules, (size_t)cap * sizeof *nr);
      if (!nr) break;
      rules = nr;
    }
    rule_t *ru = &rules[n_rules];
    memset(ru, 0, sizeof *ru);
    snprintf(ru->name, sizeof ru->name, "%s", r);
    const char *v = eq + 1;
    if (!strcmp(v, "*")) {
      ru->any = true;
      n_rules++;
      continue;
    }
    size_t len = strlen(v);
    ru->ranks = calloc(len + 1, sizeof(int) * 64);
    ru->set_start = calloc(len + 1, sizeof(int));
    ru->set_len = calloc(len + 1, sizeof(int));
    if (!ru->ranks || !ru->set_start || !ru->set_len) {
      rule_clear(ru);
      break;
    }
    int nr = 0, cap_r = (int)(len + 1) * 64;
    bool open_singles = false, bad = false;
    for (const char *q = v; *q && !bad;) {
      char *end;
      long a = strtol(q, &end, 10), b = a;
      /* a rank is an int: a larger one is no rank (it wrapped to a small
       * one, and a range to LONG_MAX overflowed) */
      if (end == q || a < 0 || a > INT_MAX) {
        bad = true;
        break;
      }
      q = end;
      if (*q == '-') {
        b = strtol(q + 1, &end, 10);
        if (end == q + 1 || b < a || b > INT_MAX || b - a >= 65536) {
          bad = true;
          break;
        }
        q = end;
      }
      bool range = b > a;
      if (range || !open_singles) { /* a new set */
        ru->set_start[ru->n_sets] = nr;
        ru->set_len[ru->n_sets] = 0;
        ru->n_sets++;
      }
      for (long x = a; x <= b && nr < cap_r; x++) {
        ru->ranks[nr++] = (int)x;
        ru->set_len[ru->n_sets - 1]++;
      }
      open_singles = !range;
      if (*q == ',')
        q++;
      else if (*q)
        bad = true;
    }
    if (bad) {
      GC_WARN("GCSHIM_GROUPS: ranks '%s' of '%s' are not a list of ranks and ranges; ignored", v,
              ru->name);
      rule_clear(ru);
      continue;
    }
    for (int s = 0; s < ru->n_sets; s++)
      qsort(ru->ranks + ru->set_start[s], (size_t)ru->set_len[s], sizeof(int), cmp_int);
    n_rules++;
  }
  free(copy);
  set->rules = rules;
  set->n_rules = n_rules;
  return set;
}

const char *gc_shim_rules_match(const gc_shim_rules_t *set, const int *ranks, int n) {
  if (!set) return NULL;
  const rule_t *rules = set->rules;
  int n_rules = set->n_rules;
  int *sorted = malloc((size_t)n * sizeof *sorted);
  if (!sorted) return NULL;
  memcpy(sorted, ranks, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_int);
  const char *found = NULL;
  for (int i = 0; i < n_rules && !found; i++) {
    if (rules[i].any) {
      found = rules[i].name;
      break;
    }
    for (int s = 0; s < rules[i].n_sets && !found; s++)
      if (rules[i].set_len[s] == n &&
          !memcmp(rules[i].ranks + rules[i].set_start[s], sorted, (size_t)n * sizeof(int)))
        found = rules[i].name;
  }
  free(sorted);
  return found;
}

int gc_shim_rules_count(const gc_shim_rules_t *set) { return set ? set->n_rules : 0; }

void gc_shim_rules_free(gc_shim_rules_t *set) {
  if (!set) return;
  for (int i = 0; i < set->n_rules; i++) rule_clear(&set->rules[i]);
  free(set->rules);
  free(set);
}
