/* api_prog.c - a program built against the installed gcshim only
 * (`pkg-config --cflags --libs gcshim`, #include <gcshim/gc.h>): every rank
 * of the launch sums rank + 1 over a host all-reduce and checks the total.
 * Prints "N passed, N failed". */
#include <gcshim/gc.h>
#include <stdint.h>
#include <stdio.h>

int main(void) {
  int passed = 0, failed = 0;
  if (gc_init(NULL) != GC_OK) {
    fprintf(stderr, "gc_init: %s\n", gc_last_error());
    printf("0 passed, 1 failed\n");
    return 1;
  }
  int n = gc_world_size(), me = gc_world_rank(), ranks[64], sizes[1] = {n};
  for (int r = 0; r < n && r < 64; r++) ranks[r] = r;
  gc_group_options_t o = {.group_ranks = ranks, .group_sizes = sizes, .num_groups = 1,
                          .local_rank = me, .backend = "host", .group_name = "installed"};
  gc_group_t *g = NULL;
  int64_t x = me + 1, y = 0;
  gc_tensor_t in = {.data = &x, .dtype = GC_INT64}, out = {.data = &y, .dtype = GC_INT64};
  if (gc_group_new(&o, &g) == GC_OK && gc_all_reduce(g, &in, &out, GC_SUM, NULL) == GC_OK &&
      y == (int64_t)n * (n + 1) / 2)
    passed++;
  else
    failed++, fprintf(stderr, "rank %d: sum %lld: %s\n", me, (long long)y, gc_last_error());
  gc_finalize();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
