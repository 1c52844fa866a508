#!/bin/bash
# An old instance that ignores the drain signal is killed, with its process group, at the drain
# deadline.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 --drain-timeout 1.5 -- "$GRM_ECHO" --ignore-drain
pid1=$(generation_field 1 pid)
grmctl restart >/dev/null || fail "restart failed"
[ "$(generation_field 1 state)" = draining ] || fail "generation 1 not draining"
deadline=$(generation_field 1 drain_deadline_usec)
[ "$deadline" -gt 0 ] && [ "$deadline" -le 1500000 ] || fail "drain deadline $deadline"
wait_for 5 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 not killed"
kill -0 "$pid1" 2>/dev/null && fail "pid $pid1 still alive"
generation_field 1 failure | grep -q "drain deadline" || fail "no deadline reason"
grep -q "still running at its drain deadline" "$WORK/grmd.log" || fail "deadline not logged"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "generation 2 not serving"
ok "stuck instance killed at the drain deadline"
stop_grmd || fail "grmd did not exit cleanly"
