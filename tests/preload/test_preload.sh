#!/bin/sh
# test_preload.sh - unchanged NCCL-API programs under LD_PRELOAD=libgcshim.so
# with the hostnccl fixture as the real NCCL: results as without the shim,
# exact counts and bytes in the JSON report, timed calls per op (the first
# 4, then at most 2N-1 apart), names (commName, GCSHIM_GROUPS
# rules, splits), a ctypes-style program, the dlsym/dlopen traps,
# GCSHIM_DISABLE, GCSHIM_CHECK, a killed rank, calls after the job's
# communicator is gone. Runs from tests/ of the build
# tree; needs python3 for the JSON (skips, 77, without it).
# Beside the fault campaign (tests/faults) nothing here could tell its
# segments from ours: it holds this lock exclusively, we hold it shared.
exec 9>>"${TMPDIR:-/tmp}/gcshim-shm-tests.lock" && flock -s 9
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
fixdir=./fixtures/hostnccl
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build (a sanitizer runtime cannot be preloaded here)"
  exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "skipped: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gcshim-preload.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
export GCSHIM_TIMEOUT=${GCSHIM_TIMEOUT:-60} NCCL_PROG_SEED=${NCCL_PROG_SEED:-12345}
echo "seed $NCCL_PROG_SEED"
# The shim's segments and the CPU groups of its communicators (keys "u...").
shm_list() { ls /dev/shm 2>/dev/null | grep -E '^(gcshim-|gcs-u[0-9a-f])' | sort; }
shm_list >"$tmp/shm0"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }
# under CMD...: the command under the shim, the fixture as the real NCCL.
under() { env LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" "$@"; }
# expect WHAT CMD...: the command must succeed (bounded by timeout).
expect() {
  what=$1; shift
  if timeout 120 "$@" >"$tmp/out" 2>&1; then ok "$what"; else ko "$what"; tail -20 "$tmp/out"; fi
}

# The JSON report of prog_known calls N, exactly. $1 file, $2 ranks, $3 world name,
# $4 world source.
check_known() {
  python3 - "$@" <<'PY'
import json, sys
path, n, wname, wsrc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
d = json.load(open(path))
want = {}
world = list(range(n))
ops = {"AllReduce": (5, 4000), "Bcast": (3, 40), "Broadcast": (2, 7), "AllGather": (1, 128)}
if n > 1:
    ops.update({"Send": (2, 20), "Recv": (2, 20)})
want[(wname, tuple(world), wsrc)] = {op: (c * n, b * c * n) for op, (c, b) in ops.items()}
for col in (0, 1):
    m = [r for r in range(n) if r % 2 == col]
    if not m:
        continue
    want[("half:0", tuple(m), "commName")] = {"AllReduce": (4 * len(m), 96 * len(m))}
    want[("%s/%d:0" % (wname, 10 + col), tuple(m), "split")] = {"Reduce": (len(m), 132 * len(m))}
got = {}
for g in d["groups"]:
    got[(g["name"], tuple(g["ranks"]), g["source"])] = {o["op"]: (o["calls"], o["bytes"]) for o in g["ops"]}
    for o in g["ops"]:
        if sum(o["sizes"].values()) != o["calls"] or o["captured_calls"] != 0:
            sys.exit("sizes or captured calls wrong in %s %s: %s" % (g["name"], o["op"], o))
        # The first 4 calls of each group and op on each rank are timed.
        c = o["calls"] // len(g["ranks"])
        if not len(g["ranks"]) * min(c, 4) <= o["timed_calls"] <= o["calls"]:
            sys.exit("timed calls wrong in %s %s: %s" % (g["name"], o["op"], o))
        t = o["time_s"]
        if not (0 <= t["min"] <= t["mean"] <= t["max"]):
            sys.exit("times out of order in %s %s: %s" % (g["name"], o["op"], t))
ar = [o for g in d["groups"] if g["name"] == wname for o in g["ops"] if o["op"] == "AllReduce"]
if d["world_size"] != n or d["gcshim_report"] != 1 or d["nccl_version"] // 100 != 228:
    sys.exit("header wrong: %s" % {k: d[k] for k in d if k != "groups"})
if not ar or ar[0]["sizes"] != {"4096": 5 * n}:
    sys.exit("world AllReduce sizes wrong: %s" % ar)
if got != want:
    sys.exit("report differs:\n got  %s\n want %s" % (sorted(got.items()), sorted(want.items())))
PY
}

# 1. The fixture's programs, same seed, with and without the shim.
for p in nccl_prog_colls nccl_prog_comm nccl_prog_fail; do
  for n in 1 2 4; do
    a=$(NCCL_PROG_COUNT=257 timeout 120 "$fixdir/$p" $n 2>"$tmp/err0" | tail -1)
    b=$(NCCL_PROG_COUNT=257 GCSHIM_REPORT="$tmp/fx.json" under timeout 120 "$fixdir/$p" $n \
        2>"$tmp/err1" | tail -1)
    case "$a" in *" 0 failed") same=1 ;; *) same=0 ;; esac
    if [ "$same" = 1 ] && [ "$a" = "$b" ]; then ok "$p $n ranks under the shim: $b"
    else ko "$p $n ranks: without '$a', with the shim '$b'"; tail -5 "$tmp/err1"; fi
  done
