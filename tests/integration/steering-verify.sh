#!/bin/bash
# grmd verifies its steering and repairs it (issue 8, item 2): a root process outside grmd
# joins a group through a socket of its own and removes the group's program
# (SO_DETACH_REUSEPORT_BPF), later replaces it with a cBPF "ret #0"; each time grmd's probe finds
# the group not running grm's program within about a second, reports it (journal, grmctl status)
# and attaches its program again, under load. The figures are what the load lost while the group
# ran without grm's program.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 -- "$GRM_ECHO" --idle-exit 0.5
wait_for 5 '.groups[0].steering == "grm"' || fail "steering not verified at the start"
[ "$(status_json | jq '.counters.probe')" -ge 1 ] || fail "no probe counted: $(status_json | jq .counters)"
ok "steering verified (probe counted, no instance saw it)"
# A datagram of a probe's size without grmd's token is an ordinary datagram: answered.
/usr/bin/python3 - <<'PY' || fail "a probe-sized datagram without the token was not answered"
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(20):
    s.sendto(os.urandom(16), ("127.0.0.1", 9000))
    s.recvfrom(200)
PY
ok "20 probe-sized datagrams with random tokens answered by the instance"

# attack MODE: join the group with a socket of our own, change its program, leave.
attack() {
        /usr/bin/python3 - "$1" <<'PY'
import ctypes, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 9000))
if sys.argv[1] == "detach":
    s.setsockopt(socket.SOL_SOCKET, 68, 0)            # SO_DETACH_REUSEPORT_BPF
else:
    insns = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))   # ret #0
    s.setsockopt(socket.SOL_SOCKET, 51, struct.pack("HxxxxxxP", 1, ctypes.addressof(insns)))
s.close()
PY
}

"$GRM_LOAD" --json -f 100 -r 4000 -d 6 --ports 20000-20999 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 1
for round in 1 2; do
        mode=$([ $round = 1 ] && echo detach || echo cbpf)
        start=$(date +%s%N)
        attack "$mode"
        wait_for 5 ".groups[0].steering_foreign == $round and .groups[0].steering == \"grm\"" ||
                fail "$mode not found and repaired"
        ms=$((($(date +%s%N) - start) / 1000000))
        ok "$mode: found and repaired within $ms ms"
        sleep 1
done
wait "$load" || true
grep -q "The reuseport group of udp:127.0.0.1:9000 does not run grm's steering program" "$WORK/grmd.log" ||
        fail "not reported in the log"
grep -q "The steering program of udp:127.0.0.1:9000 is in effect again" "$WORK/grmd.log" || fail "repair not logged"
grmctl status | grep -q "NOT grm's program 2 times, attached again" || fail "grmctl status does not say so: $(grmctl status)"
ok "reported and repaired: load $(jq -c '{sent, lost, moved}' "$WORK/load.json") (lost while the group ran without grm's program)"
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "generation 1 not serving after the repairs"

stop_grmd || fail "grmd did not exit cleanly"

# A restart attaches the program again before it checks: nothing to find then. (The periodic
# check is pushed out of the way, so that only the restart can have repaired it.)
GRM_TEST_VERIFY_INTERVAL_USEC=3600000000 start_grmd --listen udp:127.0.0.1:9000 -- "$GRM_ECHO" --idle-exit 0.5
wait_for 5 '.groups[0].steering == "grm"' || fail "steering not verified at the start"
attack detach
expect_rc 0 grmctl restart
wait_for 5 '.grmd.working == 2' || fail "generation 2 not working"
[ "$(status_json | jq '.groups[0].steering_foreign')" = 0 ] || fail "the restart found what it should have repaired first"
[ "$(status_json | jq -r '.groups[0].steering')" = grm ] || fail "steering after the restart: $(status_json | jq -c .groups)"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "generation 2 not serving new flows"
ok "a restart attaches grm's program again and verifies it"
stop_grmd || fail "grmd did not exit cleanly"
