#!/bin/sh
# shim_preload.sh - shim_preload (a program linking nothing) under
# LD_PRELOAD=libgcshim.so: with the real NCCL (GC_REAL_NCCL, default
# /usr/local/cuda/lib/libnccl.so.2), and with the fake older NCCL of
# test_nccl_api; each also with GCSHIM_DISABLE=1. Runs from tests/ of the
# build tree. Skips (77) the real runs when that library is absent.
shim=../src/.libs/libgcshim.so
fake=./unit/.libs/libfakenccl.so
prog=./unit/shim_preload
real=${GC_REAL_NCCL:-/usr/local/cuda/lib/libnccl.so.2}
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build (a sanitizer runtime cannot be preloaded here)"
  exit 77
fi
pass=0 fail=0
run() { # mode library disable [GCSHIM_NCCL_LIBRARY, default: library]
  lib=${4-$2}
  if env LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$lib" GCSHIM_DISABLE="$3" "$prog" "$1" "$2"; then
    pass=$((pass + 1)); echo "ok: $1 GCSHIM_DISABLE=$3 GCSHIM_NCCL_LIBRARY=$lib"
  else
    fail=$((fail + 1)); echo "FAIL: $1 GCSHIM_DISABLE=$3 GCSHIM_NCCL_LIBRARY=$lib"
  fi
}
run fake "$fake" 0
run fake "$fake" 1
skipped=
if [ -r "$real" ]; then
  run real "$real" 0
  run real "$real" 1
  # No GCSHIM_NCCL_LIBRARY: the program's own RTLD_LOCAL copy is found.
  run real "$real" 0 ""
else
  skipped="$real absent"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] || exit 1
if [ -n "$skipped" ]; then echo "skipped: $skipped"; exit 77; fi
exit 0
