#!/bin/sh
# gcshim_ab.sh - scripts/gcshim-ab on the CPU: the hostnccl fixture's
# nccl_prog_colls (2 ranks) under the shim, GCSHIM_CHECK=0 against
# GCSHIM_CHECK=1, two pairs: a table with ratios for every op and size, the
# plot file; bad arguments and a failing command are errors.
ab=${top_srcdir:-..}/scripts/gcshim-ab
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
prog=./fixtures/hostnccl/nccl_prog_colls
command -v python3 >/dev/null 2>&1 || { echo "skipped: no python3"; exit 77; }
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build"; exit 77
fi
tmp=$(mktemp -d /tmp/gcshim-ab-test.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
plot=
command -v gnuplot >/dev/null 2>&1 && plot="--plot $tmp/ab.svg"
if NCCL_PROG_COUNT=17 NCCL_PROG_SEED=7 timeout 120 python3 "$ab" -n 2 --a 'GCSHIM_CHECK=0' \
    --b 'GCSHIM_CHECK=1' $plot --keep "$tmp/runs" -- env LD_PRELOAD="$shim" \
    GCSHIM_NCCL_LIBRARY="$fix" "$prog" 2 >"$tmp/out" 2>&1 &&
   python3 - "$tmp/out" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0] == "A: GCSHIM_CHECK=0" and lines[2] == "pairs: 2", lines[:3]
rows = [l.split() for l in lines[4:] if l.startswith("comm:0")]
ops = {r[1] for r in rows}
assert {"AllReduce", "AllGather", "ReduceScatter"} <= ops, ops
for r in rows:
    lo, med, hi = map(float, r[-3:])
    assert 0 < lo <= med <= hi, r
    assert float(r[3]) > 0 and float(r[4]) > 0, r
PY
then ok "table with ratios ($(grep -c '^comm:0' "$tmp/out") rows)"
else bad "table"; cat "$tmp/out"; fi
n=$(ls "$tmp/runs"/A*.json "$tmp/runs"/B*.json 2>/dev/null | grep -vc trace)
[ "$n" -eq 4 ] && ok "4 runs, 4 reports kept" || bad "$n reports kept, want 4"
if [ -n "$plot" ]; then
  grep -q "<svg" "$tmp/ab.svg" 2>/dev/null && ok "plot written" || bad "no SVG plot"
fi
if python3 "$ab" -n 1 --a 'junk' -- true >"$tmp/out" 2>&1; then bad "bad --a accepted"
else grep -q "not NAME=VALUE" "$tmp/out" && ok "bad --a refused" || bad "bad --a message"; fi
if python3 "$ab" -n 1 -- false >"$tmp/out" 2>&1; then bad "failing command accepted"
else grep -q "exited with 1" "$tmp/out" && ok "failing command reported" || bad "failing msg"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
