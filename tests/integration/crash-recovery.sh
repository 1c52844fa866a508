#!/bin/bash
# kill -9 of grmd under load, with a stand-in for systemd's fd store and Restart=
# (fdstore-supervisor.py): the new grmd takes over from the vault; instances keep their pids;
# 0 lost, 0 moved; drains and restarts go on.
# --idle-exit 1.5: generation 1 (its flows gone 1 s after the restart) must exit after the first
# kill's takeover, so that an adopting grmd sees its exit, whatever the checks before the kill
# cost on a loaded machine.
. "$(dirname "$0")/lib.sh"

python3 "$(dirname "$0")/fdstore-supervisor.py" "$WORK" -- "$GRMD" --control "$SOCK" \
        --listen udp:127.0.0.1:9000 --drain-timeout 20 --receive-buffer 4M \
        -- "$GRM_ECHO" --idle-exit 1.5 >"$WORK/grmd.log" 2>&1 &
wait_for 10 '.grmd.working == 1' || fail "generation 1 did not start"

"$GRM_LOAD" --json -f 200 -r 5000 -d 8 -l 1 --ports 20000-39999 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 1
grmctl restart >/dev/null || fail "restart failed"
pid1=$(generation_field 1 pid)
pid2=$(generation_field 2 pid)

for round in 1 2; do
        old=$(status_json | jq .grmd.pid)
        # grmd's own sockets on the address: the original and the head socket bound after
        # generation 2's (docs/ARCHITECTURE.md, restart step 4). The head lives in the vault's
        # queue, so the next grmd holds the very same socket: it never closed.
        before=$(udp_inodes "$old" 9000 | tr '\n' ' ')
        [ "$(echo $before | wc -w)" = 2 ] || fail "grmd $old holds sockets '$before' on port 9000, expected 2"
        kill -KILL "$old"
        wait_for 10 ".grmd.pid != $old" || fail "grmd was not started again"
        new=$(status_json | jq .grmd.pid)
        after=$(udp_inodes "$new" 9000 | tr '\n' ' ')
        [ "$after" = "$before" ] || fail "after kill -9 grmd holds sockets '$after' on port 9000, before '$before'"
        ok "kill -9 #$round: the new grmd holds the same original and head socket ($after)"
        [ "$(generation_field 2 pid)" = "$pid2" ] || fail "working instance changed"
        [ "$(status_json | jq .grmd.working)" = 2 ] || fail "working generation lost"
        kill -0 "$pid2" || fail "working instance died with grmd"
        grep -q "Took over" "$WORK/grmd.log" || fail "no takeover logged"
        ok "kill -9 #$round: grmd $old replaced by $(status_json | jq .grmd.pid), generation 2 still working"
        sleep 1
done
# The supervisor's store holds sockets only (what systemd 252 keeps): vault, notify, listen.
[ "$(grep -vc '^exit' "$WORK/starts")" = 3 ] || fail "expected 3 starts of grmd: $(cat "$WORK/starts")"
tail -n 1 "$WORK/starts" | grep -q "grm-listen.*grm-notify.*grm-vault-\|grm-vault-.*grm-notify\|grm-notify.*grm-vault-" ||
        fail "last start did not get the stored fds: $(tail -n 1 "$WORK/starts")"

grmctl restart >/dev/null || fail "restart after takeover failed"
rc=0
wait "$load" || rc=$?
jq -c '{sent, lost, moved, new_flows_on_old_generation}' "$WORK/load.json"
[ "$rc" = 0 ] || fail "grm-load reported loss, moves or misplaced new flows"
wait_for 5 '[.generations[] | select(.generation <= 2 and .state == "exited")] | length == 2' ||
        fail "adopted generations did not drain and exit"
grep -q "Generation 1 (pid $pid1) exited (status unknown: it was started by an earlier grmd) after draining" "$WORK/grmd.log" ||
        fail "generation 1's exit was not seen by the grmd that adopted it"
ok "under load across two kill -9: 0 lost, 0 moved; adopted generations drained"

kill -TERM "$(status_json | jq .grmd.pid)"
for _ in $(seq 50); do [ -e "$SOCK" ] || break; sleep 0.1; done
[ -e "$SOCK" ] && fail "grmd did not stop"
ok "stopped"
