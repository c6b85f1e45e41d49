#!/bin/sh
# test_hosts.sh - communicators whose ranks span hosts get the CPU group on
# the communicator itself (src/shim/commcpu.c). The ranks of prog_hosts
# pretend to be on different hosts (GCSHIM_TEST_HOST), the hostnccl fixture
# is the real NCCL. Checks: results exact, gcshim_barrier and GCSHIM_CHECK
# work on such groups (a mismatch fails on every rank, quickly), calls
# inside ncclGroupStart/End are not compared and do not hang, the log says
# which CPU group each communicator got, the report is one per host with
# no wait for other hosts' ranks, nothing is left in /dev/shm.
# Beside the fault campaign (tests/faults) nothing here could tell its
# segments from ours: it holds this lock exclusively, we hold it shared.
exec 9>>"${TMPDIR:-/tmp}/gcshim-shm-tests.lock" && flock -s 9
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build (a sanitizer runtime cannot be preloaded here)"
  exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "skipped: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gcshim-hosts.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
export GCSHIM_TIMEOUT=${GCSHIM_TIMEOUT:-60} NCCL_PROG_SEED=${NCCL_PROG_SEED:-$(date +%s)}
echo "seed $NCCL_PROG_SEED"
# Registrations and CPU groups (what this test's communicators make). Report
# segments (gcshim-job-*) are left out of the leak check: the report tests
# running beside this one (make -j check) keep theirs for seconds; their own
# leak checks cover them.
shm_list() { ls /dev/shm 2>/dev/null | grep -E '^(gcshim-reg-|gcs-u[0-9a-f])' | sort; }
shm_list >"$tmp/shm0"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }
run() { # run NAME OUT CMD...
  what=$1 out=$2; shift 2
  if timeout 120 env LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" "$@" >"$out" 2>&1; then
    ok "$what"
  else
    ko "$what"; tail -20 "$out"
  fi
}

for spec in "4 2" "3 1" "4 3"; do
  set -- $spec
  n=$1 per=$2
  # The log per process: lines of processes writing one stream can interleave.
  rm -f "$tmp"/log.*
  run "$n ranks, $per per host: results, barriers, a split" "$tmp/calls" \
    GCSHIM_DEBUG=INFO GCSHIM_DEBUG_FILE="$tmp/log.%p" GCSHIM_CHECK=1 \
    ./preload/prog_hosts calls "$n" "$per"
  cat "$tmp"/log.* >>"$tmp/calls" 2>/dev/null
  # Which communicators span hosts: the world when there is more than one
  # host; a rank's split (even or odd ranks) when its members do. Those get
  # the CPU group on the communicator, the others shm (or none: one member).
  want_comm=0 want_shm=0
  [ "$n" -gt "$per" ] && want_comm=$n
  [ "$n" -le "$per" ] && [ "$n" -gt 1 ] && want_shm=$n
  r=0
  while [ $r -lt "$n" ]; do
    members=0 first=-1 spans=0 q=$((r % 2))
    while [ $q -lt "$n" ]; do
      members=$((members + 1))
      [ $first -lt 0 ] && first=$((q / per))
      [ $((q / per)) -ne $first ] && spans=1
      q=$((q + 2))
    done
    if [ $members -gt 1 ]; then
      if [ $spans = 1 ]; then want_comm=$((want_comm + 1)); else want_shm=$((want_shm + 1)); fi
    fi
    r=$((r + 1))
  done
  c=$(grep -c 'adopted communicator .*, CPU group on the communicator)' "$tmp/calls")
  m=$(grep -c 'adopted communicator .*, shm CPU group)' "$tmp/calls")
  if [ "$c" = $want_comm ] && [ "$m" = $want_shm ]; then
    ok "$n ranks, $per per host: $c adoptions with the CPU group on the communicator, $m with shm"
  else
    ko "$n ranks, $per per host: $c on the communicator, $m shm; wanted $want_comm and $want_shm"
    grep adopted "$tmp/calls" | head
  fi
  grep -q 'not compared' "$tmp/calls" && ok "$n ranks: grouped calls are not compared (said once)" ||
    ko "$n ranks: no word about grouped calls"
