#!/bin/bash
# DNS-style service: grm-echo.socket gets ListenStream= beside its ListenDatagram= lines, on the
# same addresses and port (a drop-in). A TCP connection socket-activates the service and is
# answered by generation 1 (it waited on systemd's listener; grmd hands that queue to the first
# working generation). Then `systemctl reload` under UDP and TCP load: each reload exits 0, and
# over the run no datagram is lost, no flow moves, and no TCP connection is refused, reset, timed
# out or broken.
. "$(dirname "$0")/lib.sh"

RELOADS=${RELOADS:-4}

step "grm-echo.socket with ListenStream= on the ListenDatagram= addresses"
mkdir -p /run/systemd/system/grm-echo.socket.d
cat >/run/systemd/system/grm-echo.socket.d/tcp.conf <<'UNIT'
[Socket]
ListenStream=127.0.0.1:9000
ListenStream=[::1]:9000
DeferAcceptSec=5
UNIT
systemctl daemon-reload
systemctl start "$SOCKET_UNIT" || fail "cannot start $SOCKET_UNIT"
[ "$(unit_prop "$UNIT" ActiveState)" = inactive ] || fail "$UNIT started before any traffic"

step "a TCP connection activates the service and is answered by generation 1"
grm-load --tcp --json -q -r 8 -d 0.5 -t 15000 -g 15000 "$TARGET" >/run/activation.json ||
        fail "the activating connections were not all answered: $(cat /run/activation.json)"
jq -c .connections /run/activation.json
[ "$(jq .connections.answered /run/activation.json)" -ge 1 ] || fail "nothing answered"
[ "$(jq -r '[.generations[].generation] | unique | join(",")' /run/activation.json)" = 1 ] ||
        fail "activating connections answered by $(jq -c .generations /run/activation.json)"
wait_unit 10 "$UNIT" active || fail "$UNIT is not active"
ok "socket-activated over TCP, every connection answered by generation 1"

pid=$(generation_field 1 pid)
env=$(tr '\0' '\n' <"/proc/$pid/environ")
grep -qx 'LISTEN_FDS=4' <<<"$env" || fail "instance environment: $(grep LISTEN_ <<<"$env")"
grep -qx 'LISTEN_FDNAMES=echo:echo:echo:echo' <<<"$env" || fail "instance environment: $(grep LISTEN_ <<<"$env")"
[ "$(status_json | jq -r '[.groups[] | .transport + ":" + .address] | join(" ")')" = \
  "udp:udp:127.0.0.1:9000 udp:udp:[::1]:9000 tcp:tcp:127.0.0.1:9000 tcp:tcp:[::1]:9000" ] ||
        fail "groups: $(status_json | jq -c .groups)"
[ "$(grmctl status --json | jq '[.groups[] | select(.transport == "tcp") | .backlog] | min')" -gt 0 ] ||
        fail "no backlog shown for the TCP groups"
ok "4 groups (UDP and TCP on both addresses), LISTEN_FDS=4 LISTEN_FDNAMES=echo:echo:echo:echo"

step "$RELOADS reloads under UDP and TCP load"
set_conf DrainTimeoutSec 20
# Reloads within the load, not the settle time, are under test (integration/settle tests it).
set_conf SettleSec 0.3
start_load /run/udp.json 100 3000 $((RELOADS * 2 + 2)) --flow-lifetime 1
udp_pid=$LOAD_PID
grm-load --tcp --json -q -r 300 -L 20 -i 0.1 -d $((RELOADS * 2 + 2)) "$TARGET" >/run/tcp.json 2>/run/tcp.err &
tcp_pid=$!
grm-load --tcp --json -q -r 100 -L 10 -i 0.1 -d $((RELOADS * 2 + 2)) "$TARGET6" >/run/tcp6.json 2>/run/tcp6.err &
tcp6_pid=$!
sleep 1
for i in $(seq "$RELOADS"); do
        systemctl reload "$UNIT" || fail "reload $i exited $? (grmctl: $(exec_reload_status))"
        gen=$(working_generation)
        [ "$gen" = $((i + 1)) ] || fail "reload $i made generation $gen the working one"
        echo "reload $i: generation $gen working"
        sleep 1.5
done
LOAD_PID=$udp_pid
wait_load /run/udp.json
for f in tcp tcp6; do
        rc=0
        [ $f = tcp ] && { wait "$tcp_pid" || rc=$?; }
        [ $f = tcp6 ] && { wait "$tcp6_pid" || rc=$?; }
        jq -c '{connections, long_lived}' /run/$f.json
        [ "$rc" = 0 ] || fail "$f clients: refused, reset, timed out or broken (grm-load exited $rc)"
        [ "$(jq .long_lived.moved /run/$f.json)" = "$(jq .long_lived.sessions /run/$f.json)" ] ||
                fail "$f: not every long-lived session followed the reloads"
done
counters=$(status_json | jq -c '.counters | with_entries(select(.key | startswith("tcp_")))')
echo "counters: $counters"
[ "$(jq '.tcp_migrate_kernel + .tcp_error_select + .tcp_no_listener' <<<"$counters")" = 0 ] ||
        fail "connections left to the kernel"
[ "$(unit_prop "$UNIT" NRestarts)" = 0 ] || fail "NRestarts=$(unit_prop "$UNIT" NRestarts)"
grmctl status
ok "$RELOADS reloads under UDP and TCP load: 0 lost, 0 moved, 0 refused, 0 reset, 0 broken"
