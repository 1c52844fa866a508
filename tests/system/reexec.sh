#!/bin/bash
# e2. `grmctl reexec` under load: grmd executes itself again in place (the way to run an upgraded
# grmd), keeping its pid (systemd sees no restart), its generations and their pids, the steering
# state and every flow; the new image reloads as usual.
. "$(dirname "$0")/lib.sh"

start_service
set_conf DrainTimeoutSec 20
start_load /run/load.json 200 5000 6 --flow-lifetime 1
sleep 1

step "grmctl reexec with generation 1 working"
grmd_pid=$(unit_prop "$UNIT" MainPID)
pid1=$(generation_field 1 pid)
start=$(date +%s%N)
grmctl reexec || fail "grmctl reexec exited $?"
echo "grmctl reexec returned after $((($(date +%s%N) - start) / 1000000)) ms"
wait_for 5 '.grmd.working == 1' || fail "generation 1 is not working after reexec"
[ "$(unit_prop "$UNIT" MainPID)" = "$grmd_pid" ] || fail "grmd's pid changed from $grmd_pid to $(unit_prop "$UNIT" MainPID)"
[ "$(generation_field 1 pid)" = "$pid1" ] || fail "generation 1 is pid $(generation_field 1 pid) now, was $pid1"
[ "$(unit_prop "$UNIT" NRestarts)" = 0 ] || fail "NRestarts=$(unit_prop "$UNIT" NRestarts)"
[ "$(unit_prop "$UNIT" ActiveState)/$(unit_prop "$UNIT" SubState)" = active/running ] ||
        fail "$UNIT is $(unit_prop "$UNIT" ActiveState)/$(unit_prop "$UNIT" SubState)"
probe 1
ok "grmd $grmd_pid re-executed; generation 1 (pid $pid1) kept"

step "reload after reexec"
sleep 1
systemctl reload "$UNIT" || fail "reload after reexec exited $? (grmctl $(exec_reload_status))"
[ "$(working_generation)" = 2 ] || fail "generation 2 is not working"
probe 2

wait_load /run/load.json
ok "reexec and reload under load: 0 lost, 0 moved"
