#!/bin/bash
# Old instances that ignore the drain signal are killed, with their process groups, at their
# drain deadlines; several generations drain at once, each with its own deadline.
. "$(dirname "$0")/lib.sh"

# --settle-sec 0: deadlines are under test; each restart is done (and its old one drains) at once.
# Deadlines 3 s, restarts 1 s apart: room for a slow restart 2 and slow status reads in between.
start_grmd --listen udp:127.0.0.1:9000 --settle-sec 0 --drain-timeout 3 -- "$GRM_ECHO" --ignore-drain
pid1=$(generation_field 1 pid)
grmctl restart >/dev/null || fail "restart 1 failed"
sleep 1
grmctl restart >/dev/null || fail "restart 2 failed"
snap=$(status_json)
gen() { jq -r --argjson g "$1" ".generations[] | select(.generation == \$g) | .$2" <<<"$snap"; }
pid2=$(gen 2 pid)
[ "$(gen 1 state)" = draining ] || fail "generation 1 not draining"
[ "$(gen 2 state)" = draining ] || fail "generation 2 not draining"
d1=$(gen 1 drain_deadline_usec)
d2=$(gen 2 drain_deadline_usec)
# Each has its own deadline: generation 2's is about 1 s after generation 1's.
[ "$d1" -gt 0 ] && [ "$d1" -le 3000000 ] || fail "generation 1 deadline $d1"
[ "$d2" -gt 0 ] && [ "$d2" -le 3000000 ] || fail "generation 2 deadline $d2"
[ $((d2 - d1)) -ge 600000 ] || fail "deadlines $d1 and $d2 are not 1 s apart"
ok "two generations draining at once (deadlines in $d1 and $d2 us)"
wait_for 5 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 not killed"
[ "$(generation_field 2 state)" = draining ] || fail "generation 2 killed with generation 1"
wait_for 5 '.generations[] | select(.generation == 2) | .state == "exited"' || fail "generation 2 not killed"
for p in $pid1 $pid2; do
        kill -0 "$p" 2>/dev/null && fail "pid $p still alive"
done
generation_field 1 failure | grep -q "drain deadline" || fail "no deadline reason"
grep -q "still running at its drain deadline" "$WORK/grmd.log" || fail "deadline not logged"
[ "$(send_udp 127.0.0.1 9000)" = 3 ] || fail "generation 3 not serving"
ok "stuck instances killed at their drain deadlines"
stop_grmd || fail "grmd did not exit cleanly"
