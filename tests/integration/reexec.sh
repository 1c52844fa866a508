#!/bin/bash
# grmctl reexec under load: grmd runs its binary again in place (same pid), takes over every
# generation from the vault, and nothing is lost or moved; drains and restarts go on after it.
. "$(dirname "$0")/lib.sh"

# --idle-exit 1.5: generation 1 (its flows gone 1 s after the restart) must still be draining when
# the reexec comes, whatever the checks before it cost on a loaded machine.
start_grmd --listen udp:127.0.0.1:9000 --drain-timeout 20 --receive-buffer 4M -- "$GRM_ECHO" --idle-exit 1.5
"$GRM_LOAD" --json -f 200 -r 5000 -d 7 -l 1 --ports 20000-39999 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 1
grmctl restart >/dev/null || fail "restart before reexec failed"
pid2=$(generation_field 2 pid)
deadline_before=$(generation_field 1 drain_deadline_usec)
fds_before=$(ls /proc/"$GRMD_PID"/fd | wc -l)
# The original and the head socket (docs/ARCHITECTURE.md, restart step 4): the head is
# close-on-exec, but the vault's queue holds it across the exec, and the new image takes it back.
inodes_before=$(udp_inodes "$GRMD_PID" 9000 | tr '\n' ' ')
[ "$(echo $inodes_before | wc -w)" = 2 ] || fail "grmd holds sockets '$inodes_before' on port 9000, expected 2"

grmctl reexec || fail "reexec failed"
[ "$(status_json | jq .grmd.pid)" = "$GRMD_PID" ] || fail "grmd pid changed"
inodes_after=$(udp_inodes "$GRMD_PID" 9000 | tr '\n' ' ')
[ "$inodes_after" = "$inodes_before" ] || fail "after reexec grmd holds sockets '$inodes_after' on port 9000, before '$inodes_before'"
[ "$(generation_field 2 pid)" = "$pid2" ] || fail "working instance changed"
[ "$(generation_field 2 state)" = working ] || fail "generation 2 not working after reexec"
[ "$(status_json | jq .grmd.working)" = 2 ] || fail "working generation lost"
# Generation 1 drains (grm-echo exits once idle for 0.5 s, which can be any moment now): its state
# and deadline from one status, so that it cannot exit between the two reads.
gen1=$(status_json | jq -c '.generations[] | select(.generation == 1)')
case $(jq -r .state <<<"$gen1") in
draining)
        deadline_after=$(jq .drain_deadline_usec <<<"$gen1")
        [ "$deadline_after" -le "$deadline_before" ] || fail "drain deadline moved: $deadline_before -> $deadline_after"
        ;;
exited) ;;
*) fail "generation 1 neither draining nor exited after reexec: $gen1" ;;
esac
grep -q "Took over 2 running generation" "$WORK/grmd.log" || fail "no takeover logged"
ok "reexec kept pid $GRMD_PID and generations 1-2"

sleep 1
grmctl restart >/dev/null || fail "restart after reexec failed"
rc=0
wait "$load" || rc=$?
jq -c '{sent, lost, moved, new_flows_on_old_generation}' "$WORK/load.json"
[ "$rc" = 0 ] || fail "grm-load reported loss, moves or misplaced new flows"
wait_for 5 '[.generations[] | select(.generation <= 2 and .state == "exited")] | length == 2' ||
        fail "old generations did not drain and exit after the reexec"
fds_after=$(ls /proc/"$GRMD_PID"/fd | wc -l)
[ "$fds_after" -le "$fds_before" ] || fail "fds grew across reexec: $fds_before -> $fds_after"
ok "under load across reexec: 0 lost, 0 moved; drains completed"

# The counters, in the Prometheus text format.
grmctl metrics >"$WORK/metrics" || fail "grmctl metrics failed"
grep -q '^grm_working_generation 3$' "$WORK/metrics" || fail "metrics: working generation"
grep -q '^grm_restarts_succeeded_total 3$' "$WORK/metrics" || fail "metrics: restarts"
grep -q '^grm_steering_packets_total{verdict="flow_existing"} [1-9]' "$WORK/metrics" || fail "metrics: verdicts"
grep -q '^# TYPE grm_steering_packets_total counter$' "$WORK/metrics" || fail "metrics: TYPE lines"
ok "grmctl metrics"
stop_grmd || fail "grmd did not exit cleanly"
