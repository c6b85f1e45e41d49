#!/bin/sh
# test_capture.sh - the shim counts captured calls exactly without asking
# the driver on every call: prog_capture (2 ranks) begins and ends captures
# through cuGetProcAddress_v2, a cuGetProcAddress from cuGetProcAddress and
# dlsym, with the fakecuda fixture as the driver and hostnccl as NCCL. Also
# a capture the shim cannot see begin: its sampled check must find it
# (within 2N - 1 calls for GCSHIM_TIME_EVERY=N) and say so. Runs from tests/
# of the build tree; python3 reads the JSON (skips, 77, without it).
# Beside the fault campaign (tests/faults) nothing here could tell its
# segments from ours: it holds this lock exclusively, we hold it shared.
exec 9>>"${TMPDIR:-/tmp}/gcshim-shm-tests.lock" && flock -s 9
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
fake=$PWD/preload/traps/fakecuda
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build (a sanitizer runtime cannot be preloaded here)"
  exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "skipped: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gcshim-capture.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
export GCSHIM_TIMEOUT=${GCSHIM_TIMEOUT:-60}
seed=${NCCL_PROG_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
export NCCL_PROG_SEED=$seed
echo "seed $seed"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }

# Without the shim: the program's own checks pass on the fixtures.
if LD_LIBRARY_PATH=$fake timeout 60 ./preload/prog_capture 2 >"$tmp/out" 2>&1 &&
   grep -q " 0 failed" "$tmp/out"; then ok "prog_capture without the shim: $(tail -1 "$tmp/out")"
else ko "prog_capture without the shim"; tail -20 "$tmp/out"; fi

for every in 16 1 5; do
  rm -f "$tmp/c.json"
  if env LD_LIBRARY_PATH="$fake" LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" \
       GCSHIM_TIME_EVERY=$every GCSHIM_DEBUG=INFO GCSHIM_REPORT="$tmp/c.json" \
       timeout 60 ./preload/prog_capture 2 >"$tmp/out" 2>"$tmp/err" &&
     grep -q " 0 failed" "$tmp/out"; then ok "GCSHIM_TIME_EVERY=$every: $(tail -1 "$tmp/out")"
  else ko "GCSHIM_TIME_EVERY=$every: the program failed"; tail -20 "$tmp/out" "$tmp/err"; continue; fi
  if python3 - "$tmp/c.json" "$tmp/out" "$every" 2 <<'PY'
import json, re, sys
path, out, every, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = re.search(r"expect calls (\d+) captured (\d+) unseen (\d+)", open(out).read())
calls, seen, unseen = (int(x) for x in m.groups())
d = json.load(open(path))
ar = [o for g in d["groups"] for o in g["ops"] if o["op"] == "AllReduce"]
assert len(ar) == 1, ar
o = ar[0]
assert o["calls"] == calls * n, ("calls", o["calls"], calls * n)
assert o["bytes"] == calls * n * 256, ("bytes", o["bytes"])
cap = o["captured_calls"] - seen * n
# The unseen capture counts from the first timed call in it: at most 2N - 2
# untimed calls before that one on each rank.
lo = unseen * n if every == 1 else (unseen - (2 * every - 2)) * n
assert lo <= cap <= unseen * n, ("captured", o["captured_calls"], "seen", seen * n, "unseen", unseen * n, "lo", lo)
timed = o["timed_calls"]
if every == 1:
    assert timed == calls * n, ("timed", timed, calls * n)
else:
    # Timed: the first 4 per rank, every call while a seen capture is live,
    # then every call once the unseen one was found, and about 1 in N of the
    # rest (at least one per 2N - 1).
    rest = calls * n - seen * n
    assert seen * n + 4 * n <= timed < calls * n, ("timed", timed)
    assert timed >= seen * n + (rest - unseen * n) // (2 * every - 1), ("timed", timed)
t = o["time_s"]
assert 0 < t["min"] <= t["mean"] <= t["max"], t
print("calls", o["calls"], "captured", o["captured_calls"], "timed", timed, "(seen %d, unseen %d per rank)" % (seen, unseen))
PY
  then ok "GCSHIM_TIME_EVERY=$every: calls, bytes, captured and timed calls in the report"
  else ko "GCSHIM_TIME_EVERY=$every: report"; fi
  # Said once per rank, and only in phase F: the captures begun through
  # the watched doors never reach the sampled check.
  if python3 - "$tmp/err" 2 <<'PY'
