#!/bin/bash
# A flow table full of stale entries (their generation has exited): new flows still get entries
# (a stale entry is free to take), land on the working generation, and nothing is lost.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 --flow-table-size 1024 --drain-timeout 5 --receive-buffer 4M -- "$GRM_ECHO" --idle-exit 0.3
# Fill the table: 1024 flows on generation 1.
"$GRM_LOAD" -q -f 1024 -r 4096 -d 1 --ports 10000-11023 127.0.0.1:9000 || fail "filling load failed"
# "Full" is less than 1024: a flow whose two buckets are both full gets no entry (filled to its
# size, a table of two choices of 4-entry buckets holds about 92%).
full=$((1024 - 128 * $(nproc)))
[ "$full" -ge 512 ] || full=512
[ "$(status_json | jq .grmd.flow_entries)" -ge "$full" ] || fail "table not full: $(status_json | jq .grmd.flow_entries)"
grmctl restart >/dev/null || fail "restart failed"
wait_for 5 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 did not exit"
ok "table full of $(status_json | jq .grmd.flow_entries) entries of an exited generation"

before=$(status_json | jq .counters.error_flow_update)
untracked_before=$(status_json | jq .counters.flow_untracked)
"$GRM_LOAD" --json -f 500 -r 5000 -d 2 --ports 20000-20499 --expect-generation 2 127.0.0.1:9000 >"$WORK/load.json" ||
        fail "new flows over a stale table: $(cat "$WORK/load.json")"
jq -c '{sent, lost, moved, expect_violations}' "$WORK/load.json"
[ "$(status_json | jq .counters.error_flow_update)" = "$before" ] || fail "flow entries could not be written"
flows=$(status_json | jq .groups[0].flows)
untracked=$(($(status_json | jq .counters.flow_untracked) - untracked_before))
# Every stale entry is free, but 500 flows in 256 buckets of 4 leave, about one run in 70, a flow
# whose two buckets are both full of generation 2's own new entries: it is untracked (counted,
# served by the working generation by hash), never given a stale entry's socket. So: at most 1%
# of them without an entry, and each of those counted as untracked.
[ "$flows" -ge 495 ] && { [ "$flows" -ge 500 ] || [ "$untracked" -gt 0 ]; } ||
        fail "new flows have no live entries: $flows of 500, $untracked datagrams untracked; counters $(status_json | jq -c .counters)"
# The old flows coming back are stale: re-dispatched to generation 2, not lost.
"$GRM_LOAD" --json -f 200 -r 2000 -d 1 --ports 10000-10199 --expect-generation 2 127.0.0.1:9000 >"$WORK/load2.json" ||
        fail "returning flows: $(cat "$WORK/load2.json")"
ok "new and returning flows served by generation 2 over a stale table"
stop_grmd || fail "grmd did not exit cleanly"