done
# Timed calls, for every op of an interleaved mix: the first 4 of each group
# and op on each rank, then at most 2N-1 of its calls apart
# (GCSHIM_TIME_EVERY=N: each timed call picks the next one of its own op).
rm -f "$tmp/fx.json"
if NCCL_PROG_COUNT=33 GCSHIM_TIME_EVERY=3 GCSHIM_REPORT="$tmp/fx.json" under timeout 120 \
     "$fixdir/nccl_prog_colls" 2 >"$tmp/out" 2>&1 && grep -q " 0 failed" "$tmp/out" &&
   python3 - "$tmp/fx.json" 2 3 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
n, every = int(sys.argv[2]), int(sys.argv[3])
many = 0
for g in d["groups"]:
    for o in g["ops"]:
        c, r = divmod(o["calls"], n)
        low = n * (min(c, 4) + max(0, c - 4) // (2 * every - 1))
        if r or not low <= o["timed_calls"] <= o["calls"]:
            sys.exit("%s %s: %d calls, %d timed, want %d..%d" %
                     (g["name"], o["op"], o["calls"], o["timed_calls"], low, o["calls"]))
        many += c > 4 + 4 * every
print("ops with many calls:", many)
sys.exit(0 if many >= 2 else "too few ops with many calls")
PY
then ok "timed calls: the first 4 of each op, then at most 2N-1 apart"
else ko "timed calls per op"; tail -5 "$tmp/out"; fi
# ... and with GCSHIM_CHECK=1: no false mismatch.
expect "nccl_prog_colls 4 ranks with GCSHIM_CHECK=1" \
  env NCCL_PROG_COUNT=33 GCSHIM_CHECK=1 LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" \
  "$fixdir/nccl_prog_colls" 4

# 2. Known calls: exact counts and bytes, names.
for n in 1 2 4; do
  rm -f "$tmp/k.json"
  if GCSHIM_REPORT="$tmp/k.json" under ./preload/prog_known calls $n >"$tmp/out" 2>&1 &&
     check_known "$tmp/k.json" $n comm:0 default; then ok "known calls, $n ranks: report exact"
  else ko "known calls, $n ranks"; tail -20 "$tmp/out"; fi
done
rm -f "$tmp/k.json"
if GCSHIM_GROUPS="tp=0-1,2-3;world=0-3" PROG_WORLD_NAME=world:0 GCSHIM_REPORT="$tmp/k.json" \
   under ./preload/prog_known calls 4 >"$tmp/out" 2>&1 &&
   check_known "$tmp/k.json" 4 world:0 rule; then ok "GCSHIM_GROUPS ranges name the world"
else ko "GCSHIM_GROUPS ranges"; tail -20 "$tmp/out"; fi
rm -f "$tmp/k.json"
if GCSHIM_GROUPS="pp=0,1" PROG_WORLD_NAME=pp:0 GCSHIM_REPORT="$tmp/k.json" \
   under ./preload/prog_known calls 2 >"$tmp/out" 2>&1 &&
   check_known "$tmp/k.json" 2 pp:0 rule; then ok "GCSHIM_GROUPS single ranks form one set"
else ko "GCSHIM_GROUPS single ranks"; tail -20 "$tmp/out"; fi

# 2b. Communicators made inside ncclGroupStart/End (nccl-tests' pattern;
# docs/NCCL_FACTS.md C1-C5): one job report, every rank, every call.
# check_group FILE MODE N: procs (N processes) or multi (N ranks, 2 a process).
check_group() {
  python3 - "$@" <<'PY'
import json, sys
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(path))
w = tuple(range(n))
if mode == "procs":
    ev, od = tuple(range(0, n, 2)), tuple(range(1, n, 2))
    want = {("comm:0", w, "default"): {"AllReduce": (5 * n, 20000 * n), "Broadcast": (n, 512 * n)},
            ("nb:0", w, "commName"): {"AllReduce": (2 * n, 512 * n)},
            ("nb:0/0:0", w, "split"): {"AllReduce": (n, 16 * n)},
            ("comm:1", w, "default"): {"AllGather": (3 * n, 240 * n)},
            ("comm:0/0:0", ev, "split"): {"AllReduce": (2 * len(ev), 256 * len(ev))},
            ("ga:0", w, "commName"): {"AllGather": (n, 64 * n)},
            ("gb:0", w, "commName"): {"ReduceScatter": (n, 32 * n)}}
    if od:
        want[("comm:0/1:0", od, "split")] = {"AllReduce": (2 * len(od), 256 * len(od))}
else:
    want = {("comm:0", w, "default"): {"AllReduce": (3 * n, 6000 * n)},
            ("comm:0/0:0", w, "split"): {"AllReduce": (n, 32 * n)}}
got = {(g["name"], tuple(g["ranks"]), g["source"]): {o["op"]: (o["calls"], o["bytes"]) for o in g["ops"]}
       for g in d["groups"]}
if d["world_size"] != n:
    sys.exit("world_size %d, wanted %d" % (d["world_size"], n))
if got != want:
    sys.exit("report differs:\n got  %s\n want %s" % (sorted(got.items()), sorted(want.items())))
PY
}
for n in 1 2 4; do
  rm -f "$tmp"/g*.json
  if GCSHIM_REPORT="$tmp/g.json" under ./preload/prog_group $n >"$tmp/out" 2>&1 &&
     grep -q " 0 failed" "$tmp/out" && [ "$(ls "$tmp"/g*.json)" = "$tmp/g.json" ] &&
     check_group "$tmp/g.json" procs $n; then
    ok "communicators made inside groups, $n processes: one report, exact"
  else ko "communicators made inside groups, $n processes"; ls "$tmp"; tail -20 "$tmp/out"; fi
