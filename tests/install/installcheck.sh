#!/bin/sh
# installcheck.sh DESTDIR PREFIX LIBDIR BINDIR BUILDDIR SRCDIR - the installed
# gcshim used as a user would: a program built against the installed headers
# and library through pkg-config, run by the installed gcshim-launch; the
# installed shim preloaded into an unchanged NCCL program (the hostnccl
# fixture of the build tree standing in for NCCL); the installed plugin
# names opened the way NCCL opens NCCL_TUNER_PLUGIN=gcshim (the name as
# given, then libnccl-tuner-gcshim.so: src/plugin/plugin_open.cc).
dest=$1 prefix=$2 libdir=$dest$3 bindir=$dest$4 build=$5 src=$6
tmp=$(mktemp -d /tmp/gcshim-installcheck.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

for f in "$dest$prefix/include/gcshim/gc.h" "$dest$prefix/include/gcshim/gcshim.h" \
  "$bindir/gcshim-launch" "$bindir/gcshim-report" "$bindir/gcshim-ab" \
  "$libdir/libgcshim.so" "$libdir/libnccl-tuner-gcshim.so" "$libdir/libnccl-profiler-gcshim.so"; do
  [ -e "$f" ] && ok "installed: ${f#$dest}" || bad "not installed: ${f#$dest}"
done

export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
if ${CC:-cc} -o "$tmp/api_prog" "$src/tests/install/api_prog.c" $(pkg-config --cflags --libs gcshim) \
     >"$tmp/cc.out" 2>&1; then ok "built with pkg-config --cflags --libs gcshim"
else bad "build against the installed headers"; cat "$tmp/cc.out"; fi
if LD_LIBRARY_PATH="$libdir" "$bindir/gcshim-launch" -n 3 "$tmp/api_prog" >"$tmp/run.out" 2>&1 &&
   [ "$(grep -c '1 passed, 0 failed' "$tmp/run.out")" = 3 ]; then
  ok "3 ranks under the installed gcshim-launch"
else bad "the API program under gcshim-launch"; cat "$tmp/run.out"; fi

fix="$build/tests/fixtures/hostnccl"
if [ -x "$fix/nccl_prog_colls" ]; then
  if LD_PRELOAD="$libdir/libgcshim.so" GCSHIM_NCCL_LIBRARY="$fix/.libs/libnccl.so.2" \
       GCSHIM_REPORT="$tmp/r.json" NCCL_PROG_COUNT=33 "$fix/nccl_prog_colls" 2 >"$tmp/p.out" 2>&1 &&
     grep -q ' 0 failed' "$tmp/p.out" && grep -q '"world_size": 2' "$tmp/r.json"; then
    ok "the installed shim preloaded: results right, report written"
  else bad "the installed shim preloaded"; tail "$tmp/p.out"; fi
else
  bad "no $fix/nccl_prog_colls: run make check before make installcheck"
fi

if [ -x "$build/tests/unit/plugin_load" ]; then
  # NCCL's first try, the name as given, finds nothing; its second does.
  if (cd "$tmp" && LD_LIBRARY_PATH="$libdir" "$build/tests/unit/plugin_load" gcshim x) 2>&1 |
     grep -q "FAIL: dlopen gcshim"; then ok "a library named plain 'gcshim': none, as NCCL expects"
  else bad "a library named plain 'gcshim' was found"; fi
  for t in TUNER PROFILER; do
    lib=libnccl-$(echo $t | tr '[:upper:]' '[:lower:]')-gcshim.so
    if (cd "$tmp" && LD_LIBRARY_PATH="$libdir" "$build/tests/unit/plugin_load" "$lib" x \
          >"$tmp/l.out" 2>&1) && ! grep -q FAIL "$tmp/l.out"; then
      ok "NCCL_${t}_PLUGIN=gcshim: $lib opened, both entry points found"
    else bad "$lib"; cat "$tmp/l.out"; fi
  done
else
  bad "no $build/tests/unit/plugin_load: run make check before make installcheck"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
