#!/bin/bash
# Every generation in a cgroup of its own (issue 8, item 3): a child that leaves the instance's
# session and process group (setsid, then daemonised) and keeps the group's socket open ends
# with its generation, after the drain deadline (under load: 0 lost, 0 moved), after a failed
# start, and at grmd's stop; each generation's CPU time is in grmctl status; nothing of a
# generation runs afterwards and its cgroup is removed. Then the systemd cases without systemd:
# a ".service" cgroup without the delegation mark gets process groups and a warning, one with
# it holds the generations itself.
. "$(dirname "$0")/lib.sh"
HI="/usr/bin/python3 $(dirname "$(readlink -f "$0")")/hostile-instance.py"

alive() { kill -0 "$1" 2>/dev/null; }
# The escaped child: its own session, not in the instance's process group, holding the socket.
check_escaped() {
        local pid=$1 inst=$2
        [ "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$inst" ] || fail "escaped child $pid still in the instance's session"
        [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" != "$inst" ] || fail "escaped child $pid still in the instance's process group"
        find /proc/"$pid"/fd -lname 'socket:*' | grep -q . || fail "escaped child holds no socket"
}
# escaped_pid FILE: the escaped child's pid, which it writes to FILE itself. It is a daemonised
# grandchild that nothing waits for: the instance may be ready (and even gone) before it has
# run, so wait up to 5 s for the file to be there and not empty.
escaped_pid() {
        for _ in $(seq 100); do
                [ -s "$1" ] && break
                sleep 0.05
        done
        [ -s "$1" ] || return 1
        cat "$1"
}
wait_gone() {
        for _ in $(seq 100); do alive "$1" || return 0; sleep 0.05; done
        fail "pid $1 still running: $(ps -o pid,sid,pgid,cmd -p "$1" | tail -1)"
}

conf=$WORK/grmd.conf
set_command() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
ReceiveBuffer=4M
[Instance]
ExecStart=$1
DrainTimeoutSec=1
CONF
}

# 1. Drain deadline: generation 1 escapes and ignores the drain signal.
set_command "$HI --escape $WORK/esc1 -- $GRM_ECHO --ignore-drain"
start_grmd --config "$conf"
[ "$(status_json | jq -r .grmd.isolation)" = cgroup ] || fail "not isolated in cgroups: $(status_json | jq .grmd)"
base=/sys/fs/cgroup/unified$(status_json | jq -r .grmd.cgroup)
echo "$base" >"$WORK/cgroup-base"   # for the clean-up
[ "$(generation_field 1 cgroup)" = gen-1 ] || fail "generation 1 cgroup: $(generation_field 1 cgroup)"
esc1=$(escaped_pid "$WORK/esc1") || fail "the escaped child wrote no pid to $WORK/esc1"
pid1=$(generation_field 1 pid)
check_escaped "$esc1" "$pid1"
grep -qx "$esc1" "$base/gen-1/cgroup.procs" || fail "escaped child not in gen-1"
ok "generation 1 in $base/gen-1, escaped child $esc1 with it"

set_command "$GRM_ECHO --idle-exit 0.3"
"$GRM_LOAD" --json -f 100 -r 4000 -d 4 -l 1 --ports 20000-29999 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 0.5
grmctl restart >/dev/null || fail "restart failed"
wait_for 5 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 not killed at its deadline"
wait_gone "$pid1"
wait_gone "$esc1"
wait "$load" || fail "load: $(cat "$WORK/load.json")"
[ ! -e "$base/gen-1" ] || fail "gen-1 cgroup not removed"
cpu=$(generation_field 1 cpu_usec)
[ "$cpu" -gt 0 ] || fail "no CPU time for generation 1"
ok "drain deadline: instance and escaped child gone, cgroup removed, ${cpu} us CPU; load $(jq -c '{sent, lost, moved}' "$WORK/load.json")"
[ "$(jq .lost "$WORK/load.json")" = 0 ] && [ "$(jq .moved "$WORK/load.json")" = 0 ] || fail "packets lost or flows moved"

