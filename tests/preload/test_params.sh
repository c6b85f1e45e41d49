#!/bin/sh
# test_params.sh - settings (src/core/params.def) as a program sees them:
# a malformed value is one line on stderr without GCSHIM_DEBUG (under the
# preloaded shim, and in a program of the API), the program runs on with
# the default; GCSHIM_DEBUG=INFO lists every setting once; %h of the
# timeline path is GCSHIM_TEST_HOST's, as in the report path. Runs from
# tests/ of the build tree.
shim=$PWD/../src/.libs/libgcshim.so
fix=$PWD/fixtures/hostnccl/.libs/libnccl.so.2
demo=../examples/demo_cpu_groups
def="${srcdir:-.}/../src/core/params.def"
if ldd "$shim" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: sanitized build (a sanitizer runtime cannot be preloaded here)"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gcshim-params.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
unset GCSHIM_DEBUG GCSHIM_DEBUG_FILE GCSHIM_REPORT GCSHIM_TRACE
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }
# One process (threads as ranks) under the shim; timeout and env are not
# preloaded (the shim would read its settings in them too).
set -- timeout 60 env LD_PRELOAD="$shim" GCSHIM_NCCL_LIBRARY="$fix" ./preload/prog_known threads 2

# one_line VAR=VALUE WANT CMD...: CMD passes, its stderr is exactly one line,
# which says WANT.
one_line() {
  set=$1 want=$2
  shift 2
  if env "$set" "$@" >"$tmp/out" 2>"$tmp/err"; then
    n=$(wc -l <"$tmp/err")
    if [ "$n" -eq 1 ] && grep -qF " GCSHIM WARN $want" "$tmp/err"; then ok "$set: one line"
    else ko "$set: $n lines on stderr, want one saying '$want'"; cat "$tmp/err"; fi
  else
    ko "$set: the program failed"; tail -n 5 "$tmp/out" "$tmp/err"
  fi
}

form_int="is not a number from 1 to 1048576 (an integer); 64 used"
form_bool="is not 1/0, true/false, yes/no or on/off"
one_line GCSHIM_TIME_EVERY=abc "GCSHIM_TIME_EVERY=abc $form_int" "$@"
one_line GCSHIM_TIME_EVERY=0 "GCSHIM_TIME_EVERY=0 $form_int" "$@"
one_line GCSHIM_CHECK=maybe "GCSHIM_CHECK=maybe $form_bool; the default used" "$@"
one_line GCSHIM_DISABLE=00 "GCSHIM_DISABLE=00 $form_bool; 0 used" "$@"
one_line GCSHIM_CAPTURED=nope "GCSHIM_CAPTURED=nope $form_bool; 1 used" "$@"
# A program of the API: every malformed timeout. (The stand-in NCCL links
# its own copy of the core, which reads GCSHIM_TIMEOUT and GCSHIM_DEBUG too.)
one_line GCSHIM_DEBUG=1 "GCSHIM_DEBUG=1 is not one of NONE, VERSION, WARN, INFO, TRACE; NONE used" \
  env GCSHIM_RANK=0 GCSHIM_WORLD_SIZE=1 timeout 60 "$demo"
for v in -1 NaN abc 0 1e400 3s inf; do
  one_line "GCSHIM_TIMEOUT=$v" "GCSHIM_TIMEOUT=$v is not a number from 0.001 to 1e+09; 300 used" \
    env GCSHIM_RANK=0 GCSHIM_WORLD_SIZE=1 timeout 60 "$demo"
done
if env GCSHIM_TIMEOUT=2.5 GCSHIM_RANK=0 GCSHIM_WORLD_SIZE=1 timeout 60 "$demo" >"$tmp/out" 2>"$tmp/err" &&
   [ ! -s "$tmp/err" ]
then ok "GCSHIM_TIMEOUT=2.5: nothing said"; else ko "GCSHIM_TIMEOUT=2.5"; cat "$tmp/err"; fi

# GCSHIM_DEBUG=INFO: each setting once, as in effect.
want=$(grep -c '^GC_PARAM(' "$def")
if env GCSHIM_DEBUG=INFO GCSHIM_TIME_EVERY=8 "$@" >"$tmp/out" 2>"$tmp/err"; then
  pid=$(grep -m1 ' GCSHIM INFO setting ' "$tmp/err" | cut -d: -f2)
  n=$(grep -c "^[^:]*:$pid:.* GCSHIM INFO setting GCSHIM_" "$tmp/err")
  names=$(grep " GCSHIM INFO setting GCSHIM_" "$tmp/err" | sed 's/.* setting \(GCSHIM_[A-Z_]*\).*/\1/' |
    sort -u | wc -l)
  # the stand-in NCCL links its own copy of the core: a second list, same names
  if [ "$names" -eq "$want" ] && [ $((n % want)) -eq 0 ] && [ "$n" -gt 0 ] &&
     grep -q " GCSHIM INFO setting GCSHIM_TIME_EVERY=8 (set)$" "$tmp/err" &&
     grep -q " GCSHIM INFO setting GCSHIM_TIMEOUT=.* (" "$tmp/err"
  then ok "GCSHIM_DEBUG=INFO lists the $want settings"
  else ko "GCSHIM_DEBUG=INFO: $names names, $n lines, want $want"; grep setting "$tmp/err" | head -30; fi
else ko "GCSHIM_DEBUG=INFO: the program failed"; tail -n 5 "$tmp/err"; fi

# %h in the timeline's path is the pretended host, as in the report's.
if env GCSHIM_TEST_HOST=fakehost GCSHIM_TRACE="$tmp/t-%h-%r.json" GCSHIM_REPORT="$tmp/r-%h.json" \
     "$@" >"$tmp/out" 2>&1 &&
   ls "$tmp"/t-fakehost-*.json >/dev/null 2>&1 && [ -f "$tmp/r-fakehost.json" ]
then ok "%h is GCSHIM_TEST_HOST's in the timeline and report paths"
else ko "%h of GCSHIM_TRACE"; ls "$tmp"; tail -n 5 "$tmp/out"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
