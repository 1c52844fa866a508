#!/bin/bash
# A QUIC connection whose generation is gone: grmd kills the old generation at its drain
# deadline while its clients still hold connections; their next datagrams carry CIDs of that
# generation, which the quic dissector sends to the working generation (quic_cid_stale), and
# grm-quic-echo there answers with a stateless reset. With the same --reset-key in every
# generation the clients verify it and close at once (RFC 9000 10.3), instead of waiting for
# their idle timeout: every connection ends by "stateless_reset", none by a ping timeout.
. "$(dirname "$0")/lib.sh"
: "${GRM_QUIC_ECHO:?}" "${GRM_QUIC_LOAD:?}"

CONNECTIONS=50
PORT=9443
head -c 32 /dev/urandom >"$WORK/reset.key"

# No settle time (integration/settle tests it): generation 1 is killed a second after the restart.
start_grmd --listen "udp:127.0.0.1:$PORT" --dissector quic --drain-timeout 1 --settle-sec 0 \
        -- "$GRM_QUIC_ECHO" --idle-exit 0.5 --reset-key "$WORK/reset.key"

# Long pings timeouts: a connection may only end by the reset (or, if steering failed, by a
# 10 s ping timeout or the 30 s idle timeout, both after the run). The 8 s leave the resets and
# the replacements' handshakes (slow under the sanitizer) 4 s after generation 1 is killed.
"$GRM_QUIC_LOAD" --json -c "$CONNECTIONS" -i 0.5 --ramp 1 --ping-timeout 10 --ports 10000-19999 -d 8 \
        "127.0.0.1:$PORT" >"$WORK/load.json" 2>"$WORK/load.err" &
load=$!
sleep 2
out=$(grmctl restart --json) || fail "restart: $out"
wait_for 10 '[.generations[] | select(.generation == 1 and .state == "exited")] | length == 1' ||
        fail "generation 1 was not ended at its drain deadline"
rc=0
wait "$load" || rc=$?
jq -c '{connections, handshakes, pings, generations}' "$WORK/load.json" || fail "no report: $(cat "$WORK/load.err")"
status_json | jq -c .counters
j() { jq -r "$1" "$WORK/load.json"; }

[ "$(j .connections.established)" -ge $((CONNECTIONS * 2)) ] ||
        fail "expected the $CONNECTIONS connections and their replacements to be established"
[ "$(j .connections.reasons.stateless_reset)" = "$CONNECTIONS" ] ||
        fail "expected $CONNECTIONS connections ended by a stateless reset: $(j .connections.reasons)"
[ "$(j .connections.broken)" = "$CONNECTIONS" ] || fail "other connections broke: $(j .connections.reasons)"
[ "$(j '.generations[] | select(.generation == 2) | .connections')" -ge "$CONNECTIONS" ] ||
        fail "the replacements were not served by generation 2"
[ "$(status_json | jq '.counters.quic_cid_stale > 0')" = true ] || fail "no datagram counted quic_cid_stale"
[ "$(status_json | jq '.counters.error_select + .counters.error_config')" = 0 ] || fail "steering errors"
ok "$CONNECTIONS connections of a killed generation reset by the working one (quic_cid_stale), replaced on it"
stop_grmd || fail "grmd did not exit cleanly"