import re, sys
lines, n = open(sys.argv[1]).read().splitlines(), int(sys.argv[2])
marks, said = {}, {}
for i, l in enumerate(lines):
    m = re.match(r"prog_capture: pid (\d+) phase F", l)
    if m:
        marks[m.group(1)] = i
    m = re.match(r"[^:]*:(\d+):\d+ .*the shim did not see begin", l)
    if m:
        said.setdefault(m.group(1), []).append(i)
assert len(marks) == n and sorted(said) == sorted(marks), (marks, said)
for pid, at in said.items():
    assert len(at) == 1 and at[0] > marks[pid], (pid, at, marks[pid])
PY
  then ok "GCSHIM_TIME_EVERY=$every: the unseen capture is said, once per rank, in phase F"
  else ko "GCSHIM_TIME_EVERY=$every: what was said of the unseen capture"; tail -8 "$tmp/err"; fi
done

# Reports per rank (%r) merged by gcshim-report: timed calls add up and the
# mean is weighted by them; the table says that host times are of a sample.
rm -f "$tmp"/r*.json
if env LD_LIBRARY_PATH="$fake" LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" GCSHIM_TIME_EVERY=8 \
     GCSHIM_REPORT="$tmp/r%r.json" timeout 60 ./preload/prog_capture 2 >"$tmp/out" 2>&1 &&
   python3 "${top_srcdir:-..}/scripts/gcshim-report" --json "$tmp/r0.json" "$tmp/r1.json" >"$tmp/m.json" &&
   python3 - "$tmp/r0.json" "$tmp/r1.json" "$tmp/m.json" <<'PY'
import json, sys
ops = [[o for g in json.load(open(p))["groups"] for o in g["ops"] if o["op"] == "AllReduce"][0]
       for p in sys.argv[1:]]
a, b, m = ops
assert a["timed_calls"] < a["calls"] and b["timed_calls"] < b["calls"], (a, b)
assert m["calls"] == a["calls"] + b["calls"] and m["timed_calls"] == a["timed_calls"] + b["timed_calls"], m
mean = (a["time_s"]["mean"] * a["timed_calls"] + b["time_s"]["mean"] * b["timed_calls"]) / m["timed_calls"]
assert abs(m["time_s"]["mean"] - mean) <= 1e-9 * max(1.0, mean), (m["time_s"], mean)
assert m["time_s"]["min"] == min(a["time_s"]["min"], b["time_s"]["min"]), m
assert m["time_s"]["max"] == max(a["time_s"]["max"], b["time_s"]["max"]), m
PY
then ok "gcshim-report merges timed calls and weights the mean by them"
else ko "gcshim-report and timed calls"; tail -5 "$tmp/out"; fi
if env LD_LIBRARY_PATH="$fake" LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" GCSHIM_TIME_EVERY=8 \
     GCSHIM_REPORT=- timeout 60 ./preload/prog_capture 2 >"$tmp/out" 2>"$tmp/table" &&
   grep -Eq "^# host times of a sample: [0-9]+ of [0-9]+ calls timed" "$tmp/table"
then ok "the table says its host times are of a sample"
else ko "the table's word on the sample"; head -5 "$tmp/table"; fi

# A GCSHIM_TIME_EVERY that is no number: said, and the default used.
if env LD_LIBRARY_PATH="$fake" LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" GCSHIM_TIME_EVERY=0 GCSHIM_DEBUG=WARN \
     timeout 60 ./preload/prog_capture 1 >"$tmp/out" 2>"$tmp/err" && grep -q " 0 failed" "$tmp/out" &&
   grep -q "GCSHIM_TIME_EVERY=0 is not a number from 1" "$tmp/err"
then ok "GCSHIM_TIME_EVERY=0 is refused with a warning"; else ko "GCSHIM_TIME_EVERY=0"; tail -5 "$tmp/err"; fi

# GCSHIM_DISABLE=1: the look-ups answer the driver's own functions.
if env LD_LIBRARY_PATH="$fake" LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" GCSHIM_DISABLE=1 \
     timeout 60 ./preload/prog_capture 2 >"$tmp/out" 2>&1 && grep -q " 0 failed" "$tmp/out"
then ok "GCSHIM_DISABLE=1: $(tail -1 "$tmp/out")"; else ko "GCSHIM_DISABLE=1"; tail -5 "$tmp/out"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
