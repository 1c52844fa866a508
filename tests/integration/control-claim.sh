#!/bin/bash
# One grmd per control path (issue 8, item 10): a second grmd given the same control socket
# refuses to start while the first answers there, and changes nothing on the way (the first
# keeps its socket, its working generation and its steering, under load); a stale socket file
# left by a grmd that was killed is replaced (its instance goes on; the next grmd uses another
# address).
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 --receive-buffer 4M -- "$GRM_ECHO" --idle-exit 0.3
first=$GRMD_PID

"$GRM_LOAD" --json -f 50 -r 2000 -d 3 --ports 20000-20999 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 0.5
rc=0
"$GRMD" --control "$SOCK" --listen udp:127.0.0.1:9000 -- "$GRM_ECHO" >"$WORK/second.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a second grmd on the same control path started"
grep -q "Another grmd (pid $first) is running with the control socket $SOCK" "$WORK/second.log" ||
        fail "no clear refusal: $(cat "$WORK/second.log")"
grep -q "Steering" "$WORK/second.log" && fail "the refused grmd attached its program first"
[ "$(status_json | jq .grmd.pid)" = "$first" ] || fail "the control socket no longer reaches the first grmd"
wait "$load" || fail "load lost packets or moved flows while a second grmd was refused: $(cat "$WORK/load.json")"
ok "second grmd refused (exit $rc): $(jq -c '{sent, lost, moved}' "$WORK/load.json")"

# The socket file of a grmd that was killed is stale: the next grmd takes the path.
kill -KILL "$first"
wait "$first" 2>/dev/null || true
[ -S "$SOCK" ] || fail "the killed grmd's socket file is gone (test needs it)"
GRMD_PID=
start_grmd --listen udp:127.0.0.1:9001 --receive-buffer 4M -- "$GRM_ECHO" --idle-exit 0.3
[ "$(status_json | jq .grmd.pid)" = "$GRMD_PID" ] || fail "stale socket not replaced"
ok "stale control socket replaced"
stop_grmd || fail "grmd did not exit cleanly"
