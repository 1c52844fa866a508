#!/bin/bash
# QUIC connections through restarts: grmd supervises grm-quic-echo, grm-quic-load keeps
# CONNECTIONS long-lived connections (each replaced after LIFETIME s, so that several generations
# hold some at every restart) plus 20 short handshakes a second that each last at least 0.1 s
# (so some are in flight at every flip), and every client moves to a new source port right after
# each of RESTARTS restarts, as a NAT rebinding does. (A 5 s QUIC idle timeout lets the servers
# forget broken connections soon, so that the old generations drain quickly. Every socket of the
# run gets a source port never used before in it: a reused one could have a flow entry of an
# older generation, and the first Initial of a new connection is steered by the flow table.)
#
# DISSECTOR=quic (the test of issue 7): 0 connections broken, 0 handshakes failed, and every
# server CID the clients saw has the contract's shape with a server ID that grmd gave the
# generation that answered. DISSECTOR=flow (the contrast, for BENCHMARKS.md): the 4-tuple
# steering sends every rebound client to the working generation, which has no state for it, so
# the connections of the older generations break (and the few short ones that had finished
# their handshake but not their echo at the rebinding).
. "$(dirname "$0")/lib.sh"
: "${GRM_QUIC_ECHO:?}" "${GRM_QUIC_LOAD:?}"

DISSECTOR=${DISSECTOR:-quic}
RESTARTS=${RESTARTS:-10}
CONNECTIONS=${CONNECTIONS:-1000}
LIFETIME=${LIFETIME:-8}
INTERVAL=${INTERVAL:-2}
RAMP=3
PORT=9443

# All clients share 127.0.0.1: no per-source quota (the run makes about 4,000 flows from it).
# No settle time: the 10 restarts, 2 s apart, just fit in the load's duration, as before the
# settle time existed (integration/settle tests the default).
start_grmd --listen "udp:127.0.0.1:$PORT" --dissector "$DISSECTOR" --settle-sec 0 --sockets-per-generation 2 --drain-timeout 60 \
        --receive-buffer 4M --flows-per-source 0 -- "$GRM_QUIC_ECHO" --idle-exit 0.5

# The server IDs grmd gave each generation, from the instance's own environment.
record_ids() {
        local gen=$1 pid=$2 ids
        ids=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^GRM_QUIC_SERVER_IDS=//p')
        echo "$gen $ids ${3:-}" >>"$WORK/ids"
}
: >"$WORK/ids"
record_ids 1 "$(generation_field 1 pid)"

# (Each restart takes its own time on top of INTERVAL, more under the sanitizer: half a second
# each and 2 s more, so that the last rebinding signal still finds the load running.)
duration=$((RAMP + 1 + RESTARTS * INTERVAL + RESTARTS / 2 + 2))
"$GRM_QUIC_LOAD" --json --per-connection -c "$CONNECTIONS" -i 1 -l "$LIFETIME" --ramp "$RAMP" -H 20 \
        --handshake-hold 0.1 --idle-timeout 5 --rebind-signal SIGUSR1 --ports 10000-59999 -d "$duration" \
        "127.0.0.1:$PORT" \
        >"$WORK/load.json" 2>"$WORK/load.err" &
load=$!
sleep $((RAMP + 1))
for i in $(seq "$RESTARTS"); do
        out=$(grmctl restart --json) || fail "restart $i: $out"
        gen=$(jq -r .result.generation <<<"$out")
        [ "$gen" = $((i + 1)) ] || fail "restart $i made generation $gen"
        kill -USR1 "$load"
        record_ids "$gen" "$(jq -r .result.pid <<<"$out")"
        sleep "$INTERVAL"
done
rc=0
wait "$load" || rc=$?
tail -n 3 "$WORK/load.err"
jq -c '{connections, handshakes, pings, bad_replies, moved, rebind,
        generations: [.generations[] | [.generation, .connections, .handshakes, .broken]]}' "$WORK/load.json" ||
        fail "grm-quic-load wrote no report (exit $rc): $(cat "$WORK/load.err")"
status_json | jq -c .counters

