#!/bin/sh
# mismatch_host.sh - gpu/nccl_mismatch on the CPU: the hostnccl fixture
# under the preloaded shim with GCSHIM_CHECK=1, host memory, 2 and 3 forked
# ranks: every rank gets ncclInvalidUsage for each mismatch, and the
# communicator works after it. Without GCSHIM_CHECK it must skip.
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
prog=./gpu/nccl_mismatch
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build"; exit 77
fi
pass=0 fail=0
for n in 2 3; do
  if timeout 60 env LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" NCCL_MISMATCH_LIBRARY="$fix" \
      GCSHIM_CHECK=1 GCSHIM_TIMEOUT=20 "$prog" --host $n >mismatch.$n.log 2>&1; then
    pass=$((pass + 1)); echo "ok: $n ranks: $(tail -1 mismatch.$n.log)"
  else
    fail=$((fail + 1)); echo "FAIL: $n ranks"; cat mismatch.$n.log
  fi
done
LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" NCCL_MISMATCH_LIBRARY="$fix" timeout 60 "$prog" --host 2 \
  >mismatch.0.log 2>&1
s=$?
if [ $s -eq 77 ]; then pass=$((pass + 1)); echo "ok: skips without GCSHIM_CHECK=1"
else fail=$((fail + 1)); echo "FAIL: without GCSHIM_CHECK=1 exit $s"; cat mismatch.0.log; fi
rm -f mismatch.0.log mismatch.2.log mismatch.3.log
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
