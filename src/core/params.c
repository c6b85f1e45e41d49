/* params.c - the table of params.def: one parser per type, one rule each. */
#include "core/params.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/outfile.h"

const gc_param_info_t gc_param_info[GC_PARAM_COUNT] = {
#define GC_PARAM(name, type, dflt, lo, hi, words, readers, doc) \
  [GC_P_##name] = {#name, GC_PARAM_##type, (dflt), (lo), (hi), (words), (readers), (doc)},
#include "core/params.def"
#undef GC_PARAM
};

gc_param_value_t gc_param_values[GC_PARAM_COUNT];
_Atomic unsigned char gc_param_ready[GC_PARAM_COUNT];
/* A value read from the environment, and whether it was malformed: for the
 * INFO lines and GCSHIM_DEBUG's late notice. */
static bool param_set[GC_PARAM_COUNT];
static char *param_bad[GC_PARAM_COUNT];
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

static const char bool_form[] = "1/0, true/false, yes/no or on/off";

static bool parse_bool(const char *s, long *out) {
  static const char *const on[] = {"1", "true", "yes", "on"};
  static const char *const off[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
    if (!strcasecmp(s, on[i])) return *out = 1, true;
    if (!strcasecmp(s, off[i])) return *out = 0, true;
  }
  return false;
}

/* Decimal digits with an optional '-': no space, sign '+', hex or octal. */
static bool parse_long(const char *s, long lo, long hi, long *out) {
  const char *p = s + (*s == '-');
  if (!*p || strspn(p, "0123456789") != strlen(p)) return false;
  errno = 0;
  long v = strtol(s, NULL, 10);
  if (errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* A decimal number: [-]digits[.digits][e[+-]digits], finite, in range.
 * No inf, nan, hex floats, units or space. */
static bool parse_double(const char *s, double lo, double hi, double *out) {
  const char *p = s + (*s == '-');
  size_t n = strspn(p, "0123456789");
  p += n;
  if (*p == '.') {
    size_t f = strspn(p + 1, "0123456789");
    n += f;
    p += 1 + f;
  }
  if (!n) return false;
  if (*p == 'e' || *p == 'E') {
    p += 1 + (p[1] == '+' || p[1] == '-');
    size_t e = strspn(p, "0123456789");
    if (!e) return false;
    p += e;
  }
  if (*p) return false;
  errno = 0;
  double v = strtod(s, NULL);
  if (errno || !isfinite(v) || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* The index of s among the space-separated words, any case. */
static bool parse_word(const char *s, const char *words, long *out) {
  size_t len = strlen(s);
  long i = 0;
  for (const char *w = words; *w; i++) {
    size_t n = strcspn(w, " ");
    if (n == len && !strncasecmp(w, s, n)) return *out = i, true;
    w += n;
    w += strspn(w, " ");
  }
  return false;
}

static void word_at(const char *words, long i, char *out, size_t len) {
  const char *w = words;
  for (; i > 0 && *w; i--) {
    w += strcspn(w, " ");
    w += strspn(w, " ");
  }
  snprintf(out, len, "%.*s", (int)strcspn(w, " "), w);
}

/* The accepted form, as the notice and the README say it. */
static void form_of(const gc_param_info_t *p, char *out, size_t len) {
  switch (p->type) {
    case GC_PARAM_BOOL:
      snprintf(out, len, "%s", bool_form);
      break;
    case GC_PARAM_INT:
    case GC_PARAM_SIZE:
      snprintf(out, len, "a number from %ld to %ld (an integer)", (long)p->lo, (long)p->hi);
      break;
    case GC_PARAM_DOUBLE:
      snprintf(out, len, "a number from %g to %g", p->lo, p->hi);
      break;
    case GC_PARAM_ENUM: {
      size_t o = (size_t)snprintf(out, len, "one of");
      for (const char *w = p->words; *w && o < len;) {
        size_t n = strcspn(w, " ");
        o += (size_t)snprintf(out + o, len - o, "%s %.*s", w == p->words ? "" : ",", (int)n, w);
        w += n;
        w += strspn(w, " ");
      }
      break;
    }
    case GC_PARAM_STRING:
      snprintf(out, len, "any text");
      break;
  }
}

static gc_param_value_t default_of(const gc_param_info_t *p) {
  gc_param_value_t v;
  if (p->type == GC_PARAM_DOUBLE)
    v.d = p->dflt;
  else if (p->type == GC_PARAM_STRING)
    v.s = NULL;
  else
    v.i = (long)p->dflt;
  return v;
}

/* v as the user would write it; "" for an unset string. */
static void value_text(const gc_param_info_t *p, gc_param_value_t v, char *out, size_t len) {
  switch (p->type) {
    case GC_PARAM_DOUBLE:
      snprintf(out, len, "%g", v.d);
      break;
    case GC_PARAM_STRING:
      snprintf(out, len, "%s", v.s ? v.s : "");
      break;
    case GC_PARAM_ENUM:
      word_at(p->words, v.i, out, len);
      break;
    default:
      if (v.i == GC_PARAM_AUTO && p->dflt == GC_PARAM_AUTO)
        snprintf(out, len, "auto");
      else
        snprintf(out, len, "%ld", v.i);
  }
}

bool gc_param_parse(gc_param_id_t id, const char *s, gc_param_value_t *out, char *why,
                    size_t why_len) {
  const gc_param_info_t *p = &gc_param_info[id];
  *out = default_of(p);
  if (!s || !*s) return true;
  bool ok = false;
  switch (p->type) {
    case GC_PARAM_BOOL:
      ok = parse_bool(s, &out->i);
      break;
    case GC_PARAM_INT:
    case GC_PARAM_SIZE:
      ok = parse_long(s, (long)p->lo, (long)p->hi, &out->i);
      break;
    case GC_PARAM_DOUBLE:
      ok = parse_double(s, p->lo, p->hi, &out->d);
      break;
    case GC_PARAM_ENUM:
      ok = parse_word(s, p->words, &out->i);
      break;
    case GC_PARAM_STRING:
      out->s = s;
      ok = true;
      break;
  }
  if (!ok && why) {
    char form[160], used[64];
    form_of(p, form, sizeof form);
    value_text(p, *out, used, sizeof used);
    if (p->dflt == GC_PARAM_AUTO && p->type != GC_PARAM_DOUBLE)
      snprintf(used, sizeof used, "the default");
    snprintf(why, why_len, "%s=%.200s%s is not %s; %s used", p->name, s,
             strlen(s) > 200 ? "..." : "", form, used);
  }
  return ok;
}

static void notice(gc_param_id_t id) {
  char why[512];
  gc_param_value_t v;
  gc_param_parse(id, param_bad[id], &v, why, sizeof why);
  GC_NOTICE("%s", why);
}

gc_param_value_t gc_param_load(gc_param_id_t id) {
  const gc_param_info_t *p = &gc_param_info[id];
  bool say = false;
  pthread_mutex_lock(&load_lock);
  if (!atomic_load_explicit(&gc_param_ready[id], memory_order_acquire)) {
    const char *s = getenv(p->name);
    gc_param_value_t v;
    bool ok = gc_param_parse(id, s, &v, NULL, 0);
    param_set[id] = s && *s;
    free(param_bad[id]);
    param_bad[id] = ok ? NULL : strdup(s);
    if (ok && p->type == GC_PARAM_STRING && v.s) {
      /* Our own copy: the value stays if the environment changes. */
      char *c = strdup(v.s);
      v.s = c;
      if (!c) param_set[id] = false;
    }
    gc_param_values[id] = v;
    atomic_store_explicit(&gc_param_ready[id], 1, memory_order_release);
    /* The log reads GCSHIM_DEBUG while setting itself up: it says a bad
     * one itself, once ready (gc_params_log_ready). */
    say = !ok && id != GC_P_GCSHIM_DEBUG;
  }
  gc_param_value_t v = gc_param_values[id];
  pthread_mutex_unlock(&load_lock);
  if (say && param_bad[id]) {
    gc_log_level(); /* the log set up before anything is written to it */
    notice(id);
  }
  return v;
}

void gc_param_host(char *out, size_t len) {
  const char *th = gc_param_GCSHIM_TEST_HOST();
  out[0] = 0;
  if (th) {
    snprintf(out, len, "%s", th);
  } else if (len > 1) {
    gethostname(out, len - 1);
    out[len - 1] = 0;
  }
}

void gc_params_log_ready(void) {
  gc_param_get(GC_P_GCSHIM_DEBUG);
  if (param_bad[GC_P_GCSHIM_DEBUG]) notice(GC_P_GCSHIM_DEBUG);
  if (gc_log_level() < GC_LOG_INFO) return;
  /* A setting not read yet is shown as it would be read now, and not
   * cached: the dump must not fix a value before its first use (a test's
   * rank sets GCSHIM_TEST_HOST after the fork, before its first call). */
  for (int i = 0; i < GC_PARAM_COUNT; i++) {
    const gc_param_info_t *p = &gc_param_info[i];
    gc_param_value_t v;
    bool set, bad;
    char text[300];
    pthread_mutex_lock(&load_lock);
    if (atomic_load_explicit(&gc_param_ready[i], memory_order_acquire)) {
      v = gc_param_values[i];
      set = param_set[i];
      bad = param_bad[i] != NULL;
    } else {
      const char *s = getenv(p->name);
      bad = !gc_param_parse((gc_param_id_t)i, s, &v, NULL, 0);
      set = s && *s;
    }
    value_text(p, v, text, sizeof text);
    pthread_mutex_unlock(&load_lock);
    if (p->type == GC_PARAM_STRING)
      GC_INFO("setting %s%s%s", p->name, v.s ? "=" : " unset", text);
    else
      GC_INFO("setting %s=%s (%s)", p->name, text,
              bad   ? "malformed: default"
              : set ? "set"
                    : "default");
  }
}

/* Markdown table cells hold no '|' and no line break. */
static void cell(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '|') fputc('\\', f);
    fputc(*s == '\n' ? ' ' : *s, f);
  }
}

void gc_params_markdown(FILE *f) {
  fprintf(f, "| variable | accepted | default | read by | meaning |\n|---|---|---|---|---|\n");
  for (int i = 0; i < GC_PARAM_COUNT; i++) {
    const gc_param_info_t *p = &gc_param_info[i];
    char form[160], dflt[64];
    form_of(p, form, sizeof form);
    if (p->type == GC_PARAM_STRING) snprintf(form, sizeof form, "text");
    value_text(p, default_of(p), dflt, sizeof dflt);
    fprintf(f, "| `%s` | ", p->name);
    cell(f, form);
    fprintf(f, " | %s | ", p->type == GC_PARAM_STRING ? "unset" : dflt);
    cell(f, p->readers);
    fputs(" | ", f);
    cell(f, p->doc);
    fputs(" |\n", f);
  }
}

void gc_params_reset(void) {
  pthread_mutex_lock(&load_lock);
  for (int i = 0; i < GC_PARAM_COUNT; i++) {
    if (atomic_load(&gc_param_ready[i]) && gc_param_info[i].type == GC_PARAM_STRING)
      free((char *)gc_param_values[i].s);
    atomic_store(&gc_param_ready[i], 0);
    free(param_bad[i]);
    param_bad[i] = NULL;
    param_set[i] = false;
  }
  pthread_mutex_unlock(&load_lock);
}
