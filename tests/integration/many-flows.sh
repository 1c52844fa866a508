#!/bin/bash
# Issue 9: many concurrent flows from many source addresses (grm-load --spread: 127/8 addresses
# x source ports, two sender threads with sendmmsg) through grmd and a restart: every flow had its
# entry before the restart (the table a third full has room for all), every reply of every flow
# comes from the generation that first answered it (moved 0), none is lost, and the table's
# entries and the counters say so.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 --flow-table-size 65536 --receive-buffer 8M --drain-timeout 30 \
        -- "$GRM_ECHO" --idle-exit 5
"$GRM_LOAD" --spread --json -f 20000 -r 20000 -d 4 -t 2 --ports-per-thread 10 -g 1000 127.0.0.1:9000 \
        >"$WORK/load.json" &
load=$!
# Every flow has its entry once its first datagram went through the program: about 1 s at
# 20,000 datagrams a second, longer on a loaded machine (the load runs 4 s).
wait_for 10 '.grmd.flow_entries >= 20000' ||
        fail "only $(status_json | jq .grmd.flow_entries) flow entries for 20,000 flows"
entries=$(status_json | jq .grmd.flow_entries)
kill -0 "$load" 2>/dev/null || echo "note: the load ended before the restart (a slow machine)"
grmctl restart >/dev/null || fail "restart failed"
wait "$load" || fail "grm-load --spread: $(cat "$WORK/load.json")"
jq -c '{sent, answered, lost, flows_answered, moved}' "$WORK/load.json"
[ "$(jq .flows_answered "$WORK/load.json")" = 20000 ] || fail "not every flow was answered"
[ "$(jq .moved "$WORK/load.json")" = 0 ] || fail "flows moved"
[ "$(jq '[.generations[] | select(.generation != 1)] | length' "$WORK/load.json")" = 0 ] ||
        fail "a flow of generation 1 was answered by another"
counters=$(status_json | jq -c '.counters | {flow_created, flow_untracked, flow_over_quota, error_flow_update}')
echo "counters: $counters"
[ "$(status_json | jq .counters.flow_untracked)" = 0 ] || fail "untracked flows: $counters"
[ "$(status_json | jq .counters.flow_created)" = 20000 ] || fail "flow_created: $counters"
ok "20,000 flows from $(( 20000 / 20 )) source addresses kept their generation through a restart ($entries entries)"
stop_grmd || fail "grmd did not exit cleanly"
