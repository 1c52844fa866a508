#!/bin/bash
# Restarts under load: no packet lost, no flow moved (dissector flow), every new flow after a
# restart on the new generation. ADDRESS/TARGET/DISSECTOR select the variant (IPv4, IPv6,
# dual-stack [::] reached over IPv4; flow or none).
. "$(dirname "$0")/lib.sh"

LISTEN=${LISTEN:-udp:127.0.0.1:9000}
TARGET=${TARGET:-127.0.0.1:9000}
DISSECTOR=${DISSECTOR:-flow}
RESTARTS=${RESTARTS:-5}

# A short settle time keeps the 5 restarts within the load (settle.sh tests the default).
start_grmd --listen "$LISTEN" --dissector "$DISSECTOR" --settle-sec 0.3 --sockets-per-generation 2 --drain-timeout 20 --receive-buffer 4M \
        -- "$GRM_ECHO" --idle-exit 0.5

# Distinct source ports for every flow of the run (and for each probe below): a reused port
# would be the same flow to grm, not a new one.
"$GRM_LOAD" --json -f 300 -r 10000 -d $((RESTARTS * 2 + 2)) -l 1 --ports 20000-39999 "$TARGET" >"$WORK/load.json" 2>"$WORK/load.err" &
load=$!
sleep 1
for i in $(seq "$RESTARTS"); do
        out=$(grmctl restart --json) || fail "restart $i: $out"
        gen=$(jq -r .result.generation <<<"$out")
        [ "$gen" = $((i + 1)) ] || fail "restart $i made generation $gen"
        probe=$("$GRM_LOAD" --json -f 20 -r 400 -d 0.5 --ports $((40000 + i * 50))-$((40049 + i * 50)) \
                --expect-generation "$gen" "$TARGET") ||
                fail "new flows after restart $i did not all land on generation $gen: $probe"
        sleep 1.4
done
rc=0
wait "$load" || rc=$?
cat "$WORK/load.json" | jq -c '{sent, answered, lost, moved, new_flows_on_old_generation, bad_replies, rate_pps}'
[ "$(jq .sent "$WORK/load.json")" -gt 10000 ] || fail "load sent too little"
[ "$(jq .lost "$WORK/load.json")" = 0 ] || fail "packets lost"
[ "$(jq .bad_replies "$WORK/load.json")" = 0 ] || fail "bad replies"
[ "$(jq .new_flows_on_old_generation "$WORK/load.json")" = 0 ] || fail "new flows served by an old generation"
if [ "$DISSECTOR" = flow ]; then
        [ "$(jq .moved "$WORK/load.json")" = 0 ] || fail "flows moved"
        [ "$rc" = 0 ] || fail "grm-load reported a problem (exit $rc)"
fi
# The counters agree: every flow the load opened went through the steering program.
status_json | jq -c .counters
[ "$(status_json | jq '.counters.error_select + .counters.error_config')" = 0 ] || fail "steering errors"
ok "$RESTARTS restarts under load on $LISTEN ($DISSECTOR): 0 lost, 0 moved"
# grmd's own sockets on the address: the original, and on IPv4 its head socket, bound after the
# newest generation's (docs/ARCHITECTURE.md, restart step 4); the generations' are theirs.
port=${LISTEN##*:}
own=$(ss -uanp "sport = :$port" | grep -c "pid=$GRMD_PID," || true)
case $LISTEN in
udp:127.*) want=2 ;;
*) want=1 ;;
esac
[ "$own" = "$want" ] || { ss -uanp "sport = :$port"; fail "grmd holds $own sockets on $LISTEN, expected $want"; }
ok "grmd holds $own socket(s) of its own on $LISTEN"
stop_grmd || fail "grmd did not exit cleanly"
