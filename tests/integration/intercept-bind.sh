#!/bin/bash
# --intercept-bind: a server that binds its own sockets (bind-server, standing for knotd, nsd,
# pdns_recursor, dnsdist) gets its generation's sockets in bind(), without capabilities, as an
# unprivileged user: threads binding at once, SO_REUSEPORT set or not, SocketsPerGeneration=2
# handed out in turn and then EADDRINUSE, IPv4, IPv6 and dual-stack, options it set copied,
# getsockname() afterwards, port 0 and unmanaged addresses left to the kernel; restarts under
# load lose nothing; a bind the kernel refuses is named in the restart's failure; a statically
# linked program is named as out of reach, and a close-and-bind-again gets EADDRINUSE; TCP
# listeners the same way.
. "$(dirname "$0")/lib.sh"
: "${BIND_SERVER:?}" "${BIND_SERVER_STATIC:?}" "${GRM_BIND_LIBRARY:?}"
export GRM_BIND_LIBRARY
chmod 755 "$WORK"
mkdir -m 1777 "$WORK/shared"
R=$WORK/shared/report.json

# report_field SPEC-INDEX FIELD (0-based, in the order bind-server was given its specs)
report_field() {
        sed -n "$(($1 + 1))p" "$R" | jq -r ".$2"
}

start_grmd --intercept-bind --user nobody --dissector flow --sockets-per-generation 2 --drain-timeout 10 \
        --listen udp:127.0.0.1:9000 --listen 'udp:[::1]:9000' --listen 'udp:[::]:9002' \
        -- "$BIND_SERVER" --report "$R" --threads --pktinfo --nonblock --cloexec --rcvbuf 1048576 --tos 16 \
        udp:127.0.0.1:9000 udp:127.0.0.1:9000 udp:127.0.0.1:9000 'udp:[::1]:9000' 'udp:[::1]:9000' \
        'udp:[::]:9002' 'udp:[::]:9002' udp:127.0.0.1:9001 udp:127.0.0.1:0
pid=$(generation_field 1 pid)
cat "$R"
for i in 3 4 5 6; do
        [ "$(report_field $i ok)" = true ] || fail "bind $i failed: $(sed -n "$((i + 1))p" "$R")"
        [ "$(report_field $i reuseport)" = 1 ] || fail "bind $i: not grm's socket (no SO_REUSEPORT)"
done
# Three threads bound 127.0.0.1:9000 at once: two got the generation's two sockets, one EADDRINUSE.
[ "$(jq -s '[.[0:3][] | select(.ok)] | length' "$R")" = 2 ] || fail "not exactly two of three binds to 127.0.0.1:9000 succeeded"
[ "$(jq -s '[.[0:3][] | select(.errno == 98)] | length' "$R")" = 1 ] || fail "the third bind was not EADDRINUSE"
grep -q "bind(udp:127.0.0.1:9000) failed: Address already in use" "$WORK/grmd.log" ||
        fail "grmd did not log the refused third bind"
ok "SocketsPerGeneration=2 sockets handed out to 3 concurrent threads, then EADDRINUSE"
# getsockname() shows the address asked for; options set before bind() are on grm's socket.
first=$(jq -s 'map(.ok) | index(true)' "$R")
for i in $first 3 5; do
        [ "$(report_field $i port)" = $([ $i = 5 ] && echo 9002 || echo 9000) ] || fail "bind $i: getsockname port $(report_field $i port)"
        [ "$(report_field $i pktinfo)" = 1 ] || fail "bind $i: IP_PKTINFO/IPV6_RECVPKTINFO not copied"
        [ "$(report_field $i nonblock)" = true ] || fail "bind $i: O_NONBLOCK not kept"
        [ "$(report_field $i cloexec)" = true ] || fail "bind $i: FD_CLOEXEC not kept"
        [ "$(report_field $i rcvbuf)" -ge 2097152 ] || fail "bind $i: SO_RCVBUF $(report_field $i rcvbuf) not copied"