done
for np in 1 2; do
  rm -f "$tmp"/g*.json
  if PROG_GROUP_MODE=multi PROG_GROUP_PER_PROC=2 GCSHIM_REPORT="$tmp/g.json" \
     under ./preload/prog_group $np >"$tmp/out" 2>&1 && grep -q " 0 failed" "$tmp/out" &&
     check_group "$tmp/g.json" multi $((2 * np)); then
    ok "$np process(es) of 2 ranks made by one thread in a group: every rank and call"
  else ko "$np process(es) of 2 ranks made in one group"; tail -20 "$tmp/out"; fi
done
expect "communicators made inside groups without the shim" ./preload/prog_group 1 2 4

# 3. The human table on stderr, and reports per rank (%r).
GCSHIM_REPORT=- under ./preload/prog_known calls 2 >"$tmp/out" 2>"$tmp/table"
if grep -q "gcshim report: 2 ranks" "$tmp/table" && grep -q "comm:0 .* AllReduce *10 *40000" "$tmp/table"
then ok "human table on stderr"; else ko "human table"; cat "$tmp/table"; fi
GCSHIM_REPORT="$tmp/r%r.json" under ./preload/prog_known calls 2 >"$tmp/out" 2>&1
if python3 -c '
import json, sys
for r in (0, 1):
    d = json.load(open(sys.argv[1] % r))
    w = [g for g in d["groups"] if g["name"] == "comm:0"][0]
    ar = [o for o in w["ops"] if o["op"] == "AllReduce"][0]
    assert ar["calls"] == 5 and ar["bytes"] == 20000, ar
