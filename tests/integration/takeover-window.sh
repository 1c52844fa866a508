#!/bin/bash
# The takeover window (issue 8, item 6): a grmd that dies during start-up, after it has read the
# previous grmd's vault and before it has stored a snapshot of its own, loses nothing: the next
# grmd still takes the instances over (same pids, same working generation, numbering goes on),
# under load with 0 lost and 0 moved. grmd runs under fdstore-supervisor.py (systemd's fd store
# and Restart= stand-in); GRM_TEST_KILL_FILE=recovered makes the second grmd SIGKILL itself right
# after it has read the vaults.
. "$(dirname "$0")/lib.sh"

cat >"$WORK/grmd.conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
ReceiveBuffer=4M
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.5
SettleSec=0.2
CONF
GRM_TEST_KILL_FILE=$WORK/kill-at python3 "$(dirname "$0")/fdstore-supervisor.py" "$WORK" -- \
        "$GRMD" --control "$SOCK" --config "$WORK/grmd.conf" >>"$WORK/grmd.log" 2>&1 &
wait_for 10 '.grmd.working == 1' || fail "no working generation"
grmctl restart >/dev/null || fail "restart to generation 2 failed"
wait_for 10 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 did not drain"
pid2=$(generation_field 2 pid)

"$GRM_LOAD" --json -f 100 -r 4000 -d 4 --ports 20000-20099 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 0.5
old=$(status_json | jq .grmd.pid)
starts_before=$(wc -l <"$WORK/starts")
echo recovered >"$WORK/kill-at"
kill -KILL "$old"
# The second grmd reads the vault and dies; the third must find the state all the same.
for _ in $(seq 100); do
        [ "$(wc -l <"$WORK/starts")" -ge $((starts_before + 2)) ] && [ ! -e "$WORK/kill-at" ] && break
        sleep 0.05
done
[ ! -e "$WORK/kill-at" ] || fail "the second grmd did not reach its kill point"
[ "$(wc -l <"$WORK/starts")" -ge $((starts_before + 2)) ] || fail "grmd was not started twice more"
wait_for 10 ".grmd.pid != $old and .grmd.working == 2" || fail "the third grmd did not take generation 2 over"
[ "$(generation_field 2 pid)" = "$pid2" ] || fail "generation 2 is a new process"
grep -q "Took over 1 running generation" "$WORK/grmd.log" || fail "no takeover logged"
rc=0
wait "$load" || rc=$?
jq -c '{sent, lost, moved}' "$WORK/load.json"
[ "$rc" = 0 ] || fail "grm-load reported loss or moves"
[ "$(jq .lost "$WORK/load.json")" = 0 ] || fail "packets lost"
grmctl restart >/dev/null || fail "restart after the takeover failed"
[ "$(status_json | jq .grmd.working)" = 3 ] || fail "numbering did not go on (working $(status_json | jq .grmd.working))"
ok "grmd killed after reading the vault: the next one took generation 2 (pid $pid2) over; $(jq .sent "$WORK/load.json") sent, 0 lost, 0 moved; next restart made generation 3"
gp=$(status_json | jq .grmd.pid)
kill -TERM "$gp"
for _ in $(seq 200); do
        kill -0 "$gp" 2>/dev/null || break
        sleep 0.05
done
kill -0 "$gp" 2>/dev/null && fail "grmd did not stop"
true
