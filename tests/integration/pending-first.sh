#!/bin/bash
# Datagrams that arrive before the first instance is ready are not lost: they queue on the
# starting generation's sockets and are answered once it is ready.
. "$(dirname "$0")/lib.sh"

GRM_NO_WAIT=1 start_grmd --listen udp:127.0.0.1:9000 -- "$GRM_ECHO" --start-delay 1.5
wait_for 5 '.generations[0].state == "starting"' || fail "generation 1 not starting"
# 50 flows send for 1 s while nothing is ready, then keep going until after it is.
"$GRM_LOAD" --json -f 50 -r 500 -d 2.5 -g 2000 127.0.0.1:9000 >"$WORK/load.json" || true
jq -c '{sent, answered, lost}' "$WORK/load.json"
[ "$(jq .lost "$WORK/load.json")" = 0 ] || fail "packets sent before ready were lost"
[ "$(status_json | jq .counters.pending)" -gt 0 ] || fail "no packet counted as pending"
ok "packets before the first ready are kept"
stop_grmd || fail "grmd did not exit cleanly"
