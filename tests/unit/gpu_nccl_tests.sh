#!/bin/sh
# gpu_nccl_tests.sh - scripts/gpu-nccl-tests (gpu-check's nccl-tests step)
# without a GPU: its checks on hand-written samples (unit/nccl_tests/, in
# the formats of nccl-tests' and NCCL's printf calls) pass when the shim's
# report equals NCCL's log and catch a count, a bytes and a captured-calls
# mismatch, a nonzero #wrong, a failed "Out of bounds values" line, a
# nonzero exit, native and shim runs that differ, a missing report and the
# wrong NCCL; its datatype sizes against nccl.h's enum; and `run` end to
# end with stand-in nccl-tests binaries (what they are given: -g 1, -G with
# -w 0, NCCL_DEBUG_FILE, the shim and the NCCL library asked for) and the
# hostnccl fixture as the NCCL, its rows and their verdicts, and --deadline.
g=${top_srcdir:-..}/scripts/gpu-nccl-tests
s=$(cd "${top_srcdir:-..}/tests/unit/nccl_tests" && pwd)
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
hdr=${top_srcdir:-..}/tests/fixtures/hostnccl/nccl.h
command -v python3 >/dev/null 2>&1 || { echo "skipped: no python3"; exit 77; }
# The end-to-end runs preload the shim, which a sanitized build cannot be.
if ldd "$PWD/../src/.libs/libgcshim.so" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build (a sanitizer runtime cannot be preloaded here)"
  exit 77
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "skipped: python3 < 3.10"; exit 77; }
tmp=$(mktemp -d /tmp/gpu-nccl-tests-test.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# chk NAME WANT(PASS|FAIL) GREP ARGS...: `check` exits 0 for PASS, 1 for
# FAIL, and (FAIL) prints a line matching GREP.
chk() {
  name=$1 want=$2 pat=$3
  shift 3
  python3 "$g" check "$@" >"$tmp/out" 2>&1
  st=$?
  if [ "$want" = PASS ] && [ $st -eq 0 ] && ! grep -q '^FAIL' "$tmp/out"; then ok "$name"
  elif [ "$want" = FAIL ] && [ $st -eq 1 ] && grep -E '^FAIL' "$tmp/out" | grep -qE "$pat"; then ok "$name"
  else bad "$name (exit $st, want $want /$pat/)"; cat "$tmp/out"; fi
}

for t in all_reduce sendrecv hypercube; do
  chk "$t: report = NCCL log" PASS '' --out "$s/$t.out" --coll "$s/$t.coll.log" --report "$s/$t.report.json" --version 22803
done
chk "all_reduce -G: captured = calls x 3/4" PASS '' --out "$s/all_reduce-graph.out" \
  --coll "$s/all_reduce.coll.log" --report "$s/all_reduce-graph.report.json"
grep -q 'counted: AllReduce 16/320B graph' "$tmp/out" && ok "counted 16 calls, 320 B, graph" || bad "counted line: $(tail -1 "$tmp/out")"

sed 's/"calls": 16/"calls": 15/' "$s/all_reduce.report.json" >"$tmp/calls.json"
chk "a call too few in the report" FAIL 'report 15 calls, NCCL logged 16' \
  --out "$s/all_reduce.out" --coll "$s/all_reduce.coll.log" --report "$tmp/calls.json"
sed '0,/"bytes": 320/s//"bytes": 312/' "$s/sendrecv.report.json" >"$tmp/bytes.json"
chk "bytes of one op off" FAIL 'Send: report 312 bytes, NCCL logged 320' \
  --out "$s/sendrecv.out" --coll "$s/sendrecv.coll.log" --report "$tmp/bytes.json"
# one COLL line less (a datatype-8 line with its count): NCCL's side differs
sed '$d' "$s/all_reduce.coll.log" >"$tmp/short.log"
chk "NCCL logged a call less" FAIL 'report 16 calls, NCCL logged 15' \
  --out "$s/all_reduce.out" --coll "$tmp/short.log" --report "$s/all_reduce.report.json"
chk "native and shim NCCL calls differ" FAIL 'agree: .*NCCL logged native AllReduce 16/320B, shim AllReduce 15/288B' \
  --out "$s/all_reduce.out" --coll "$tmp/short.log" --report "$s/all_reduce.report.json" \
  --native-coll "$s/all_reduce.coll.log"
# count 4 of float64 (datatype 8) is the 32 bytes of count 8 of float32
sed 's/ count 8 datatype 7 / count 4 datatype 8 /' "$s/all_reduce.coll.log" >"$tmp/dt.log"
chk "bytes from the datatype's size (float64)" PASS '' \
  --out "$s/all_reduce.out" --coll "$tmp/dt.log" --report "$s/all_reduce.report.json"
sed 's/ datatype 7 / datatype 12 /' "$s/all_reduce.coll.log" >"$tmp/dt12.log"
chk "a datatype nccl.h does not have" FAIL 'datatype 12 \(not in nccl.h\)' \
  --out "$s/all_reduce.out" --coll "$tmp/dt12.log" --report "$s/all_reduce.report.json"

# #wrong of the first row's in-place result 0 -> 3 (the last column)
sed '0,/^           8 /s/0$/3/' "$s/all_reduce.out" >"$tmp/wrong.out"
chk "nonzero #wrong" FAIL 'shim: 8 B in-place #wrong 3' \
  --out "$tmp/wrong.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce.report.json" \
  --native-out "$s/all_reduce.out"
chk "... and native and shim rows differ" FAIL 'agree: .*result rows differ' \
  --out "$tmp/wrong.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce.report.json" \
  --native-out "$s/all_reduce.out"
sed 's/Out of bounds values : 0 OK/Out of bounds values : 1 FAILED/' "$s/all_reduce.out" >"$tmp/oob.out"
chk "Out of bounds values : 1 FAILED" FAIL "'Out of bounds values' 1 FAILED, want '0 OK'" \
  --out "$tmp/oob.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce.report.json"
grep -v 'Out of bounds' "$s/all_reduce.out" >"$tmp/nooob.out"
chk "no Out of bounds line" FAIL "'Out of bounds values' missing" \
  --out "$tmp/nooob.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce.report.json"
chk "nonzero exit" FAIL 'shim: exit 1' --status 1 \
  --out "$s/all_reduce.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce.report.json"
chk "missing report" FAIL 'no report .*the shim wrote none' \
  --out "$s/all_reduce.out" --coll "$s/all_reduce.coll.log" --report "$tmp/none.json"
chk "another NCCL than asked for" FAIL 'NCCL 22803 ran, the library given is 22809' --version 22809 \
  --out "$s/all_reduce.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce.report.json"
sed 's/"nccl_version": 22803/"nccl_version": 22809/' "$s/all_reduce.report.json" >"$tmp/ver.json"
chk "report's nccl_version not NCCL's" FAIL 'report nccl_version 22809, NCCL.s log 22803' \
  --out "$s/all_reduce.out" --coll "$s/all_reduce.coll.log" --report "$tmp/ver.json"
sed 's/"captured_calls": 12/"captured_calls": 11/' "$s/all_reduce-graph.report.json" >"$tmp/cap.json"
chk "-G: a captured call too few" FAIL 'report 11 captured calls, want 12 of NCCL.s 16' \
  --out "$s/all_reduce-graph.out" --coll "$s/all_reduce.coll.log" --report "$tmp/cap.json"
chk "eager: captured calls" FAIL '12 captured calls without -G' \
  --out "$s/all_reduce.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce-graph.report.json"
sed 's/warmup iters: 0/warmup iters: 1/' "$s/all_reduce-graph.out" >"$tmp/warm.out"
chk "-G with warm-up calls: not checkable" FAIL 'captured calls not checkable' \
  --out "$tmp/warm.out" --coll "$s/all_reduce.coll.log" --report "$s/all_reduce-graph.report.json"

# The datatype sizes against nccl.h's enum (the fixture's copy of 2.28's).
if python3 - "$g" "$hdr" <<'PY'
import importlib.machinery, importlib.util, re, sys
loader = importlib.machinery.SourceFileLoader("g", sys.argv[1])
spec = importlib.util.spec_from_loader("g", loader)
g = importlib.util.module_from_spec(spec)
loader.exec_module(g)
enum = dict((m.group(1), int(m.group(2))) for m in
            re.finditer(r"\bnccl(\w+)\s*=\s*(\d+)", open(sys.argv[2]).read().split("ncclDataType_t")[0].rsplit("typedef enum", 1)[1]))
size = {"Int8": 1, "Uint8": 1, "Int32": 4, "Uint32": 4, "Int64": 8, "Uint64": 8, "Float16": 2,
        "Float32": 4, "Float64": 8, "Bfloat16": 2, "Float8e4m3": 1, "Float8e5m2": 1}
assert set(g.DTYPE_SIZE) == set(range(enum["NumTypes"])), (g.DTYPE_SIZE, enum)
for name, b in size.items():
    assert g.DTYPE_SIZE[enum[name]] == b, (name, enum[name], g.DTYPE_SIZE[enum[name]])
PY
then ok "datatype sizes = nccl.h's enum"; else bad "datatype sizes"; fi

# run, end to end: stand-in binaries print the samples, write the NCCL log
# where NCCL_DEBUG_FILE says and (under the shim) the report; they refuse
# what the runner must not do.
if [ -e "$fix" ] && [ -e "$shim" ]; then
  v=$(python3 -c 'import ctypes, sys; v = ctypes.c_int(); ctypes.CDLL(sys.argv[1]).ncclGetVersion(ctypes.byref(v)); print(v.value)' "$fix")
  vs=$(echo "$v" | awk '{printf "%d.%d.%d", $1 / 10000, $1 / 100 % 100, $1 % 100}')
  mkdir -p "$tmp/bin"
  cat >"$tmp/bin/fake" <<EOF
#!/bin/sh
s=$s v=$v vs=$vs
EOF
  cat >>"$tmp/bin/fake" <<'EOF'
name=$(basename "$0" _perf)
graph=0
case " $* " in *" -G "*) graph=1 ;; esac
case " $* " in *" -g 1 "*) ;; *) echo "fake: no -g 1"; exit 3 ;; esac
if [ $graph = 1 ]; then case " $* " in *" -w 0 "*) ;; *) echo "fake: -G without -w 0"; exit 3 ;; esac; fi
lib=${LD_LIBRARY_PATH%%:*}/libnccl.so.2
[ "$(readlink -f "$lib")" = "$(readlink -f "$FAKE_NCCL")" ] || { echo "fake: $lib is not $FAKE_NCCL"; exit 5; }
sed -e "s/nccl-library=22803/nccl-library=$v/" -e "s/graph: 0/graph: $((2 * graph))/" "$s/$name.out"
if [ -n "${NCCL_DEBUG_FILE:-}" ]; then
  [ "$NCCL_DEBUG" = INFO ] && [ "$NCCL_DEBUG_SUBSYS" = COLL ] || { echo "fake: NCCL_DEBUG"; exit 4; }
  sed "s/NCCL version 2.28.3/NCCL version $vs/" "$s/$name.coll.log" >"$NCCL_DEBUG_FILE"
