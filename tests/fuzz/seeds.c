/* seeds.c - writes tests/fuzz/corpus/<target>/ seed inputs with the real
 * encoders (gc_dict_encode, gc_mq_create's handle, a rank's report
 * deposit) and the documented syntaxes. Run by `scripts/fuzz --seeds`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/dict.h"
#include "core/report.h"
#include "core/stats.h"

static const char *dir;

static void put(const char *target, const char *name, const void *p, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
    perror(path);
    exit(1);
  }
}

static void put_str(const char *target, const char *name, const char *s) {
  put(target, name, s, strlen(s));
}

static void dict_seed(const char *name, gc_tensor_dict_t *d, const bool *sliced) {
  void *buf;
  size_t len;
  if (gc_dict_encode(d, sliced, &buf, &len) != GC_OK) exit(1);
  put("dict", name, buf, len);
  free(buf);
  gc_tensor_dict_free(d);
}

static void dicts(void) {
  gc_tensor_dict_t *d;
  gc_tensor_dict_new(&d);
  dict_seed("empty", d, NULL);
  gc_tensor_dict_new(&d);
  float data[6] = {0};
  gc_tensor_t t = {.data = data, .dtype = GC_FLOAT32, .ndim = 2, .shape = {2, 3}};
  gc_tensor_dict_set_tensor(d, "hidden", &t);
  gc_tensor_t c = {
      .data = (void *)8, .dtype = GC_INT64, .ndim = 1, .shape = {5}, .device = {GC_DEVICE_CUDA, 3}};
  gc_tensor_dict_set_tensor(d, "on_gpu", &c);
  gc_tensor_t e = {.dtype = GC_BFLOAT16, .ndim = 3, .shape = {4, 0, 2}};
  gc_tensor_dict_set_tensor(d, "empty", &e);
  gc_tensor_dict_set_bytes(d, "blob", "abc\0def", 7);
  gc_tensor_dict_set_int(d, "step", -42);
  gc_tensor_dict_set_float(d, "temp", 0.75);
  gc_tensor_dict_set_none(d, "void");
  gc_tensor_dict_set_int(d, "", 7);
  bool sliced[8] = {true};
  dict_seed("every_kind", d, sliced);
  gc_tensor_dict_new(&d);
  char key[16];
  for (int i = 0; i < 40; i++) {
    snprintf(key, sizeof key, "k%d", i);
    gc_tensor_dict_set_int(d, key, i);
  }
  dict_seed("forty_keys", d, NULL);
}

static void groups(void) {
  put_str("groups", "doc", "tp=0-3,4-7;pp=0,4;dp=*");
  put_str("groups", "singles", "a=0,1,2,3;b=3,2;c=0-1,2-3,4");
  put_str("groups", "bad_parts", "=0;x;y=1-;z=3-2;w=0-70000;ok=0-3");
  put_str("groups", "world", "world=0-7;any=*");
}

static void tuner(void) {
  put_str("tuner", "doc", "group=tp* op=allreduce bytes=0-64K algo=ring proto=ll channels=4\n");
  put_str("tuner", "several",
          "# comment\n\nop=bcast bytes=1M- algo=tree\ngroup=pp:? op=allgather proto=simple\n"
          "op=reducescatter bytes=4096 algo=nvls proto=ll128 channels=64 # trailing\n");
  put_str("tuner", "bad", "op=allreduce bytes=2M-1M\n");
}

static void report(void) {
  static const char *names[] = {"AllReduce", "AllGather", "Send", "Recv"};
  gc_stats_set_op_names(names, 4);
  gc_stats_group_info_t info = {.key = 42, .name = "tp:0", .size = 2, .rank_in_group = 0};
  for (int i = 0; i < 64; i++) info.ranks[i] = i < 2 ? i : -1;
  int g0, g1;
  if (gc_stats_group_add(&info, &g0) != GC_OK) exit(1);
  info.key = 7;
  snprintf(info.name, sizeof info.name, "pp:0");
  if (gc_stats_group_add(&info, &g1) != GC_OK) exit(1);
  gc_stats_record(g0, 0, 1 << 20, 1000, false);
  gc_stats_record(g0, 0, 4096, 10, true);
  gc_stats_record(g0, 1, 65536, 200, false);
  gc_stats_record(g1, 2, 100, 5, false);
  gc_stats_record(g1, 3, 100, 6, false);
  gc_stats_record_algo(g0, 0, 1, 2);
  size_t n = 0;
  void *buf = gc_report_deposit_test(&n);
  if (!buf || !n) exit(1);
  put("report", "two_groups", buf, n);
  free(buf);
}

static void mq(void) {
  gc_mq_t *q;
  gc_mq_handle_t h;
  if (gc_mq_create(2, 0, 0, true, &q) != GC_OK || gc_mq_get_handle(q, &h) != GC_OK) exit(1);
  gc_mq_destroy(q); /* its segment is gone: the handle names none */
  unsigned char in[2 + sizeof h.bytes] = {0, 1};
  memcpy(in + 2, h.bytes, sizeof h.bytes);
  put("mq", "handle", in, sizeof in);
  in[0] = 2; /* checksum made right by the target: flip a size */
  in[2 + 20] ^= 1;
  put("mq", "handle_sizes", in, sizeof in);
  unsigned char msgs[1 + 3 + 6 + 2 + 130 * 2 + 1] = {1, 3, 'a', 'b', 'c', 'd', 'e', 'f', 0, 130};
  for (size_t i = 10; i < sizeof msgs; i++) msgs[i] = (unsigned char)i;
  put("mq", "messages", msgs, sizeof msgs);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: seeds CORPUS_DIR\n");
    return 2;
  }
  dir = argv[1];
  dicts();
  groups();
  tuner();
  report();
  mq();
  return 0;
}
