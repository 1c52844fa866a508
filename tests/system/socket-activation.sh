#!/bin/bash
# a. Socket activation: a datagram to grm-echo.socket's address starts grm-echo.service (grmd
# gets the socket's fds), generation 1 answers on IPv4 and IPv6, systemd shows grmd's status,
# and the privileges are as the unit promises: grmd keeps eight capabilities under a seccomp
# filter, the instance runs as the unprivileged grm-echo with none, with the socket unit's name
# and receive buffer.
. "$(dirname "$0")/lib.sh"

step "the units verify; the socket is listening; the service is not running"
systemd-analyze verify --man=no "$SOCKET_UNIT" "$UNIT" || fail "systemd-analyze verify found problems in the units"
systemctl start "$SOCKET_UNIT" || fail "systemctl start $SOCKET_UNIT failed"
[ "$(unit_prop "$SOCKET_UNIT" ActiveState)" = active ] || fail "$SOCKET_UNIT is not active"
[ "$(unit_prop "$UNIT" ActiveState)" = inactive ] || fail "$UNIT started before any datagram"
getent passwd grm-echo >/dev/null || fail "no user grm-echo (sysusers.d/grm-echo.conf not applied at boot)"
ok "$SOCKET_UNIT listening, $UNIT inactive, user grm-echo exists"

step "one datagram activates the service"
start=$(date +%s%N)
trigger=$(grm-load --json -q -f 1 -r 100 -d 0.01 -g 1000 --ports "$(ports 1)" "$TARGET" || true)
wait_unit 10 "$UNIT" active || fail "the datagram did not start $UNIT"
echo "activated in $((($(date +%s%N) - start) / 1000000)) ms; the triggering datagram: $(jq -c '{sent, answered, lost}' <<<"$trigger")"
wait_for 10 '.grmd.working == 1' || fail "generation 1 is not working"
[ "$(unit_prop "$UNIT" SubState)" = running ] || fail "$UNIT is $(unit_prop "$UNIT" SubState), not running"
[ "$(unit_prop "$UNIT" TriggeredBy)" = "$SOCKET_UNIT" ] || fail "TriggeredBy is $(unit_prop "$UNIT" TriggeredBy)"
systemctl status "$UNIT" --no-pager -n 0 || fail "systemctl status $UNIT exited non-zero"
status_text=$(unit_prop "$UNIT" StatusText)
grep -q 'gen 1 working' <<<"$status_text" || fail "StatusText is '$status_text', expected it to show generation 1 working"
ok "active (running), Status: $status_text"

step "generation 1 answers on both addresses"
# (sent: grm-load drops what it could not send within 50 ms of its schedule; a stalled sender
# sends less, which is no fault of grm's: half the rate is asked, every datagram answered)
out=$(load 50 2000 1 --expect-generation 1) || fail "IPv4: $out"
jq -e '.lost == 0 and .sent >= 1000' <<<"$out" >/dev/null || fail "IPv4: $out"
out=$(grm-load --json -q -f 50 -r 2000 -d 1 --ports "$(ports 50)" --expect-generation 1 "$TARGET6") || fail "IPv6: $out"
jq -e '.lost == 0 and .sent >= 1000' <<<"$out" >/dev/null || fail "IPv6: $out"
ok "$(jq .sent <<<"$out") datagrams on $TARGET6 (and as many on $TARGET), all answered by generation 1"

step "grmd: root with the unit's capability bounding set, no new privileges, seccomp"
grmd_pid=$(unit_prop "$UNIT" MainPID)
[ "$(cat "/proc/$grmd_pid/comm")" = grmd ] || fail "MainPID $grmd_pid is not grmd"
grep -E '^(Uid|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$grmd_pid/status"
grep -q "^CapBnd:[[:space:]]*$GRMD_CAPS\$" "/proc/$grmd_pid/status" || fail "grmd's bounding set is not $GRMD_CAPS"
grep -q "^CapEff:[[:space:]]*$GRMD_CAPS\$" "/proc/$grmd_pid/status" || fail "grmd's effective set is not $GRMD_CAPS"
grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$grmd_pid/status" || fail "grmd may gain privileges"
grep -q '^Seccomp:[[:space:]]*2$' "/proc/$grmd_pid/status" || fail "grmd has no system call filter"
ok "grmd (pid $grmd_pid) keeps CAP_BPF CAP_NET_ADMIN CAP_SETUID CAP_SETGID CAP_SETPCAP CAP_KILL CAP_CHOWN CAP_PERFMON only"
# CAP_PERFMON is for the socket census: it loads under the unit's sandbox.
census=$(grmctl status --json | jq -c '.grmd | {census, census_error, census_scans}')
[ "$(jq -r .census <<<"$census")" = active ] || fail "no socket census under the unit: $census"
ok "socket census active under the unit: $census"