' "$tmp/r%d.json"; then ok "a report per rank with %r"; else ko "reports per rank"; fi
# ... which scripts/gcshim-report merges into what the job report says.
if python3 "${top_srcdir:-..}/scripts/gcshim-report" --json "$tmp/r0.json" "$tmp/r1.json" \
     >"$tmp/merged.json" && check_known "$tmp/merged.json" 2 comm:0 default &&
   python3 "${top_srcdir:-..}/scripts/gcshim-report" "$tmp/r0.json" "$tmp/r1.json" |
     grep -q "comm:0 .* AllReduce *10 *40000"
then ok "gcshim-report merges reports per rank"; else ko "gcshim-report"; fi

# ... and the timeline: one Chrome-trace file per rank, an event per call.
GCSHIM_TRACE="$tmp/t%r.json" under ./preload/prog_known calls 2 >"$tmp/out" 2>&1
if python3 -c '
import json, sys
for r in (0, 1):
    d = json.load(open(sys.argv[1] % r))
    ev = [e for e in d["traceEvents"] if e["ph"] == "X"]
    assert len(ev) == 20, len(ev)
    assert sum(e["name"] == "AllReduce" and e["cat"] == "comm:0" for e in ev) == 5
    assert all(e["pid"] == r and e["dur"] >= 0 for e in ev)
' "$tmp/t%d.json"; then ok "GCSHIM_TRACE: a timeline per rank"; else ko "GCSHIM_TRACE"; fi

# 3b. Output paths never follow a link and never write into a planted file:
# a link at the report, timeline or log path is replaced or refused, its
# target untouched; a path that cannot be written is said on stderr once by
# a process that tried (the writer of the release's report and of the
# exit's may differ), without GCSHIM_DEBUG.
echo keep >"$tmp/victim"
ln -sf "$tmp/victim" "$tmp/rl.json"
ln -sf "$tmp/victim" "$tmp/tl0.json"
ln -sf "$tmp/victim" "$tmp/log.txt"
if GCSHIM_REPORT="$tmp/rl.json" GCSHIM_TRACE="$tmp/tl%r.json" GCSHIM_DEBUG=WARN \
   GCSHIM_DEBUG_FILE="$tmp/log.txt" under ./preload/prog_known calls 2 >"$tmp/out" 2>&1 &&
   [ "$(cat "$tmp/victim")" = keep ] && [ -f "$tmp/rl.json" ] && [ ! -L "$tmp/rl.json" ] &&
   [ ! -L "$tmp/tl0.json" ] && check_known "$tmp/rl.json" 2 comm:0 default &&
   python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/tl0.json" &&
   grep -q "GCSHIM_DEBUG_FILE: cannot append to .*log.txt: it is a symbolic link" "$tmp/out"
