#!/bin/sh
# libgcshim.so exports the plugin symbols NCCL 2.28/2.27 look up (as data).
lib=${top_builddir:-..}/src/.libs/libgcshim.so
fail=0
for s in ncclTunerPlugin_v5 ncclTunerPlugin_v4 ncclProfiler_v5 ncclProfiler_v4; do
  if nm -D --defined-only "$lib" | grep -Eq " [DRdr] $s\$"; then
    echo "ok: $s"
  else
    echo "FAIL: $s not exported by $lib"; fail=1
  fi
done
exit $fail
