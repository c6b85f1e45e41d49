/*
 * report.h - the statistics report of a job (DESIGN.md "Statistics and
 * reports"): each rank deposits its records (stats.h) in the job's
 * shared-memory segment; the last rank out, or rank 0 after a bounded wait
 * (GCSHIM_TIMEOUT, shortened when the missing ranks are dead), merges them
 * and writes one report naming the ranks that never came. Nobody waits on
 * anybody else otherwise.
 *
 * GCSHIM_REPORT: the path (%h host, %p pid, %r rank: a report per rank,
 * unmerged); ".json" at the end for the JSON of API.md, "-" for a human
 * table on stderr. Unset: no report, no segment.
 */
#ifndef GC_REPORT_H
#define GC_REPORT_H

#include <stdio.h>

#include "core/core.h"

/* True when GCSHIM_REPORT asks for a report (read once). */
GC_INTERNAL bool gc_report_enabled(void);

/* Joins the job named by key (identical on its members; any string) as rank
 * of size: opens (or creates) its segment without waiting for anyone.
 * nccl_version goes into the report (0: none). Once per process; later calls
 * are ignored. Failures are reported (gc_error) and leave reports per rank. */
GC_INTERNAL gc_status_t gc_report_job_open(const char *key, int rank, int size, int nccl_version);

/* The job's ranks on this host, when they are not all of them (a job that
 * spans hosts): its report merges these (the lowest waits for the others)
 * and is written per host. Once, after gc_report_job_open. */
GC_INTERNAL void gc_report_job_local(const int *ranks, int n);

/* Another rank of the job held by this process (one thread making several
 * ranks of the job's communicator inside one group): this process's
 * deposit stands for it too. After gc_report_job_open. */
GC_INTERNAL void gc_report_job_also(int rank);

/* Deposits this rank's statistics and writes the report when it is the
 * writer; writes this rank's timeline (GCSHIM_TRACE) too.
 * final = false (a flush: gcshim_report_flush, the job communicator's
 * release): every rank deposits, rank 0 may wait (wait) for the others,
 * and the statistics keep counting; the next generation's segment is opened
 * first. final = true (exit; later calls do nothing): after an earlier flush
 * nobody waits, and the report is rewritten only when every rank deposited
 * again (a rank that died in between leaves the earlier report in place);
 * with no earlier flush, as a flush (rank 0 may wait, the dead are named). */
GC_INTERNAL void gc_report_flush(bool final, bool wait);

/* For tests and tests/fuzz. This process's deposit (its statistics' records,
 * as a rank leaves them in the job's segment), malloc'd (NULL: no memory);
 * *len its size. */
GC_INTERNAL void *gc_report_deposit_test(size_t *len);
/* Merges blob (len bytes: a deposit, or any bytes; 8-byte aligned) as a
 * one-rank job's and writes the report's JSON and table to f (NULL: none). */
GC_INTERNAL void gc_report_merge_test(const void *blob, size_t len, FILE *f);

#endif /* GC_REPORT_H */