then ok "links at the report, timeline and log paths: replaced or refused, the target untouched"
else ko "links at output paths"; cat "$tmp/victim"; ls -l "$tmp"; tail "$tmp/out"; fi
rm -f "$tmp/rl.json" "$tmp"/tl*.json "$tmp/log.txt" "$tmp"/*.tmp
for bad in "$tmp" "$tmp/no-such-dir/r.json" "$tmp/"; do
  if GCSHIM_REPORT="$bad" under ./preload/prog_known calls 2 >"$tmp/out" 2>&1 &&
     grep 'GCSHIM_REPORT.*nothing written' "$tmp/out" | cut -d: -f2 | sort | uniq -c |
       awk '$1 != 1 {bad = 1} END {exit bad || NR < 1}' &&
     [ -z "$(ls "$tmp" | grep '\.tmp$')" ]; then ok "report path '$bad' refused, said once"
  else ko "report path '$bad'"; tail -5 "$tmp/out"; fi
done

# 4. GCSHIM_DISABLE=1: pass-through, no report.
rm -f "$tmp/d.json"
if GCSHIM_DISABLE=1 GCSHIM_REPORT="$tmp/d.json" PROG_NO_NAMES=1 \
   under ./preload/prog_known calls 4 >"$tmp/out" 2>&1 && [ ! -e "$tmp/d.json" ]
then ok "GCSHIM_DISABLE=1: results right, no report"; else ko "GCSHIM_DISABLE=1"; tail "$tmp/out"; fi
expect "known calls without the shim" env PROG_NO_NAMES=1 ./preload/prog_known calls 4

# ... ranks that are threads of one process; gcshim.h (name, lookup, group, barrier).
expect "4 ranks as threads of one process, gcshim.h" \
  env LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" ./preload/prog_known threads 4
expect "4 ranks as threads without the shim" ./preload/prog_known threads 4

# 5. ctypes-style: dlopen + dlsym on the handle.
rm -f "$tmp/c.json"
if GCSHIM_REPORT="$tmp/c.json" under ./preload/ctypes_prog "$fix" 2 1 >"$tmp/out" 2>&1 &&
   python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
g = [(g["name"], g["source"], [(o["op"], o["calls"], o["bytes"]) for o in g["ops"]]) for g in d["groups"]]
assert g == [("ctypes:0", "commName", [("AllReduce", 6, 1536)])], g
' "$tmp/c.json"; then ok "ctypes-style program caught and counted"
else ko "ctypes-style program"; tail "$tmp/out"; fi
expect "ctypes-style, real NCCL found through RTLD_NOLOAD" \
  env LD_PRELOAD="$shim" ./preload/ctypes_prog "$fix" 2 1
expect "ctypes-style without the shim" ./preload/ctypes_prog "$fix" 2 0

# 6. The traps: RTLD_NEXT and $ORIGIN answers unchanged under the shim.
expect "traps without the shim" env TRAP_EXPECT_SHIM=0 ./preload/trap_prog preload/traps
expect "traps under the shim" env TRAP_EXPECT_SHIM=1 LD_PRELOAD="$shim" \
  ./preload/trap_prog preload/traps

# ... and dlvsym: versioned look-ups of NCCL names on an NCCL handle get the
# wrappers; RTLD_NEXT from a library and everything else unchanged.
expect "dlvsym without the shim" env TRAP_EXPECT_SHIM=0 ./preload/dlvsym_prog preload/traps
expect "dlvsym under the shim" env TRAP_EXPECT_SHIM=1 LD_PRELOAD="$shim" \
  GCSHIM_NCCL_LIBRARY="$fix" ./preload/dlvsym_prog preload/traps

# 7. GCSHIM_CHECK=1: a mismatch is an error on every rank, quickly.
for n in 2 4; do
  t0=$(date +%s)
  expect "GCSHIM_CHECK=1 mismatch, $n ranks" env GCSHIM_CHECK=1 LD_PRELOAD="$shim" \
    GCSHIM_NCCL_LIBRARY="$fix" ./preload/prog_known check $n
  [ "$(grep -c "^rank .*GCSHIM_CHECK: ranks of comm:0 disagree: rank 0 #1 ncclAllReduce(count 8.* rank 1 #1 ncclAllReduce(count 4" "$tmp/out")" = $n ] ||
    ko "GCSHIM_CHECK: ncclGetLastError names the ranks and calls on every rank"
  [ $(($(date +%s) - t0)) -lt 30 ] || ko "GCSHIM_CHECK took $(($(date +%s) - t0)) s"
done

# 8. A rank killed mid-run: errors, no hang, the report names it, nothing left in /dev/shm.
rm -f "$tmp/kill.json"
expect "a killed rank: the others get an error" env GCSHIM_TIMEOUT=10 \
  GCSHIM_REPORT="$tmp/kill.json" LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" \
  ./preload/prog_known kill 4
if python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["missing_ranks"] == [3], d["missing_ranks"]
' "$tmp/kill.json"; then ok "the report names the killed rank"; else ko "report of the killed run"; fi
sleep 1
shm_list >"$tmp/shm1"
if [ -z "$(comm -13 "$tmp/shm0" "$tmp/shm1")" ]; then ok "nothing left in /dev/shm"
else ko "left in /dev/shm: $(comm -13 "$tmp/shm0" "$tmp/shm1" | tr '\n' ' ')"; fi

# 8b. A stopped rank (SIGSTOP): the survivors' call fails, they abort (or
# destroy) and exit; the report is still written, within the timeout, and
# names the stopped rank (before: no report after an abort, the full
# timeout after a destroy).
for m in stopabort stopdestroy; do
  rm -f "$tmp/stop.json"
  start=$(date +%s)
  env GCSHIM_TIMEOUT=5 GCSHIM_REPORT="$tmp/stop.json" LD_PRELOAD="$shim" \
    GCSHIM_NCCL_LIBRARY="$fix" timeout 60 ./preload/prog_known $m 4 >"$tmp/out" 2>&1
  took=$(($(date +%s) - start))
  if grep -q " 0 failed" "$tmp/out" && [ "$took" -le 15 ] && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["missing_ranks"] == [3], d["missing_ranks"]
w = [g for g in d["groups"] if g["name"] == "comm:0"][0]
ar = [o for o in w["ops"] if o["op"] == "AllReduce"][0]
assert ar["calls"] >= 3 + 3, ar
' "$tmp/stop.json"; then ok "$m: a stopped rank; the report names it, in ${took} s"
  else ko "$m: ${took} s"; ls "$tmp"; tail -5 "$tmp/out"; fi
done

# 9. Calls after the job's communicator is gone: on a second communicator
# after comm:0's finalize and destroy, on a third made afterwards. The report
# is written at the finalize and again at exit, with every call; reports per
# rank, one rank, the timeline too. A rank killed after the finalize-time
# report leaves that report in place, and the others exit at once.
check_late() {
  python3 - "$@" <<'PY'
import json, sys
path, n, killed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
world = int(sys.argv[4]) if len(sys.argv) > 4 else n
d = json.load(open(path))
want = {"comm:0": {"AllReduce": (3, 256)}, "comm:1": {"AllReduce": (2, 64)}}
if not killed:
    want["comm:1"].update({"Broadcast": (1, 32), "AllGather": (2, 32)})
    want["comm:2"] = {"AllReduce": (1, 8)}
want = {g: {op: (c * n, c * b * n) for op, (c, b) in ops.items()} for g, ops in want.items()}
got = {g["name"]: {o["op"]: (o["calls"], o["bytes"]) for o in g["ops"]} for g in d["groups"]}
if got != want or d["missing_ranks"] != [] or d["world_size"] != world:
    sys.exit("late report differs:\n got  %s %s\n want %s" % (got, d["missing_ranks"], want))
PY
}
for n in 1 2 4; do
  rm -f "$tmp/late.json"
  if GCSHIM_REPORT="$tmp/late.json" under ./preload/prog_known late $n >"$tmp/out" 2>&1 &&
     check_late "$tmp/late.json" $n 0; then ok "calls after the job's finalize, $n ranks: report exact"
  else ko "calls after the job's finalize, $n ranks"; tail -20 "$tmp/out"; fi
done
GCSHIM_REPORT="$tmp/late%r.json" GCSHIM_TRACE="$tmp/lt%r.json" under ./preload/prog_known late 2 \
  >"$tmp/out" 2>&1
if check_late "$tmp/late0.json" 1 0 2 && check_late "$tmp/late1.json" 1 0 2 && python3 -c '
import json, sys
for r in (0, 1):
    ev = [e for e in json.load(open(sys.argv[1] % r))["traceEvents"] if e["ph"] == "X"]
    assert len(ev) == 9 and sum(e["cat"] == "comm:2" for e in ev) == 1, ev
' "$tmp/lt%d.json"; then ok "calls after the job's finalize: reports per rank and timelines complete"
else ko "late reports per rank / timelines"; tail "$tmp/out"; fi
rm -f "$tmp/late.json"
t0=$(date +%s)
if GCSHIM_REPORT="$tmp/late.json" under ./preload/prog_known latekill 4 >"$tmp/out" 2>&1 &&
   check_late "$tmp/late.json" 4 1 && [ $(($(date +%s) - t0)) -lt 30 ]
then ok "a rank killed after the finalize: that report stays, the others exit at once"
else ko "a rank killed after the finalize"; tail -20 "$tmp/out"; cat "$tmp/late.json"; fi
sleep 1
shm_list >"$tmp/shm2"
if [ -z "$(comm -13 "$tmp/shm0" "$tmp/shm2")" ]; then ok "nothing left in /dev/shm after the late runs"
else ko "left in /dev/shm: $(comm -13 "$tmp/shm0" "$tmp/shm2" | tr '\n' ' ')"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