fi
if [ -n "${GCSHIM_REPORT:-}" ]; then
  case ${LD_PRELOAD:-} in *libgcshim.so) ;; *) echo "fake: report without the shim"; exit 6 ;; esac
  [ "$name" = "${FAKE_NOREPORT:-}" ] && exit 0
  cap=0
  [ $graph = 1 ] && cap=12
  sed -e "s/22803/$v/" -e "s/\"captured_calls\": 0/\"captured_calls\": $cap/" \
    -e "s/\"calls\": 16/\"calls\": $([ "$name" = "${FAKE_WRONG:-}" ] && echo 15 || echo 16)/" \
    "$s/$name.report.json" >"$GCSHIM_REPORT"
fi
EOF
  chmod +x "$tmp/bin/fake"
  for t in all_reduce sendrecv hypercube; do ln -s fake "$tmp/bin/${t}_perf"; done
  run() {
    FAKE_NCCL=$fix timeout 300 python3 "$g" run --bin "$tmp/bin" --shim "$shim" --nccl "fix=$fix" \
      --tests all_reduce,sendrecv,hypercube --work "$tmp/w" --ab-pairs 1 --rows "$tmp/rows" "$@" \
      >"$tmp/run.out" 2>&1
  }
  # rowis NAME STATUS [PATTERN]: the rows file has that row with that status
  rowis() {
    awk -F '\t' -v n="$1" -v s="$2" -v p="${3:-}" '$1 == n && $2 == s && $4 ~ p {f = 1} END {exit !f}' "$tmp/rows"
  }
  if run; then
    n=$(wc -l <"$tmp/rows")
    if [ "$n" -eq 7 ] && ! grep -q "	FAIL	" "$tmp/rows" &&
       rowis "nccl-tests fix/eager #wrong, OOB" PASS '3 binaries' &&
       rowis "nccl-tests fix/graph report=NCCL" PASS "NCCL $v \\(its log = report = library\\): 48 calls in 3 ops" &&
       rowis "nccl-tests fix/eager native=shim" PASS 'AllReduce 16/320B Recv 16/320B Send 16/320B' &&
       rowis "nccl-tests fix A/B all_reduce off/on" PASS 'out-of-place B/A median'; then
      ok "run: 7 rows, every one PASS"
    else bad "run rows"; cat "$tmp/rows" "$tmp/run.out"; fi
  else bad "run exit $?"; cat "$tmp/run.out"; fi
  FAKE_WRONG=sendrecv FAKE_NOREPORT=hypercube run --ab-pairs 0
  st=$?
  if [ $st -eq 1 ] && [ "$(wc -l <"$tmp/rows")" -eq 6 ] &&
     rowis "nccl-tests fix/eager report=NCCL" FAIL "sendrecv eager: Recv: report 15 calls, NCCL logged 16 \\(report: $tmp/w/logs/fix/eager/sendrecv-shim.report.json, NCCL log: $tmp/w/logs/fix/eager/sendrecv-shim.coll.log\\) \\(\\+2 more\\)" &&
     rowis "nccl-tests fix/eager native=shim" PASS && rowis "nccl-tests fix/graph #wrong, OOB" PASS &&
     grep -q 'hypercube graph: no report' "$tmp/run.out"; then
    ok "run: the miscounted and the missing report are FAIL rows naming their files"
  else bad "run with a miscount (exit $st)"; cat "$tmp/rows" "$tmp/run.out"; fi
  # --deadline: no run starts after it; what did not run fails, the A/B is skipped
  run --deadline 1
  st=$?
  if [ $st -eq 1 ] && rowis "nccl-tests fix/eager #wrong, OOB" FAIL 'not run: out of time' &&
     rowis "nccl-tests fix A/B all_reduce off/on" SKIP 'out of time'; then
    ok "run --deadline: runs not started are FAIL rows, the A/B a SKIP"
  else bad "run --deadline (exit $st)"; cat "$tmp/rows" "$tmp/run.out"; fi
else
  echo "no hostnccl fixture or shim built: run not tried"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