done
[ "$(report_field "$first" host)" = 127.0.0.1 ] && [ "$(report_field 3 host)" = ::1 ] && [ "$(report_field 5 host)" = :: ] ||
        fail "getsockname hosts: $(jq -sc '[.[].host]' "$R")"
[ "$(report_field "$first" tos)" = 16 ] || fail "IP_TOS not copied"
[ "$(report_field 5 v6only)" = 0 ] || fail "[::]:9002 is not grm's dual-stack socket"
# Unmanaged address and port 0: the kernel's own sockets (no SO_REUSEPORT, not in the group).
[ "$(report_field 7 ok)" = true ] && [ "$(report_field 7 reuseport)" = 0 ] || fail "unmanaged 127.0.0.1:9001 not bound as usual"
[ "$(report_field 8 ok)" = true ] && [ "$(report_field 8 port)" != 0 ] && [ "$(report_field 8 reuseport)" = 0 ] ||
        fail "port 0 not bound as usual"
ok "getsockname, IP_PKTINFO, O_NONBLOCK, FD_CLOEXEC, SO_RCVBUF, IP_TOS on grm's sockets; 9001 and port 0 untouched"

# The instance holds exactly the sockets it bound: the inherited copies (fds 3-8) of the
# handed-out sockets are closed, so each lives as long as the instance's own descriptor.
n=$(find /proc/"$pid"/fd -lname 'socket:*' | wc -l)
[ "$n" = 8 ] || fail "instance has $n sockets, expected 6 handed out + 2 of its own: $(ls -l /proc/$pid/fd)"
for fd in 3 4 5 6 7 8; do
        readlink /proc/"$pid"/fd/$fd | grep -q "socket:" && [ "$(jq -s "map(.fd) | index($fd)" "$R")" = null ] &&
                fail "inherited fd $fd still open after its socket was handed out"
done
grep -q '^CapEff:\s*0000000000000000' /proc/"$pid"/status || fail "instance has capabilities"
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "IPv4 not served by generation 1"
[ "$(send_udp '[::1]' 9000)" = 1 ] || fail "IPv6 not served by generation 1"
[ "$(send_udp 127.0.0.1 9002)" = 1 ] || fail "dual-stack [::]:9002 not served over IPv4"
[ "$(send_udp '[::1]' 9002)" = 1 ] || fail "dual-stack [::]:9002 not served over IPv6"
ok "generation 1 (uid nobody, no capabilities) serves IPv4, IPv6 and dual-stack through its own binds"

# Restarts under load: each new instance binds again and gets the new generation's sockets.
"$GRM_LOAD" --json -f 100 -r 2000 -d 6 -l 1 --ports 20000-29999 127.0.0.1:9000 >"$WORK/load.json" 2>"$WORK/load.err" &
load=$!
sleep 0.5
for i in 1 2 3; do
        out=$(grmctl restart --json) || fail "restart $i: $out"
        gen=$(jq -r .result.generation <<<"$out")
        probe=$("$GRM_LOAD" --json -f 10 -r 200 -d 0.3 --ports $((40000 + i * 20))-$((40019 + i * 20)) \
                --expect-generation "$gen" 127.0.0.1:9000) || fail "new flows after restart $i not on generation $gen: $probe"
        sleep 1
done
rc=0
wait "$load" || rc=$?
jq -c '{sent, answered, lost, moved, new_flows_on_old_generation}' "$WORK/load.json"
[ "$(jq .lost "$WORK/load.json")" = 0 ] || fail "packets lost across restarts"
[ "$(jq .moved "$WORK/load.json")" = 0 ] || fail "flows moved"
[ "$rc" = 0 ] || fail "grm-load exit $rc"
ok "3 restarts under 2,000 packets/s with intercepted binds: 0 lost, 0 moved"
stop_grmd || fail "grmd exited non-zero"

# Without SO_REUSEPORT and with a second bind to a bound socket: still grm's socket / EINVAL.
start_grmd --intercept-bind --user nobody --listen udp:127.0.0.1:9000 \
        -- "$BIND_SERVER" --report "$R" udp:127.0.0.1:9000
