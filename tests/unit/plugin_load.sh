#!/bin/sh
# plugin_load.sh - libgcshim.so opened as NCCL opens a plugin: the profiler
# counts the calls into the job report (GCSHIM_REPORT) by commName. With the
# shim also preloaded, the profiler leaves the counting to the shim (no call
# counted twice): it says so at init and puts nothing in the report.
shim=../src/.libs/libgcshim.so
prog=./unit/plugin_load
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build"; exit 77
fi
tmp=$(mktemp -d /tmp/gcshim-plugin-XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
if GCSHIM_PLUGIN_REPORT="$tmp/plugin.%p.txt" GCSHIM_REPORT="$tmp/p.json" "$prog" "$(cd "$(dirname "$shim")" && pwd)/libgcshim.so" plugin \
    >"$tmp/out" 2>&1 && grep -q "counting calls" "$tmp/out" &&
   python3 - "$tmp/p.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = [g for g in d["groups"] if g["name"] == "tp"]
assert len(g) == 1 and g[0]["source"] == "commName", d
o = {o["op"]: o for o in g[0]["ops"]}
assert o["AllReduce"]["calls"] == 3 and o["AllReduce"]["bytes"] == 3 * 1024, o
PY
   grep -q "^profiler tp colls 3 p2p 0 graph_captured 0 kernel_ch 3 gpu_ns 6000 dropped 0" \
     "$tmp"/plugin.*.txt &&
   grep -q "^tuner tp allreduce <=2^10 B no_match 1" "$tmp"/plugin.*.txt
then ok "as a plugin: the report has tp AllReduce x3, GCSHIM_PLUGIN_REPORT GPU time and tuner"
else bad "as a plugin"; cat "$tmp/out" "$tmp/p.json" "$tmp"/plugin.*.txt 2>/dev/null; fi
rm -f "$tmp/q.json"
if LD_PRELOAD="$shim" GCSHIM_REPORT="$tmp/q.json" "$prog" "$(cd "$(dirname "$shim")" && pwd)/libgcshim.so" \
    preload >"$tmp/out" 2>&1 && grep -q "GPU time only" "$tmp/out" && [ ! -e "$tmp/q.json" ]
then ok "preloaded too: the profiler leaves calls to the shim"
else bad "preloaded too"; cat "$tmp/out"; fi
rm -f "$tmp/r.json"
if LD_PRELOAD="$shim" GCSHIM_DISABLE=1 GCSHIM_REPORT="$tmp/r.json" "$prog" \
    "$(cd "$(dirname "$shim")" && pwd)/libgcshim.so" disabled >"$tmp/out" 2>&1 &&
   grep -q "counting calls" "$tmp/out"
then ok "preloaded with GCSHIM_DISABLE=1: the profiler counts"
else bad "preloaded, disabled"; cat "$tmp/out"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
