#!/bin/bash
# e1. grmd killed with SIGKILL under load, twice (once with a generation draining): systemd
# starts a new grmd (Restart=on-failure), KillMode=process leaves the instances alone, and the
# new grmd takes them over from the fd store: same generations, same pids, no datagram lost, no
# flow moved; it can reload, and it ends the draining generation.
. "$(dirname "$0")/lib.sh"

start_service
set_conf DrainTimeoutSec 3

start_load /run/load.json 200 5000 9 --flow-lifetime 1
sleep 1

step "kill -9 grmd with generation 1 working"
pid1=$(generation_field 1 pid)
kill_grmd
wait_for 5 '.grmd.working == 1' || fail "generation 1 is not the working generation of the new grmd"
[ "$(generation_field 1 pid)" = "$pid1" ] || fail "generation 1 is pid $(generation_field 1 pid) now, was $pid1"
kill -0 "$pid1" 2>/dev/null || fail "instance $pid1 died with grmd"
[ "$(unit_prop "$UNIT" NRestarts)" = 1 ] || fail "NRestarts=$(unit_prop "$UNIT" NRestarts)"
probe 1
ok "generation 1 (pid $pid1) kept serving and was taken over"

step "reload, then kill -9 grmd while generation 1 drains"
sleep 1
systemctl reload "$UNIT" || fail "reload after the takeover exited $? (grmctl $(exec_reload_status))"
[ "$(working_generation)" = 2 ] || fail "generation 2 is not working"
pid2=$(generation_field 2 pid)
probe 2
# grmd's own sockets on 127.0.0.1:9000 and [::1]:9000: the socket unit's two and, on IPv4, the head
# socket bound after generation 2's (docs/ARCHITECTURE.md, restart step 4). The head lives in
# the vault's queue, in systemd's fd store: the next grmd holds the very same socket.
before=$(udp_inodes "$(unit_prop "$UNIT" MainPID)" 9000)
[ "$(echo $before | wc -w)" = 3 ] || fail "grmd holds sockets '$before' on port 9000, expected 3"
kill_grmd
after=$(udp_inodes "$(unit_prop "$UNIT" MainPID)" 9000)
[ "$after" = "$before" ] || fail "after kill -9 grmd holds sockets '$after' on port 9000, before '$before'"
ok "the new grmd holds the same sockets on port 9000, head socket included ($after)"
wait_for 5 '.grmd.working == 2' || fail "generation 2 is not the working generation of the new grmd"
[ "$(generation_field 2 pid)" = "$pid2" ] || fail "generation 2 is pid $(generation_field 2 pid) now, was $pid2"
probe 2
# The new grmd still ends generation 1: by itself when idle, or at its drain deadline.
wait_for 8 '[.generations[] | select(.generation == 1 and (.state == "draining" or .state == "working"))] | length == 0' ||
        fail "generation 1 was not ended by the new grmd"
kill -0 "$pid1" 2>/dev/null && fail "instance $pid1 of generation 1 still running"
ok "generation 2 (pid $pid2) kept serving; generation 1 ended"

wait_load /run/load.json
ok "two grmd crashes under load: 0 lost, 0 moved"

step "journal"
unit_journal | grep -E 'Main process exited|Scheduled restart' || true
check_message_id "$MESSAGE_STATE_RECOVERED" "state recovered"
