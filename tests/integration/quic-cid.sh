#!/bin/bash
# grmd --dissector quic end to end, without a QUIC stack: grm-echo answers every datagram with
# its generation, and a small client builds 1-RTT headers whose connection IDs carry the server
# IDs grmd gave generation 1 (GRM_QUIC_SERVER_IDS, read from the instance's environment), by the
# rules of docs/QUIC.md. After a restart, a generation 1 connection ID sent from a port never
# used before (NAT rebinding) still reaches generation 1, while it drains; the same datagram
# under --dissector flow would be a new flow for generation 2. The routing also survives
# grmctl reexec (the quic_configs map is handed over). Counters: quic_cid_live, no flow entry.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 --dissector quic --sockets-per-generation 2 \
        --quic-server-id-prefix c0a8 --quic-config-id 2 --drain-timeout 30 -- "$GRM_ECHO" --idle-exit 8
pid1=$(generation_field 1 pid)
ids1=$(tr '\0' '\n' </proc/"$pid1"/environ | sed -n 's/^GRM_QUIC_SERVER_IDS=//p')
[ "$(tr '\0' '\n' </proc/"$pid1"/environ | sed -n 's/^GRM_QUIC_CONFIG_ID=//p')" = 2 ] || fail "GRM_QUIC_CONFIG_ID"
[ "$(status_json | jq -r .grmd.quic_server_id_prefix)" = c0a8 ] || fail "status: quic_server_id_prefix"
[ "$(status_json | jq -r .grmd.quic_config_id)" = 2 ] || fail "status: quic_config_id"

# quic_send PORT SERVER_ID: one 1-RTT datagram with a 14-octet CID (config id 2) carrying
# SERVER_ID (hex), from source port PORT; prints the generation that answered (empty: none).
quic_send() {
        python3 - "$1" "$2" <<'EOF'
import os, re, socket, sys
port, server_id = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
length = 14
cid = bytes([2 << 5 | (length - 1)]) + server_id + os.urandom(length - 1 - len(server_id))
datagram = bytes([0x41]) + cid + os.urandom(40)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
s.settimeout(0.5)
for _ in range(4):
    s.sendto(datagram, ("127.0.0.1", 9000))
    try:
        reply = s.recv(2048)
    except socket.timeout:
        continue
    m = re.search(rb" gen=(\d+) pid=\d+\n$", reply)
    if m and reply.startswith(datagram):
        print(m.group(1).decode())
        break
EOF
}

IFS=: read -r id1_0 id1_1 <<<"$ids1"
[ -n "$id1_1" ] || fail "GRM_QUIC_SERVER_IDS=$ids1: expected two server IDs"
[ "$(quic_send 30001 "$id1_0")" = 1 ] || fail "gen 1's CID (socket 0) before the restart"
[ "$(quic_send 30002 "$id1_1")" = 1 ] || fail "gen 1's CID (socket 1) before the restart"

out=$(grmctl restart --json) || fail "restart: $out"
[ "$(jq -r .result.generation <<<"$out")" = 2 ] || fail "restart made $(jq -r .result.generation <<<"$out")"
pid2=$(generation_field 2 pid)
ids2=$(tr '\0' '\n' </proc/"$pid2"/environ | sed -n 's/^GRM_QUIC_SERVER_IDS=//p')
[ "$ids2" != "$ids1" ] || fail "generation 2 got generation 1's server IDs"
IFS=: read -r id2_0 _ <<<"$ids2"

# New source ports (the client's NAT rebound): gen 1's CIDs stay with gen 1, gen 2's go to gen 2,
# and a datagram that is not grm's is a new flow for the working generation.
[ "$(quic_send 30011 "$id1_0")" = 1 ] || fail "gen 1's CID from a new port after the restart"
[ "$(quic_send 30012 "$id1_1")" = 1 ] || fail "gen 1's CID (socket 1) from a new port after the restart"
[ "$(quic_send 30013 "$id2_0")" = 2 ] || fail "gen 2's CID"
[ "$(quic_send 30014 "ffffff")" = 2 ] || fail "a CID that is not grm's (other prefix)"
live=$(status_json | jq .counters.quic_cid_live)
[ "$live" -ge 5 ] || fail "quic_cid_live=$live"

# A takeover by a new grmd (same process, new binary image): the maps, quic_configs included,
# go on.
grmctl reexec >/dev/null || fail "reexec failed"
wait_for 10 '.grmd.working == 2' || fail "no working generation after reexec"
[ "$(quic_send 30021 "$id1_0")" = 1 ] || fail "gen 1's CID after reexec"
[ "$(quic_send 30022 "$id2_0")" = 2 ] || fail "gen 2's CID after reexec"
status_json | jq -c '.counters | with_entries(select(.value > 0))'
[ "$(status_json | jq '.counters.error_select + .counters.error_config + .counters.quic_malformed')" = 0 ] ||
        fail "steering errors"
ok "quic: connection IDs reach their generation across a restart, new source ports and a reexec"
stop_grmd || fail "grmd did not exit cleanly"
