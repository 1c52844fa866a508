#!/bin/bash
# A generation socket the instance never reads is reported while it happens: with
# --sockets-per-generation 2 and a server that binds (and reads) only one of them, grmctl
# status (text, --json, metrics) and the journal name it within seconds; the next generation,
# which reads both, is clean.
. "$(dirname "$0")/lib.sh"
: "${BIND_SERVER:?}" "${GRM_BIND_LIBRARY:?}"
export GRM_BIND_LIBRARY

start_grmd --intercept-bind --sockets-per-generation 2 --dissector flow --drain-timeout 5 \
        --listen udp:127.0.0.1:9000 -- "$BIND_SERVER" udp:127.0.0.1:9000
# Many flows: about half are steered to the socket nobody reads (they go unanswered).
"$GRM_LOAD" --json -f 200 -r 4000 -d 5 --ports 20000-29999 127.0.0.1:9000 >"$WORK/load.json" 2>/dev/null &
load=$!
wait_for 6 '.generations[] | select(.generation == 1) | .unread_sockets == 1' ||
        fail "the unread socket was not reported"
status_json | jq -c '.generations[] | select(.generation == 1) | {unread_sockets, queued_bytes, socket_drops}'
[ "$(generation_field 1 queued_bytes)" -gt 0 ] || fail "no queued bytes reported"
grmctl status | tee "$WORK/status.txt" | grep -q '1 of 2 sockets NOT READ' || { cat "$WORK/status.txt"; fail "grmctl status does not say so"; }
grmctl metrics | grep '^grm_generation_unread_sockets{generation="1"} 1$' >/dev/null || fail "metrics do not say so"
grep -q "Generation 1 (pid [0-9]*) does not read socket 2 of udp:127.0.0.1:9000" "$WORK/grmd.log" ||
        fail "no journal warning"
[ "$(grep -c 'does not read socket' "$WORK/grmd.log")" = 1 ] || fail "warned more than once within a minute"
ok "socket 2 of generation 1 reported unread: $(grep -o '1 of 2 sockets NOT READ[^;]*' "$WORK/status.txt")"
wait "$load" || true
jq -c '{sent, answered, lost}' "$WORK/load.json"
[ "$(jq .lost "$WORK/load.json")" -gt 0 ] || fail "nothing was lost on the unread socket?"

# A generation that reads both sockets: none reported.
cat >"$WORK/grmd.conf" <<CONF
[Instance]
ExecStart=$BIND_SERVER udp:127.0.0.1:9000 udp:127.0.0.1:9000
InterceptBind=yes
CONF
kill -TERM "$GRMD_PID"; wait "$GRMD_PID" || true
start_grmd --config "$WORK/grmd.conf" --sockets-per-generation 2 --dissector flow --listen udp:127.0.0.1:9000 \
        --receive-buffer 4M
out=$("$GRM_LOAD" --json -f 200 -r 4000 -d 4 --ports 30000-39999 127.0.0.1:9000) || fail "load on a fully read generation: $out"
[ "$(generation_field 1 unread_sockets)" = 0 ] || fail "a read socket reported unread"
jq -c '{sent, answered, lost}' <<<"$out"
ok "a generation reading both sockets: none reported, 0 lost"
stop_grmd || fail "grmd exited non-zero"
