#!/bin/bash
# c. A reload that cannot succeed fails `systemctl reload` with grmctl's exit code as the
# reload's status, while the working generation keeps serving every flow; the unit stays
# active; the journal explains it. Three ways: a config that does not parse (grmctl exit 4), an
# instance that exits before READY=1 (5), one that is never ready (6). Then a good config
# reloads again.
. "$(dirname "$0")/lib.sh"

start_service
cp "$CONF" /run/grm-echo.conf.good
set_conf StartTimeoutSec 2

step "reload with the start timeout shortened (the rest of the test relies on it)"
systemctl reload "$UNIT" || fail "reload exited $?"
[ "$(working_generation)" = 2 ] || fail "generation 2 is not working"
working_pid=$(generation_field 2 pid)

start_load /run/load.json 50 1000 9
sleep 1

# failed_reload CODE JOURNAL-TEXT WHAT
failed_reload() {
        local code=$1 text=$2 what=$3 rc=0 out
        out=$(systemctl reload "$UNIT" 2>&1) || rc=$?
        echo "systemctl reload: exit $rc: $out"
        [ "$rc" != 0 ] || fail "$what: systemctl reload exited 0"
        [ "$(exec_reload_status)" = "$code" ] || fail "$what: grmctl exited $(exec_reload_status), expected $code"
        [ "$(unit_prop "$UNIT" ActiveState)/$(unit_prop "$UNIT" SubState)" = active/running ] ||
                fail "$what: $UNIT is $(unit_prop "$UNIT" ActiveState)/$(unit_prop "$UNIT" SubState) after the failed reload"
        [ "$(working_generation)" = 2 ] || fail "$what: generation $(working_generation) is working, not 2"
        [ "$(generation_field 2 pid)" = "$working_pid" ] || fail "$what: the working instance changed"
        probe 2
        unit_journal | grep -F "Restart failed ($text)" ||
                fail "$what: no 'Restart failed ($text)' from grmd in the journal"
        ok "$what: systemctl reload failed (grmctl $code), generation 2 (pid $working_pid) still serves new flows"
}

step "a config that does not parse"
cp /run/grm-echo.conf.good "$CONF"
set_conf StartTimeoutSec 2
set_conf NoSuchKey yes
failed_reload 4 rejected "bad config"

step "an instance that exits before it is ready"
cp /run/grm-echo.conf.good "$CONF"
set_conf StartTimeoutSec 2
set_conf ExecStart "/usr/bin/grm-echo --fail-start"
failed_reload 5 failed "failing instance"

step "an instance that is never ready"
set_conf ExecStart "/usr/bin/grm-echo --never-ready"
failed_reload 6 timeout "never-ready instance"

step "the good config reloads again"
cp /run/grm-echo.conf.good "$CONF"
systemctl reload "$UNIT" || fail "reload with the good config exited $?"
[ "$(exec_reload_status)" = 0 ] || fail "grmctl exited $(exec_reload_status)"
gen=$(working_generation)
[ "$gen" -gt 2 ] || fail "no new generation after the good reload"
probe "$gen"
ok "generation $gen working"

wait_load /run/load.json
ok "through three failed reloads: 0 lost, 0 moved"

step "systemd's and grmd's view of the failures"
systemctl status "$UNIT" --no-pager -n 0 | grep -E 'Active|Status|Process' || true
check_message_id "$MESSAGE_RESTART_FAILED" "restart failed"
grmctl status | grep -E '^restarts'
[ "$(status_json | jq -r .grmd.restarts_failed)" = 3 ] || fail "grmctl status does not count 3 failed restarts"
ok "grmctl status counts the 3 failed restarts"
