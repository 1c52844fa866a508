#!/bin/bash
# TCP groups survive grmd's own restarts: two kill -9 (with a stand-in for systemd's fd store and
# Restart=, fdstore-supervisor.py) and a grmctl reexec, under TCP load on a TCP and a UDP group of
# one port. The new grmd finds the TCP listener among the stored sockets, re-attaches the TCP
# program over the adopted maps, keeps the generations and their counters; nothing is refused,
# reset or broken, and restarts go on afterwards.
. "$(dirname "$0")/lib.sh"

python3 "$(dirname "$0")/fdstore-supervisor.py" "$WORK" -- "$GRMD" --control "$SOCK" \
        --listen tcp:127.0.0.1:9000 --listen udp:127.0.0.1:9000 --drain-timeout 20 \
        -- "$GRM_ECHO" --idle-exit 0.5 --accept-every 0.05 >"$WORK/grmd.log" 2>&1 &
wait_for 10 '.grmd.working == 1' || fail "generation 1 did not start"

"$GRM_LOAD" --tcp --json -r 300 -L 20 -i 0.1 -d 9 127.0.0.1:9000 >"$WORK/tcp.json" 2>"$WORK/tcp.err" &
tcp_load=$!
"$GRM_LOAD" --json -f 100 -r 2000 -d 9 -l 1 --ports 20000-39999 127.0.0.1:9000 >"$WORK/udp.json" &
udp_load=$!
sleep 1
grmctl restart >/dev/null || fail "restart failed"
pid2=$(generation_field 2 pid)
sleep 0.5

for round in 1 2; do
        old=$(status_json | jq .grmd.pid)
        conns=$(generation_field 2 connections)
        kill -KILL "$old"
        wait_for 10 ".grmd.pid != $old" || fail "grmd was not started again"
        [ "$(generation_field 2 pid)" = "$pid2" ] || fail "working instance changed"
        [ "$(status_json | jq .grmd.working)" = 2 ] || fail "working generation lost"
        [ "$(status_json | jq -r '.groups[] | select(.transport == "tcp") | .address')" = tcp:127.0.0.1:9000 ] ||
                fail "TCP group not taken over"
        [ "$(generation_field 2 connections)" -ge "$conns" ] || fail "generation 2's connection count went back"
        ok "kill -9 #$round: grmd $old replaced, generation 2 still working, TCP group kept"
        sleep 1
done
grep -q "Took over" "$WORK/grmd.log" || fail "no takeover logged"

grmctl reexec || fail "reexec failed"
[ "$(generation_field 2 pid)" = "$pid2" ] || fail "working instance changed across reexec"
ok "reexec kept generation 2"
sleep 0.5
out=$(grmctl restart --json) || fail "restart after the takeovers failed: $out"
[ "$(jq -r .result.generation <<<"$out")" = 3 ] || fail "restart after the takeovers made $(jq .result.generation <<<"$out")"

rc=0
wait "$tcp_load" || rc=$?
jq -c '{connections, long_lived}' "$WORK/tcp.json"
[ "$rc" = 0 ] || fail "TCP clients were refused, reset, timed out or broken across the takeovers"
rc=0
wait "$udp_load" || rc=$?
jq -c '{sent, lost, moved}' "$WORK/udp.json"
[ "$rc" = 0 ] || fail "UDP flows lost or moved across the takeovers"
[ "$(status_json | jq '.counters.tcp_migrate_kernel + .counters.tcp_error_select + .counters.tcp_no_listener')" = 0 ] ||
        fail "connections left to the kernel"
ok "TCP and UDP under load across two kill -9 and a reexec: nothing refused, reset, lost or moved"

kill -TERM "$(status_json | jq .grmd.pid)"
for _ in $(seq 50); do [ -e "$SOCK" ] || break; sleep 0.1; done
[ -e "$SOCK" ] && fail "grmd did not stop"
ok "stopped"
