#!/bin/sh
# test_faults.sh - runs the fault campaign (faults/test_faults) holding the
# /dev/shm tests' lock exclusively: it kills, stops and leaks on purpose,
# and the tests that compare /dev/shm before and after themselves
# (test_preload.sh, test_hosts.sh, test_capture.sh) hold it shared.
lock=${TMPDIR:-/tmp}/gcshim-shm-tests.lock
exec flock -x "$lock" ./faults/test_faults "$@"