[ "$(report_field 0 ok)" = true ] && [ "$(report_field 0 reuseport)" = 1 ] || fail "bind without SO_REUSEPORT: $(cat "$R")"
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "not served"
ok "a socket without SO_REUSEPORT also gets grm's"

# A server that closes its socket and binds a new one: the generation's socket went with the
# close, so the second bind gets EADDRINUSE (as documented; such servers need socket activation).
stop_grmd || fail "grmd exited non-zero"
start_grmd --intercept-bind --user nobody --listen udp:127.0.0.1:9000 \
        -- "$BIND_SERVER" --report "$R" --close-rebind udp:127.0.0.1:9000
[ "$(report_field 0 rebind_errno)" = 98 ] || fail "close and bind again: $(cat "$R")"
ok "close and bind again: EADDRINUSE, as documented"

# TCP: a listener the server binds (and listen()s on) is the generation's listener, already
# listening in grm's group; the next generation's bind gets the next generation's.
stop_grmd || fail "grmd exited non-zero"
start_grmd --intercept-bind --user nobody --listen tcp:127.0.0.1:9010 \
        -- "$BIND_SERVER" --report "$R" tcp:127.0.0.1:9010
[ "$(report_field 0 ok)" = true ] && [ "$(report_field 0 reuseport)" = 1 ] && [ "$(report_field 0 listening)" = 1 ] ||
        fail "TCP bind: $(cat "$R")"
tcp_gen() {
        exec 7<>/dev/tcp/127.0.0.1/9010 && head -c 40 <&7 | sed -n 's/^gen=\([0-9]*\).*/\1/p'
        exec 7<&-
}
[ "$(tcp_gen)" = 1 ] || fail "TCP not served by generation 1"
expect_rc 0 grmctl restart
[ "$(tcp_gen)" = 2 ] || fail "TCP not served by generation 2 after a restart"
ok "TCP: bind() and listen() get the generation's listener; a restart moves new connections"

# A port the old instance holds and grm does not manage: the new instance's bind fails, it
# exits, and the restart's failure names the address.
stop_grmd || fail "grmd exited non-zero"
start_grmd --intercept-bind --user nobody --listen udp:127.0.0.1:9000 \
        -- "$BIND_SERVER" --exit-on-bind-error udp:127.0.0.1:9000 tcp:127.0.0.1:9100
expect_rc 5 grmctl restart
cat "$WORK/out"
grep -q "bind(tcp:127.0.0.1:9100) failed: Address already in use" "$WORK/out" ||
        fail "the failure does not name tcp:127.0.0.1:9100"
[ "$(status_json | jq .grmd.working)" = 1 ] || fail "working generation changed"
ok "a bind refused by the kernel is named in grmctl restart's failure"
stop_grmd || fail "grmd exited non-zero"

# A statically linked program: LD_PRELOAD cannot reach it; grmd says so, and its bind meets
# grm's sockets (another user's reuseport group: EADDRINUSE).
GRM_NO_WAIT=1 start_grmd --intercept-bind --user nobody --listen udp:127.0.0.1:9000 --start-timeout 3 \
        -- "$BIND_SERVER_STATIC" --exit-on-bind-error udp:127.0.0.1:9000
for i in $(seq 100); do
        grep -q "statically linked" "$WORK/grmd.log" && grep -q "Restart to generation 1 failed\|Generation 1 .*exited" "$WORK/grmd.log" && break
        sleep 0.05
done
grep -q "is statically linked: the preload library cannot intercept" "$WORK/grmd.log" || fail "no warning for a static program"
grep -q "bind interception cannot reach it" "$WORK/grmd.log" || fail "the failure does not say why"
grep -q "udp:127.0.0.1:9000: Address already in use" "$WORK/grmd.log" || fail "the static server's bind did not fail with EADDRINUSE"
ok "a statically linked server: warned, and its failure says bind interception cannot reach it"
