#!/bin/sh
# params_readme.sh - README.md's table of settings is the one params.def
# writes (make readme-params), and src/ and plugin/ read no GCSHIM_*
# setting but through params.h (GCSHIM_RENDEZVOUS, job identity, is read
# with the launchers' variables in coord/world.c). Runs from tests/ of the
# build tree; srcdir is set by the test harness.
top="${srcdir:-.}/.."
md=../src/core/gc-params-md
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gcshim-readme.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$md" ]; then bad "$md not built"; exit 1; fi
"$md" >"$tmp/want"
sed -n '/^<!-- params.def: begin/,/^<!-- params.def: end/p' "$top/README.md" | sed '1d;$d' >"$tmp/got"
if [ -s "$tmp/got" ] && cmp -s "$tmp/want" "$tmp/got"; then
  ok "README.md's table is params.def's ($(($(wc -l <"$tmp/want") - 2)) settings)"
else
  bad "README.md's table differs from params.def (make readme-params writes it):"
  diff "$tmp/got" "$tmp/want" | head -20
fi
left=$(grep -rn 'getenv("GCSHIM_' "$top/src" "$top/plugin" --include='*.c' --include='*.h' |
  grep -v 'coord/world\.c:.*getenv("GCSHIM_RENDEZVOUS")')
if [ -z "$left" ]; then ok "no getenv of a GCSHIM_ setting outside params.c"
else bad "settings read around params.def:"; echo "$left"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
