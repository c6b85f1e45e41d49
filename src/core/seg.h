/*
 * seg.h - the one helper for every /dev/shm segment (CPU groups, message
 * queues, communicator registrations, job reports), so that one rule holds
 * everywhere (docs/CPU_GROUPS.md, "Segments"):
 *   - names carry the effective uid; a name another user took is refused
 *     with its owner named, never waited on;
 *   - exclusive create (O_EXCL, mode 0600 whatever the umask); the creator
 *     holds the file's lock while it reserves the space (posix_fallocate)
 *     and writes the header, so nobody maps a half-made segment;
 *   - opening never follows a symlink and checks owner (euid), mode 0600,
 *     size and header;
 *   - only segments this process made, or found stale and ours, are
 *     unlinked;
 *   - the first creation in a process sweeps the segments of this uid whose
 *     creator and recorded members are all dead.
 */
#ifndef GC_SEG_H
#define GC_SEG_H

#include <sys/statvfs.h>

#include "core/core.h"

#define GC_SEG_MAGIC 0x3130676573636730ull /* "0gcseg01" */
#define GC_SEG_NAME_MAX 96
#define GC_SEG_DIR "/dev/shm"

/* The first 64 bytes of every segment, written by its creator before the
 * segment has a name. The member pid table (int32 pids at pids_off, every
 * pids_stride bytes, pids_n of them; 0 = empty) lets the sweep keep a
 * segment whose creator left while members still use it. */
typedef struct {
  uint64_t magic;
  uint64_t bytes;
  uint64_t start; /* creator's start time: /proc/<pid>/stat field 22 */
  int32_t pid;    /* creator */
  uint32_t uid;   /* creator's effective uid */
  uint32_t pids_off, pids_stride, pids_n, flags; /* flags: GC_SEG_KEEP_DEAD */
  uint64_t reserved[2];
} gc_seg_hdr_t;
_Static_assert(sizeof(gc_seg_hdr_t) == 64, "segment header is one line");

typedef struct {
  char name[GC_SEG_NAME_MAX]; /* "/gcs-...": shm_open's form, below GC_SEG_DIR */
  void *base;
  size_t bytes;
  dev_t dev;
  ino_t ino;
  int fd;       /* open until gc_seg_close_fd or gc_seg_close; -1 after */
  bool created; /* this process made it */
} gc_seg_t;

enum {
  GC_SEG_CREATE = 1, /* make it; the name must be free (or stale: then removed) */
  GC_SEG_ATTACH = 2, /* open an existing one */
};

/* A dead member's data still counts (a job report's deposits): openers
 * never take such a segment back, and the sweep removes it only once it
 * is older than GCSHIM_TIMEOUT, the longest a job waits for its ranks. */
#define GC_SEG_KEEP_DEAD 1u

/* Writes the caller's part of a new segment before it gets its name. */
typedef void (*gc_seg_init_fn)(void *base, size_t bytes, void *arg);

typedef struct {
  const char *what; /* prefix of error messages */
  size_t bytes;     /* size to create; for attach 0 = any, else exact */
  gc_seg_init_fn init;
  void *arg;
  uint32_t pids_off, pids_stride, pids_n; /* member pid table for the header */
  double timeout_s; /* bounds the wait for a creator's lock; <= 0: GCSHIM_TIMEOUT */
  bool any_size;    /* attach whatever size the creator chose (its header says) */
  uint32_t flags;   /* GC_SEG_KEEP_DEAD */
} gc_seg_opts_t;

/* Creates or attaches name (how: GC_SEG_CREATE and/or GC_SEG_ATTACH). With
 * both, a name that exists is attached. Returns GC_ERR_NOT_FOUND (attach
 * only, no such name), GC_ERR_STATE (create only, name in use by a live
 * segment), GC_ERR_NO_MEMORY (/dev/shm too small or full: the message says
 * how much is needed and free), GC_ERR_INVALID_ARG (bad size or name),
 * GC_ERR_SYSTEM (foreign owner, symlink, wrong mode or size, I/O). */
GC_INTERNAL gc_status_t gc_seg_open(const char *name, int how, const gc_seg_opts_t *o,
                                    gc_seg_t *out);
/* Closes the fd kept after open (the mapping stays). */
GC_INTERNAL void gc_seg_close_fd(gc_seg_t *s);
/* Unlinks s's name while it still names s's file. */
GC_INTERNAL void gc_seg_unlink(gc_seg_t *s);
/* Unmaps and closes; does not unlink. */
GC_INTERNAL void gc_seg_close(gc_seg_t *s);
/* Removes the segment at name if it is a regular file of ours that is
 * still the file behind fd (under the file's lock, so that two processes
 * removing one stale segment never remove a fresh one made meanwhile). */
GC_INTERNAL void gc_seg_remove_if(const char *name, int fd);

/* True when the creator recorded in h (pid and start time) is gone. */
GC_INTERNAL bool gc_seg_creator_dead(const gc_seg_hdr_t *h);
/* Start time of pid in clock ticks since boot (field 22 of
 * /proc/<pid>/stat); 0 if unknown. */
GC_INTERNAL uint64_t gc_proc_start_time(pid_t pid);

/* Removes this uid's stale segments now; returns how many. Runs once per
 * process on its own at the first creation. */
GC_INTERNAL int gc_seg_sweep(void);

/* Tests: replace posix_fallocate, statvfs and geteuid (as another user
 * sees our files); NULL restores them. */
typedef struct {
  int (*fallocate)(int fd, off_t off, off_t len);
  int (*statvfs)(const char *path, struct statvfs *st);
  uid_t (*geteuid)(void);
} gc_seg_hooks_t;
GC_INTERNAL void gc_seg_set_hooks(const gc_seg_hooks_t *h);

#endif
