#!/bin/bash
# The socket census with a server that connects a socket per client (grm-echo
# --connect-per-client), issue 12: run without ConnectPerClient= its per-client sockets keep
# SO_REUSEPORT and are reported (connected-reuseport, the instance's pid and generation, the
# hint), and a restart, refused (grmd's new socket would land outside grm's group:
# integration/bind-verify), leaves nothing outside the group; with ConnectPerClient=yes nothing is
# reported, before and after a restart.
. "$(dirname "$0")/lib.sh"
export GRM_TEST_CENSUS_INTERVAL_USEC=300000
# ConnectPerClient=yes preloads libgrm-bind.so (never sanitized) into grm-echo, which is in the
# sanitizer pass: ASan must not insist on coming first.
[ -z "${ASAN_OPTIONS:-}" ] || export ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0"

# flows N: N new flows (one datagram each) from fresh ports; prints the answering generations.
flows() {
        local i
        for i in $(seq "$1"); do send_udp 127.0.0.1 9000 || true; done
}

start_grmd --dissector flow --drain-timeout 2 --listen udp:127.0.0.1:9000 -- \
        "$GRM_ECHO" --connect-per-client --idle-exit 30
pid1=$(generation_field 1 pid)
flows 3 >/dev/null
wait_for 5 '.grmd.census_sockets >= 3' || fail "the per-client sockets were not reported"
status_json | jq -c '.census_sockets[]'
n=$(status_json | jq --argjson p "$pid1" '[.census_sockets[] | select(.verdict == "connected-reuseport" and .pid == $p and .generation == 1 and .hint == "ConnectPerClient=yes" and .reuseport == "yes")] | length')
[ "$n" = 3 ] || fail "expected 3 connected-reuseport sockets of generation 1 (pid $pid1), got $n"
grep -q "A connected socket on 127.0.0.1:9000 (peer 127.0.0.1:[0-9]*; uid 0, pid $pid1 (grm-echo), a socket of generation 1) kept SO_REUSEPORT" \
        "$WORK/grmd.log" || fail "no journal warning naming generation 1"
ok "without ConnectPerClient=: 3 per-client sockets of generation 1 (pid $pid1) reported with the hint"

# A restart now: the next generation's socket would join a group around one of them, so grmd
# (which checks each new socket's group with the census) refuses it and starts nothing; the
# census then shows no socket of grmd's outside the group, only the three.
rc=0
grmctl restart >"$WORK/restart.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a restart with per-client sockets that kept SO_REUSEPORT succeeded: $(cat "$WORK/restart.out")"
sleep 0.7
[ "$(status_json | jq '[.census_sockets[] | select(.verdict == "outside")] | length')" = 0 ] ||
        fail "a socket outside grm's group is left: $(status_json | jq -c .census_sockets)"
[ "$(status_json | jq '.grmd.census_sockets')" = 3 ] || fail "census after the refused restart: $(status_json | jq -c .census_sockets)"
[ "$(status_json | jq .grmd.working)" = 1 ] || fail "generation 1 no longer works"
ok "a restart is refused (exit $rc); nothing left outside grm's group, the 3 still reported, generation 1 works"
stop_grmd || fail "grmd exited non-zero"

# With ConnectPerClient=yes: the same server, nothing reported, also across a restart.
start_grmd --connect-per-client --dissector flow --drain-timeout 2 --listen udp:127.0.0.1:9000 -- \
        "$GRM_ECHO" --connect-per-client --idle-exit 30
flows 3 >/dev/null
wait_for 5 '.groups[0].census_connected >= 3' || fail "the per-client sockets were not counted"
sleep 0.7
[ "$(status_json | jq '.grmd.census_sockets')" = 0 ] || fail "reported with ConnectPerClient=yes: $(status_json | jq -c .census_sockets)"
out=$(grmctl restart) || fail "restart: $out"
sleep 0.7
[ "$(status_json | jq '.grmd.census_sockets')" = 0 ] || fail "reported after the restart: $(status_json | jq -c .census_sockets)"
gens=$(flows 5 | sort | uniq -c | tr -s ' ')
[ "$gens" = " 5 2" ] || fail "new flows after the restart answered by: $gens"
ok "ConnectPerClient=yes: $(status_json | jq .groups[0].census_connected) per-client sockets counted, none reported, before and after a restart; new flows on generation 2"
stop_grmd || fail "grmd exited non-zero"