j() { jq -r "$1" "$WORK/load.json"; }
[ "$(j .rebind.events)" = "$RESTARTS" ] || fail "expected $RESTARTS rebindings, got $(j .rebind.events)"
[ "$(j .rebind.clients)" -ge $((RESTARTS * CONNECTIONS * 9 / 10)) ] || fail "too few clients rebound"
[ "$(j .rebind.errors)" = 0 ] || fail "rebinding errors"
[ "$(j .connections.established)" -ge "$CONNECTIONS" ] || fail "not all connections were established"
[ "$(j .handshakes.ok)" -gt 0 ] || fail "no short handshake completed"
[ "$(j .rebind.handshakes_in_progress_min)" -gt 0 ] || fail "a restart had no handshake in flight"
[ "$(j .bad_replies)" = 0 ] || fail "bad replies"
[ "$(j .moved)" = 0 ] || fail "a connection was answered by two generations"
[ "$(status_json | jq '.counters.error_select + .counters.error_config')" = 0 ] || fail "steering errors"

if [ "$DISSECTOR" = flow ]; then
        # At the first rebinding all connections were on generation 1, and none survives it (90%:
        # a client still finishing its handshake then is not moved).
        [ "$(j .connections.broken)" -ge $((CONNECTIONS * 9 / 10)) ] ||
                fail "flow: expected at least $((CONNECTIONS * 9 / 10)) broken connections, got $(j .connections.broken)"
        ok "flow: $(j .connections.broken) connections broken by $RESTARTS rebindings, $(j .handshakes.ok) handshakes ok"
        stop_grmd || fail "grmd did not exit cleanly"
        exit 0
fi

[ "$(j .connections.broken)" = 0 ] || fail "connections broken: $(j .connections.reasons)"
[ "$(j .handshakes.failed)" = 0 ] || fail "handshakes failed: $(j .handshakes.reasons)"
[ "$(j .connections.failed)" = 0 ] || fail "connections never established: $(j .connections.reasons)"
[ "$rc" = 0 ] || fail "grm-quic-load reported a problem (exit $rc)"
[ "$(j '[.generations[] | select(.connections > 0)] | length')" -ge 4 ] ||
        fail "long-lived connections were not spread over generations"
# The datagrams went the quic dissector's ways: by the server's CID, and by the first-flight table.
[ "$(status_json | jq '.counters.quic_cid_live > 0 and .counters.quic_first_flight_created > 0')" = true ] ||
        fail "the quic dissector's counters show no CID-routed or first-flight datagram"

# Every CID the clients saw has the contract's shape and names a socket of the generation that
# answered: octet 0 = config id << 5 | (length - 1), then one of that generation's server IDs.
python3 - "$WORK/ids" "$WORK/load.json" <<'EOF' || fail "connection IDs do not follow the contract"
import json, sys
ids = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 2 or not f[1]:
        sys.exit(f"generation {f[0]} has no GRM_QUIC_SERVER_IDS")
    ids[int(f[0])] = [bytes.fromhex(x) for x in f[1].split(":")]
checked = 0
for c in json.load(open(sys.argv[2]))["per_connection"]:
    if c["generation"] is None:
        continue
    for key in ("dcid_first", "dcid_last"):
        cid = bytes.fromhex(c[key])
        if not 8 <= len(cid) <= 20 or cid[0] & 0x1f != len(cid) - 1 or cid[0] >> 5 != 0:
            sys.exit(f"connection {c['id']}: {key} {c[key]} has not the contract's first octet")
        if not any(cid[1:1 + len(s)] == s for s in ids[c["generation"]]):
            sys.exit(f"connection {c['id']}: {key} {c[key]} names no socket of generation {c['generation']}")
        checked += 1
if checked == 0:
    sys.exit("no connection ID to check")
print(f"ok: {checked} connection IDs have the contract's shape and their generation's server ID")
EOF
ok "$RESTARTS restarts under $CONNECTIONS QUIC connections, all rebinding after each: 0 broken, 0 failed"
stop_grmd || fail "grmd did not exit cleanly"
