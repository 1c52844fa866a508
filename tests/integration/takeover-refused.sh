#!/bin/bash
# A snapshot the next grmd cannot adopt (issue 8, item 8): here one of a format version this
# grmd does not read (GRM_TEST_SNAPSHOT_VERSION=99 makes the first grmd write it). The next grmd
# says why (log, status, restart's message), never kills the old instances, starts nothing of its
# own on their sockets: the working instance goes on serving its flows and new ones through the
# steering it has, 0 lost and 0 moved under load, and a restart is refused (exit 4).
. "$(dirname "$0")/lib.sh"

cat >"$WORK/grmd.conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
ReceiveBuffer=4M
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.5
CONF
GRM_TEST_SNAPSHOT_VERSION=99 python3 "$(dirname "$0")/fdstore-supervisor.py" "$WORK" -- \
        "$GRMD" --control "$SOCK" --config "$WORK/grmd.conf" >>"$WORK/grmd.log" 2>&1 &
wait_for 10 '.grmd.working == 1' || fail "no working generation"
pid1=$(generation_field 1 pid)

"$GRM_LOAD" --json -f 100 -r 4000 -d 3 --ports 20000-20099 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 0.5
old=$(status_json | jq .grmd.pid)
kill -KILL "$old"
wait_for 10 ".grmd.pid != $old and (.grmd.not_supervising // \"\") != \"\"" || fail "the next grmd did not refuse"
reason=$(status_json | jq -r .grmd.not_supervising)
grep -q "format version 99" <<<"$reason" || fail "reason does not name the version: $reason"
grep -q "Cannot take over the previous grmd's instances (pids $pid1)" "$WORK/grmd.log" || fail "refusal not logged"
[ "$(status_json | jq '.generations | length')" = 0 ] || fail "the refusing grmd started a generation"
kill -0 "$pid1" || fail "the old instance was killed"
expect_rc 4 grmctl restart
grep -q "not supervising" "$WORK/out" || fail "restart refusal does not say why: $(cat "$WORK/out")"
rc=0
wait "$load" || rc=$?
jq -c '{sent, lost, moved}' "$WORK/load.json"
[ "$rc" = 0 ] || fail "grm-load reported loss or moves while the takeover was refused"
# New flows too: still generation 1, through the steering the first grmd left.
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "new flow not served by generation 1"
kill -0 "$pid1" || fail "the old instance is gone"
ok "snapshot format 99 refused ($reason); generation 1 (pid $pid1) kept serving: $(jq .sent "$WORK/load.json") sent, 0 lost, 0 moved; restart refused (exit 4)"
