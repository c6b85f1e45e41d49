#!/bin/sh
# gcshim_ab.sh - scripts/gcshim-ab on the CPU: the hostnccl fixture's
# nccl_prog_colls (2 ranks) under the shim, GCSHIM_CHECK=0 against
# GCSHIM_CHECK=1, two pairs: a table with ratios for every op and size, the
# plot file; --times output from a command's own AB lines (ratios exact);
# --times nccl-tests (and auto) from a hand-written nccl-tests table
# (unit/nccl_tests/all_reduce.out), out-of-place and in-place per size;
# bad arguments and a failing command are errors.
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
assert lines[3].startswith("times: trace"), lines[3]
rows = [l.split() for l in lines[5:] if l.startswith("comm:0")]
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
# --times output: the command's own AB lines, no shim needed; B twice as slow.
cat >"$tmp/fake.sh" <<'EOF2'
echo "AB op=all_reduce bytes=1048576 us=$((100 * T)) group=nccl"
echo "AB op=sendrecv bytes=64 us=$((3 * T))"
EOF2
if python3 "$ab" -n 2 --a 'T=1' --b 'T=2' -- sh "$tmp/fake.sh" >"$tmp/out" 2>&1 &&
   python3 - "$tmp/out" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[3].startswith("times: output"), lines[3]
rows = {(l.split()[0], l.split()[1]): l.split() for l in lines[5:]}
ar = rows[("nccl", "all_reduce")]
assert ar[2] == "<=1M" and float(ar[3]) == 100 and float(ar[4]) == 200, ar
assert abs(float(ar[5]) - 10.486) < 0.01 and abs(float(ar[6]) - 5.243) < 0.01, ar
assert [float(x) for x in ar[-3:]] == [2.0, 2.0, 2.0], ar
sr = rows[("output", "sendrecv")]
assert sr[2] == "<=64" and float(sr[-2]) == 2.0, sr
PY
then ok "--times output from AB lines (auto)"
else bad "--times output"; cat "$tmp/out"; fi
# --times nccl-tests: an nccl-tests table (hand-written sample of its printf
# formats), B's times twice A's, picked by auto too; no table is an error.
nts=$(cd "${top_srcdir:-..}/tests/unit/nccl_tests" && pwd)/all_reduce.out
cat >"$tmp/nt.sh" <<'EOF2'
awk -v t="$T" '/^#/ || NF < 13 { print; next }
  { split(substr($0, 53), f, " ")
    printf "%s  %7.2f  %6s  %6s  %6s  %7.2f  %6s  %6s  %6s\n", substr($0, 1, 52), f[1] * t, f[2], f[3], f[4],
      f[5] * t, f[6], f[7], f[8] }' "$NTS"
EOF2
for how in nccl-tests auto; do
  if NTS=$nts python3 "$ab" -n 2 --times $how --a 'T=1' --b 'T=2' -- sh "$tmp/nt.sh" >"$tmp/out" 2>&1 &&
     python3 - "$tmp/out" "$nts" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[3] == "times: nccl-tests (its result table)", lines[3]
rows = {(l.split()[0], l.split()[2]): l.split() for l in lines[5:]}
assert sorted(rows) == [("in-place", "<=32"), ("in-place", "<=8"), ("out-of-place", "<=32"),
                        ("out-of-place", "<=8")], sorted(rows)
sample = [l.split() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
want = {("out-of-place", "<=" + r[0]): float(r[5]) for r in sample}
want.update({("in-place", "<=" + r[0]): float(r[9]) for r in sample})
for k, r in rows.items():
    assert r[1] == "all_reduce", r
    assert abs(float(r[3]) - want[k]) < 0.006 and abs(float(r[4]) - 2 * want[k]) < 0.011, (r, want[k])
    size = int(k[1][2:])
    assert abs(float(r[5]) - size / (float(r[3]) * 1e3)) < 1e-3, r
    assert abs(float(r[-2]) - 2.0) < 0.01 and float(r[-3]) <= float(r[-2]) <= float(r[-1]), r
PY
  then ok "--times $how: nccl-tests table, out-of-place and in-place per size"
  else bad "--times $how of an nccl-tests table"; cat "$tmp/out"; fi
done
if python3 "$ab" -n 1 --times nccl-tests -- true >"$tmp/out" 2>&1; then bad "nccl-tests without a table accepted"
else grep -q "printed no nccl-tests result rows" "$tmp/out" && ok "no nccl-tests table refused" || bad "no table msg"; fi
if python3 "$ab" -n 1 --times output -- true >"$tmp/out" 2>&1; then bad "output without AB lines accepted"
else grep -q "printed no 'AB" "$tmp/out" && ok "no AB lines refused" || bad "no AB lines msg"; fi
if python3 "$ab" -n 1 --a 'junk' -- true >"$tmp/out" 2>&1; then bad "bad --a accepted"
else grep -q "not NAME=VALUE" "$tmp/out" && ok "bad --a refused" || bad "bad --a message"; fi
if python3 "$ab" -n 1 -- false >"$tmp/out" 2>&1; then bad "failing command accepted"
else grep -q "exited with 1" "$tmp/out" && ok "failing command reported" || bad "failing msg"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
