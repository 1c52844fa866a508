#!/bin/bash
# b. `systemctl reload grm-echo.service` under load: every reload (ExecReload=grmctl restart)
# exits 0 with the next generation working, new flows land on it, and over the whole run no
# datagram is lost and no flow moves. grmd itself is never restarted.
. "$(dirname "$0")/lib.sh"

RELOADS=${RELOADS:-4}
FLOWS=200
RATE=5000

start_service
grmd_pid=$(unit_prop "$UNIT" MainPID)
set_conf DrainTimeoutSec 20
# Many reloads, not the settle time, are under test (integration/settle tests the default).
set_conf SettleSec 0.3

step "$RELOADS reloads under $RATE packets/s over $FLOWS flows (each replaced after 1 s)"
start_load /run/load.json "$FLOWS" "$RATE" $((RELOADS * 2 + 2)) --flow-lifetime 1
sleep 1
for i in $(seq "$RELOADS"); do
        start=$(date +%s%N)
        systemctl reload "$UNIT" || fail "reload $i exited $? (grmctl: $(exec_reload_status))"
        ms=$((($(date +%s%N) - start) / 1000000))
        [ "$(exec_reload_status)" = 0 ] || fail "reload $i: grmctl exited $(exec_reload_status)"
        gen=$(working_generation)
        [ "$gen" = $((i + 1)) ] || fail "reload $i made generation $gen the working one"
        probe "$gen"
        echo "reload $i: ${ms} ms, generation $gen (pid $(generation_field "$gen" pid)) working, new flows on it"
        sleep 1.4
done
wait_load /run/load.json
[ "$(jq .sent /run/load.json)" -ge $((RATE * (RELOADS * 2 + 2) * 9 / 10)) ] || fail "the load sent too little"
counters=$(status_json | jq -c .counters)
echo "counters: $counters"
[ "$(jq '.error_select + .error_config' <<<"$counters")" = 0 ] || fail "steering errors"
ok "$RELOADS reloads under load: 0 lost, 0 moved"

step "grmd was reloaded, never restarted"
[ "$(unit_prop "$UNIT" MainPID)" = "$grmd_pid" ] || fail "grmd's pid changed from $grmd_pid to $(unit_prop "$UNIT" MainPID)"
[ "$(unit_prop "$UNIT" NRestarts)" = 0 ] || fail "NRestarts=$(unit_prop "$UNIT" NRestarts)"
[ "$(unit_prop "$UNIT" ActiveState)/$(unit_prop "$UNIT" SubState)" = active/running ] ||
        fail "$UNIT is $(unit_prop "$UNIT" ActiveState)/$(unit_prop "$UNIT" SubState)"
unit_journal | grep -c '^Reloaded grm-echo.service' | grep -qx "$RELOADS" ||
        fail "the journal does not show $RELOADS reloads"
grmctl status
ok "grmd pid $grmd_pid throughout, $RELOADS reloads in the journal"