done

# The report of a job that spans hosts: one per host, each merging its own
# ranks (the lowest waits for the others, nobody for other hosts' ranks);
# ".<host>" goes into a path without %h. Every rank makes 3 all-reduces on
# the job's communicator (comm:0).
t0=$(date +%s)
run "report per host: 4 ranks on 2 hosts" "$tmp/rep" GCSHIM_REPORT="$tmp/r.json" \
  GCSHIM_TIMEOUT=30 ./preload/prog_hosts calls 4 2
[ $(($(date +%s) - t0)) -lt 15 ] && ok "no wait for the other host's ranks ($(($(date +%s) - t0)) s)" ||
  ko "the job took $(($(date +%s) - t0)) s (waited for another host's ranks?)"
for h in host0 host1; do
  if python3 - "$tmp/r.$h.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = [g for g in d["groups"] if g["name"] == "comm:0"]
assert g, [x["name"] for x in d["groups"]]
ops = {o["op"]: o["calls"] for o in g[0]["ops"]}
assert ops.get("AllReduce") == 2 * 3, ops  # two ranks here, three all-reduces each
PY
  then ok "report of $h: its 2 ranks' calls, exactly"; else ko "report of $h"; ls "$tmp"; fi
done
[ ! -e "$tmp/r.json" ] && ok "no unqualified report path written" || ko "r.json written too"
# ... and gcshim-report merges the hosts' reports into the job's.
if python3 "${top_srcdir:-..}/scripts/gcshim-report" --json "$tmp/r.host0.json" "$tmp/r.host1.json" \
     >"$tmp/merged.json" && python3 - "$tmp/merged.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = [g for g in d["groups"] if g["name"] == "comm:0"]
assert g and {o["op"]: o["calls"] for o in g[0]["ops"]}.get("AllReduce") == 4 * 3, d["groups"]
PY
then ok "gcshim-report merges the hosts' reports (4 ranks' calls)"; else ko "gcshim-report merge"; fi

# All ranks on one "host": the shm CPU group, as before.
rm -f "$tmp"/log.*
run "4 ranks on one host" "$tmp/one" GCSHIM_DEBUG=INFO GCSHIM_DEBUG_FILE="$tmp/log.%p" \
  ./preload/prog_hosts calls 4 4
cat "$tmp"/log.* >>"$tmp/one" 2>/dev/null
c=$(grep -c 'adopted communicator .*shm CPU group' "$tmp/one")
[ "$c" = 8 ] && ok "one host: 8 adoptions with the shm CPU group" || ko "one host: $c shm adoptions"

# GCSHIM_CHECK=1 across hosts: the mismatch is an error on every rank, quickly.
for n in 2 4; do
  t0=$(date +%s)
  run "GCSHIM_CHECK=1 mismatch across hosts, $n ranks" "$tmp/check" \
    GCSHIM_CHECK=1 ./preload/prog_hosts check "$n" 1
  c=$(grep -c '^rank .*GCSHIM_CHECK: ranks of comm:0 disagree: rank 0 #0 ncclAllReduce(count 8.* rank 1 #0 ncclAllReduce(count 4' "$tmp/check")
  [ "$c" = "$n" ] && ok "GCSHIM_CHECK names the ranks and calls on every rank ($n)" ||
    { ko "GCSHIM_CHECK message on $c of $n ranks"; grep '^rank' "$tmp/check"; }
  [ $(($(date +%s) - t0)) -lt 30 ] || ko "GCSHIM_CHECK across hosts took $(($(date +%s) - t0)) s"
done

# New names only, and only those still there a moment later: tests running
# beside this one (make -j check) come and go with segments of their own.
shm_list | comm -13 "$tmp/shm0" - >"$tmp/new"
if [ -s "$tmp/new" ]; then
  sleep 3
  shm_list | comm -12 "$tmp/new" - >"$tmp/left"
else
  : >"$tmp/left"
fi
if [ -s "$tmp/left" ]; then ko "left in /dev/shm: $(tr '\n' ' ' <"$tmp/left")"
else ok "nothing left in /dev/shm"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