# 2. A failed start: generation 3 escapes, then exits before READY=1.
set_command "$HI --escape $WORK/esc3 -- $GRM_ECHO --fail-start"
expect_rc 5 grmctl restart
esc3=$(escaped_pid "$WORK/esc3") || fail "the escaped child wrote no pid to $WORK/esc3"
wait_gone "$esc3"
wait_for 5 '.generations[] | select(.generation == 3) | .state == "failed"' || fail "generation 3 not failed"
for _ in $(seq 50); do [ -e "$base/gen-3" ] || break; sleep 0.05; done
[ ! -e "$base/gen-3" ] || fail "gen-3 cgroup not removed"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "generation 2 not serving after the rollback"
ok "failed start: escaped child $esc3 gone, cgroup removed, generation 2 serving"

# 3. grmd's stop: generation 4 escapes; SIGTERM drains it, its exit ends the child.
set_command "$HI --escape $WORK/esc4 -- $GRM_ECHO --idle-exit 0.3"
expect_rc 0 grmctl restart
esc4=$(escaped_pid "$WORK/esc4") || fail "the escaped child wrote no pid to $WORK/esc4"
pid4=$(generation_field 4 pid)
check_escaped "$esc4" "$pid4"
stop_grmd || fail "grmd did not exit cleanly"
wait_gone "$esc4"
[ ! -e "$base" ] || fail "cgroups left after the stop: $(find "$base" -type d)"
n=$(ps -e -o pid= | wc -l)
ok "stop: escaped child $esc4 gone, $base removed ($n processes left in the test's namespace)"

# 4. As a systemd service without and with Delegate=yes (the xattr systemd 252 sets).
unit=/sys/fs/cgroup/unified/grm-test-$(basename "$WORK").service
mkdir "$unit"
echo "$unit" >"$WORK/cgroup-unit"
as_unit() {
        exec bash -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$unit" env INVOCATION_ID=0123 "$@"
}
as_unit "$GRMD" --control "$SOCK" --listen udp:127.0.0.1:9001 -- "$GRM_ECHO" >"$WORK/grmd.log" 2>&1 &
GRMD_PID=$!
wait_for 10 '.grmd.working == 1' || fail "grmd in a .service cgroup did not start"
[ "$(status_json | jq -r .grmd.isolation)" = process-group ] || fail "undelegated unit cgroup used"
grep -q "Generations run in process groups only (the unit has no Delegate=yes)" "$WORK/grmd.log" ||
        fail "no warning about the missing Delegate=yes"
stop_grmd || fail "grmd did not exit cleanly"
ok "a unit without Delegate=yes: process groups, with a warning"

/usr/bin/python3 -c 'import os, sys; os.setxattr(sys.argv[1], "trusted.delegate", b"1")' "$unit"
as_unit "$GRMD" --control "$SOCK" --listen udp:127.0.0.1:9001 -- $HI --escape "$WORK/esc5" -- "$GRM_ECHO" --idle-exit 0.3 >"$WORK/grmd.log" 2>&1 &
GRMD_PID=$!
wait_for 10 '.grmd.working == 1' || fail "grmd in a delegated cgroup did not start"
[ "$(status_json | jq -r .grmd.cgroup)" = "/${unit##*/}" ] || fail "delegated cgroup not the base: $(status_json | jq .grmd)"
[ -d "$unit/gen-1" ] || fail "no $unit/gen-1"
esc5=$(escaped_pid "$WORK/esc5") || fail "the escaped child wrote no pid to $WORK/esc5"
stop_grmd || fail "grmd did not exit cleanly"
wait_gone "$esc5"
[ ! -e "$unit/gen-1" ] || fail "gen-1 left in the unit's cgroup"
rmdir "$unit"
ok "a unit with Delegate=yes: generations in its cgroup, escaped child gone at the stop"