step "the instance: user grm-echo, no capabilities, socket-activated with the socket unit's names"
pid=$(generation_field 1 pid)
[ "$(stat -c %U "/proc/$pid")" = grm-echo ] || fail "instance $pid runs as $(stat -c %U "/proc/$pid")"
grep -E '^(Uid|Gid|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' "/proc/$pid/status"
for c in CapInh CapPrm CapEff CapBnd CapAmb; do
        grep -q "^$c:[[:space:]]*0000000000000000\$" "/proc/$pid/status" || fail "instance $pid has $c set"
done
env=$(tr '\0' '\n' <"/proc/$pid/environ")
grep -qx 'LISTEN_FDS=2' <<<"$env" || fail "instance environment: $(grep LISTEN_ <<<"$env")"
grep -qx 'LISTEN_FDNAMES=echo:echo' <<<"$env" || fail "instance environment: $(grep LISTEN_ <<<"$env")"
grep -qx "LISTEN_PID=$pid" <<<"$env" || fail "instance environment: $(grep LISTEN_ <<<"$env")"
grep -qx 'GRM_GENERATION=1' <<<"$env" || fail "instance environment: $(grep GRM_ <<<"$env")"
ok "instance $pid: user grm-echo, no capabilities, LISTEN_FDS=2 LISTEN_FDNAMES=echo:echo"

step "the instance's sockets have the socket unit's ReceiveBuffer=4M (the kernel shows twice that)"
ss -uampn 2>&1 | grep -A1 ':9000 '
rbs=$(ss -uampn | grep -A1 "pid=$pid," | grep -o 'rb[0-9]*' | sort -u)
[ "$rbs" = rb8388608 ] || fail "instance sockets have receive buffers '$rbs', expected rb8388608"
ok "instance sockets: $rbs"

step "the control socket"
[ "$(stat -c '%a %U' "$CTL")" = "600 root" ] || fail "control socket is $(stat -c '%a %U' "$CTL")"
grmctl status
ok "grmctl status through $CTL"

step "grmctl -u asks systemd for the unit's RuntimeDirectory="
/usr/bin/grmctl -u grm-echo status >/dev/null || fail "grmctl -u grm-echo status"
# Move the runtime directory elsewhere: grmctl -u must follow it (systemd says where), since
# /run/grm-echo/grmd.sock no longer exists.
mkdir -p /run/systemd/system/grm-echo.service.d
printf '[Service]\nRuntimeDirectory=\nRuntimeDirectory=grm-echo-elsewhere\n' \
        >/run/systemd/system/grm-echo.service.d/runtime-directory.conf
systemctl daemon-reload
systemctl restart "$UNIT" || fail "restart with another RuntimeDirectory= failed"
[ -S /run/grm-echo-elsewhere/grmd.sock ] || fail "no control socket in /run/grm-echo-elsewhere"
[ -e "$CTL" ] && fail "$CTL still exists"
for i in $(seq 100); do
        /usr/bin/grmctl -u grm-echo.service status --json 2>/dev/null | jq -e '.grmd.working == 1' >/dev/null && break
        sleep 0.05
done
/usr/bin/grmctl -u grm-echo status || fail "grmctl -u grm-echo did not find /run/grm-echo-elsewhere/grmd.sock"
/usr/bin/grmctl -u grm-echo restart || fail "grmctl -u grm-echo restart"
rm -r /run/systemd/system/grm-echo.service.d
systemctl daemon-reload
ok "grmctl -u grm-echo found /run/grm-echo-elsewhere/grmd.sock through systemd"
