/*
 * plugin.h - what the NCCL plugins of libgcshim.so (tuner.c, profiler.c)
 * share with each other, the report and the tests.
 */
#ifndef GC_PLUGIN_H
#define GC_PLUGIN_H

#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "core/params.h"

/* ---- communicator names (profiler init -> tuner) ---------------------------
 * The profiler's init learns commName for a commId; the tuner's v5 init only
 * gets the commId. Names are remembered here (bounded table). */
GC_INTERNAL void gc_plugin_name_set(uint64_t comm_id, const char *name);
/* Copies the name of comm_id into buf; false (buf = hash in hex) when unknown. */
GC_INTERNAL bool gc_plugin_name_get(uint64_t comm_id, char *buf, size_t len);

/* ---- communicator -> report group ------------------------------------------
 * The statistics group (core/stats.h) that a communicator's profiler GPU
 * times and tuner decisions go to: the profiler's own group when it counts
 * the calls, else the shim's group of that communicator, learned from
 * gc_stats_current when a plugin entry point runs inside the shim's call.
 * Keyed by the commId both plugins' v5 init get. */
GC_INTERNAL void gc_plugin_group_set(uint64_t comm_id, int group);
GC_INTERNAL int gc_plugin_group_get(uint64_t comm_id); /* -1: not known */
/* At a plugin's init: asks the shim to mark its calls in flight
 * (gc_stats_current), and names the shim's op ids in reports when the shim
 * has not (a plugin linked without the interposer, as in the unit tests). */
GC_INTERNAL void gc_plugin_op_names(void);

/* ---- tuner decisions --------------------------------------------------------
 * Counted per group name, op (ncclFunc_t 0..4) and size bucket
 * (gc_stats_bucket: smallest 2^b >= bytes). */
enum { GC_TUNER_APPLIED = 0, GC_TUNER_UNUSABLE = 1, GC_TUNER_NO_MATCH = 2, GC_TUNER_KINDS = 3 };
GC_INTERNAL uint64_t gc_tuner_count(const char *group, int op, int bucket, int kind);
/* Writes every non-zero counter, one line each; returns the number of lines. */
GC_INTERNAL int gc_tuner_dump(FILE *f);
GC_INTERNAL void gc_tuner_reset(void);
/* The tuner's rules parsed from text (len bytes, a GCSHIM_TUNER_RULES file's
 * content) as from the file: the number of rules, 0 when any line is wrong
 * (as the file's: then no rules), -1 without memory, -2 when a parsed rule
 * holds a value no rule may hold. For tests and tests/fuzz. */
GC_INTERNAL int gc_tuner_rules_parse_string(const char *text, size_t len);

/* ---- profiler statistics (besides the shim's registry) --------------------- */
typedef struct {
  uint64_t colls, p2ps, graph_captured, kernel_ch, gpu_ns, dropped;
  uint64_t algo[8];  /* tree ring collnet_direct collnet_chain nvls nvls_tree pat other */
  uint64_t proto[4]; /* ll ll128 simple other */
  uint64_t channels; /* sum of nChannels of collectives and p2p */
} gc_prof_counts_t;
/* Counts of the group named name; false when the profiler never saw it. */
GC_INTERNAL bool gc_prof_counts(const char *name, gc_prof_counts_t *out);
/* Events dropped because a pool was exhausted, over every context. */
GC_INTERNAL uint64_t gc_prof_dropped(void);
GC_INTERNAL int gc_prof_dump(FILE *f);
GC_INTERNAL void gc_prof_reset(void);
/* Tests: behave as if the shim were preloaded (1) or not (0); -1: look. */
GC_INTERNAL void gc_prof_test_shim_counts(int on);

/* GCSHIM_PLUGIN_REPORT=path (%p: pid): both dumps written there at exit
 * (registered once, at the first init of either plugin). */
GC_INTERNAL void gc_plugin_report_at_exit(void);

#endif /* GC_PLUGIN_H */
