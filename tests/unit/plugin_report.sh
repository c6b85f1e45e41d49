#!/bin/sh
# plugin_report.sh - libgcshim.so opened as NCCL opens its plugins
# (unit/plugin_load: 3 AllReduce with kernel channels 2 us apart, one tuner
# decision): the job report has the profiler's GPU times and algorithms per
# op and the tuner's decisions per group, in the JSON and in the table.
shim=../src/.libs/libgcshim.so
prog=./unit/plugin_load
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build"; exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "skipped: no python3"; exit 77; }
tmp=$(mktemp -d /tmp/gcshim-plugin-report-XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
lib="$(cd "$(dirname "$shim")" && pwd)/libgcshim.so"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
if GCSHIM_REPORT="$tmp/p.json" "$prog" "$lib" plugin >"$tmp/out" 2>&1 &&
   python3 - "$tmp/p.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = [g for g in d["groups"] if g["name"] == "tp"]
assert len(g) == 1, d
o = {o["op"]: o for o in g[0]["ops"]}["AllReduce"]
assert o["calls"] == 3 and o["bytes"] == 3072, o
assert o["gpu_time_s"] == {"calls": 3, "min": 2e-06, "mean": 2e-06, "max": 2e-06}, o
assert o["algos"] == {"RING": 3} and o["protos"] == {"SIMPLE": 3}, o
assert g[0]["tuner"] == [{"op": "AllReduce", "size": 1024, "decision": "no_match", "algo": None,
                          "proto": None, "channels": None, "count": 1}], g[0]
PY
then ok "JSON: GPU times, algorithms and tuner decisions of tp"
else bad "JSON"; cat "$tmp/out" "$tmp/p.json"; fi
if GCSHIM_REPORT="$tmp/t.txt" "$prog" "$lib" plugin >"$tmp/out" 2>&1 &&
   grep -q "^  tp .* AllReduce  *3  *3072 .*  2.00  *2.00  *2.00$" "$tmp/t.txt" &&
   grep -q "sizes: <=1K:3 RING:3 SIMPLE:3$" "$tmp/t.txt" &&
   grep -q "^# tuner decisions" "$tmp/t.txt" &&
   grep -q "^  tp  *AllReduce  *1K no_match  *-  *-  *-  *1$" "$tmp/t.txt"
then ok "table: GPU time columns, algorithms, tuner decisions"
else bad "table"; cat "$tmp/out" "$tmp/t.txt"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
