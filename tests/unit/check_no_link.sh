#!/bin/sh
# check_no_link.sh - libgcshim.so and libgccoord.so need neither libnccl,
# libcudart nor libcuda at link time (both are opened with dlopen), and
# libgcshim.so exports every ncclX of nccl_api.def (besides the NCCL plugin
# symbols of plugin/) and no pnccl* symbol.
# Runs from tests/ of the build tree; srcdir is set by the test harness.
libs=../src/.libs
def="${srcdir:-.}/../src/nccl/nccl_api.def"
command -v readelf >/dev/null 2>&1 || { echo "skipped: no readelf"; exit 77; }
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
for lib in libgcshim.so libgccoord.so; do
  f="$libs/$lib"
  if [ ! -f "$f" ]; then bad "$f not built"; continue; fi
  needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  case " $needed" in
    *" libnccl"* | *" libcudart"* | *" libcuda."*) bad "$lib needs: $needed" ;;
    *) ok "$lib needs only: $needed" ;;
  esac
done
listed=$(grep -c '^GC_NCCL_API(' "$def")
exported=$(readelf --dyn-syms -W "$libs/libgcshim.so" | awk '$5 != "LOCAL" && $7 != "UND" {print $8}' |
  sed 's/@.*//' | grep '^nccl' | grep -vc '^ncclTunerPlugin_v[0-9]*$\|^ncclProfiler_v[0-9]*$')
pexported=$(readelf --dyn-syms -W "$libs/libgcshim.so" | awk '$7 != "UND" {print $8}' | grep -c '^pnccl')
[ "$exported" -eq "$listed" ] && ok "libgcshim.so exports $exported ncclX of $listed" ||
  bad "libgcshim.so exports $exported ncclX, nccl_api.def lists $listed"
[ "$pexported" -eq 0 ] && ok "no pnccl* exported" || bad "$pexported pnccl* exported"
coord=$(readelf --dyn-syms -W "$libs/libgccoord.so" | awk '$7 != "UND" {print $8}' | grep -c '^p\?nccl')
[ "$coord" -eq 0 ] && ok "libgccoord.so exports no nccl symbol" || bad "libgccoord.so exports $coord nccl symbols"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
