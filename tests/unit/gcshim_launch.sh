#!/bin/sh
# gcshim_launch.sh - scripts/gcshim-launch: ranks numbered and given one job
# identity; the first failure's status; when a rank fails the others are
# stopped (a sleeping one, a stopped one, one that ignores SIGTERM) within
# the grace, and no rank outlives the launcher.
launch=${top_srcdir:-..}/scripts/gcshim-launch
tmp=$(mktemp -d /tmp/gcshim-launch-test.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

out=$(GCSHIM_LAUNCH_RAW=1 "$launch" -n 3 sh -c 'echo "$GCSHIM_RANK/$GCSHIM_WORLD_SIZE $GCSHIM_RENDEZVOUS"' | sort)
ids=$(echo "$out" | awk '{print $2}' | sort -u | wc -l)
if [ "$(echo "$out" | awk '{print $1}' | tr '\n' ' ')" = "0/3 1/3 2/3 " ] && [ "$ids" = 1 ]; then
  ok "ranks 0..2 of 3, one job identity"
else bad "ranks and identity: $out"; fi

# rank 1 fails; rank 0 sleeps, rank 2 stops itself, rank 3 ignores SIGTERM.
cat >"$tmp/rank.sh" <<'SH'
echo $$ >"$1/pid.$GCSHIM_RANK"
case $GCSHIM_RANK in
  1) sleep 0.5; exit 7 ;;
  2) kill -STOP $$; sleep 60 ;;
  3) trap '' TERM; sleep 60 ;;
  *) sleep 60 ;;
esac
SH
start=$(date +%s)
GCSHIM_LAUNCH_GRACE=2 "$launch" -n 4 sh "$tmp/rank.sh" "$tmp" >"$tmp/out" 2>&1
st=$?
took=$(($(date +%s) - start))
left=0
for f in "$tmp"/pid.*; do
  p=$(cat "$f")
  # a zombie is gone too (reparented ones wait for a reaper that may be slow)
  if kill -0 "$p" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then
    left=$((left + 1)); kill -KILL "$p"
  fi
done
if [ "$st" = 7 ] && [ "$took" -le 10 ] && [ "$left" = 0 ] && grep -q "stopping the other 3" "$tmp/out"
then ok "a failed rank: status 7, the others (sleeping, stopped, deaf to SIGTERM) gone in ${took} s"
else bad "a failed rank: status $st after ${took} s, $left ranks left"; cat "$tmp/out"; fi

GCSHIM_LAUNCH_RAW=1 "$launch" -n 2 true && ok "all ranks succeed: status 0" || bad "status of a good job"
"$launch" -n 0 true 2>/dev/null; [ $? = 2 ] && ok "-n 0 refused" || bad "-n 0"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
