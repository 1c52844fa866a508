#!/bin/bash
# Faults (issue 4): each leaves the service answering, loses nothing the design promises, leaks
# no process or fd, and is reported. grmd runs under fdstore-supervisor.py (systemd's fd store
# and Restart= stand-in) so it can be SIGKILLed and started again; GRM_TEST_KILL_AT makes grmd
# kill itself at an exact point of a restart.
. "$(dirname "$0")/lib.sh"

conf=$WORK/grmd.conf
write_conf() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
ReceiveBuffer=4M
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.5 $1
StartTimeoutSec=10
DrainTimeoutSec=4
${2:-}
CONF
}
start_supervised() {
        GRM_TEST_KILL_FILE=$WORK/kill-at python3 "$(dirname "$0")/fdstore-supervisor.py" "$WORK" -- "$GRMD" --control "$SOCK" --config "$conf" \
                >>"$WORK/grmd.log" 2>&1 &
        SUPERVISOR=$!
        wait_for 10 '.grmd.working != 0' || fail "no working generation"
}
grmd_pid() {
        status_json | jq .grmd.pid
}
working() {
        status_json | jq .grmd.working
}
serving() {
        local g
        g=$(send_udp 127.0.0.1 9000)
        [ "$g" = "$1" ] || fail "expected generation $1 to answer, got '$g'"
}
wait_new_grmd() {
        wait_for 10 ".grmd.pid != $1" || fail "grmd was not started again"
}
load_start() {
        "$GRM_LOAD" --json -f 100 -r 2000 -d "$1" -l 1 --ports "$2" 127.0.0.1:9000 >"$WORK/load.json" &
        LOAD=$!
}
load_check() {
        local rc=0
        wait "$LOAD" || rc=$?
        jq -c '{sent, lost, moved, new_flows_on_old_generation}' "$WORK/load.json"
        [ "$rc" = 0 ] || fail "$1: grm-load reported loss, moves or misplaced new flows"
}

write_conf ""
start_supervised
serving 1

# 1. grmd killed before the spawn (during ExecCheck=): nothing changed, the check's requester
#    learns the restart is lost, the next grmd carries on with generation 1.
write_conf "" "ExecCheck=/bin/sleep 1"
load_start 4 20000-24999
old=$(grmd_pid)
grmctl restart >"$WORK/out" 2>&1 &
req=$!
# Killed once the restart is under way and nothing is spawned yet: the 1 s ExecCheck= runs.
wait_for 5 '.grmd.restart == "in-progress" and ([.generations[] | select(.generation > 1)] | length == 0)' ||
        fail "the restart did not get to its ExecCheck="
kill -KILL "$old"
rc=0; wait "$req" || rc=$?
[ "$rc" = 1 ] || fail "requester of a restart lost with grmd exited $rc: $(cat "$WORK/out")"
wait_new_grmd "$old"
[ "$(working)" = 1 ] || fail "working generation changed"
serving 1
load_check "kill during exec-check"
ok "grmd killed during ExecCheck=: nothing changed"

# 2. grmd killed at the spawn (sockets registered, no instance yet): the next grmd finds no new
#    instance and generation 1 keeps working; a restart then works.
old=$(grmd_pid)
echo spawn >"$WORK/kill-at"
grmctl restart >/dev/null 2>&1 && fail "a restart whose grmd died reported success"
wait_new_grmd "$old"
[ "$(working)" = 1 ] || fail "working generation changed"
serving 1
grmctl restart >/dev/null || fail "restart after the crash failed"
[ "$(working)" = 3 ] || fail "expected generation 3 (2 was never started), got $(working)"
ok "grmd killed at the spawn: rolled back, next restart fine"

# 3. grmd killed between the spawn and READY=1: the new grmd adopts the starting instance, whose
#    READY=1 (sent while no grmd ran) waits on the stored notify socket.
write_conf "--start-delay 1"
load_start 5 25000-29999
old=$(grmd_pid)
grmctl restart >"$WORK/out" 2>&1 &
req=$!
wait_for 5 '.generations[0].state == "starting"' || fail "generation 4 not starting"
kill -KILL "$old"
wait "$req" || true
wait_new_grmd "$old"
wait_for 10 '.grmd.working == 4' || fail "adopted starting generation did not become working"
serving 4
load_check "kill between spawn and ready"
ok "grmd killed between spawn and READY=1: the new generation still took over"

# 4. grmd killed right after the flip, before the drain signal: the next grmd sees in the maps
#    that generation 5 works and drains generation 4.
write_conf ""
load_start 5 30000-34999
old=$(grmd_pid)
echo flip >"$WORK/kill-at"
grmctl restart >/dev/null 2>&1 || true
wait_new_grmd "$old"
wait_for 5 '.grmd.working == 5' || fail "generation 5 not working after the crash at the flip"
wait_for 5 '.generations[] | select(.generation == 4) | .state == "draining" or .state == "exited"' ||
        fail "generation 4 not drained"
