/*
 * nccl_fault.c - one rank of an NCCL program for the fault campaign
 * (test_faults.c), which runs it under LD_PRELOAD=libgcshim.so with the
 * hostnccl fixture as the real NCCL. An unchanged NCCL-API program: nccl.h
 * and libc only.
 *
 *   nccl_fault id
 *       prints a new ncclUniqueId in hex
 *   nccl_fault run RANK NRANKS IDHEX FAULT POINT PATTERN
 *       ncclCommInitRank, then collectives in a loop (all-reduce, broadcast,
 *       all-gather, reduce-scatter) until one fails. FAULT is what this rank
 *       does itself before its collective number POINT: "none", "exit"
 *       (exit(0): the atexit handlers run) or "_exit" (_exit(0): nothing
 *       runs); SIGKILL and SIGSTOP come from the campaign. PATTERN is what
 *       a rank does after a failure: "exit", "abort" (ncclCommAbort, then
 *       exit) or "destroy" (ncclCommDestroy, then exit). POINT -1 with
 *       "none": the rank returns after init (a lone rank timing out).
 *
 * Prints, one line each, with CLOCK_MONOTONIC nanoseconds:
 *   start NS | init RC NS | fault NS | error ITER RC NS | done
 */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static int hex_val(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

#define COUNT 1024

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2 && !strcmp(argv[1], "id")) {
    ncclUniqueId id;
    if (ncclGetUniqueId(&id) != ncclSuccess) return 1;
    for (size_t i = 0; i < sizeof id.internal; i++)
      printf("%02x", (unsigned)(unsigned char)id.internal[i]);
    printf("\n");
    return 0;
  }
  if (argc != 8 || strcmp(argv[1], "run")) {
    fprintf(stderr, "usage: nccl_fault id | run RANK NRANKS IDHEX FAULT POINT PATTERN\n");
    return 2;
  }
  int rank = atoi(argv[2]), n = atoi(argv[3]), point = atoi(argv[6]);
  const char *fault = argv[5], *pattern = argv[7], *hex = argv[4];
  ncclUniqueId id;
  if (strlen(hex) != 2 * sizeof id.internal) return 2;
  for (size_t i = 0; i < sizeof id.internal; i++)
    id.internal[i] = (char)(hex_val(hex[2 * i]) * 16 + hex_val(hex[2 * i + 1]));

  ncclComm_t comm = NULL;
  printf("start %llu\n", now_ns());
  ncclResult_t r = ncclCommInitRank(&comm, n, id, rank);
  printf("init %d %llu\n", (int)r, now_ns());
  if (r != ncclSuccess) {
    printf("error -1 %d %llu\n", (int)r, now_ns());
    return 0;
  }
  if (point < 0 && !strcmp(fault, "none")) {
    printf("done\n");
    return 0;
  }
  float *a = calloc((size_t)COUNT * (size_t)n, sizeof *a),
        *b = calloc((size_t)COUNT * (size_t)n, sizeof *b);
  if (!a || !b) return 2;
  for (int i = 0;; i++) {
    if (i == point && strcmp(fault, "none")) {
      printf("fault %llu\n", now_ns());
      if (!strcmp(fault, "exit")) exit(0);
      _exit(0);
    }
    switch (i % 4) {
      case 0:
        r = ncclAllReduce(a, b, COUNT, ncclFloat32, ncclSum, comm, NULL);
        break;
      case 1:
        r = ncclBroadcast(a, a, COUNT, ncclFloat32, i % n, comm, NULL);
        break;
      case 2:
        r = ncclAllGather(a, b, COUNT, ncclFloat32, comm, NULL);
        break;
      default:
        r = ncclReduceScatter(b, a, COUNT, ncclFloat32, ncclSum, comm, NULL);
        break;
    }
    if (r != ncclSuccess) {
      printf("error %d %d %llu\n", i, (int)r, now_ns());
      break;
    }
  }
  if (!strcmp(pattern, "abort"))
    ncclCommAbort(comm);
  else if (!strcmp(pattern, "destroy"))
    ncclCommDestroy(comm);
  printf("done\n");
  free(a);
  free(b);
  exit(0);
}