grep -q "was made the working one just before the previous grmd died" "$WORK/grmd.log" || fail "not logged"
serving 5
load_check "kill after the flip"
ok "grmd killed between the flip and the drain signal: finished by the next grmd"

# 4b. grmd killed while the restart settles (generation 5 stands by): the next grmd settles the
#     rest of the time, and the new instance crashing within it is a rollback to generation 5.
#     The load's flows all open on generation 5 before the restart and last: they never move.
write_conf "--crash-after 1.2" "SettleSec=3"
"$GRM_LOAD" --json -f 100 -r 2000 -d 5 --ports 35000-35099 127.0.0.1:9000 >"$WORK/load.json" &
LOAD=$!
sleep 0.3
old=$(grmd_pid)
echo settle >"$WORK/kill-at"
grmctl restart >/dev/null 2>&1 || true
wait_new_grmd "$old"
wait_for 5 '.generations[] | select(.generation == 6) | .state == "exited" or .state == "failed"' ||
        fail "generation 6 did not crash"
wait_for 5 '.grmd.working == 5' || fail "generation 5 not working again after the crash within the settle time"
[ "$(generation_field 5 state)" = working ] || fail "generation 5 is $(generation_field 5 state)"
grep -q "settles until" "$WORK/grmd.log" || fail "the settle was not resumed"
serving 5
load_check "kill while settling, then a crash within the settle time"
ok "grmd killed while a restart settled: the next grmd rolled back the crash within the settle time"

# 5. An instance that crashes while draining is reported; nothing else changes.
write_conf "--ignore-drain"
grmctl restart >/dev/null || fail "restart failed"
grmctl restart >/dev/null || fail "restart failed"
g=$(working)
prev=$((g - 1))
pid=$(generation_field "$prev" pid)
kill -SEGV "$pid"
wait_for 5 ".generations[] | select(.generation == $prev) | .state == \"exited\"" || fail "draining crash not seen"
[ "$(working)" = "$g" ] || fail "working generation changed after a draining instance crashed"
serving "$g"
ok "instance crashed while draining: reported, nothing else changed"

# 6. fd exhaustion during a restart: grmd's descriptors are used up (idle control connections
#    under a lowered limit): the restart fails cleanly, nothing leaks, the next one works.
write_conf ""
gp=$(grmd_pid)
fds=$(steady_fds "$gp")
# free_below LIMIT: how many descriptor numbers under LIMIT grmd does not use. RLIMIT_NOFILE
# bounds the numbers, not the count, and grmd may hold descriptors numbered above a count.
free_below() {
        python3 -c 'import os, sys
used = {int(x) for x in os.listdir("/proc/%s/fd" % sys.argv[1])}
print(sum(1 for n in range(int(sys.argv[2])) if n not in used))' "$gp" "$1"
}
# The limit under which exactly 9 numbers are free: 8 for the idle connections, 1 for grmctl's.
# Only descriptors held across a few samples count: the socket watch's netlink socket is open
# only for a moment.
limit=$(python3 -c 'import os, sys, time
used = None
for _ in range(10):
    now = {int(x) for x in os.listdir("/proc/%s/fd" % sys.argv[1])}
    used = now if used is None else used & now
    time.sleep(0.05)
n = free = 0
while free < 9:
    free += n not in used
    n += 1
print(n)' "$gp")
soft=$(prlimit --pid "$gp" --nofile --output SOFT --noheadings | tr -d ' ')
prlimit --pid "$gp" --nofile="$limit":
python3 - "$SOCK" <<'PY' &
import socket, sys, time
conns = []
for _ in range(8):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    conns.append(s)
time.sleep(60)
PY
hog=$!
# connect() returns once a connection is queued; grmd has taken every one when one number is
# left. Waiting for that, not for a fixed time, keeps a loaded machine from starting the restart
# before the descriptors are gone.
for _ in $(seq 100); do
        [ "$(free_below "$limit")" -le 1 ] && break
        sleep 0.1
done
[ "$(free_below "$limit")" -le 1 ] || fail "grmd did not take the idle control connections"
rc=0; grmctl restart >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "restart without descriptors exited $rc: $(cat "$WORK/out")"
kill "$hog"
wait "$hog" 2>/dev/null || true
for _ in $(seq 20); do
        [ "$(steady_fds "$gp")" -le "$fds" ] && break
done
serving "$g"
prlimit --pid "$gp" --nofile="$soft":
grmctl restart >/dev/null || fail "restart after fd exhaustion failed"
# The generation that restart superseded holds a pidfd until it has drained (idle 0.5 s).
for _ in $(seq 10); do
        [ "$(steady_fds "$gp")" -le "$fds" ] && break
done
[ "$(steady_fds "$gp")" -le "$fds" ] || fail "fds leaked: $fds -> $(steady_fds "$gp")"
ok "fd exhaustion during a restart: failed cleanly (exit $rc), no leak, next restart fine"

kill -TERM "$(grmd_pid)"
wait "$SUPERVISOR" || fail "supervised grmd did not stop cleanly"
ok "stopped"
